"""CF and GeoZarr attributes of a store's arrays, so xarray (`decode_cf`), GDAL's Zarr driver
and GeoZarr readers find units, names, fill values, classes and georeferencing on every array.

- CF (Climate and Forecast conventions 1.11): `units`, `long_name`, `standard_name` where the
  CF table has one (`surface_backwards_scattering_coefficient_of_radar_wave` for sigma0),
  `_FillValue`, and `flag_values` / `flag_meanings` for the damage classes (CF 1.11 section
  3.5; meanings are single words, so spaces become underscores).
- GeoZarr: the `proj:` and `spatial:` attributes of the Zarr conventions the GeoZarr draft
  builds on (github.com/zarr-developers/geozarr-spec; zarr-conventions/proj and
  zarr-conventions/spatial, v1): `proj:code` (an EPSG code where the CRS has one),
  `proj:wkt2`, `spatial:dimensions` (y then x), `spatial:transform` (the affine a, b, c, d,
  e, f of pixel (0, 0)'s corner, rasterio's order), `spatial:shape` and `spatial:bbox`;
  `zarr_conventions` names both.

A float `_FillValue` is written as xarray writes it into Zarr attributes (the base64 of the
little-endian float64), which is what its Zarr backend decodes; an integer one as the number.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from ruinmap.cluster.geo.grid import Grid

__all__ = ["RADAR_BANDS", "class_flags", "coordinate_attrs", "damage_attrs", "fill_value_attr",
           "geozarr_attrs", "imagery_attrs", "score_attrs"]

#: polarisations: a store whose bands are all of these holds radar backscatter (sigma0)
RADAR_BANDS = frozenset({"VV", "VH", "HH", "HV"})
SIGMA0_STANDARD_NAME = "surface_backwards_scattering_coefficient_of_radar_wave"

_PROJ_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/geo-proj/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/geo-proj/blob/v1/README.md",
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "name": "proj",
}
_SPATIAL_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "name": "spatial",
}


def fill_value_attr(value: float, dtype: Any) -> Any:
    """`_FillValue` as xarray's Zarr backend reads it: a float as base64 of its float64."""
    if np.dtype(dtype).kind == "f":
        return base64.standard_b64encode(struct.pack("<d", float(value))).decode("ascii")
    return int(value)


def geozarr_attrs(grid: Grid, dims: tuple[str, str] = ("y", "x")) -> dict[str, Any]:
    """The GeoZarr `proj:` and `spatial:` attributes of an array on `grid` (module doc)."""
    epsg = grid.crs.to_epsg()
    attrs: dict[str, Any] = {
        "zarr_conventions": [_PROJ_CONVENTION, _SPATIAL_CONVENTION],
        "proj:wkt2": grid.crs.to_wkt(version="WKT2_2019"),
        "spatial:dimensions": list(dims),
        "spatial:transform": list(grid.transform),
        "spatial:shape": [grid.height, grid.width],
        "spatial:bbox": list(grid.bounds),
    }
    if epsg is not None:
        attrs["proj:code"] = f"EPSG:{epsg}"
    return attrs


def coordinate_attrs(grid: Grid, axis: str, *, is_main: bool = True) -> dict[str, Any]:
    """CF attributes of the `x` or `y` coordinate of `grid` (pixel centres).

    A store's second grid (the damage grid's `grid_x`, `grid_y`) gets units and a long name
    but no `standard_name`/`axis`: rioxarray takes every coordinate so marked as the
    dataset's spatial dimension and then refuses a dataset with two grid mappings.
    """
    if not is_main:
        main = coordinate_attrs(grid, axis)
        return {"units": main["units"], "long_name": f"{axis} of the damage grid's cell centres"}
    crs = grid.crs
    if crs.is_geographic:
        return ({"standard_name": "longitude", "units": "degrees_east", "axis": "X"}
                if axis == "x" else
                {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"})
    unit = crs.linear_units or "unknown"
    units = "m" if unit.lower() in ("metre", "meter", "m") else unit
    return {"standard_name": f"projection_{axis}_coordinate", "units": units,
            "axis": axis.upper(), "long_name": f"{axis} coordinate of projection"}


def score_attrs(method: str, grid: Grid) -> dict[str, Any]:
    """The per-pixel damage score: a statistic of its method, so dimensionless."""
    return {"grid_mapping": "spatial_ref", "units": "1",
            "long_name": f"damage score ({method})",
            "_FillValue": fill_value_attr(np.nan, np.float32), **geozarr_attrs(grid)}


def class_flags(class_names: Sequence[str]) -> tuple[list[int], str]:
    """CF `flag_values` (0 none, 1..k) and `flag_meanings` (one word each) of the classes."""
    names = ["none", *class_names]
    return list(range(len(names))), " ".join("_".join(str(n).split()) for n in names)


def damage_attrs(class_names: Sequence[str], grid: Grid) -> dict[str, Any]:
    """The per-pixel damage class (uint8, 255 = not analysed)."""
    values, meanings = class_flags(class_names)
    return {"grid_mapping": "spatial_ref", "long_name": "damage class",
            "_FillValue": 255, "flag_values": values, "flag_meanings": meanings,
            **geozarr_attrs(grid)}


def imagery_attrs(side: str, bands: Sequence[str], grid: Grid) -> dict[str, Any]:
    """An ingested side (`pre`/`post`): sigma0 (linear power, units 1) when every band is a
    polarisation; otherwise the inputs' values as they are (no CF name fits all)."""
    attrs: dict[str, Any] = {"grid_mapping": "spatial_ref", **geozarr_attrs(grid)}
    if bands and all(str(b).upper() in RADAR_BANDS for b in bands):
        attrs.update(units="1", standard_name=SIGMA0_STANDARD_NAME,
                     long_name=f"{side}-event radar backscatter (sigma0, linear power)")
    else:
        attrs.update(long_name=f"{side}-event imagery ({', '.join(map(str, bands))})")
    return attrs
