"""Change indices of one pre and one post image: dB conversion, log ratio and the change of a
normalized difference (e.g. NDVI, NDBI).

Every kernel takes float32 or float64 inputs in any memory layout, treats NaN as nodata and
returns float32. Logarithms and normalised differences run in the inputs' own precision,
float32 ones with errors of a few float32 ulps (logs: 1e-6 dB plus half an ulp of the result,
see `ruinmap.kernels.fastlog`), at twice the SIMD width of float64. Each takes an optional
`out=` array to write into (see `ruinmap.kernels._layout.output_array`).

Loops run row by row with the innermost loop along x, so each input is read once as a stream
and LLVM vectorises the inner loop; NaN rules are written as selects rather than branches for
the same reason. The jitted cores release the GIL, so callers may run row strips in threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import types
from numba.core import extending

from ruinmap.kernels._checks import as_image, same_shape
from ruinmap.kernels._layout import contiguous_row, core_inputs, kernel_jit, output_array
from ruinmap.kernels.fastlog import Real, fast_db, fast_db_ratio

# --- to_db -----------------------------------------------------------------------------------


@kernel_jit
def _to_db_2d(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        x_row = contiguous_row(x[i])
        out_row = contiguous_row(out[i])
        for j in range(x_row.size):
            out_row[j] = fast_db(x_row[j])


def to_db(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Linear backscatter (power, e.g. sigma0 or gamma0) to decibels: 10 * log10(x).

    Returns float32 dB. NaN where x <= 0 or x is NaN (zero power is nodata, not -inf);
    +inf stays +inf. Float32 inputs use a float32 fast log (error <= 1e-6 dB plus half an
    ulp of the result, so < 1e-5 dB for |dB| < 256); float64 inputs are exact to ~1e-14.
    `out`: an optional float32 array of x's shape to write into and return.
    """
    (x,) = core_inputs(as_image(x, "x"))
    out = output_array(out, x.shape, np.float32)
    _to_db_2d(x, out)
    return out


