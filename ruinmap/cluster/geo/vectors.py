"""Vector files: read (GeoParquet through pyarrow, the rest through GDAL), put in a raster's
CRS, measured on an equal-area projection, and points matched to the polygons holding them
(every one of them: districts may overlap)."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from ruinmap.cluster.geo.units import metres_per_unit
from ruinmap.errors import InputError

__all__ = ["PARQUET_SUFFIXES", "equal_area_km2", "points_in_polygons", "read_vector",
           "to_raster_crs"]

# GeoParquet goes through pyarrow: the GDAL in pyogrio wheels has no Parquet driver
PARQUET_SUFFIXES = (".parquet", ".geoparquet")


def read_vector(path: str | Path, layer: str | None = None) -> gpd.GeoDataFrame:
    """A vector file as a GeoDataFrame (GeoParquet through pyarrow, the rest through GDAL)."""
    path = Path(path)
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            return gpd.read_parquet(path)
        return gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as exc:  # GDAL and pyarrow raise many kinds; all mean "cannot read"
        raise InputError(f"{path}: cannot read this vector file ({exc})") from None


def to_raster_crs(frame: gpd.GeoDataFrame, crs_wkt: str, what: str) -> gpd.GeoDataFrame:
    """`frame` reprojected to the raster's CRS; InputError when it has no CRS."""
    if frame.crs is None:
        raise InputError(f"{what}: the file has no CRS; add one (`ogr2ogr -a_srs EPSG:4326`)")
    target = CRS.from_wkt(crs_wkt)
    return frame if frame.crs == target else frame.to_crs(target)


def points_in_polygons(points: np.ndarray, polygons: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(point, polygon) 0-based index pairs (int64), one for every polygon holding a point
    strictly inside (several where polygons overlap; none on an edge), sorted by polygon then
    point. Both arrays of shapely geometries in one CRS."""
    found, which = shapely.STRtree(polygons).query(points, predicate="within")
    order = np.lexsort((found, which))
    return found[order].astype(np.int64), which[order].astype(np.int64)


def equal_area_km2(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Area of every geometry in km², on the local UTM zone when the CRS is geographic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = frame.to_crs(frame.estimate_utm_crs()) if frame.crs.is_geographic else frame
        factor = metres_per_unit(local.crs.to_wkt()) ** 2
    return np.asarray(local.geometry.area, np.float64) * factor / 1e6
