"""Welch's t between a pre-event and a post-event stack, per pixel, in one pass per stack.

Takes float32 or float64 stacks in any memory layout and treats NaN as nodata; sums are
float64 (shifted by each pixel's first valid value, so a large common level costs no
precision), the results float32 (with the Welch-Satterthwaite degrees of freedom on request).
The jitted cores release the GIL, so callers may run row strips in threads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
from numba import njit

from ruinmap.errors import InputError
from ruinmap.kernels._checks import as_stack, non_negative_int, same_image_shape
from ruinmap.kernels._layout import contiguous_row, core_inputs, kernel_jit
from ruinmap.kernels.fastlog import Real

_NAN = np.float64(np.nan)


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


@kernel_jit
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


@kernel_jit
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
    pre, post = core_inputs(pre, post)
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




@njit(inline="always", nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _two_sample_pixel(
    a: tuple[Real, Real, Real, Real], b: tuple[Real, Real, Real, Real], lo_a: Real, lo_b: Real,
    is_pooled: bool, ddof: Real,
) -> tuple[Real, Real]:
    """(t, dof) of one pixel, Welch or pooled, variances with `ddof` (see `two_sample_t`)."""
    shift_a, n_a, s1_a, s2_a = a
    shift_b, n_b, s1_b, s2_b = b
    na = float(n_a)
    nb = float(n_b)
    is_enough = (na >= lo_a) & (nb >= lo_b)
    na = na if is_enough else 2.0
    nb = nb if is_enough else 2.0
    mean_a = s1_a / na
    mean_b = s1_b / nb
    var_a = max(s2_a - s1_a * mean_a, 0.0) / (na - ddof)
    var_b = max(s2_b - s1_b * mean_b, 0.0) / (nb - ddof)
    dof: Real
    if is_pooled:
        dof = na + nb - 2.0
        se2 = (var_a * (na - 1.0) + var_b * (nb - 1.0)) / dof * (1.0 / na + 1.0 / nb)
    else:
        se2_a = var_a / na
        se2_b = var_b / nb
        se2 = se2_a + se2_b
        dof = se2 * se2 / (se2_a * se2_a / (na - 1.0) + se2_b * se2_b / (nb - 1.0))
    is_defined = is_enough & (se2 > 0.0)
    t = ((mean_b + float(shift_b)) - (mean_a + float(shift_a))) / np.sqrt(se2)
    return (t, dof) if is_defined else (_NAN, _NAN)


@kernel_jit
def _two_sample_3d(
    pre: np.ndarray, post: np.ndarray, min_pre: int, min_post: int, is_pooled: bool,
    ddof: int, buffers: tuple[np.ndarray, ...], out_t: np.ndarray, out_dof: np.ndarray,
    out_n_pre: np.ndarray, out_n_post: np.ndarray,
) -> None:
    shift_a, n_a, s1_a, s2_a, shift_b, n_b, s1_b, s2_b = buffers
    lo_a = np.float64(min_pre)
    lo_b = np.float64(min_post)
    dd = np.float64(ddof)
    for i in range(pre.shape[1]):
        _accumulate_row(pre, i, shift_a, n_a, s1_a, s2_a)
        _accumulate_row(post, i, shift_b, n_b, s1_b, s2_b)
        for j in range(out_t.shape[1]):
            out_t[i, j], out_dof[i, j] = _two_sample_pixel(
                (shift_a[j], n_a[j], s1_a[j], s2_a[j]), (shift_b[j], n_b[j], s1_b[j], s2_b[j]),
                lo_a, lo_b, is_pooled, dd,
            )
            out_n_pre[i, j] = n_a[j]
            out_n_post[i, j] = n_b[j]


@dataclass(frozen=True)
class TwoSampleT:
    """Per-pixel result of `two_sample_t` (float32 images): t, its degrees of freedom, and the
    valid observations of each side (counted everywhere, also where t is NaN)."""

    t: np.ndarray
    dof: np.ndarray
    n_pre: np.ndarray
    n_post: np.ndarray


TEST_KINDS = ("welch", "pooled")


def two_sample_options(test: str, ddof: int, min_pre: int, min_post: int) -> tuple[int, int]:
    """Check a two-sample t's options (`two_sample_t`); returns the minimum counts."""
    if test not in TEST_KINDS:
        raise InputError(f"test must be one of {', '.join(TEST_KINDS)}, got {test!r}")
    if ddof not in (0, 1):
        raise InputError(f"ddof must be 0 (population) or 1 (sample variance), got {ddof!r}")
    return _min_obs(min_pre, "min_pre"), _min_obs(min_post, "min_post")


