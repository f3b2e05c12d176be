"""The Lee speckle filter on 2-D images, and the Lee filter fused with the natural log that
PWTT takes next.

Like `kernels.focal`, NaN is nodata and pixels outside the array are missing, so a tile cut
with `size // 2` extra pixels on each side gives, cropped back, bitwise the whole-image result.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numba import njit

from ruinmap.errors import InputError
from ruinmap.kernels._checks import as_image, contiguous_image, positive_int
from ruinmap.kernels.fastlog import ln_f32

__all__ = ["lee_filter", "lee_filter_reference", "lee_log_filter", "lee_log_filter_reference"]


# --- lee_filter -------------------------------------------------------------------------------


@njit(cache=True, nogil=True, error_model="numpy")
def _lee_2d(
    x: np.ndarray, h: int, eta2: float, out: np.ndarray, cols_sums: np.ndarray, win: np.ndarray,
    take_log: bool, floor: float,
) -> None:
    """Lee filter of a (2h+1)^2 window; with `take_log`, ln(max(filtered, floor)) instead
    (float32, the filtered value rounded to float32 first, non-finite logs NaN).

    cols_sums (3, cols + 2h): per column, the sum, sum of squares and count of the valid pixels
    in the window rows; win (3, cols): the same over the window. Both are summed in a fixed
    order (rows top to bottom, columns left to right), so a pixel's result does not depend on
    where a tile was cut.
    """
    floor32 = np.float32(floor)
    rows, cols = x.shape
    h = max(h, 0)
    width = cols + 2 * h
    for q in range(3):
        for j in range(width):
            cols_sums[q, j] = 0.0
    for y in range(rows):
        lo = max(y - h, 0)
        hi = min(y + h, rows - 1)
        for j in range(cols):
            v = float(x[lo, j])
            valid = v == v
            v = v if valid else 0.0
            cols_sums[0, h + j] = v
            cols_sums[1, h + j] = v * v
            cols_sums[2, h + j] = 1.0 if valid else 0.0
        for yy in range(lo + 1, hi + 1):
            for j in range(cols):
                v = float(x[yy, j])
                valid = v == v
                v = v if valid else 0.0
                cols_sums[0, h + j] += v
                cols_sums[1, h + j] += v * v
                cols_sums[2, h + j] += 1.0 if valid else 0.0
        for i in range(cols):
            win[0, i] = cols_sums[0, i]
            win[1, i] = cols_sums[1, i]
            win[2, i] = cols_sums[2, i]
        for t in range(1, 2 * h + 1):
            for i in range(cols):
                win[0, i] += cols_sums[0, i + t]
                win[1, i] += cols_sums[1, i + t]
                win[2, i] += cols_sums[2, i + t]
        yo = max(y, 0)
        if take_log:
            for i in range(cols):
                v = np.float64(x[yo, i])
                res32 = np.float32(_lee_pixel(v, win[0, i], win[1, i], win[2, i], eta2))
                # a comparison with NaN is False, so a NaN result stays NaN
                res32 = floor32 if res32 < floor32 else res32
                lg = ln_f32(res32)
                lg = lg if lg - lg == np.float32(0.0) else np.float32(np.nan)
                out[yo, i] = lg if v == v else np.float32(np.nan)
        else:
            for i in range(cols):
                v = np.float64(x[yo, i])
                res = _lee_pixel(v, win[0, i], win[1, i], win[2, i], eta2)
                # NaN centres are selected last, which keeps the loop free of branches
                out[yo, i] = res if v == v else np.nan


@njit(inline="always", nogil=True, cache=True, error_model="numpy")
def _lee_pixel(v: float, total: float, total_sq: float, n: float, eta2: float) -> float:
    """Lee's estimate of one pixel of value v from its window's sum, sum of squares and count."""
    mean = total / n
    var_z = max(total_sq / n - mean * mean, 0.0)
    var_x = (var_z - mean * mean * eta2) / (1.0 + eta2)
    b = max(0.0, var_x / var_z) if var_z > 0.0 else 0.0
    return (1.0 - b) * mean + b * v


def _lee_args(size: object, enl: object) -> tuple[int, float]:
    s = positive_int(size, "size")
    if s % 2 == 0:
        raise InputError(f"size must be odd (a centred size x size window), got {s}; try {s + 1}")
    if isinstance(enl, bool) or not isinstance(enl, int | float | np.integer | np.floating):
        raise InputError(f"enl must be a number (equivalent number of looks), got {enl!r}")
    e = float(enl)
    if not (math.isfinite(e) and e > 0.0):
        raise InputError(
            f"enl must be a finite number > 0 (the equivalent number of looks, e.g. 4.4 for "
            f"Sentinel-1 IW GRD), got {enl!r}"
        )
    return s, e


def lee_filter(x: np.ndarray, size: int = 3, enl: float = 5.0) -> np.ndarray:
    """Lee MMSE speckle filter over a size x size square window (float32 out).

    Lee (1980), Digital image enhancement and noise filtering by use of local statistics,
    IEEE TPAMI 2(2), as applied to Sentinel-1 backscatter before the pixel-wise t-test of
    Ballinger (2024, PWTT). With m and var_z the mean and variance of the valid pixels in the
    window (population variance, ddof = 0, so a 1x1 window has variance 0; Lee's estimator is
    the window's own second moment), eta = 1 / sqrt(enl) the speckle coefficient of variation:

        var_x = (var_z - m^2 eta^2) / (1 + eta^2),   b = max(0, var_x / var_z)  (0 if var_z = 0)
        out   = (1 - b) m + b x

    Homogeneous windows (var_z <= m^2 eta^2) return the mean; edges and bright targets keep
    more of x. Input in linear power (not dB). NaN pixels stay NaN and are skipped in their
    neighbours' windows, as are pixels outside the array, so tiles cut with a halo of
    size // 2 equal the whole image bitwise. var_z = E[x^2] - m^2 in float64, clipped at 0.

    Raises InputError for a non-2-D or non-float image, an even or non-positive size, or an
    enl that is not a finite number > 0.
    """
    img = contiguous_image(x)
    s, e = _lee_args(size, enl)
    out = np.empty(img.shape, dtype=np.float32)
    if img.size == 0:
        return out
    h = s // 2
    cols = img.shape[1]
    _lee_2d(img, h, 1.0 / e, out, np.empty((3, cols + 2 * h)), np.empty((3, cols)), False, 0.0)
    return out


def lee_log_filter(
    x: np.ndarray, size: int = 3, enl: float = 5.0, floor: float = 1e-6,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """ln(max(lee_filter(x, size, enl), floor)) in one pass (float32 out): the Lee filter of
    linear power and its natural log, as PWTT takes them, without the filtered image as an
    intermediate array.

    Each pixel's filtered value is rounded to float32 as `lee_filter` returns it, raised to
    `floor` (> 0) where smaller (zero power is data, not nodata), and logged by
    `fastlog.ln_f32` (within a few float32 ulps of np.log). NaN where x is NaN and where the
    log is not finite (+inf power). Tiles cut with a halo of size // 2 equal the whole image
    bitwise, as for `lee_filter`. `out`, if given, is a C-contiguous float32 array of x's
    shape that receives the result (a slice of a stack, so no copy is made).

    Raises InputError as `lee_filter` does, and for a floor that is not a finite number > 0 or
    an `out` of the wrong shape or dtype.
    """
    img = contiguous_image(x)
    s, e = _lee_args(size, enl)
    if not (isinstance(floor, int | float | np.floating) and math.isfinite(floor) and floor > 0):
        raise InputError(f"floor must be a finite number > 0 (linear power), got {floor!r}")
    if out is None:
        out = np.empty(img.shape, dtype=np.float32)
    elif out.shape != img.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise InputError(f"out must be a C-contiguous float32 array of shape {img.shape}, got "
                         f"{out.dtype} {out.shape}")
    if img.size == 0:
        return out
    h = s // 2
    cols = img.shape[1]
    _lee_2d(img, h, 1.0 / e, out, np.empty((3, cols + 2 * h)), np.empty((3, cols)), True,
            float(floor))
    return out


def lee_log_filter_reference(
    x: np.ndarray, size: int = 3, enl: float = 5.0, floor: float = 1e-6
) -> np.ndarray:
    """The composition of the references: np.log of `lee_filter_reference` floored at `floor`,
    non-finite logs NaN."""
    filtered = lee_filter_reference(x, size, enl)
    floored = np.where(filtered < np.float32(floor), np.float32(floor), filtered)
    with np.errstate(divide="ignore", invalid="ignore"):
        logged = np.log(floored.astype(np.float32))
    logged[~np.isfinite(logged)] = np.nan
    return logged


def lee_filter_reference(x: np.ndarray, size: int = 3, enl: float = 5.0) -> np.ndarray:
    """Plain NumPy Lee filter: NaN-padded sliding windows, np.nanmean / np.nanvar (ddof=0)."""
    img = as_image(x, "x").astype(np.float64)
    s, e = _lee_args(size, enl)
    if img.size == 0:
        return np.empty(img.shape, dtype=np.float32)
    h = s // 2
    padded = np.pad(img, h, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (s, s))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN centres are overwritten below
        mean = np.nanmean(windows, axis=(-2, -1))
        var_z = np.nanvar(windows, axis=(-2, -1))
    eta2 = 1.0 / e
    var_x = (var_z - mean**2 * eta2) / (1.0 + eta2)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.where(var_z > 0, np.maximum(0.0, var_x / var_z), 0.0)
    out = (1.0 - b) * mean + b * img
    out[np.isnan(img)] = np.nan
    return out.astype(np.float32)
