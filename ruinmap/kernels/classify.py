"""Damage classes from a continuous change score and ascending thresholds.

class = number of thresholds strictly below the score: with thresholds (t_1 < ... < t_k),
score <= t_1 is class 0 (no damage), t_1 < score <= t_2 is class 1, ..., score > t_k is class k.
NaN scores (nodata) get class 255, so a class image is uint8 with at most 254 thresholds.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ruinmap.errors import InputError
from ruinmap.kernels._checks import as_image
from ruinmap.kernels._layout import contiguous_row, output_array, unit_stride_x

NODATA_CLASS = 255
MAX_THRESHOLDS = 254
# Up to this many thresholds a branch-free count per threshold (vectorised over x) beats a
# per-pixel binary search.
_LINEAR_MAX = 16


@njit(inline="always", nogil=True, cache=True, error_model="numpy")
def _count_above(v: float, t0: float, t1: float, t2: float, t3: float) -> int:
    return (1 if v > t0 else 0) + (1 if v > t1 else 0) + (1 if v > t2 else 0) + (1 if v > t3 else 0)


@njit(cache=True, nogil=True, error_model="numpy")
def _classify_linear_2d(score: np.ndarray, thresholds: np.ndarray, out: np.ndarray) -> None:
    """Count thresholds below each score four at a time; `thresholds` is padded with +inf to a
    multiple of 4 (never exceeded), so the usual <= 4 thresholds take a single pass."""
    for i in range(score.shape[0]):
        score_row = contiguous_row(score[i])
        out_row = contiguous_row(out[i])
        t0, t1, t2, t3 = thresholds[0], thresholds[1], thresholds[2], thresholds[3]
        for j in range(score_row.size):
            v = score_row[j]
            n = _count_above(v, t0, t1, t2, t3)
            # NaN compares false with every threshold; it gets the nodata class instead.
            out_row[j] = n if v == v else NODATA_CLASS
        for k in range(4, thresholds.size, 4):
            t0, t1, t2, t3 = thresholds[k], thresholds[k + 1], thresholds[k + 2], thresholds[k + 3]
            for j in range(score_row.size):
                out_row[j] += _count_above(score_row[j], t0, t1, t2, t3)


@njit(cache=True, nogil=True, error_model="numpy")
def _classify_search_2d(score: np.ndarray, thresholds: np.ndarray, out: np.ndarray) -> None:
    ny, nx = score.shape
    n = thresholds.size
    for i in range(ny):
        for j in range(nx):
            v = score[i, j]
            if v != v:
                out[i, j] = NODATA_CLASS
                continue
            lo = 0
            hi = n
            # First index with thresholds[index] >= v = count of thresholds < v.
            while lo < hi:
                mid = (lo + hi) // 2
                if thresholds[mid] < v:
                    lo = mid + 1
                else:
                    hi = mid
            out[i, j] = lo


def _as_thresholds(thresholds: object) -> np.ndarray:
    arr = np.asarray(thresholds)
    if arr.dtype.kind not in "iuf":
        raise InputError(f"thresholds: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(
            f"thresholds: expected a non-empty 1-D sequence, got shape {arr.shape}; "
            "pass e.g. [3.0, 5.0] for no / moderate / severe"
        )
    if arr.size > MAX_THRESHOLDS:
        raise InputError(
            f"thresholds: {arr.size} given, at most {MAX_THRESHOLDS} fit a uint8 class image "
            f"(class {NODATA_CLASS} is nodata)"
        )
    if not np.all(np.isfinite(arr)):
        raise InputError(f"thresholds: every threshold must be finite, got {arr.tolist()}")
    if np.any(np.diff(arr) <= 0):
        raise InputError(
            f"thresholds: must be strictly ascending, got {arr.tolist()}; sort them and drop "
            "duplicates"
        )
    return arr


def _limits_for(score_dtype: np.dtype, thresholds: np.ndarray) -> np.ndarray:
    """Thresholds in the score's dtype, giving exactly the float64 comparison `score > t`.

    For a float32 score s, s > t holds iff s > the largest float32 <= t, so thresholds are
    rounded down (not to nearest) and the comparison runs on 16 float32 lanes, not 8 float64.
    """
    if score_dtype == np.float64:
        return thresholds
    with np.errstate(over="ignore"):
        limits = thresholds.astype(np.float32)
    above = limits.astype(np.float64) > thresholds
    limits[above] = np.nextafter(limits[above], np.float32(-np.inf))
    return limits


def classify(score: np.ndarray, thresholds: object, *, out: np.ndarray | None = None) -> np.ndarray:
    """Class image (uint8) of a 2-D score: the count of thresholds strictly below each score.

    0 = at or below the lowest threshold (no damage), k = above the k-th threshold;
    NaN -> 255. `thresholds` is 1-D, strictly ascending, finite, 1 to 254 values; the
    comparison is exact, as if the score were compared with them in float64.
    `out`: an optional uint8 array of the score's shape to write into and return.
    """
    score = unit_stride_x(as_image(score, "score"))
    limits = _limits_for(score.dtype, _as_thresholds(thresholds))
    out = output_array(out, score.shape, np.uint8)
    if limits.size <= _LINEAR_MAX:
        padded = np.full(-(-limits.size // 4) * 4, np.inf, limits.dtype)
        padded[: limits.size] = limits
        _classify_linear_2d(score, padded, out)
    else:
        _classify_search_2d(score, limits, out)
    return out


def classify_reference(score: np.ndarray, thresholds: object) -> np.ndarray:
    """NumPy reference for `classify`."""
    score = np.asarray(score, np.float64)
    limits = np.asarray(thresholds, np.float64)
    classes = np.searchsorted(limits, score, side="left")
    return np.where(np.isnan(score), NODATA_CLASS, classes).astype(np.uint8)
