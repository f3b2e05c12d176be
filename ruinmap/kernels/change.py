"""Change-detection kernels: dB conversion, log ratio, index deltas, Welch's t and change vectors.

Every kernel takes float32 or float64 inputs in any memory layout, treats NaN as nodata and
returns float32 (Welch's t also returns float32 degrees of freedom on request). Sums (Welch's t,
change vectors) are float64; logarithms and normalised differences run in the inputs' own
precision, float32 ones with errors of a few float32 ulps (logs: 1e-6 dB plus half an ulp of
the result, see `ruinmap.kernels.fastlog`), at twice the SIMD width of float64. All but
`welch_t` take an optional `out=` array to write into (see `output_array`).

Loops run row by row with the innermost loop along x, so each input is read once as a stream
and LLVM vectorises the inner loop; NaN rules are written as selects rather than branches for
the same reason. The jitted cores release the GIL, so callers may run row strips in threads.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal, cast, overload

import numpy as np
from numba import njit, types
from numba.core import extending
from numba.core.imputils import impl_ret_borrowed

from ruinmap.errors import InputError
from ruinmap.kernels._checks import (
    as_image,
    as_stack,
    non_negative_int,
    same_image_shape,
    same_shape,
)
from ruinmap.kernels.fastlog import Real, fast_db, fast_db_ratio

_NAN = np.float64(np.nan)

# The jit options of every core. error_model="numpy": a float division by zero yields inf/NaN
# instead of raising, which is what lets LLVM vectorise loops that divide. "contract" only fuses
# a*b+c into one FMA (one rounding instead of two); no flag here assumes away NaN or reorders
# sums, so the NaN rules hold.
_kernel_jit = njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


@extending.intrinsic
def _contiguous_row(typingctx, row):  # type: ignore[no-untyped-def]
    """Retype a 1-D view whose stride is one item as C-contiguous (no copy, no check).

    numba compiles non-contiguous ('A') arrays with run-time strides, which LLVM does not
    vectorise; a row of a row strip, a tile window or a time slice of a stack strip has unit
    stride along x even when the whole array is 'A', so each row is retyped before its loop.
    Callers guarantee the unit stride: `unit_stride_x` for inputs, `output_array` for outputs.
    """
    if not isinstance(row, types.Array) or row.ndim != 1:
        return None
    sig = row.copy(layout="C")(row)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return impl_ret_borrowed(context, builder, signature.return_type, args[0])

    return sig, codegen


# A typed view of the intrinsic for mypy; numba sees the intrinsic object itself.
contiguous_row = cast("Callable[[np.ndarray], np.ndarray]", _contiguous_row)


def unit_stride_x(arr: np.ndarray) -> np.ndarray:
    """`arr` itself if its last axis has unit stride, else a C-contiguous copy (transposes,
    x steps): the cores read every row through `contiguous_row`."""
    if arr.shape[-1] <= 1 or arr.strides[-1] == arr.itemsize:
        return arr
    return np.ascontiguousarray(arr)


def output_array(out: np.ndarray | None, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A new `dtype` array of `shape`, or `out` checked to be one the cores can write.

    Passing `out` lets a caller reuse one buffer across calls: a fresh output's pages are
    zeroed by the OS on first touch, which costs about as much as a fast kernel itself
    (64 MB of float32 output: ~4 ms on 2 cores, against ~3.6 ms for `to_db`).
    """
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != shape:
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise InputError(
            f"out: expected a {np.dtype(dtype)} array of shape {shape}, got {got}; "
            "leave out=None to get a new array"
        )
    if not out.flags.writeable:
        raise InputError("out: the array is read-only; pass a writeable array")
    if out.ndim and out.shape[-1] > 1 and out.strides[-1] != out.itemsize:
        raise InputError(
            f"out: its last axis has stride {out.strides[-1]} bytes; it must be contiguous "
            "along x (e.g. a row strip or window of a C-ordered array)"
        )
    return out


