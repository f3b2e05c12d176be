"""The job's polygons: read, put in the raster CRS, picked per tile, rasterized on its window.

A label image holds 0 where no polygon is and k where polygon k is, with the pixel-centre rule
(a pixel belongs to a polygon when its centre lies inside; rasterio `all_touched=False`); where
polygons overlap, the later one wins. It is always made for one tile's window transform, never
for the whole image.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from pyproj import CRS
from rasterio import features

from ruinmap.cluster.grid import Grid
from ruinmap.cluster.spec import JobSpec
from ruinmap.cluster.spec_files import SpecFiles
from ruinmap.errors import InputError, SpecError

if TYPE_CHECKING:
    from ruinmap.cluster.tiles import Tile

__all__ = [
    "JobInputs",
    "TileVectors",
    "district_of_centroids",
    "footprint_labels",
    "labels_on_window",
    "metres_per_unit",
    "prepare_job",
    "read_inputs",
    "read_vector",
    "tile_vectors",
    "to_raster_crs",
    "window_transform",
]

_PARQUET = (".parquet", ".geoparquet")


def window_transform(transform: Affine, row0: int, col0: int) -> Affine:
    """The affine transform of a window whose top-left pixel is (row0, col0)."""
    return transform @ Affine.translation(col0, row0)


def labels_on_window(
    geometries: np.ndarray, labels: np.ndarray, transform: Affine, shape: tuple[int, int]
) -> np.ndarray:
    """Rasterize `geometries` (shapely, raster CRS) burning `labels` (>= 1) onto a window.

    int32 (rows, cols); 0 where no polygon's pixel-centre rule claims the pixel.
    """
    rows, cols = shape
    out = np.zeros((rows, cols), np.int32)
    if rows == 0 or cols == 0 or len(geometries) == 0:
        return out
    keep = ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))
    shapes = list(zip(geometries[keep], labels[keep].astype(np.int64).tolist(), strict=True))
    if not shapes:
        return out
    return features.rasterize(
        shapes, out_shape=(rows, cols), transform=transform, fill=0, all_touched=False,
        dtype="int32",
    )


def footprint_labels(
    geometries: np.ndarray, transform: Affine, shape: tuple[int, int]
) -> np.ndarray:
    """Label image (int32) of many small polygons on a north-up window: pixel (i, j) gets k + 1
    when polygon k contains its centre (the highest k where polygons overlap), else 0.

    The same pixel-centre rule as `labels_on_window`, vectorised for tens of thousands of
    building footprints: each polygon tests only the pixel centres inside its bounding box
    with `shapely.contains_xy`, so the cost is that of the footprints' own pixels (GDAL's
    rasterizer, through rasterio, converts every shape in Python first: ~40x slower here).
    A centre exactly on an edge belongs to no polygon.
    """
    rows, cols = shape
    out = np.zeros((rows, cols), np.int32)
    a, b, c, d, e, f = tuple(transform)[:6]
    if rows == 0 or cols == 0 or len(geometries) == 0:
        return out
    if b != 0 or d != 0 or a <= 0 or e >= 0:  # rotated grids: the general rasterizer
        return labels_on_window(geometries, np.arange(1, len(geometries) + 1), transform, shape)
    bounds = shapely.bounds(geometries)
    with np.errstate(invalid="ignore"):  # missing or empty polygons have NaN bounds
        j0 = np.clip(np.ceil((bounds[:, 0] - c) / a - 0.5), 0, cols)
        j1 = np.clip(np.floor((bounds[:, 2] - c) / a - 0.5), -1, cols - 1)
        i0 = np.clip(np.ceil((bounds[:, 3] - f) / e - 0.5), 0, rows)
        i1 = np.clip(np.floor((bounds[:, 1] - f) / e - 0.5), -1, rows - 1)
    nj = np.nan_to_num(j1 - j0 + 1, nan=0).clip(min=0).astype(np.int64)
    ni = np.nan_to_num(i1 - i0 + 1, nan=0).clip(min=0).astype(np.int64)
    counts = ni * nj
    total = int(counts.sum())
    if total == 0:
        return out
    owner = np.repeat(np.arange(len(geometries)), counts)
    offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    width = nj[owner]
    jj = j0[owner].astype(np.int64) + offset % width
    ii = i0[owner].astype(np.int64) + offset // width
    inside = shapely.contains_xy(geometries[owner], c + (jj + 0.5) * a, f + (ii + 0.5) * e)
    np.maximum.at(out, (ii[inside], jj[inside]), (owner[inside] + 1).astype(np.int32))
    return out


def read_vector(path: str | Path, layer: str | None = None) -> gpd.GeoDataFrame:
    """A vector file as a GeoDataFrame (GeoParquet through pyarrow, the rest through GDAL)."""
    path = Path(path)
    try:
        if path.suffix.lower() in _PARQUET:
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


def metres_per_unit(crs_wkt: str, latitude: float = 0.0) -> float:
    """Metres per unit of the CRS's x axis (degrees: at `latitude`, the local scale)."""
    crs = CRS.from_wkt(crs_wkt)
    if crs.is_geographic:
        return 111_320.0 * math.cos(math.radians(latitude))
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return float(factor or 1.0)


@dataclass
class JobInputs:
    """The polygons of a job in the raster's CRS, read once on the client."""

    district_ids: np.ndarray
    district_names: np.ndarray
    district_geoms: np.ndarray
    district_frame: gpd.GeoDataFrame  # as read (original CRS and attributes)
    district_area_km2: np.ndarray
    building_frame: gpd.GeoDataFrame | None = None
    building_geoms: np.ndarray | None = None  # raster CRS; None where not scored
    building_scored: np.ndarray | None = None
    building_district: np.ndarray | None = None


