"""The staging of a float COG with average overviews, written in one windowed pass.

The full-resolution bands go into a tiled GeoTIFF window by window; in the same pass each
window's overview levels are computed from those full-resolution values (the mean of the
valid, non-NaN pixels of each factor x factor block, `kernels.grid.block_reduce` "mean";
edge blocks use the pixels they have) and written into one small GeoTIFF per level. A VRT
(GDAL's own copy of the staging file's metadata, with an `<Overview>` per level and band)
ties them together, and GDAL's COG driver copies it with OVERVIEWS=FORCE_USE_EXISTING.

GDAL left to build the overviews reads the full resolution again once per level (one level a
call, or it averages averages next to NaN), then the COG driver reads everything once more:
pwtt_layers.tif at 8192^2 took 54.6 s (issue 17). Here the source is read once and the COG
driver copies each level once.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.io import DatasetWriter
from rasterio.windows import Window

from ruinmap.errors import InputError
from ruinmap.kernels.grid import block_reduce

__all__ = ["cog_overview_factors", "staged_with_overviews"]

# the window's values of band `index` (1-based) for rows r0:r1, as float32 with NaN nodata
ReadRows = Callable[[int, int, int], np.ndarray]


def cog_overview_factors(shape: tuple[int, int], block: int) -> list[int]:
    """The overview factors GDAL's COG driver chooses for a raster of `shape` (rows, cols)
    and tiles of `block` px: 2, 4, 8, ... until the level's larger side fits one tile
    (sides rounded up, as GDAL does)."""
    height, width = shape
    factors: list[int] = []
    factor = 1
    while max(math.ceil(height / factor), math.ceil(width / factor)) > block:
        factor *= 2
        factors.append(factor)
    return factors


def _level_path(staging: Path, factor: int) -> Path:
    return staging.with_name(f"{staging.stem}.ovr{factor}{staging.suffix}")


@contextmanager
def staged_with_overviews(
    staging: Path,
    read_rows: ReadRows,
    *,
    count: int,
    shape: tuple[int, int],
    rows: int,
    profile: dict[str, Any],
    describe: Callable[[DatasetWriter], None],
    on_error: Callable[[], None] | None = None,
) -> Iterator[Path]:
    """Write the staging GeoTIFF `staging` (float32, `count` bands, `profile` without its
    size and band count) and its average overview levels (module doc); yield the VRT the COG
    driver copies. Every file is removed on exit; on an error, after `on_error` (called while
    the files still hold their space: a full disk is judged by the space left).

    rows: rows read per window; a multiple of every overview factor (they divide the tile side
    `profile["blockysize"]`, or `rows` is rounded up here). describe: sets the band
    descriptions, units, colour interpretation and tags of the staging file (the VRT and so
    the COG inherit them).
    """
    height, width = shape
    factors = cog_overview_factors(shape, int(profile["blockysize"]))
    if factors:
        rows = -(-rows // factors[-1]) * factors[-1]
    transform: Affine = profile["transform"]
    base = {**profile, "count": count, "dtype": "float32"}
    vrt = staging.with_suffix(".vrt")
    levels = {f: _level_path(staging, f) for f in factors}
    try:
        with rasterio.open(staging, "w", **base, width=width, height=height) as full:
            outs = {f: rasterio.open(path, "w", **{
                **base, "width": -(-width // f), "height": -(-height // f),
                "transform": transform @ Affine.scale(f),
                # a level is small: no need to compress what the COG driver reads once
                "compress": None}) for f, path in levels.items()}
            try:
                for r0 in range(0, height, rows):
                    r1 = min(r0 + rows, height)
                    for index in range(1, count + 1):
                        values = read_rows(index, r0, r1)
                        if values.shape != (r1 - r0, width):
                            raise InputError(
                                f"{staging.name}: rows {r0}:{r1} of band {index} have shape "
                                f"{values.shape}, expected {(r1 - r0, width)}")
                        full.write(values, index, window=Window(0, r0, width, r1 - r0))
                        for f, out in outs.items():
                            means = block_reduce(values, f, "mean")
                            out.write(means, index, window=Window(
                                0, r0 // f, means.shape[1], means.shape[0]))
            finally:
                for out in outs.values():
                    out.close()
            describe(full)
        rasterio.shutil.copy(staging, vrt, driver="VRT")
        _add_overviews(vrt, [levels[f] for f in factors])
        yield vrt
    except Exception:
        if on_error is not None:
            on_error()
        raise
    finally:
        for path in (staging, vrt, *levels.values()):
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".aux.xml").unlink(missing_ok=True)


def _add_overviews(vrt: Path, levels: Sequence[Path]) -> None:
    """Give every band of the VRT `vrt` the overview levels `levels` (finest first), each
    the same band of that level's GeoTIFF."""
    tree = ET.parse(vrt)
    for band in tree.getroot().iter("VRTRasterBand"):
        for level in levels:
            overview = ET.SubElement(band, "Overview")
            ET.SubElement(overview, "SourceFilename", relativeToVRT="1").text = level.name
            ET.SubElement(overview, "SourceBand").text = band.get("band")
    tree.write(vrt)