def _core_inputs(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays as the cores take them: one dtype (mixed float32/float64 become float64, so
    each core is compiled for one dtype) and unit stride along x."""
    if len({a.dtype for a in arrays}) == 1:
        return [unit_stride_x(a) for a in arrays]
    return [unit_stride_x(a.astype(np.float64)) for a in arrays]


# --- to_db -----------------------------------------------------------------------------------


@_kernel_jit
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
    (x,) = _core_inputs(as_image(x, "x"))
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


@_kernel_jit
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
    pre, post = _core_inputs(pre, post)
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


@_kernel_jit
def _nd_2d(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    for i in range(a.shape[0]):
        a_row = contiguous_row(a[i])
        b_row = contiguous_row(b[i])
        out_row = contiguous_row(out[i])
        for j in range(a_row.size):
            out_row[j] = _nd(a_row[j], b_row[j])


@_kernel_jit
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
    a, b = _core_inputs(a, b)
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
    pre_a, pre_b, post_a, post_b = _core_inputs(pre_a, pre_b, post_a, post_b)
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


# --- Welch's t -------------------------------------------------------------------------------


@njit(inline="always", nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _add_observation(
    v: Real, shift: Real, shift64: Real, count: Real, sum1: Real, sum2: Real
) -> tuple[Real, Real, Real]:
    """Fold one observation into a pixel's count and shifted sums; NaN is skipped.

    Written as "sum + x if valid else sum" so that each select becomes a masked add (one
    AVX-512 instruction) rather than a blend and an add.
    """
    is_valid = v == v
    d = np.float64(v) - shift64
    count = count + np.float32(1.0) if is_valid else count
    sum1 = sum1 + d if is_valid else sum1
    sum2 = sum2 + d * d if is_valid else sum2
    return count, sum1, sum2


@_kernel_jit
def _accumulate_row(
    stack: np.ndarray,
    row: int,
    shift: np.ndarray,
    count: np.ndarray,
    sum1: np.ndarray,
    sum2: np.ndarray,
) -> None:
    """Per-pixel count, sum(v - K) and sum((v - K)**2) over time for one image row.

    K (`shift`) is each pixel's first valid observation, so a constant series has exactly zero
    variance and the sums do not cancel catastrophically; it is found first, usually from the
    first time step alone. Four time steps are then folded per pass over the row buffers, which
    quarters their loads and stores.
    """
    nt = stack.shape[0]
    nx = shift.size
    for j in range(nx):
        shift[j] = np.nan
        count[j] = 0.0
        sum1[j] = 0.0
        sum2[j] = 0.0
    for t in range(nt):
        values = contiguous_row(stack[t, row])
        n_missing = 0
        for j in range(nx):
            k = shift[j]
            k = values[j] if k != k else k
            shift[j] = k
            n_missing += 1 if k != k else 0
        if n_missing == 0:
            break
    t = 0
    while t + 4 <= nt:
        v0 = contiguous_row(stack[t, row])
        v1 = contiguous_row(stack[t + 1, row])
        v2 = contiguous_row(stack[t + 2, row])
        v3 = contiguous_row(stack[t + 3, row])
        for j in range(nx):
            k = shift[j]
            k64 = np.float64(k)
            n, s1, s2 = count[j], sum1[j], sum2[j]
            n, s1, s2 = _add_observation(v0[j], k, k64, n, s1, s2)
            n, s1, s2 = _add_observation(v1[j], k, k64, n, s1, s2)
            n, s1, s2 = _add_observation(v2[j], k, k64, n, s1, s2)
            n, s1, s2 = _add_observation(v3[j], k, k64, n, s1, s2)
            count[j], sum1[j], sum2[j] = n, s1, s2
        t += 4
    while t < nt:
        v0 = contiguous_row(stack[t, row])
        for j in range(nx):
            k = shift[j]
            n, s1, s2 = _add_observation(v0[j], k, np.float64(k), count[j], sum1[j], sum2[j])
            count[j], sum1[j], sum2[j] = n, s1, s2
        t += 1


def _row_buffers(nx: int, shift_dtype: np.dtype) -> tuple[np.ndarray, ...]:
    """Accumulators of one row for both stacks: (shift, count, sum1, sum2) * 2.

    shift has the stacks' dtype, count is float32 (exact to 2**24 observations), the sums are
    float64. Their starts differ by 1 KiB modulo 4 KiB: buffers a multiple of 4 KiB apart make
    the CPU treat a load from one as dependent on a store to another (4K aliasing).
    """
    dtypes = [shift_dtype, np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float64)] * 2
    stride = -(-nx * 8 // 64) * 64
    stride += (1024 - stride) % 4096
    block = np.empty(stride * len(dtypes), np.uint8)
    return tuple(
        block[k * stride : k * stride + nx * dt.itemsize].view(dt) for k, dt in enumerate(dtypes)
    )


@njit(inline="always", nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _welch_pixel(
    a: tuple[Real, Real, Real, Real], b: tuple[Real, Real, Real, Real], lo_a: Real, lo_b: Real
) -> tuple[Real, Real]:
    """(t, dof) of one pixel from (shift, count, sum1, sum2) of its pre (a) and post (b) series."""
    shift_a, n_a, s1_a, s2_a = a
    shift_b, n_b, s1_b, s2_b = b
    na = float(n_a)
    nb = float(n_b)
    is_enough = (na >= lo_a) & (nb >= lo_b)
    # Safe counts where there are too few observations; those results become NaN.
    na = na if is_enough else 2.0
    nb = nb if is_enough else 2.0
    # All four reciprocals 1/n, 1/(n - 1) of both sides from one division.
    pa = na * (na - 1.0)
    pb = nb * (nb - 1.0)
    r = 1.0 / (pa * pb)
    inv_pa = pb * r
    inv_pb = pa * r
    mean_a = s1_a * ((na - 1.0) * inv_pa)
    mean_b = s1_b * ((nb - 1.0) * inv_pb)
    # var / n = (sum2 - sum1 * mean) / ((n - 1) * n)
    se2_a = max(s2_a - s1_a * mean_a, 0.0) * inv_pa
    se2_b = max(s2_b - s1_b * mean_b, 0.0) * inv_pb
    se2 = se2_a + se2_b
    is_defined = is_enough & (se2 > 0.0)
    diff = (mean_b + float(shift_b)) - (mean_a + float(shift_a))
    t = diff / np.sqrt(se2)
    dof = se2 * se2 / (se2_a * se2_a * (na * inv_pa) + se2_b * se2_b * (nb * inv_pb))
    return (t, dof) if is_defined else (_NAN, _NAN)


@_kernel_jit
def _welch_t_3d(
    pre: np.ndarray,
    post: np.ndarray,
    min_pre: int,
    min_post: int,
    buffers: tuple[np.ndarray, ...],
    out_t: np.ndarray,
    out_dof: np.ndarray,
    want_dof: bool,
) -> None:
    shift_a, n_a, s1_a, s2_a, shift_b, n_b, s1_b, s2_b = buffers
    lo_a = np.float64(min_pre)
    lo_b = np.float64(min_post)
    for i in range(pre.shape[1]):
        _accumulate_row(pre, i, shift_a, n_a, s1_a, s2_a)
        _accumulate_row(post, i, shift_b, n_b, s1_b, s2_b)
        t_row = out_t[i]
        if want_dof:
            dof_row = out_dof[i]
            for j in range(t_row.size):
                t_row[j], dof_row[j] = _welch_pixel(
                    (shift_a[j], n_a[j], s1_a[j], s2_a[j]),
                    (shift_b[j], n_b[j], s1_b[j], s2_b[j]),
                    lo_a,
                    lo_b,
                )
        else:
            # A separate loop, so the unused dof and its division are compiled away.
            for j in range(t_row.size):
                t_row[j] = _welch_pixel(
                    (shift_a[j], n_a[j], s1_a[j], s2_a[j]),
                    (shift_b[j], n_b[j], s1_b[j], s2_b[j]),
                    lo_a,
                    lo_b,
                )[0]


def _min_obs(value: object, name: str) -> int:
    result = non_negative_int(value, name)
    if result < 2:
        raise InputError(
            f"{name} must be >= 2 (a sample variance needs two observations), got {value}"
        )
    return result


@overload
def welch_t(
    pre_stack: np.ndarray,
    post_stack: np.ndarray,
    *,
    min_pre: int = ...,
    min_post: int = ...,
    return_dof: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def welch_t(
    pre_stack: np.ndarray,
    post_stack: np.ndarray,
    *,
    min_pre: int = ...,
    min_post: int = ...,
    return_dof: Literal[True],
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def welch_t(
    pre_stack: np.ndarray,
    post_stack: np.ndarray,
    *,
    min_pre: int = ...,
    min_post: int = ...,
    return_dof: bool,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...


def welch_t(
    pre_stack: np.ndarray,
    post_stack: np.ndarray,
    *,
    min_pre: int = 2,
    min_post: int = 2,
    return_dof: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Per-pixel Welch's t between a pre- and a post-event stack (axis 0 = time).

    t = (mean_post - mean_pre) / sqrt(var_pre / n_pre + var_post / n_post), with sample
    variances (ddof=1) over each pixel's valid (non-NaN) observations; the stacks must share
    (y, x) but may differ in length. Positive t = post brighter than pre.
    With `return_dof`, also the Welch-Satterthwaite degrees of freedom
    dof = (a + b)**2 / (a**2 / (n_pre - 1) + b**2 / (n_post - 1)), a = var_pre / n_pre,
    b = var_post / n_post. Both float32.
    NaN where the pre side has fewer than `min_pre` or the post side fewer than `min_post`
    valid observations, or both variances are 0. An infinite observation gives NaN.

    One streaming pass per stack with float64 sums shifted by each pixel's first valid value,
    and row-sized accumulators only. This is the statistic of the pixel-wise t-test (PWTT) for
    building damage from Sentinel-1 backscatter (Ballinger 2024, arXiv:2405.06323), applied
    to dB (or log) backscatter in each polarisation.
    """
    pre = as_stack(pre_stack, "pre_stack")
    post = as_stack(post_stack, "post_stack")
    same_image_shape(pre_stack=pre, post_stack=post)
    lo_pre = _min_obs(min_pre, "min_pre")
    lo_post = _min_obs(min_post, "min_post")
    pre, post = _core_inputs(pre, post)
    out_t = np.empty(pre.shape[1:], np.float32)
    out_dof = np.empty(pre.shape[1:] if return_dof else (pre.shape[1], 0), np.float32)
    buffers = _row_buffers(pre.shape[2], pre.dtype)
    _welch_t_3d(pre, post, lo_pre, lo_post, buffers, out_t, out_dof, bool(return_dof))
    if return_dof:
        return out_t, out_dof
    return out_t


def welch_t_reference(
    pre_stack: np.ndarray,
    post_stack: np.ndarray,
    *,
    min_pre: int = 2,
    min_post: int = 2,
    return_dof: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """NumPy reference for `welch_t` (two-pass nanmean / nanvar in float64)."""
    pre = np.asarray(pre_stack, np.float64)
    post = np.asarray(post_stack, np.float64)
    # nanvar/nanmean warn on all-NaN pixels, which are expected here and masked below.
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n_a = np.sum(~np.isnan(pre), axis=0)
        n_b = np.sum(~np.isnan(post), axis=0)
        var_a = np.nanvar(pre, axis=0, ddof=1)
        var_b = np.nanvar(post, axis=0, ddof=1)
        se2_a = var_a / n_a
        se2_b = var_b / n_b
        se2 = se2_a + se2_b
        t = (np.nanmean(post, axis=0) - np.nanmean(pre, axis=0)) / np.sqrt(se2)
        dof = se2**2 / (se2_a**2 / (n_a - 1) + se2_b**2 / (n_b - 1))
    is_defined = (n_a >= max(2, min_pre)) & (n_b >= max(2, min_post)) & (se2 > 0)
    t = np.where(is_defined, t, np.nan).astype(np.float32)
    if return_dof:
        return t, np.where(is_defined, dof, np.nan).astype(np.float32)
    return t


# --- change vector analysis ------------------------------------------------------------------


@_kernel_jit
def _cva_3d(pre: np.ndarray, post: np.ndarray, inv_scale: np.ndarray, out: np.ndarray) -> None:
    acc = np.empty(out.shape[1], np.float64)
    for i in range(pre.shape[1]):
        acc[:] = 0.0
        for b in range(pre.shape[0]):
            w = inv_scale[b]
            pre_row = contiguous_row(pre[b, i])
            post_row = contiguous_row(post[b, i])
            for j in range(acc.size):
                d = (np.float64(post_row[j]) - np.float64(pre_row[j])) * w
                acc[j] += d * d
        out_row = contiguous_row(out[i])
        for j in range(acc.size):
            out_row[j] = np.sqrt(acc[j])


def _inv_scale(scale: object, n_bands: int) -> np.ndarray:
    if scale is None:
        return np.ones(n_bands, np.float64)
    arr = np.asarray(scale)
    if arr.dtype.kind not in "iuf" or arr.dtype == np.bool_:
        raise InputError(f"scale: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.shape != (n_bands,):
        raise InputError(
            f"scale: expected one value per band, shape ({n_bands},), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise InputError(
            f"scale: every band scale must be finite and > 0, got {arr.tolist()}; "
            "use each band's standard deviation over valid pixels, or leave scale=None"
        )
    return 1.0 / arr


def cva_magnitude(
    pre_bands: np.ndarray,
    post_bands: np.ndarray,
    scale: np.ndarray | None = None,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Change-vector magnitude across bands: sqrt(sum_b ((post_b - pre_b) / scale_b)**2).

    `pre_bands` and `post_bands` are (band, y, x) stacks of the same shape; `scale` is an
    optional positive per-band scale (e.g. each band's standard deviation) so bands with
    different units weigh alike; default 1. Returns float32 (into `out` if given); NaN where
    any band is NaN.
    Source: change vector analysis (Malila 1980; Bovolo & Bruzzone 2007, IEEE TGRS).
    """
    pre = as_stack(pre_bands, "pre_bands")
    post = as_stack(post_bands, "post_bands")
    same_shape(pre_bands=pre, post_bands=post)
    inv = _inv_scale(scale, pre.shape[0])
    pre, post = _core_inputs(pre, post)
    out = output_array(out, pre.shape[1:], np.float32)
    _cva_3d(pre, post, inv, out)
    return out


def cva_magnitude_reference(
    pre_bands: np.ndarray, post_bands: np.ndarray, scale: np.ndarray | None = None
) -> np.ndarray:
    """NumPy reference for `cva_magnitude`."""
    pre = np.asarray(pre_bands, np.float64)
    post = np.asarray(post_bands, np.float64)
    s = np.ones(pre.shape[0]) if scale is None else np.asarray(scale, np.float64)
    d = (post - pre) / s[:, None, None]
    return np.sqrt(np.sum(d * d, axis=0)).astype(np.float32)
