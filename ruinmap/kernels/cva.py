"""Change vector analysis: the magnitude of the per-pixel change vector over bands.

Takes float32 or float64 stacks in any memory layout, treats NaN as nodata; sums are float64,
the result float32, with an optional `out=` array.
"""

from __future__ import annotations

import numpy as np

from ruinmap.errors import InputError
from ruinmap.kernels._checks import as_stack, same_shape
from ruinmap.kernels._layout import contiguous_row, core_inputs, kernel_jit, output_array


@kernel_jit
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
    pre, post = core_inputs(pre, post)
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
