"""The focal median on 2-D images over the circular (or elliptical) disk of `kernels.focal`,
NaN skipped, pixels outside the array missing: a tile cut with `focal_halo` extra pixels
gives, cropped back, bitwise the whole-image result."""

from __future__ import annotations

import functools
import warnings

import numpy as np
from numba import njit

from ruinmap.errors import InputError
from ruinmap.kernels._checks import as_image, contiguous_image
from ruinmap.kernels.focal import Radius, disk_offsets, radii_yx

__all__ = ["MAX_MEDIAN_RADIUS", "focal_median", "focal_median_reference"]

# The median sorts every window; past this radius (149 pixels a window) a sliding histogram
# would be needed, and smoothing that wide is what focal_mean is for.
MAX_MEDIAN_RADIUS = 7


@functools.cache
def _sorting_network(n: int) -> np.ndarray:
    """(m, 2) comparators (a < b) that sort n values: Batcher's odd-even merge sort.

    Built for the next power of two N and restricted to comparators within the first n slots:
    with +inf in slots n..N-1 the dropped comparators would never move anything.
    (Knuth, TAOCP vol. 3, 5.3.4; the iterative form of Batcher 1968.)
    """
    size = 1
    while size < n:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@njit(cache=True, nogil=True, error_model="numpy")
def _focal_median_2d(
    x: np.ndarray,
    dys: np.ndarray,
    dxs: np.ndarray,
    network: np.ndarray,
    out: np.ndarray,
    A: np.ndarray,
    cnt: np.ndarray,
) -> None:
    """Median per pixel, a row at a time: A[t, i] = window value t of pixel i (+inf if missing),
    sorted by one vectorised min/max pass per comparator, so no branch depends on the data."""
    rows, cols = x.shape
    k = dys.shape[0]
    inf = np.inf
    for y in range(rows):
        for i in range(cols):
            cnt[i] = 0
        for t in range(k):
            yy = y + dys[t]
            dx = dxs[t]
            lo = max(0, -dx)
            hi = max(min(cols, cols - dx), lo)
            if yy < 0 or yy >= rows:
                lo = hi = cols
            for i in range(lo):
                A[t, i] = inf
            ys = max(yy, 0)
            lo = max(lo, 0)
            src = max(lo + dx, 0)
            for j in range(hi - lo):
                v = x[ys, src + j]
                valid = v == v
                A[t, lo + j] = v if valid else inf
                cnt[lo + j] += valid
            for i in range(hi, cols):
                A[t, i] = inf
        for c in range(network.shape[0]):
            a = max(network[c, 0], 0)
            b = max(network[c, 1], 0)
            for i in range(cols):
                va = A[a, i]
                vb = A[b, i]
                A[a, i] = va if va < vb else vb
                A[b, i] = vb if va < vb else va
        yo = max(y, 0)
        for i in range(cols):
            n = cnt[i]
            h = max(n // 2, 0)
            if n == 0:
                out[yo, i] = np.nan
            elif n % 2 == 1:
                out[yo, i] = A[h, i]
            else:
                # mean of the two middle values in float64, as np.nanmedian computes it
                out[yo, i] = (np.float64(A[h - 1, i]) + np.float64(A[h, i])) / 2.0


def focal_median(x: np.ndarray, radius: Radius) -> np.ndarray:
    """NaN-aware median over a circular window of `radius` pixels (float32 out).

    Same window as `focal_mean` (dy^2 + dx^2 <= radius^2, or the ellipse of a (radius_y,
    radius_x) pair), NaN and out-of-array pixels skipped,
    NaN where no valid pixel. An even count takes the mean of the two middle values (computed
    in float64), as `np.nanmedian` does. radius 0 is the identity. Tiles cut with a halo of
    `radius` equal the whole image bitwise. Each row of windows is sorted by a branch-free
    sorting network (9 comparators at radius 1, 48 at 2, 171 at 3), so the cost grows with the
    window and radius is limited to MAX_MEDIAN_RADIUS (7).

    Raises InputError for a non-2-D or non-float image, a negative or non-integer radius, or a
    radius (either of a pair) above MAX_MEDIAN_RADIUS.
    """
    img = contiguous_image(x)
    r = _median_radius(radius)
    out = np.empty(img.shape, dtype=np.float32)
    if img.size == 0:
        return out
    offsets = disk_offsets(r)
    k, cols = len(offsets), img.shape[1]
    A = np.empty((k, cols), dtype=img.dtype)
    network = _sorting_network(k)
    _focal_median_2d(
        img, offsets[:, 0].copy(), offsets[:, 1].copy(), network, out, A, np.empty(cols, np.int64)
    )
    return out


def _median_radius(radius: object) -> tuple[int, int]:
    r = radii_yx(radius)
    if max(r) > MAX_MEDIAN_RADIUS:
        raise InputError(
            f"radius {max(r)} is too large for focal_median (at most {MAX_MEDIAN_RADIUS}: every "
            f"window is sorted); use focal_mean for wider smoothing"
        )
    return r


def focal_median_reference(x: np.ndarray, radius: Radius) -> np.ndarray:
    """Plain NumPy focal_median: NaN-padded sliding windows, disk mask, np.nanmedian."""
    img = as_image(x, "x").astype(np.float64)
    ry, rx = _median_radius(radius)
    if img.size == 0:
        return np.empty(img.shape, dtype=np.float32)
    padded = np.pad(img, ((ry, ry), (rx, rx)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * ry + 1, 2 * rx + 1))
    offsets = disk_offsets((ry, rx))
    values = windows[:, :, offsets[:, 0] + ry, offsets[:, 1] + rx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows give NaN, as intended
        return np.nanmedian(values, axis=-1).astype(np.float32)
