"""Checks of the districts and footprints as read, before any work: the CRS they claim, their
geometry types and their validity.

- `<key>.crs` in the spec overrides the file's CRS (`with_spec_crs`);
- coordinates outside longitude/latitude ranges in a geographic CRS are a SpecError
  (`check_lonlat_range`): a GeoJSON without a `crs` member is WGS 84 by RFC 7946, so one
  written in metres reads as degrees far out of range; the error suggests `<key>.crs`;
- a district that is not a polygon (a Point or a line in the layer, or no geometry) is refused
  (`check_districts_polygonal`): its row in the table would have no area, and silently
  dropping it would lose an id the user asked for. Footprints that are not polygons are kept
  and get no score (their area is below `min_building_m2`), as before;
- an invalid polygon (a self-intersecting "bowtie", a ring touching itself) is repaired with
  `shapely.make_valid`, keeping its polygonal parts, and a note naming the features is logged
  (`repair_polygons`); one whose repair has no area left is a SpecError.
"""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from ruinmap.errors import SpecError

__all__ = ["check_districts_polygonal", "check_lonlat_range", "repair_polygons",
           "with_spec_crs"]

log = logging.getLogger(__name__)

_POLYGON_TYPES = ("Polygon", "MultiPolygon")
_SHOWN = 5  # feature ids named in a message


def _ids(frame: gpd.GeoDataFrame, mask: np.ndarray, id_field: str | None) -> str:
    values = frame[id_field][mask] if id_field else frame.index[mask]
    shown = [str(v) for v in list(values)[:_SHOWN]]
    more = int(mask.sum()) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def with_spec_crs(frame: gpd.GeoDataFrame, crs: str | None) -> gpd.GeoDataFrame:
    """`frame` with the spec's `<key>.crs` (when given) in place of the file's CRS."""
    return frame if crs is None else frame.set_crs(crs, allow_override=True)


def check_lonlat_range(frame: gpd.GeoDataFrame, key: str, path: Path) -> None:
    """SpecError when a geographic `frame` has coordinates outside -180..180, -90..90."""
    if frame.crs is None or not frame.crs.is_geographic or frame.empty:
        return
    left, bottom, right, top = (float(v) for v in frame.total_bounds)
    if left >= -180 and right <= 180 and bottom >= -90 and top <= 90:
        return
    raise SpecError(
        f"{key}.path: '{path}' has coordinates from ({left!r}, {bottom!r}) to ({right!r}, "
        f"{top!r}), outside longitude/latitude ranges, but its CRS is {frame.crs.name} (a "
        f"GeoJSON without a `crs` member is WGS 84 by RFC 7946); if the coordinates are "
        f"metres, give their CRS as {key}.crs (e.g. \"EPSG:32637\" for UTM zone 37N)"
    )


def check_districts_polygonal(frame: gpd.GeoDataFrame, id_field: str, path: Path) -> None:
    """SpecError naming the districts that are not (multi)polygons, or have no geometry."""
    geoms = frame.geometry.to_numpy()
    types = np.array(["None" if g is None else g.geom_type for g in geoms], dtype=object)
    empty = np.array([g is not None and g.is_empty for g in geoms])
    bad = ~np.isin(types, _POLYGON_TYPES) | empty
    if not bad.any():
        return
    described = np.where(empty, "empty", np.where(types == "None", "no geometry", types))
    kinds = ", ".join(sorted(set(described[bad].tolist())))
    raise SpecError(
        f"districts.path: '{path}' holds {int(bad.sum())} feature(s) that are not polygons "
        f"({kinds}): districts.id {_ids(frame, bad, id_field)}; every district must be a "
        "polygon: remove these features (e.g. `ogr2ogr -nlt MULTIPOLYGON -where ...`)"
    )


def repair_polygons(frame: gpd.GeoDataFrame, key: str, id_field: str | None,
                    path: Path) -> gpd.GeoDataFrame:
    """`frame` with its invalid polygons made valid (`shapely.make_valid`, polygonal parts
    kept), and a logged note naming them; SpecError when a repair leaves no area."""
    geoms = frame.geometry.to_numpy()
    polygonal = np.array([g is not None and g.geom_type in _POLYGON_TYPES for g in geoms])
    invalid = polygonal & ~shapely.is_valid(geoms)
    if not invalid.any():
        return frame
    repaired = np.array([_polygonal_part(shapely.make_valid(g)) for g in geoms[invalid]],
                        dtype=object)
    lost = shapely.is_empty(repaired) | (shapely.area(repaired) <= 0)
    if lost.any():
        where = np.flatnonzero(invalid)[lost]
        mask = np.zeros(len(frame), bool)
        mask[where] = True
        raise SpecError(
            f"{key}.path: '{path}' has invalid polygon(s) with no area once repaired: "
            f"{key} {_ids(frame, mask, id_field)}; fix or remove them"
        )
    reasons = sorted({shapely.is_valid_reason(g).split("[")[0] for g in geoms[invalid]})
    log.warning(
        "%s: %d invalid polygon(s) in %s (%s) repaired with shapely.make_valid: %s %s",
        key, int(invalid.sum()), path.name, "; ".join(reasons), key,
        _ids(frame, invalid, id_field),
    )
    out = frame.copy()
    geometry = out.geometry.to_numpy().copy()
    geometry[invalid] = repaired
    out[out.geometry.name] = gpd.GeoSeries(geometry, index=out.index, crs=out.crs)
    return out


def _polygonal_part(geom: shapely.Geometry) -> shapely.Geometry:
    """The polygons of a make_valid result (a collection can hold lines where a ring
    touched itself), as one (multi)polygon."""
    if geom.geom_type in _POLYGON_TYPES:
        return geom
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in _POLYGON_TYPES]
    return shapely.union_all(parts) if parts else shapely.Polygon()
