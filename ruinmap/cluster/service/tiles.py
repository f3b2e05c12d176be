"""Map tiles of a job's rasters, rendered by the service from its COGs with rio-tiler.

`render_tile(path, layer, z, x, y)` cuts one 256 px tile of the WebMercatorQuad tile matrix
set (the one MapLibre asks for) from `damage.tif` or `score.tif` and returns it as PNG:

- `damage`: the class raster through its own colour table (the damage palette of
  `outputs/palette.py`, written into the COG; read from the file, as this wing does not
  import `outputs`), with class 0
  ("none") transparent so that the district layer under it stays readable and only damage is
  painted; nodata transparent;
- `score`: the damage score on the yellow-to-red ramp from 0 to the score's 99th percentile
  (read once from the COG's smallest overview), nodata transparent.

A tile outside the raster raises `TileOutside` (the route answers 404).
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

# imported here, not in render_tile: the first import of rio_tiler.io from several request
# threads at once fails (a partially initialised module), as a page's first tiles would do
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

__all__ = ["LAYERS", "RAMP", "TileOutside", "class_legend", "ramp_rgba", "render_tile"]

LAYERS = ("damage", "score")
NODATA_CLASS = 255
RGBA = tuple[int, int, int, int]
TILE_PX = 256
_TRANSPARENT: RGBA = (0, 0, 0, 0)
#: Colour ramp of the damaged fraction, 0 -> scale maximum (yellow to dark red).
RAMP = ("#ffffb2", "#fed976", "#feb24c", "#fd8d3c", "#f03b20", "#bd0026")


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def ramp_rgba(values: np.ndarray, vmax: float, alpha: int = 255) -> np.ndarray:
    """RGBA (uint8) of `values` on `RAMP` from 0 to `vmax`; NaN fully transparent."""
    stops = np.array([_rgb(c) for c in RAMP], dtype=np.float64)
    position = np.clip(np.nan_to_num(values, nan=0.0) / vmax, 0, 1) * (len(RAMP) - 1)
    out = np.zeros((*values.shape, 4), np.uint8)
    for channel in range(3):
        out[..., channel] = np.interp(position, np.arange(len(RAMP)), stops[:, channel])
    out[..., 3] = np.where(np.isfinite(values), alpha, 0)
    return out




class TileOutside(Exception):
    """The tile does not intersect the raster."""


def _colour_table(path: Path) -> dict[int, RGBA]:
    import rasterio

    with rasterio.open(path) as src:
        try:
            return {int(k): tuple(int(c) for c in v)  # type: ignore[misc]
                    for k, v in src.colormap(1).items()}
        except ValueError:  # no colour table
            return {}


def class_names(path: Path, count: int) -> list[str]:
    """Names of damage classes 1..`count` of a class raster: its GDAL category names (in the
    `.aux.xml` written beside it), else `class 1..count`."""
    sidecar = path.with_name(path.name + ".aux.xml")
    if sidecar.is_file():
        names = [c.text or "" for c in ET.parse(sidecar).getroot().iter("Category")]
        if len(names) > count and all(names[1:count + 1]):
            return names[1:count + 1]
    return [f"class {i}" for i in range(1, count + 1)]


def _classes(table: dict[int, RGBA]) -> list[int]:
    # GDAL pads a colour table to 256 entries with opaque black: those are not classes
    return [v for v, rgba in sorted(table.items())
            if 0 < v < NODATA_CLASS and rgba[3] > 0 and rgba[:3] != (0, 0, 0)]


def class_legend(path: Path) -> list[dict[str, object]]:
    """[{value, name, colour}] of the damage classes shown on the damage tiles."""
    table = _colour_table(path)
    values = _classes(table)
    names = class_names(path, len(values))
    return [{"value": v, "name": n, "colour": "#{:02x}{:02x}{:02x}".format(*table[v][:3])}
            for v, n in zip(values, names, strict=True)]


@functools.lru_cache(maxsize=64)
def _damage_colormap(path: str, mtime_ns: int) -> dict[int, RGBA]:
    table = _colour_table(Path(path))
    shown = set(_classes(table))
    # class 0 ("none") and nodata transparent: see the module docstring
    return {v: table[v] if v in shown else _TRANSPARENT for v in range(256)}


@functools.lru_cache(maxsize=64)
def score_range(path: str, mtime_ns: int) -> tuple[float, float]:
    """(0, p99) of a score raster, from its smallest overview (a few thousand pixels)."""
    import rasterio

    with rasterio.open(path) as src:
        factor = max(src.overviews(1) or [1])
        shape = (max(src.height // factor, 1), max(src.width // factor, 1))
        values = src.read(1, out_shape=shape, masked=True).astype(np.float64).filled(np.nan)
    finite = values[np.isfinite(values)]
    top = float(np.percentile(finite, 99)) if finite.size else 1.0
    return 0.0, top if top > 0 else 1.0


def _score_colormap() -> dict[int, RGBA]:
    rgba = ramp_rgba(np.arange(256, dtype=np.float64), 255.0)
    return {v: (int(r), int(g), int(b), 255) for v, (r, g, b, _) in enumerate(rgba)}


def render_tile(path: Path, layer: str, z: int, x: int, y: int) -> bytes:
    """One PNG tile of `layer` (see `LAYERS`) from the COG at `path`."""
    mtime_ns = path.stat().st_mtime_ns
    with Reader(str(path)) as src:
        try:
            image = src.tile(x, y, z, tilesize=TILE_PX)
        except TileOutsideBounds:
            raise TileOutside(f"tile {z}/{x}/{y} is outside {path.name}") from None
    if layer == "damage":
        return image.render(img_format="PNG", colormap=_damage_colormap(str(path), mtime_ns))
    low, high = score_range(str(path), mtime_ns)
    image.rescale(in_range=((low, high),), out_range=((0, 255),))
    return image.render(img_format="PNG", colormap=_score_colormap())
