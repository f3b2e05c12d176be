"""Per-pixel running moments of a time series that later dates can continue, and the
two-sample t from the moments of two series.

`accumulate_moments` folds a stack (time, y, x) into `Moments`: per pixel the shift K (its
first valid observation), the count n, sum(v - K) and sum((v - K)**2), float64, NaN skipped.
Folding dates 0..k and then k..n gives bitwise the moments of folding 0..n at once (each
pixel's sums are updated in the same order by the same operations), so a monitored job can
keep the moments of its post-event series and add only the new dates (`cluster.methods.
pwtt_moments`). `moments_two_sample_t` is `ttest.two_sample_t` on moments: the same per-pixel
formula (`ttest._two_sample_pixel`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ruinmap.errors import InputError
from ruinmap.kernels._checks import as_stack
from ruinmap.kernels._layout import contiguous_row, core_inputs, kernel_jit
from ruinmap.kernels.ttest import (
    TwoSampleT,
    _add_observation,
    _two_sample_pixel,
    two_sample_options,
)

__all__ = ["Moments", "accumulate_moments", "accumulate_moments_reference",
           "moments_two_sample_t", "new_moments"]


class Moments(NamedTuple):
    """Running moments of one series per pixel, float64 (y, x) images: the shift K (the
    pixel's first valid observation, NaN before any), the count n of valid observations,
    sum(v - K) and sum((v - K)**2). Shifting by K keeps a constant series' variance exactly
    0 and the sums small."""

    shift: np.ndarray
    n: np.ndarray
    sum1: np.ndarray
    sum2: np.ndarray


def new_moments(shape: tuple[int, int]) -> Moments:
    """The moments of an empty series: no shift yet, zero count and sums."""
    return Moments(np.full(shape, np.nan), np.zeros(shape), np.zeros(shape), np.zeros(shape))


@kernel_jit
def _accumulate(stack: np.ndarray, shift: np.ndarray, count: np.ndarray, sum1: np.ndarray,
                sum2: np.ndarray) -> None:
    nt, ny, nx = stack.shape
    for i in range(ny):
        k_row = contiguous_row(shift[i])
        n_row = contiguous_row(count[i])
        s1_row = contiguous_row(sum1[i])
        s2_row = contiguous_row(sum2[i])
        for t in range(nt):  # the shift first: a pixel's first valid observation ever
            values = contiguous_row(stack[t, i])
            for j in range(nx):
                k = k_row[j]
                k_row[j] = np.float64(values[j]) if k != k else k
        for t in range(nt):
            values = contiguous_row(stack[t, i])
            for j in range(nx):
                k = k_row[j]
                n_row[j], s1_row[j], s2_row[j] = _add_observation(
                    values[j], k, k, n_row[j], s1_row[j], s2_row[j])


def _check_moments(moments: Moments, shape: tuple[int, ...]) -> None:
    for name, image in zip(Moments._fields, moments, strict=True):
        if image.shape != shape or image.dtype != np.float64 or not image.flags.c_contiguous:
            raise InputError(f"moments.{name}: expected a C-contiguous float64 image of shape "
                             f"{shape}, got {image.dtype} {image.shape}")


def accumulate_moments(stack: np.ndarray, moments: Moments) -> None:
    """Fold the dates of `stack` (time, y, x; float32 or float64, NaN = nodata), in order,
    into `moments` (in place): for each valid v, n += 1, sum1 += v - K, sum2 += (v - K)**2,
    K the pixel's first valid observation (set by the first one seen)."""
    values = as_stack(stack, "stack")
    _check_moments(moments, values.shape[1:])
    [values] = core_inputs(values)
    _accumulate(values, *moments)


def accumulate_moments_reference(stack: np.ndarray, moments: Moments) -> Moments:
    """NumPy reference for `accumulate_moments` (returns new moments; sums by np.nansum)."""
    values = np.asarray(stack, np.float64)
    first = np.argmax(~np.isnan(values), axis=0) if values.shape[0] else None
    shift = moments.shift.copy()
    if first is not None:
        found = np.take_along_axis(values, first[None], axis=0)[0]
        shift = np.where(np.isnan(shift), found, shift)
    d = values - shift
    return Moments(shift, moments.n + np.sum(~np.isnan(values), axis=0),
                   moments.sum1 + np.nansum(d, axis=0), moments.sum2 + np.nansum(d * d, axis=0))


@kernel_jit
def _t_from_moments(pre: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                    post: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                    min_pre: int, min_post: int, is_pooled: bool, ddof: int,
                    out_t: np.ndarray, out_dof: np.ndarray, out_n_pre: np.ndarray,
                    out_n_post: np.ndarray) -> None:
    shift_a, n_a, s1_a, s2_a = pre
    shift_b, n_b, s1_b, s2_b = post
    lo_a = np.float64(min_pre)
    lo_b = np.float64(min_post)
    dd = np.float64(ddof)
    for i in range(out_t.shape[0]):
        for j in range(out_t.shape[1]):
            out_t[i, j], out_dof[i, j] = _two_sample_pixel(
                (shift_a[i, j], n_a[i, j], s1_a[i, j], s2_a[i, j]),
                (shift_b[i, j], n_b[i, j], s1_b[i, j], s2_b[i, j]),
                lo_a, lo_b, is_pooled, dd,
            )
            out_n_pre[i, j] = n_a[i, j]
            out_n_post[i, j] = n_b[i, j]


def moments_two_sample_t(pre: Moments, post: Moments, *, test: str = "welch", ddof: int = 1,
                         min_pre: int = 2, min_post: int = 2) -> TwoSampleT:
    """`ttest.two_sample_t` of the two series whose moments are `pre` and `post` (formulas
    there): the same t, dof and counts the stacks would give."""
    shape = pre.shift.shape
    _check_moments(pre, shape)
    _check_moments(post, shape)
    lo_pre, lo_post = two_sample_options(test, ddof, min_pre, min_post)
    out = [np.empty(shape, np.float32) for _ in range(4)]
    _t_from_moments((pre.shift, pre.n, pre.sum1, pre.sum2),
                    (post.shift, post.n, post.sum1, post.sum2), lo_pre, lo_post,
                    test == "pooled", int(ddof), *out)
    return TwoSampleT(*out)
