"""Damage grids: NaN-aware reductions of an image over factor x factor pixel blocks.

A damage grid (for example 100 m cells over 10 m pixels, factor 10) summarises a score image
per block: the mean score, the worst pixel, or the fraction of pixels above a damage threshold.

Chunks whose origin is not a multiple of `factor` cut blocks in two. For those, the pipeline
asks each chunk for additive partials with `block_offset = (row0 % factor, col0 % factor)`,
so chunk blocks line up with the global block grid, then merges cells that two or more chunks
share:

    how              partial to merge across chunks        final value
    "mean"           "sum" and "count", added               sum / count (NaN where count 0)
    "fraction_above" "count_above" and "count", added       count_above / count
    "max" / "min"    the same how, np.fmax / np.fmin        as is (NaN where no valid pixel)

"sum", "count" and "count_above" are 0 (not NaN) for blocks without valid pixels so that partials
add with plain `+`. Chunks whose origin is a multiple of `factor` need no merging: their blocks
are whole-image blocks, bit for bit.
"""

from __future__ import annotations

import warnings

import numpy as np
from numba import njit

from ruinmap.errors import InputError
from ruinmap.kernels._checks import as_image, non_negative_int, positive_int

__all__ = ["HOWS", "block_reduce", "block_reduce_reference"]

# The integer codes the jitted core switches on; order matters.
HOWS: tuple[str, ...] = ("mean", "sum", "count", "max", "min", "count_above", "fraction_above")
_MEAN, _SUM, _COUNT, _MAX, _MIN, _COUNT_ABOVE, _FRACTION_ABOVE = range(len(HOWS))
_NEEDS_THRESHOLD = ("count_above", "fraction_above")


@njit(cache=True, nogil=True)
def _block_reduce_2d(
    x: np.ndarray, factor: int, off_r: int, off_c: int, mode: int, threshold: float,
    out: np.ndarray,
) -> None:  # fmt: skip
    h, w = x.shape
    nby, nbx = out.shape
    # Per-column accumulators for one block row: each image row is folded into them in one
    # branch-free pass over contiguous memory (SIMD), and the columns of each block are folded
    # together once per block row. Order within a block is thus fixed (rows, then columns), so
    # tiles aligned to `factor` reproduce the whole-image result bit for bit.
    acc = np.empty(w, np.float64)
    cnt = np.empty(w, np.int64)
    blk_acc = np.empty(nbx, np.float64)
    blk_cnt = np.empty(nbx, np.int64)
    is_max = mode == _MAX
    is_min = mode == _MIN
    is_above = mode == _COUNT_ABOVE or mode == _FRACTION_ABOVE
    if is_max:
        start = -np.inf
    elif is_min:
        start = np.inf
    else:
        start = 0.0
    for bi in range(nby):
        r0 = max(bi * factor - off_r, 0)
        r1 = min((bi + 1) * factor - off_r, h)
        acc[:] = start
        cnt[:] = 0
        for i in range(r0, r1):
            # NaN compares false everywhere below, so it never becomes an extreme or counts
            # as above the threshold.
            if is_max:
                for j in range(w):
                    v = np.float64(x[i, j])
                    cnt[j] += v == v
                    acc[j] = v if v > acc[j] else acc[j]
            elif is_min:
                for j in range(w):
                    v = np.float64(x[i, j])
                    cnt[j] += v == v
                    acc[j] = v if v < acc[j] else acc[j]
            elif is_above:
                for j in range(w):
                    v = np.float64(x[i, j])
                    cnt[j] += v == v
                    acc[j] += 1.0 if v > threshold else 0.0
            else:
                for j in range(w):
                    v = np.float64(x[i, j])
                    cnt[j] += v == v
                    acc[j] += v if v == v else 0.0
        # Fold columns into blocks one in-block column position d at a time: each pass is a
        # strided loop with no dependency between iterations, where a loop per block would
        # cost a few branches per block (the whole cost at factor 2). Within a block the
        # columns still add in ascending order.
        blk_acc[:] = start
        blk_cnt[:] = 0
        for d in range(factor):
            j = d - off_c
            bj = 0
            if j < 0:
                j += factor
                bj = 1
            if is_max:
                while j < w:
                    blk_cnt[bj] += cnt[j]
                    blk_acc[bj] = acc[j] if acc[j] > blk_acc[bj] else blk_acc[bj]
                    j += factor
                    bj += 1
            elif is_min:
                while j < w:
                    blk_cnt[bj] += cnt[j]
                    blk_acc[bj] = acc[j] if acc[j] < blk_acc[bj] else blk_acc[bj]
                    j += factor
                    bj += 1
            else:
                while j < w:
                    blk_cnt[bj] += cnt[j]
                    blk_acc[bj] += acc[j]
                    j += factor
                    bj += 1
        for bj in range(nbx):
            n = blk_cnt[bj]
            a = blk_acc[bj]
            if mode == _SUM or mode == _COUNT_ABOVE:
                out[bi, bj] = a
            elif mode == _COUNT:
                out[bi, bj] = n
            elif n == 0:
                out[bi, bj] = np.nan
            elif mode == _MEAN or mode == _FRACTION_ABOVE:
                out[bi, bj] = a / n
            else:
                out[bi, bj] = a


