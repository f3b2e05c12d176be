"""Per-pixel statistics that turn t (or z) values into evidence: the two-sided normal p-value,
Stouffer's weighted combination of independent tests, the z of one image against a baseline,
and the Mahalanobis distance between two multi-band stacks.

Formulas follow the PWTT reference code (oballinger/PWTT pwtt/__init__.py, Ballinger 2024,
arXiv:2405.06323), cited per function. Element-wise NumPy (the p-value a numba loop) on
float64, float32 out; NaN is nodata and stays NaN.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numba import njit

from ruinmap.errors import InputError
from ruinmap.kernels._checks import as_float_array, as_stack, non_negative_int

__all__ = [
    "P_VALUE_FLOOR",
    "latest_z",
    "latest_z_reference",
    "mahalanobis_distance",
    "mahalanobis_distance_reference",
    "normal_two_sided_p",
    "normal_two_sided_p_reference",
    "stouffer_z",
    "stouffer_z_reference",
]

#: smallest p-value reported (pwtt/__init__.py:59, :272): below it the approximation is noise
P_VALUE_FLOOR = 1e-10

# Abramowitz & Stegun 26.2.17 (|error| < 7.5e-8). The reference (pwtt/__init__.py:30-34) has
# b4 = -1.882575977, a typo for A&S's -1.821255978: with it Phi(0) = 0.524, not 0.5, and its
# p-values run up to 0.05 too low. We keep A&S's value (checked against erfc in the tests).
_AS_P = 0.2316419
_AS_B = (0.319381530, -0.356563782, 1.781477937, -1.821255978, 1.330274429)


def normal_two_sided_p(x: np.ndarray) -> np.ndarray:
    """Two-sided p-value of |x| under a standard normal: max(2 (1 - Phi(|x|)), 1e-10).

    Phi by Abramowitz & Stegun 26.2.17 (error < 7.5e-8), as the PWTT reference computes it
    (`normal_cdf_approx` and `two_tailed_pvalue`, pwtt/__init__.py:26-59, with A&S's b4
    where the reference has a typo, see `_AS_B`): for a t with
    many degrees of freedom the normal is close to Student's t ("valid for df > 30"); with
    few dates the p-value is too small and is best read as a ranking. NaN stays NaN.
    """
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    out = np.empty(arr.shape, np.float32)
    _normal_two_sided_p_1d(np.ascontiguousarray(arr).reshape(-1), out.reshape(-1))
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def _normal_two_sided_p_1d(x: np.ndarray, out: np.ndarray) -> None:
    """`normal_two_sided_p` per element in float64, in one pass (no temporaries)."""
    b0, b1, b2, b3, b4 = _AS_B
    root_two_pi = math.sqrt(2.0 * math.pi)
    for i in range(x.size):
        a = abs(np.float64(x[i]))
        k = 1.0 / (1.0 + _AS_P * a)
        poly = k * (b0 + k * (b1 + k * (b2 + k * (b3 + k * b4))))
        tail = np.exp(-0.5 * a * a) / root_two_pi * poly
        # max(NaN, floor) is NaN in NumPy: NaN stays NaN
        out[i] = max(2.0 * tail, P_VALUE_FLOOR) if a == a else np.nan


def normal_two_sided_p_reference(x: np.ndarray) -> np.ndarray:
    """Exact two-sided normal p-value, erfc(|x| / sqrt 2), floored at 1e-10 (pixel loop)."""
    arr = np.asarray(x, np.float64)
    out = np.full(arr.shape, np.nan)
    for index, value in np.ndenumerate(arr):
        if not math.isnan(value):
            out[index] = max(math.erfc(abs(value) / math.sqrt(2.0)), P_VALUE_FLOOR)
    return out.astype(np.float32)


def _stacks_like(stat: object, dof: object) -> tuple[np.ndarray, np.ndarray]:
    s = as_stack(stat, "stat")
    w = as_stack(dof, "dof")
    if s.shape != w.shape:
        raise InputError(f"stat {s.shape} and dof {w.shape} differ; give one dof per statistic")
    return s, w


def stouffer_z(stat: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Stouffer's weighted Z of k tests per pixel (axis 0 = test), weights sqrt(dof):

        Z = sum_k sqrt(dof_k) stat_k / sqrt(sum_k dof_k)

    over the tests whose statistic and dof are finite with dof > 0 (NaN where none is). Under
    the null Z is standard normal when each stat is; the PWTT reference combines its orbits'
    |t| this way (pwtt/__init__.py:721-734, w = sqrt(df), Z = sum(w t) / sqrt(sum(w^2))).
    """
    s, w = _stacks_like(stat, dof)
    if s.shape[0] == 1:
        # one test (one orbit): Z = sqrt(w) s / sqrt(w) = s, so no float64 round trip
        with np.errstate(invalid="ignore"):
            used_one = np.isfinite(s[0]) & np.isfinite(w[0]) & (w[0] > 0)
        return np.where(used_one, s[0], np.nan).astype(np.float32)
    s = s.astype(np.float64)
    w = w.astype(np.float64)
    with np.errstate(invalid="ignore"):
        used = np.isfinite(s) & np.isfinite(w) & (w > 0)
    weight = np.sqrt(np.where(used, w, 0.0))
    total = np.where(used, weight * np.where(used, s, 0.0), 0.0).sum(axis=0)
    norm = np.where(used, w, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = total / np.sqrt(norm)
    return np.where(used.any(axis=0), z, np.nan).astype(np.float32)


def stouffer_z_reference(stat: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Pixel loop over `stouffer_z`'s formula."""
    s = np.asarray(stat, np.float64)
    w = np.asarray(dof, np.float64)
    out = np.full(s.shape[1:], np.nan)
    for i, j in np.ndindex(*out.shape):
        pairs = [(a, b) for a, b in zip(s[:, i, j], w[:, i, j], strict=True)
                 if math.isfinite(a) and math.isfinite(b) and b > 0]
        if pairs:
            out[i, j] = sum(math.sqrt(b) * a for a, b in pairs) / math.sqrt(
                sum(b for _, b in pairs))
    return out.astype(np.float32)


def _latest_valid(post: np.ndarray) -> np.ndarray:
    """Each pixel's last valid value along axis 0 (NaN if none): Earth Engine's mosaic of a
    collection sorted newest first."""
    valid = ~np.isnan(post)
    last = post.shape[0] - 1 - np.argmax(valid[::-1], axis=0)
    picked = np.take_along_axis(post, last[None], axis=0)[0]
    return np.where(valid.any(axis=0), picked, np.nan)


def latest_z(pre_stack: np.ndarray, post_stack: np.ndarray, *, ddof: int = 0,
             min_pre: int = 2) -> np.ndarray:
    """z of each pixel's latest valid post value against its pre baseline (axis 0 = time):

        z = (x_latest - mean_pre) / sd_pre,   sd with `ddof` (0: Earth Engine's stdDev)

    the PWTT reference's `ztest` (pwtt/__init__.py:168-208), for a single post image. NaN
    where the pre side has fewer than `min_pre` valid values, sd_pre is 0 or no post value is
    valid. Signed: the caller takes |z| as the reference does.
    """
    pre = as_stack(pre_stack, "pre_stack").astype(np.float64)
    post = as_stack(post_stack, "post_stack").astype(np.float64)
    if pre.shape[1:] != post.shape[1:]:
        raise InputError(f"image shapes differ: pre {pre.shape[1:]}, post {post.shape[1:]}")
    lo = max(2, non_negative_int(min_pre, "min_pre"))
    if ddof not in (0, 1):
        raise InputError(f"ddof must be 0 or 1, got {ddof!r}")
    n = np.sum(~np.isnan(pre), axis=0)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(pre, axis=0)
        sd = np.sqrt(np.nanvar(pre, axis=0, ddof=ddof))
        z = (_latest_valid(post) - mean) / sd
    return np.where((n >= lo) & (sd > 0), z, np.nan).astype(np.float32)


def latest_z_reference(pre_stack: np.ndarray, post_stack: np.ndarray, *, ddof: int = 0,
                       min_pre: int = 2) -> np.ndarray:
    """Pixel loop over `latest_z`'s formula."""
    pre = np.asarray(pre_stack, np.float64)
    post = np.asarray(post_stack, np.float64)
    out = np.full(pre.shape[1:], np.nan)
    for i, j in np.ndindex(*out.shape):
        a = pre[:, i, j][~np.isnan(pre[:, i, j])]
        b = post[:, i, j][~np.isnan(post[:, i, j])]
        if a.size < max(2, min_pre) or b.size == 0:
            continue
        sd = float(np.std(a, ddof=ddof))
        if sd > 0:
            out[i, j] = (b[-1] - a.mean()) / sd
    return out.astype(np.float32)


def _band_stacks(pre_stack: object, post_stack: object) -> tuple[np.ndarray, np.ndarray]:
    pre = as_float_array(pre_stack, "pre_stack", 4).astype(np.float64)
    post = as_float_array(post_stack, "post_stack", 4).astype(np.float64)
    if pre.shape[1:] != post.shape[1:]:
        raise InputError(f"(band, y, x) shapes differ: pre {pre.shape[1:]}, post "
                         f"{post.shape[1:]}; the stacks must share bands and grid")
    return pre, post


def mahalanobis_distance(
    pre_stack: np.ndarray, post_stack: np.ndarray, *, min_pre: int = 3, min_post: int = 2,
    ridge: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared Mahalanobis distance between the pre and post means of (time, band, y, x)
    stacks, per pixel, with the pooled covariance of the bands:

        S_side = sample covariance (ddof 1) of the side's observations,
        S = ((n_pre - 1) S_pre + (n_post - 1) S_post) / (n_pre + n_post - 2) + ridge I,
        D2 = d' S^-1 d,   d = mean_post - mean_pre.

    An observation is one date with every band valid. Returns (D2, n_pre, n_post), float32;
    D2 is NaN where a side has fewer than `min_pre` / `min_post` observations. Hotelling's
    T2 = n_pre n_post / (n_pre + n_post) D2 grows with the number of dates, D2 does not: it is
    an effect size (the PWTT reference's `mahalanobis` method, pwtt/__init__.py:509-544,
    633). NaN also where the pooled covariance is exactly singular.
    """
    pre, post = _band_stacks(pre_stack, post_stack)
    n_bands = pre.shape[1]

    def moments(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        valid = np.isfinite(stack).all(axis=1)  # (time, y, x)
        n = valid.sum(axis=0).astype(np.float64)
        filled = np.where(valid[:, None], stack, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = filled.sum(axis=0) / n  # (band, y, x)
            dev = np.where(valid[:, None], stack - mean[None], 0.0)
            cov = np.einsum("tiyx,tjyx->yxij", dev, dev) / (n - 1.0)[..., None, None]
        return n, mean, cov

    n_a, mean_a, cov_a = moments(pre)
    n_b, mean_b, cov_b = moments(post)
    ok = (n_a >= max(2, min_pre)) & (n_b >= max(2, min_post))
    dof = np.where(ok, n_a + n_b - 2.0, 1.0)[..., None, None]
    pooled = (np.nan_to_num(cov_a) * np.where(ok, n_a - 1.0, 0.0)[..., None, None]
              + np.nan_to_num(cov_b) * np.where(ok, n_b - 1.0, 0.0)[..., None, None]) / dof
    pooled += ridge * np.eye(n_bands)
    pooled[~ok] = np.eye(n_bands)  # defined but unused: keeps solve from raising
    # an exactly singular covariance (bands perfectly collinear, ridge lost to rounding) has
    # no distance: NaN there, as Earth Engine's matrixInverse masks it
    with np.errstate(invalid="ignore", over="ignore"):
        singular = ~(np.abs(np.linalg.det(pooled)) > 0)
    pooled[singular] = np.eye(n_bands)
    ok &= ~singular
    d = np.moveaxis(np.nan_to_num(mean_b - mean_a), 0, -1)  # (y, x, band)
    with np.errstate(invalid="ignore", over="ignore"):
        solved = np.linalg.solve(pooled, d[..., None])[..., 0]
        d2 = np.einsum("yxi,yxi->yx", d, solved)
    return (np.where(ok, d2, np.nan).astype(np.float32), n_a.astype(np.float32),
            n_b.astype(np.float32))


def mahalanobis_distance_reference(
    pre_stack: np.ndarray, post_stack: np.ndarray, *, min_pre: int = 3, min_post: int = 2,
    ridge: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel loop with np.cov and np.linalg.inv over `mahalanobis_distance`'s formula."""
    pre, post = _band_stacks(pre_stack, post_stack)
    shape = pre.shape[2:]
    d2 = np.full(shape, np.nan)
    n_pre = np.zeros(shape)
    n_post = np.zeros(shape)
    for i, j in np.ndindex(*shape):
        a = pre[:, :, i, j][np.isfinite(pre[:, :, i, j]).all(axis=1)]
        b = post[:, :, i, j][np.isfinite(post[:, :, i, j]).all(axis=1)]
        n_pre[i, j], n_post[i, j] = len(a), len(b)
        if len(a) < max(2, min_pre) or len(b) < max(2, min_post):
            continue
        s = ((len(a) - 1) * np.atleast_2d(np.cov(a.T)) + (len(b) - 1) * np.atleast_2d(
            np.cov(b.T))) / (len(a) + len(b) - 2) + ridge * np.eye(pre.shape[1])
        d = b.mean(axis=0) - a.mean(axis=0)
        d2[i, j] = d @ np.linalg.inv(s) @ d
    return d2.astype(np.float32), n_pre.astype(np.float32), n_post.astype(np.float32)