def two_sample_t(
    pre_stack: np.ndarray, post_stack: np.ndarray, *, test: str = "welch", ddof: int = 1,
    min_pre: int = 2, min_post: int = 2,
) -> TwoSampleT:
    """Per-pixel two-sample t (axis 0 = time), Welch's or pooled, with variances of `ddof`.

    With var = sum((x - mean)**2) / (n - ddof) over a pixel's valid (non-NaN) observations:
    welch:  t = (mean_post - mean_pre) / sqrt(var_pre / n_pre + var_post / n_post),
            dof = (a + b)**2 / (a**2 / (n_pre - 1) + b**2 / (n_post - 1)), a = var_pre / n_pre,
            b = var_post / n_post (Welch-Satterthwaite);
    pooled: s2 = (var_pre (n_pre - 1) + var_post (n_post - 1)) / (n_pre + n_post - 2),
            t = (mean_post - mean_pre) / sqrt(s2 (1 / n_pre + 1 / n_post)),
            dof = n_pre + n_post - 2.
    `ddof` = 1 is the textbook sample variance; 0 the population variance that Earth Engine's
    `ee.Reducer.stdDev()` returns, which the PWTT reference code squares (oballinger/PWTT
    pwtt/__init__.py:118-142). t and dof are NaN where a side has fewer than `min_pre` /
    `min_post` valid observations or the standard error is 0; n_pre / n_post count the
    valid observations of every pixel.
    """
    pre = as_stack(pre_stack, "pre_stack")
    post = as_stack(post_stack, "post_stack")
    same_image_shape(pre_stack=pre, post_stack=post)
    lo_pre, lo_post = two_sample_options(test, ddof, min_pre, min_post)
    pre, post = core_inputs(pre, post)
    shape = pre.shape[1:]
    out = [np.empty(shape, np.float32) for _ in range(4)]
    buffers = _row_buffers(pre.shape[2], pre.dtype)
    _two_sample_3d(pre, post, lo_pre, lo_post, test == "pooled", int(ddof), buffers, *out)
    return TwoSampleT(*out)


def two_sample_t_reference(
    pre_stack: np.ndarray, post_stack: np.ndarray, *, test: str = "welch", ddof: int = 1,
    min_pre: int = 2, min_post: int = 2,
) -> TwoSampleT:
    """NumPy reference for `two_sample_t` (nanmean / nanvar in float64, the formulas as
    written in its docstring)."""
    pre = np.asarray(pre_stack, np.float64)
    post = np.asarray(post_stack, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n_a = np.sum(~np.isnan(pre), axis=0).astype(np.float64)
        n_b = np.sum(~np.isnan(post), axis=0).astype(np.float64)
        var_a = np.nanvar(pre, axis=0, ddof=ddof)
        var_b = np.nanvar(post, axis=0, ddof=ddof)
        diff = np.nanmean(post, axis=0) - np.nanmean(pre, axis=0)
        if test == "pooled":
            dof = n_a + n_b - 2
            se2 = (var_a * (n_a - 1) + var_b * (n_b - 1)) / dof * (1 / n_a + 1 / n_b)
        else:
            a, b = var_a / n_a, var_b / n_b
            se2 = a + b
            dof = se2**2 / (a**2 / (n_a - 1) + b**2 / (n_b - 1))
        t = diff / np.sqrt(se2)
    is_defined = (n_a >= max(2, min_pre)) & (n_b >= max(2, min_post)) & (se2 > 0)
    return TwoSampleT(np.where(is_defined, t, np.nan).astype(np.float32),
                      np.where(is_defined, dof, np.nan).astype(np.float32),
                      n_a.astype(np.float32), n_b.astype(np.float32))


def pooled_t(
    pre_stack: np.ndarray, post_stack: np.ndarray, *, min_pre: int = 2, min_post: int = 2,
    ddof: int = 1,
) -> np.ndarray:
    """Per-pixel pooled (Student's equal-variance) t between two stacks: `two_sample_t` with
    test="pooled" (formula there). Positive t = post brighter than pre; NaN as `welch_t`."""
    return two_sample_t(pre_stack, post_stack, test="pooled", ddof=ddof, min_pre=min_pre,
                        min_post=min_post).t


def pooled_t_reference(
    pre_stack: np.ndarray, post_stack: np.ndarray, *, min_pre: int = 2, min_post: int = 2,
    ddof: int = 1,
) -> np.ndarray:
    """NumPy reference for `pooled_t`: one pixel at a time, the textbook formula."""
    pre = np.asarray(pre_stack, np.float64)
    post = np.asarray(post_stack, np.float64)
    out = np.full(pre.shape[1:], np.nan, np.float32)
    for i, j in np.ndindex(*out.shape):
        a = pre[:, i, j][~np.isnan(pre[:, i, j])]
        b = post[:, i, j][~np.isnan(post[:, i, j])]
        if a.size < max(2, min_pre) or b.size < max(2, min_post):
            continue
        s2 = (np.var(a, ddof=ddof) * (a.size - 1) + np.var(b, ddof=ddof) * (b.size - 1)) / (
            a.size + b.size - 2)
        se = np.sqrt(s2 * (1 / a.size + 1 / b.size))
        if se > 0:
            out[i, j] = (b.mean() - a.mean()) / se
    return out
