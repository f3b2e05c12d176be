"""Metres per CRS unit, the one place that converts map units to ground metres.

Two questions, two answers, one source of the linear unit (`linear_unit_metres`):

- `metres_per_unit(crs, latitude)`: the nominal size of a unit, for pixel sizes and areas
  (a projected CRS's linear unit, e.g. 1 for metres and 0.3048 for feet; for degrees the
  length of one degree of longitude at `latitude`). Focal radii in metres become pixels with
  it, so every tile of a job agrees;
- `ground_metres_per_unit(crs, x, y)`: the true ground length of a unit at a map point,
  measured on the WGS84 ellipsoid (pyproj.Geod), for a scale bar that is right in any CRS
  (degrees, feet, the stretched metres of Web Mercator).
"""

from __future__ import annotations

import math

from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.crs import CRS

__all__ = ["ground_metres_per_unit", "linear_unit_metres", "metres_per_unit"]

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
