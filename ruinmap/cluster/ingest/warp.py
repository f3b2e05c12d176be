"""Reading one window of the target grid from a source file, as float32.

Directly (bit for bit) when the source is on the grid, else through a GDAL `WarpedVRT`, which
reads only the source blocks the window needs, so no image is ever loaded whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.ingest.products import mask_pixels
from ruinmap.cluster.ingest.scale import to_power
from ruinmap.cluster.storage.confined import Roots, confined_raster_path
from ruinmap.errors import InputError

__all__ = ["RESAMPLING_METHODS", "SourceRead", "read_source_window", "read_window"]

# float32 holds every integer of magnitude up to 2**24 exactly.
FLOAT32_EXACT_INT = 2**24
FLOAT32_MAX = float(np.finfo(np.float32).max)

RESAMPLING_METHODS = (
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
    "min",
    "max",
    "med",
    "q1",
    "q3",
    "sum",
    "rms",
)


@dataclass(frozen=True)
class SourceRead:
    """How to read one source file onto the target grid (picklable, sent with each task)."""

    path: str
    count: int
    dtype: str
    nodata: float | None
    grid: Grid
    offset: tuple[int, int] | None  # pixel_offset(grid, target) when it passes through
    # the scale its values are in (`ingest.scale`), converted to linear power on the bands
    # `converted` marks (None: all)
    scale: str = "power"
    converted: tuple[bool, ...] | None = None
    # the product's layover/shadow mask layer (`products.MaskLayer.kind`, how to read it)
    mask_kind: str | None = None
    mask: SourceRead | None = None


def _check_float32_exact(
    values: np.ndarray, valid: np.ndarray | None, source_dtype: np.dtype, what: str
) -> None:
    """Raise InputError when a value would overflow or lose integer precision in float32.

    `values` are the source's values as read (or warped in float64); `source_dtype` decides
    the limit: 2**24 for integers wider than 16 bits, float32's largest for float64.
    """
    kind = source_dtype.kind
    limit: float
    if kind in "iu" and source_dtype.itemsize > 2:
        limit = FLOAT32_EXACT_INT
        problem = "integer overflow: value {} cannot be stored exactly as float32 (|v| > 2**24)"
    elif kind == "f" and source_dtype.itemsize > 4:
        limit = FLOAT32_MAX
        problem = "value {} overflows float32"
    else:
        return
    checked = values if valid is None else values[valid]
    if checked.size == 0:
        return
    with np.errstate(invalid="ignore"):
        peak = np.nanmax(np.abs(checked.astype(np.float64, copy=False)))
    if np.isfinite(peak) and peak > limit:
        raise InputError(
            f"{what}: {problem.format(f'{peak:.17g}')}; rescale the data (e.g. to physical units) "
            "or convert it to float32 first"
        )


def read_window(
    source: SourceRead, target: Grid, window: Window, *, resampling: str, nodata: float | None,
    confine_to: Roots | None = None,
) -> np.ndarray:
    """Read `window` of the target grid from `source` as float32 (bands, rows, cols).

    NaN where the source has no data: its nodata value (or `nodata` when given, which
    overrides it), NaN, or outside its footprint. A source on the grid is read directly, bit
    for bit; any other is warped with `resampling` through a WarpedVRT, one window at a time.
    Must run inside a `rasterio.Env`. `confine_to`: the file is opened confined to these
    roots (`storage.confined`), here where it is read, not only where it was planned.
    """
    height, width = int(window.height), int(window.width)
    fill = source.nodata if nodata is None else nodata
    what = f"{source.path} (target window rows {window.row_off}:{window.row_off + height}, "
    what += f"cols {window.col_off}:{window.col_off + width})"
    src_dtype = np.dtype(source.dtype)
    exact_in_f32 = src_dtype.itemsize <= 2 or src_dtype == np.float32
    try:
        with confined_raster_path(source.path, confine_to) as name, rasterio.open(name) as src:
            if source.offset is not None:
                col0 = source.offset[0] + int(window.col_off)
                row0 = source.offset[1] + int(window.row_off)
                c_lo, r_lo = max(col0, 0), max(row0, 0)
                c_hi = min(col0 + width, source.grid.width)
                r_hi = min(row0 + height, source.grid.height)
                if c_hi <= c_lo or r_hi <= r_lo:
                    return np.full((source.count, height, width), np.nan, dtype=np.float32)
                inside = Window(c_lo, r_lo, c_hi - c_lo, r_hi - r_lo)
                if exact_in_f32:
                    # GDAL converts while reading: one pass, and every value stays exact
                    block = src.read(window=inside, out_dtype=np.float32)
                    if fill is not None and not np.isnan(fill):
                        block[block == np.float32(np.asarray(fill).astype(src_dtype))] = np.nan
                else:
                    values = src.read(window=inside)
                    valid = None
                    if fill is not None and not np.isnan(fill):
                        valid = values != np.asarray(fill).astype(values.dtype)
                    _check_float32_exact(values, valid, src_dtype, what)
                    block = values.astype(np.float32)
                    if valid is not None:
                        block[~valid] = np.nan
                if block.shape[1:] == (height, width):
                    return block
                out = np.full((source.count, height, width), np.nan, dtype=np.float32)
                out[:, r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = block
                return out
            work = np.float32 if exact_in_f32 else np.float64
            with WarpedVRT(
                src,
                crs=target.crs,
                transform=target.affine,
                width=target.width,
                height=target.height,
                resampling=Resampling[resampling],
                src_nodata=fill,
                nodata=np.nan,
                dtype=np.dtype(work).name,
            ) as vrt:
                warped = vrt.read(window=window)
            _check_float32_exact(warped, None, src_dtype, what)
            return warped.astype(np.float32, copy=False)
    except rasterio.errors.RasterioIOError as exc:
        cause = exc.__cause__ or exc
        raise InputError(
            f"{what}: read failed ({cause}); the file may be truncated or corrupt"
        ) from None


def read_source_window(
    source: SourceRead, target: Grid, window: Window, *, resampling: str, nodata: float | None,
    confine_to: Roots | None = None,
) -> tuple[np.ndarray, int]:
    """`read_window`, then the product's mask layer applied as nodata (read with nearest
    resampling: its values are classes) and the values converted to linear power.

    Returns the float32 block (bands, rows, cols) and the number of pixels the mask turned
    to nodata that had data. Zero stays data: only the file's nodata value (or `nodata`),
    NaN and the mask make nodata.
    """
    block = read_window(source, target, window, resampling=resampling, nodata=nodata,
                        confine_to=confine_to)
    masked_count = 0
    if source.mask is not None and source.mask_kind is not None:
        layer = read_window(source.mask, target, window, resampling="nearest", nodata=None,
                            confine_to=confine_to)
        masked = mask_pixels(source.mask_kind, layer[0])
        masked_count = int((masked & np.isfinite(block).any(axis=0)).sum())
        block[:, masked] = np.nan
    return to_power(block, source.scale, source.converted), masked_count
