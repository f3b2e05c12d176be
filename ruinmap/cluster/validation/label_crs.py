"""The CRS of a label file, checked against its coordinates and repaired where the evidence is
unambiguous.

Label files often declare a CRS their coordinates do not have: the UNOSAT Daraa layer says
"Undefined geographic SRS" while holding UTM 37N metres (EPSG:32637), the Aleppo one says the
same with true lon/lat values. The rules, in order:

1. an explicit `labels_crs` always wins;
2. a geographic (or missing) CRS whose coordinates leave lon [-180, 180] / lat [-90, 90] is
   wrong: it is taken to be the results' CRS when that is projected and the labels' bounds,
   read in it, intersect the results' bounds; otherwise the user must say (`--labels-crs`);
3. "Undefined geographic SRS", or no CRS, with lon/lat values is EPSG:4326;
4. anything else is kept as declared.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
from pyproj import CRS
from pyproj.exceptions import CRSError
from shapely.geometry import box

from ruinmap.errors import InputError

__all__ = ["CrsResolution", "parse_crs", "resolve_label_crs"]

LONLAT = CRS.from_epsg(4326)


@dataclass(frozen=True)
class CrsResolution:
    """Labels in the CRS they are used in, and one sentence per assumption made on the way."""

    frame: gpd.GeoDataFrame
    notes: tuple[str, ...]


def parse_crs(value: str, what: str) -> CRS:
    """`value` (an EPSG code, WKT, PROJ string) as a pyproj CRS; InputError naming `what`."""
    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise InputError(f"{what}: {value!r} is not a CRS pyproj knows ({exc}); "
                         f"give one like EPSG:32637") from None


def _is_lonlat_range(bounds: np.ndarray) -> bool:
    minx, miny, maxx, maxy = bounds
    return bool(-180.0 <= minx and maxx <= 180.0 and -90.0 <= miny and maxy <= 90.0)


def _is_undefined(crs: CRS) -> bool:
    # GDAL writes this name for a GEOGCS it could not identify (UNOSAT/ArcGIS exports)
    return crs.to_epsg() is None and "undefined" in crs.name.lower()


def _crs_name(crs: CRS) -> str:
    code = crs.to_epsg()
    return f"EPSG:{code}" if code is not None else repr(crs.name)


def _bounds_text(bounds: np.ndarray) -> str:
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    return f"x {minx:.7g}..{maxx:.7g}, y {miny:.7g}..{maxy:.7g}"


def _intersects(a: np.ndarray, b: tuple[float, float, float, float]) -> bool:
    return bool(a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3])


def resolve_label_crs(
    frame: gpd.GeoDataFrame,
    path: str,
    *,
    labels_crs: str | None,
    results_crs: str | None,
    results_bounds: tuple[float, float, float, float] | None,
) -> CrsResolution:
    """`frame` with its CRS checked and repaired (module docstring), then reprojected to
    `results_crs` when given. `results_bounds` are in `results_crs`."""
    notes: list[str] = []
    declared: CRS | None = None if frame.crs is None else CRS.from_user_input(frame.crs)
    declared_text = "no CRS" if declared is None else f"the declared CRS {_crs_name(declared)}"
    bounds = np.asarray(frame.total_bounds, np.float64)
    target = None if results_crs is None else parse_crs(results_crs, "the results' CRS")

    if labels_crs is not None:
        chosen = parse_crs(labels_crs, f"{path}: --labels-crs")
        notes.append(f"coordinates read as {_crs_name(chosen)} as --labels-crs says "
                     f"({declared_text} in the file was not used).")
    elif declared is not None and not declared.is_geographic:
        chosen = declared
    elif _is_lonlat_range(bounds):
        if declared is None:
            chosen = LONLAT
            notes.append("the file has no CRS and its coordinates are lon/lat; "
                         "read as EPSG:4326.")
        elif _is_undefined(declared):
            chosen = LONLAT
            notes.append(f"{declared_text} is undefined and the coordinates are lon/lat; "
                         f"read as EPSG:4326.")
        else:
            chosen = declared
    else:
        chosen = _wrong_crs_fallback(path, declared_text, bounds, target, results_bounds)
        what = "geographic" if declared is not None else "missing"
        notes.append(f"coordinates ({_bounds_text(bounds)}) are not lon/lat although the CRS "
                     f"is {what}; read as {_crs_name(chosen)}, the results' CRS.")

    located = frame.set_crs(chosen, allow_override=True)
    if target is not None and not CRS.from_user_input(located.crs).equals(target):
        located = located.to_crs(target)
    if target is not None and results_bounds is not None and len(located):
        outside = ~located.geometry.intersects(box(*results_bounds))
        if bool(outside.all()):
            notes.append(f"no label lies inside the results' bounds "
                         f"({_bounds_text(np.asarray(results_bounds))}).")
        elif bool(outside.any()):
            notes.append(f"{int(outside.sum())} of {len(located)} labels lie outside the "
                         f"results' bounds.")
    return CrsResolution(located, tuple(notes))


def _wrong_crs_fallback(
    path: str,
    declared_text: str,
    bounds: np.ndarray,
    target: CRS | None,
    results_bounds: tuple[float, float, float, float] | None,
) -> CRS:
    """The results' CRS when the labels' coordinates fit it, else InputError."""
    if target is not None and not target.is_geographic and results_bounds is not None:
        if _intersects(bounds, results_bounds):
            return target
    hint = "EPSG:<code>, e.g. the UTM zone the coordinates are in"
    if target is not None and not target.is_geographic:
        hint = f"EPSG:<code> (they do not fall inside the results' {_crs_name(target)} bounds)"
    raise InputError(
        f"{path}: coordinates ({_bounds_text(bounds)}) are not lon/lat, so {declared_text} "
        f"cannot be right; say which CRS they are in with --labels-crs {hint}"
    )
