"""Metres per CRS unit, the one place that converts map units to ground metres.

Three questions, three answers, one source of the linear unit (`linear_unit_metres`):

- `metres_per_unit(crs, latitude)`: the nominal size of a unit (a projected CRS's linear
  unit, e.g. 1 for metres and 0.3048 for feet; for degrees the length of one degree of
  longitude at `latitude` on a sphere), for the area of projected polygons;
- `pixel_sides_metres(crs, res_x, res_y, x, y)`: the ground length of one pixel step down and
  across at a map point. Projected: the resolution times the linear unit (the projection's
  own scale error, at most 0.04 % in UTM, is not corrected). Degrees: measured on the WGS84
  ellipsoid (pyproj.Geod) along each axis, since a degree of latitude (110.6-111.7 km) and
  one of longitude (111.3 km x cos(latitude)) differ. Focal radii in metres become pixels
  with it, per axis, at the grid's centre, so every tile of a job agrees;
- `pixel_area_m2(crs, transform, rows)`: the ground area of a pixel of each row (degrees: the
  geodesic area of the row's lon/lat cell, which shrinks with cos(latitude));
- `ground_metres_per_unit(crs, x, y)`: the true ground length of a unit at a map point,
  measured on the WGS84 ellipsoid (pyproj.Geod), for a scale bar that is right in any CRS
  (degrees, feet, the stretched metres of Web Mercator).
"""

from __future__ import annotations

import math

import numpy as np
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.crs import CRS

__all__ = ["ground_metres_per_unit", "linear_unit_metres", "metres_per_unit", "pixel_area_m2",
           "pixel_sides_metres"]

_GEOD = Geod(ellps="WGS84")
# metres of one degree of longitude at the equator (WGS84 equatorial circumference / 360)
_METRES_PER_DEGREE = 111_320.0


def linear_unit_metres(crs: ProjCRS) -> float:
    """Metres of the CRS's x-axis unit (1 when it has none or an odd one)."""
    try:
        factor = crs.axis_info[0].unit_conversion_factor
    except (IndexError, AttributeError):
        factor = 1.0
    return float(factor) if factor and math.isfinite(factor) else 1.0


def metres_per_unit(crs_wkt: str, latitude: float = 0.0) -> float:
    """Metres per unit of the CRS's x axis (degrees: at `latitude`, the local scale)."""
    crs = ProjCRS.from_wkt(crs_wkt)
    if crs.is_geographic:
        return _METRES_PER_DEGREE * math.cos(math.radians(latitude))
    return linear_unit_metres(crs)


def pixel_sides_metres(crs_wkt: str, res_x: float, res_y: float, x: float, y: float
                       ) -> tuple[float, float]:
    """Ground metres (down, across) of one pixel step of `res_y` x `res_x` CRS units at map
    point (x, y): geodesic on the WGS84 ellipsoid for degrees, else the nominal unit."""
    crs = ProjCRS.from_wkt(crs_wkt)
    if not crs.is_geographic:
        unit = linear_unit_metres(crs)
        return abs(res_y) * unit, abs(res_x) * unit
    half_x, half_y = abs(res_x) / 2, abs(res_y) / 2
    lat = min(max(y, -90 + half_y), 90 - half_y)  # a step must stay on the globe
    _, _, across = _GEOD.inv(x - half_x, lat, x + half_x, lat)
    _, _, down = _GEOD.inv(x, lat - half_y, x, lat + half_y)
    return float(down), float(across)


def pixel_area_m2(crs_wkt: str, transform: tuple[float, ...], rows: np.ndarray) -> np.ndarray:
    """Ground area (m², float64) of a pixel of each of `rows` of a north-up grid with affine
    `transform` (a, b, c, d, e, f): geodesic (WGS84) for degrees, where it changes with the
    row's latitude; the nominal |a e - b d| unit² otherwise, the same for every row."""
    a, b, _, d, e, f = (float(v) for v in tuple(transform)[:6])
    rows = np.asarray(rows, np.float64)
    crs = ProjCRS.from_wkt(crs_wkt)
    if not crs.is_geographic:
        return np.full(rows.shape, abs(a * e - b * d) * linear_unit_metres(crs) ** 2)
    lat0 = np.clip(f + e * rows, -90.0, 90.0)
    lat1 = np.clip(f + e * (rows + 1), -90.0, 90.0)
    # the cell between two parallels, |a| degrees wide (its area does not depend on longitude)
    return np.array([abs(_GEOD.polygon_area_perimeter(
        [0.0, abs(a), abs(a), 0.0], [lo, lo, hi, hi])[0])
        for lo, hi in zip(np.minimum(lat0, lat1).tolist(), np.maximum(lat0, lat1).tolist(),
                          strict=True)], np.float64)


def ground_metres_per_unit(crs: CRS | str, x: float, y: float) -> float:
    """Ground metres (WGS84 ellipsoid) per horizontal map unit of `crs` at map point (x, y).

    Measured between (x - d, y) and (x + d, y) converted to lon/lat; falls back to the CRS's
    linear unit (metres, feet...) when it cannot be converted to lon/lat.
    """
    pcrs = ProjCRS.from_user_input(crs.to_wkt() if isinstance(crs, CRS) else crs)
    if pcrs.is_geographic:
        lon_span = 1e-3
        _, _, dist = _GEOD.inv(x - lon_span / 2, y, x + lon_span / 2, y)
        return float(dist) / lon_span
    try:
        to_lonlat = Transformer.from_crs(pcrs, "EPSG:4326", always_xy=True)
        half = 50.0 / linear_unit_metres(pcrs)  # 100 m worth of map units
        lon0, lat0 = to_lonlat.transform(x - half, y)
        lon1, lat1 = to_lonlat.transform(x + half, y)
        _, _, dist = _GEOD.inv(lon0, lat0, lon1, lat1)
        if math.isfinite(dist) and dist > 0:
            return float(dist) / (2 * half)
    except Exception:  # engineering / local CRSs have no lon/lat: use the nominal unit
        pass
    return linear_unit_metres(pcrs)