def to_db_reference(x: np.ndarray) -> np.ndarray:
    """NumPy reference for `to_db`."""
    x = np.asarray(x, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(np.where(x > 0, x, np.nan))
    return db.astype(np.float32)


# --- log_ratio -------------------------------------------------------------------------------


@kernel_jit
def _log_ratio_2d(pre: np.ndarray, post: np.ndarray, tiny: Real, out: np.ndarray) -> None:
    """10 * log10(post / pre) via one division and one fast log per pixel.

    Where the quotient leaves the normal range (over- or underflow, or an infinite input) the
    pixel is redone with `fast_db_ratio`, which never forms the quotient; the vectorised pass
    flags rows that have such pixels and only those rows get the second, per-pixel pass, so
    every pixel's value depends on its own inputs only. `tiny` is the smallest normal number
    of the inputs' dtype.
    """
    for i in range(pre.shape[0]):
        pre_row = contiguous_row(pre[i])
        post_row = contiguous_row(post[i])
        out_row = contiguous_row(out[i])
        has_unusual = False
        for j in range(pre_row.size):
            num = post_row[j]
            den = pre_row[j]
            ratio = num / den
            is_valid = (num > 0) & (den > 0)
            is_usual = (ratio >= tiny) & (ratio < np.inf)
            # -|ratio| is <= 0 or NaN, so the log gives NaN; the select stays in the input's
            # precision (a NaN literal would be float64).
            out_row[j] = fast_db(ratio if is_valid else -abs(ratio))
            has_unusual |= is_valid & ~is_usual
        if has_unusual:
            for j in range(pre_row.size):
                num = post_row[j]
                den = pre_row[j]
                ratio = num / den
                if (num > 0) & (den > 0) & ~((ratio >= tiny) & (ratio < np.inf)):
                    out_row[j] = fast_db_ratio(num, den)


def log_ratio(pre: np.ndarray, post: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Log ratio of post- to pre-event backscatter in dB: 10 * log10(post / pre).

    Inputs are linear power (not dB), same shape. Returns float32; NaN where either input is
    <= 0 or NaN, +inf / -inf where only post / only pre is +inf, NaN where both are. Where
    post / pre would over- or underflow, the logs of the mantissas are subtracted instead
    (1e30 / 1e-30 gives 600 dB). Float32 inputs: error <= 1.3e-6 dB plus half an ulp of the
    result. `out`: optional float32 result array.
    Source: the classic SAR log-ratio change detector (Bazi, Bruzzone & Melgani 2005, IEEE TGRS).
    """
    pre = as_image(pre, "pre")
    post = as_image(post, "post")
    same_shape(pre=pre, post=post)
    pre, post = core_inputs(pre, post)
    out = output_array(out, pre.shape, np.float32)
    _log_ratio_2d(pre, post, pre.dtype.type(np.finfo(pre.dtype).tiny), out)
    return out


def log_ratio_reference(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """NumPy reference for `log_ratio` (difference of float64 logs)."""
    pre = np.asarray(pre, np.float64)
    post = np.asarray(post, np.float64)
    ok = (pre > 0) & (post > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * (np.log10(np.where(ok, post, np.nan)) - np.log10(np.where(ok, pre, np.nan)))
    return db.astype(np.float32)


# --- normalized differences ------------------------------------------------------------------


def _nd(a: Real, b: Real) -> Real:
    """(a - b) / (a + b), NaN where a + b == 0; in the inputs' own precision (jitted only)."""
    raise NotImplementedError("_nd is only callable from jitted code")


@extending.overload(_nd, jit_options={"error_model": "numpy", "fastmath": {"contract"}})
def _nd_overload(a, b):  # type: ignore[no-untyped-def]
    # float32 inputs stay float32: twice the SIMD lanes and division throughput of float64,
    # at a relative error of a few float32 ulps (each of a - b, a + b and the quotient is
    # rounded once; a + b cancels exactly by Sterbenz's lemma when a is close to -b).
    nan: np.floating[Any]
    if a == types.float32 and b == types.float32:
        nan = np.float32(np.nan)
    elif a == types.float64 and b == types.float64:
        nan = np.float64(np.nan)
    else:
        return None

    def impl(a, b):  # type: ignore[no-untyped-def]
        total = a + b
        value = (a - b) / total
        return nan if total == 0 else value

    return impl


@kernel_jit
def _nd_2d(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    for i in range(a.shape[0]):
        a_row = contiguous_row(a[i])
        b_row = contiguous_row(b[i])
        out_row = contiguous_row(out[i])
        for j in range(a_row.size):
            out_row[j] = _nd(a_row[j], b_row[j])


@kernel_jit
def _nd_change_2d(
    pre_a: np.ndarray, pre_b: np.ndarray, post_a: np.ndarray, post_b: np.ndarray, out: np.ndarray
) -> None:
    for i in range(pre_a.shape[0]):
        pre_a_row = contiguous_row(pre_a[i])
        pre_b_row = contiguous_row(pre_b[i])
        post_a_row = contiguous_row(post_a[i])
        post_b_row = contiguous_row(post_b[i])
        out_row = contiguous_row(out[i])
        for j in range(pre_a_row.size):
            out_row[j] = _nd(post_a_row[j], post_b_row[j]) - _nd(pre_a_row[j], pre_b_row[j])


def normalized_difference(
    a: np.ndarray, b: np.ndarray, *, out: np.ndarray | None = None
) -> np.ndarray:
    """Normalised difference (a - b) / (a + b), e.g. NDVI = ND(NIR, red), NDBI = ND(SWIR, NIR).

    Returns float32. NaN where a + b == 0 or either input is NaN. Computed in the inputs'
    precision: float32 inputs give a relative error of at most ~2e-7 (and overflow only
    beyond |a| + |b| = 3.4e38), float64 inputs are exact to the final float32 rounding.
    `out`: optional float32 result array.
    """
    a = as_image(a, "a")
    b = as_image(b, "b")
    same_shape(a=a, b=b)
    a, b = core_inputs(a, b)
    out = output_array(out, a.shape, np.float32)
    _nd_2d(a, b, out)
    return out


def normalized_difference_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """NumPy reference for `normalized_difference` (float64)."""
    return _nd64(a, b).astype(np.float32)


def nd_change(
    pre_a: np.ndarray,
    pre_b: np.ndarray,
    post_a: np.ndarray,
    post_b: np.ndarray,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Change of a normalised difference index: ND(post_a, post_b) - ND(pre_a, pre_b).

    With (a, b) = (NIR, red) this is dNDVI, (SWIR, NIR) dNDBI, (NIR, SWIR2) dNBR (Key & Benson
    2006 report dNBR as pre - post: negate for that convention). One fused pass; float32
    result; NaN where either normalised difference is NaN. Precision as `normalized_difference`:
    for float32 inputs the error is at most ~2e-7 * (|ND_pre| + |ND_post|) plus the rounding.
    `out`: optional float32 result array.
    """
    pre_a = as_image(pre_a, "pre_a")
    pre_b = as_image(pre_b, "pre_b")
    post_a = as_image(post_a, "post_a")
    post_b = as_image(post_b, "post_b")
    same_shape(pre_a=pre_a, pre_b=pre_b, post_a=post_a, post_b=post_b)
    pre_a, pre_b, post_a, post_b = core_inputs(pre_a, pre_b, post_a, post_b)
    out = output_array(out, pre_a.shape, np.float32)
    _nd_change_2d(pre_a, pre_b, post_a, post_b, out)
    return out


def nd_change_reference(
    pre_a: np.ndarray, pre_b: np.ndarray, post_a: np.ndarray, post_b: np.ndarray
) -> np.ndarray:
    """NumPy reference for `nd_change` (float64 throughout, rounded once at the end)."""
    return (_nd64(post_a, post_b) - _nd64(pre_a, pre_b)).astype(np.float32)


def _nd64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    total = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total == 0, np.nan, (a - b) / total)