@dataclass(frozen=True)
class TileVectors:
    """The polygons one tile needs, already in the raster CRS (WKB, picklable and small).

    Districts: every district intersecting the tile with its 1-based label. Buildings: the
    footprints intersecting the tile (global 0-based indices) plus those whose centroid pixel
    lies in it (`centroid_index`, `centroid_rc`: (row, col) in the tile).
    """

    district_wkb: np.ndarray
    district_label: np.ndarray
    building_wkb: np.ndarray
    building_index: np.ndarray
    centroid_index: np.ndarray
    centroid_rc: np.ndarray


def _equal_area_km2(frame: gpd.GeoDataFrame) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = frame.to_crs(frame.estimate_utm_crs()) if frame.crs.is_geographic else frame
        factor = metres_per_unit(local.crs.to_wkt()) ** 2
    return np.asarray(local.geometry.area, np.float64) * factor / 1e6


def read_inputs(spec: JobSpec, files: SpecFiles) -> tuple[gpd.GeoDataFrame,
                                                       gpd.GeoDataFrame | None]:
    """Read the district (and building) files; SpecError when district ids repeat or miss."""
    frame = read_vector(files.districts.path, spec.districts.layer)
    ids = frame[spec.districts.id]
    if ids.isna().any() or ids.duplicated().any():
        dupes = ids[ids.duplicated()].astype(str).unique()[:5].tolist()
        raise SpecError(
            f"districts.id: field '{spec.districts.id}' of '{files.districts.path.name}' must be "
            f"unique and present for every district (repeated or missing: {dupes or 'missing'})"
        )
    buildings = None
    if spec.buildings is not None and files.buildings is not None:
        buildings = read_vector(files.buildings.path, spec.buildings.layer)
    return frame, buildings


def prepare_job(
    spec: JobSpec, frames: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None], grid: Grid
) -> JobInputs:
    """The polygons of `frames` (from `read_inputs`) in the raster CRS, with areas."""
    frame, buildings = frames
    ids = frame[spec.districts.id]
    names = frame[spec.districts.name] if spec.districts.name else ids
    raster = to_raster_crs(frame, grid.crs_wkt, "districts")
    inputs = JobInputs(
        district_ids=ids.to_numpy(), district_names=names.astype(str).to_numpy(),
        district_geoms=shapely.make_valid(raster.geometry.to_numpy()),
        district_frame=frame, district_area_km2=_equal_area_km2(frame),
    )  # fmt: skip
    if buildings is not None:
        raster_b = to_raster_crs(buildings, grid.crs_wkt, "buildings")
        area_m2 = _equal_area_km2(buildings) * 1e6
        geoms = shapely.make_valid(raster_b.geometry.to_numpy())
        scored = (area_m2 >= spec.method_params.min_building_m2) & ~shapely.is_empty(geoms)
        inputs.building_frame = buildings
        inputs.building_geoms = geoms
        inputs.building_scored = scored
        inputs.building_district = district_of_centroids(geoms, inputs.district_geoms)
    return inputs


def district_of_centroids(buildings: np.ndarray, districts: np.ndarray) -> np.ndarray:
    """0-based district holding each footprint's centroid (the first, if several); -1: none."""
    tree = shapely.STRtree(districts)
    found, which = tree.query(shapely.centroid(buildings), predicate="within")
    out = np.full(len(buildings), -1, np.int64)
    order = np.argsort(which, kind="stable")[::-1]  # the lowest district index wins
    out[found[order]] = which[order]
    return out


def tile_vectors(tiles: list[Tile], grid: Grid, inputs: JobInputs) -> list[TileVectors]:
    """The polygons each tile needs (spatial-index queries; every footprint goes where it
    overlaps, plus to the tile holding its centroid pixel)."""
    a, _, c, _, e, f = grid.transform
    boxes = shapely.box(
        [c + t.col0 * a for t in tiles], [f + (t.row0 + t.height) * e for t in tiles],
        [c + (t.col0 + t.width) * a for t in tiles], [f + t.row0 * e for t in tiles],
    )  # fmt: skip
    d_tile, d_idx = shapely.STRtree(inputs.district_geoms).query(boxes, predicate="intersects")
    b_tile = b_idx = np.empty(0, np.int64)
    crow = ccol = np.empty(0, np.int64)
    scored_idx = np.empty(0, np.int64)
    if inputs.building_geoms is not None and inputs.building_scored is not None:
        scored_idx = np.flatnonzero(inputs.building_scored)
        geoms = inputs.building_geoms[scored_idx]
        b_tile, local = shapely.STRtree(geoms).query(boxes, predicate="intersects")
        b_idx = scored_idx[local]
        centre = shapely.centroid(geoms)
        ccol = np.floor((shapely.get_x(centre) - c) / a).astype(np.int64)
        crow = np.floor((shapely.get_y(centre) - f) / e).astype(np.int64)
    d_wkb = shapely.to_wkb(inputs.district_geoms)
    b_wkb = (shapely.to_wkb(inputs.building_geoms) if inputs.building_geoms is not None
             else np.empty(0, object))
    out = []
    for k, tile in enumerate(tiles):
        dk = np.sort(d_idx[d_tile == k])
        bk = np.sort(b_idx[b_tile == k])
        inside = ((crow >= tile.row0) & (crow < tile.row0 + tile.height)
                  & (ccol >= tile.col0) & (ccol < tile.col0 + tile.width))
        out.append(TileVectors(
            district_wkb=d_wkb[dk], district_label=dk + 1,
            building_wkb=b_wkb[bk] if len(bk) else np.empty(0, object), building_index=bk,
            centroid_index=scored_idx[inside],
            centroid_rc=np.stack([crow[inside] - tile.row0, ccol[inside] - tile.col0], axis=1),
        ))  # fmt: skip
    return out
