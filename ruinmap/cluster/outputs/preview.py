"""A small preview of a large 2-D raster (the map's picture), read in bands, never whole."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from affine import Affine

from ruinmap.cluster.outputs.cog import source_row_chunk
from ruinmap.cluster.outputs.palette import NODATA_CLASS
from ruinmap.errors import InputError

__all__ = ["DEFAULT_PREVIEW_PX", "downsample_for_preview", "preview_transform"]

DEFAULT_PREVIEW_PX = 2000
# Bytes of source read per band; the reduction makes a few temporaries of up to 8 bytes a pixel.
_PREVIEW_WINDOW_BYTES = 32 * 2**20


def downsample_for_preview(
    source: Any,
    max_px: int = DEFAULT_PREVIEW_PX,
    *,
    how: Literal["max", "mean", "nearest"] | None = None,
    nodata: float | None = None,
) -> tuple[np.ndarray, int]:
    """A preview of a large 2-D raster at most `max_px` on its long side, and its factor.

    Reads `source` (numpy, zarr.Array, dask, xarray; shape (rows, cols)) in bands of whole
    factor-row blocks, never whole. Each preview pixel summarises a factor x factor block
    (`factor = ceil(long side / max_px)`, 1 when the raster is already small):
    - "max" (default for integers): the highest valid class, so one severe pixel is not lost;
      `nodata` (default 255 for integers) only when the whole block is nodata;
    - "mean" (default for floats): NaN-ignoring mean, NaN when the block has no valid value;
    - "nearest": the block's top-left pixel.
    The preview's transform is `transform @ Affine.scale(factor)` (see `preview_transform`).
    Returns (preview, factor); the preview has the source's dtype ("mean" gives float32).
    """
    shape = tuple(getattr(source, "shape", ()))
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise InputError(f"preview: expected a non-empty 2-D raster, got shape {shape}")
    if max_px < 1:
        raise InputError(f"preview: max_px {max_px} must be at least 1")
    height, width = int(shape[0]), int(shape[1])
    dtype = np.dtype(getattr(source, "dtype", np.float32))
    is_int = dtype.kind in "iub"
    how = how or ("max" if is_int else "mean")
    if how not in ("max", "mean", "nearest"):
        raise InputError(f"preview: how {how!r}: use 'max', 'mean' or 'nearest'")
    if nodata is None and is_int:
        nodata = NODATA_CLASS
    factor = max(1, math.ceil(max(height, width) / max_px))
    out_h, out_w = -(-height // factor), -(-width // factor)
    out_dtype = np.float32 if how == "mean" else dtype
    out = np.empty((out_h, out_w), dtype=out_dtype)

    row_bytes = max(width * dtype.itemsize, 1)
    band_rows = max(factor, (_PREVIEW_WINDOW_BYTES // row_bytes) // factor * factor)
    chunk = source_row_chunk(source)
    if chunk and math.lcm(factor, chunk) * row_bytes <= 2 * _PREVIEW_WINDOW_BYTES:
        step = math.lcm(factor, chunk)
        band_rows = max(step, band_rows // step * step)
    for r0 in range(0, height, band_rows):
        r1 = min(r0 + band_rows, height)
        block = np.asarray(source[r0:r1, :])
        out[r0 // factor : -(-r1 // factor)] = _reduce(block, factor, how, nodata)
    return out, factor


def _reduce(block: np.ndarray, factor: int, how: str, nodata: float | None) -> np.ndarray:
    if factor == 1:
        return block.astype(np.float32) if how == "mean" else block
    if how == "nearest":
        return block[::factor, ::factor]
    rows, cols = block.shape
    pad_r, pad_c = -rows % factor, -cols % factor
    if how == "mean":
        work = block.astype(np.float32)
        if nodata is not None and not math.isnan(nodata):
            work[block == nodata] = np.nan
        work = np.pad(work, ((0, pad_r), (0, pad_c)), constant_values=np.nan)
        tiles = work.reshape(work.shape[0] // factor, factor, work.shape[1] // factor, factor)
        valid = np.isfinite(tiles)
        total = np.where(valid, tiles, 0).sum(axis=(1, 3), dtype=np.float64)
        count = valid.sum(axis=(1, 3))
        with np.errstate(invalid="ignore", divide="ignore"):
            return (total / count).astype(np.float32)
    # "max": nodata must lose against every valid value, so give it the lowest rank.
    if block.dtype.kind == "f":
        work = block.astype(np.float64)
        if nodata is not None and not math.isnan(nodata):
            work[block == nodata] = np.nan
        work = np.pad(work, ((0, pad_r), (0, pad_c)), constant_values=np.nan)
        tiles = work.reshape(work.shape[0] // factor, factor, work.shape[1] // factor, factor)
        has_valid = np.isfinite(tiles).any(axis=(1, 3))
        peak = np.where(np.isfinite(tiles), tiles, -np.inf).max(axis=(1, 3))
        return np.where(has_valid, peak, np.nan).astype(block.dtype)
    # One size up from the source holds every value plus a "nodata" rank below them all.
    wide = (
        np.int16
        if block.dtype.itemsize == 1
        else np.int32
        if block.dtype.itemsize == 2
        else (np.int64)
    )
    lowest = np.iinfo(wide).min
    work = block.astype(wide)
    if nodata is not None:
        work[block == nodata] = lowest
    work = np.pad(work, ((0, pad_r), (0, pad_c)), constant_values=lowest)
    tiles = work.reshape(work.shape[0] // factor, factor, work.shape[1] // factor, factor)
    peak = tiles.max(axis=(1, 3))
    fill = nodata if nodata is not None else 0
    return np.where(peak == lowest, fill, peak).astype(block.dtype)


def preview_transform(transform: Affine, factor: int) -> Affine:
    """The transform of a preview made with `downsample_for_preview` (pixels `factor` times
    larger, same origin)."""
    return transform @ Affine.scale(factor)