def _check_args(
    x: object, factor: object, how: object, threshold: object, block_offset: object
) -> tuple[np.ndarray, int, int, int, int, float]:
    arr = as_image(x, "x")
    f = positive_int(factor, "factor")
    if how not in HOWS:
        raise InputError(f"how must be one of {', '.join(HOWS)}; got {how!r}")
    mode = HOWS.index(str(how))
    if how in _NEEDS_THRESHOLD:
        if threshold is None:
            raise InputError(f"how={how!r} needs a threshold (pixels strictly above it count)")
        if isinstance(threshold, bool) or not isinstance(
            threshold, int | float | np.integer | np.floating
        ):
            raise InputError(f"threshold must be a number, got {threshold!r}")
        thr = float(threshold)
        if np.isnan(thr):
            raise InputError("threshold must not be NaN")
    else:
        if threshold is not None:
            raise InputError(
                f"threshold applies only to how in {_NEEDS_THRESHOLD}, not {how!r}; drop it"
            )
        thr = 0.0
    if not isinstance(block_offset, tuple | list) or len(block_offset) != 2:
        raise InputError(f"block_offset must be a (row, col) pair, got {block_offset!r}")
    off_r = non_negative_int(block_offset[0], "block_offset[0]")
    off_c = non_negative_int(block_offset[1], "block_offset[1]")
    if off_r >= f or off_c >= f:
        raise InputError(
            f"block_offset {block_offset!r} must be < factor ({f}) in both axes; "
            "pass (chunk_row0 % factor, chunk_col0 % factor)"
        )
    return arr, f, mode, off_r, off_c, thr


def _grid_shape(shape: tuple[int, ...], factor: int, off_r: int, off_c: int) -> tuple[int, int]:
    h, w = shape
    nby = 0 if h == 0 else (off_r + h + factor - 1) // factor
    nbx = 0 if w == 0 else (off_c + w + factor - 1) // factor
    return nby, nbx


def block_reduce(
    x: np.ndarray,
    factor: int,
    how: str,
    threshold: float | None = None,
    *,
    block_offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Reduce `x` over factor x factor blocks, ignoring NaN; float32 (ceil(h/f), ceil(w/f)).

    Parameters
    ----------
    x : 2-D float32/float64 array, any memory layout; NaN = nodata.
    factor : int >= 1
        Block side in pixels.
    how : str
        "mean"            mean of the valid pixels.
        "max", "min"      extreme of the valid pixels.
        "fraction_above"  (valid pixels > threshold) / valid pixels; NaN pixels count in neither.
        "count"           number of valid pixels (exact up to 2**24 per block).
        "sum"             sum of the valid pixels (accumulated in float64).
        "count_above"     number of valid pixels > threshold.
        The first four are NaN in a block without valid pixels; the last three are 0 there,
        being the additive partials that merge blocks split between chunks (module docstring).
    threshold : float, for "fraction_above" and "count_above" only
        Compared strictly (v > threshold) in float64, i.e. against the pixel's exact value.
    block_offset : (int, int), keyword-only
        Position of x[0, 0] inside its block, each in [0, factor). (0, 0) starts a block at
        x[0, 0]; a chunk starting at (r, c) of a larger image passes (r % factor, c % factor),
        and its output grid is then the global one, cut to the blocks the chunk touches:
        (ceil((offset + h) / factor), ...) cells, 0 along an empty axis.

    Edge blocks that the image covers only in part use the pixels they have. Sums accumulate
    in float64 in a fixed order within each block (down each column, then across columns), so
    tiles aligned to `factor` reproduce the whole-image result bit for bit.
    """
    arr, f, mode, off_r, off_c, thr = _check_args(x, factor, how, threshold, block_offset)
    out = np.empty(_grid_shape(arr.shape, f, off_r, off_c), np.float32)
    if out.size:
        _block_reduce_2d(arr, f, off_r, off_c, mode, thr, out)
    return out


def block_reduce_reference(
    x: np.ndarray,
    factor: int,
    how: str,
    threshold: float | None = None,
    *,
    block_offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """NumPy reference of `block_reduce`: pad with NaN to whole blocks, reshape, reduce."""
    arr, f, _, off_r, off_c, thr = _check_args(x, factor, how, threshold, block_offset)
    nby, nbx = _grid_shape(arr.shape, f, off_r, off_c)
    if nby == 0 or nbx == 0:
        return np.empty((nby, nbx), np.float32)
    h, w = arr.shape
    padded = np.pad(
        arr.astype(np.float64),
        ((off_r, nby * f - h - off_r), (off_c, nbx * f - w - off_c)),
        constant_values=np.nan,
    )
    blocks = padded.reshape(nby, f, nbx, f).transpose(0, 2, 1, 3).reshape(nby, nbx, f * f)
    count = np.sum(~np.isnan(blocks), axis=-1)
    above = np.sum(blocks > thr, axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks: NaN is the answer
        result = {
            "mean": lambda: np.nanmean(blocks, axis=-1),
            "sum": lambda: np.nansum(blocks, axis=-1),
            "count": lambda: count,
            "max": lambda: np.nanmax(blocks, axis=-1),
            "min": lambda: np.nanmin(blocks, axis=-1),
            "count_above": lambda: above,
            "fraction_above": lambda: np.where(count > 0, above / np.maximum(count, 1), np.nan),
        }[str(how)]()
    return np.asarray(result, dtype=np.float32)
