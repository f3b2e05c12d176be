"""Map tiles of a job's rasters, rendered by the service from its COGs with rio-tiler.

`render_tile(path, layer, z, x, y)` cuts one 256 px tile of the WebMercatorQuad tile matrix
set (the one MapLibre asks for) from `damage.tif` or `score.tif` and returns it as PNG:

- `damage`: the class raster through the damage palette (`outputs/palette.py`), with class 0
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

from ruinmap.cluster.outputs.palette import NODATA_CLASS, NONE_NAME, RGBA, class_colormap

__all__ = ["LAYERS", "TileOutside", "class_legend", "render_tile"]

LAYERS = ("damage", "score")
TILE_PX = 256
_TRANSPARENT: RGBA = (0, 0, 0, 0)


class TileOutside(Exception):
    """The tile does not intersect the raster."""


def class_names(path: Path) -> list[str]:
    """Names of damage classes 1..k of a class raster: its GDAL category names (the
    `.aux.xml` beside it, written with the colour table), else `class 1..k` from the colour
    table's entries."""
    sidecar = path.with_name(path.name + ".aux.xml")
    if sidecar.is_file():
        names = [c.text or "" for c in ET.parse(sidecar).getroot().iter("Category")]
        names = [n for n in names[1:NODATA_CLASS] if n]
        if names:
            return names
    import rasterio

    with rasterio.open(path) as src:
        try:
            table = src.colormap(1)
        except ValueError:  # no colour table
            return ["damaged"]
    count = sum(1 for value, rgba in table.items()
                if 0 < value < NODATA_CLASS and rgba[3] > 0 and rgba != (0, 0, 0, 255))
    return [f"class {i}" for i in range(1, max(count, 1) + 1)]


def class_legend(path: Path) -> list[dict[str, object]]:
    """[{value, name, colour}] of the damage classes shown on the damage tiles."""
    names = class_names(path)
    colours = class_colormap(names)
    return [{"value": v, "name": n, "colour": "#{:02x}{:02x}{:02x}".format(*colours[v][:3])}
            for v, n in enumerate([NONE_NAME, *names]) if v > 0]


@functools.lru_cache(maxsize=64)
def _damage_colormap(path: str, mtime_ns: int) -> dict[int, RGBA]:
    colours = class_colormap(class_names(Path(path)))
    colours[0] = _TRANSPARENT  # see the module docstring
    return {v: colours.get(v, _TRANSPARENT) for v in range(256)}


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
    from ruinmap.cluster.service.page import ramp_rgba

    rgba = ramp_rgba(np.arange(256, dtype=np.float64), 255.0)
    return {v: (int(r), int(g), int(b), 255) for v, (r, g, b, _) in enumerate(rgba)}


def render_tile(path: Path, layer: str, z: int, x: int, y: int) -> bytes:
    """One PNG tile of `layer` (see `LAYERS`) from the COG at `path`."""
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io import Reader

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
