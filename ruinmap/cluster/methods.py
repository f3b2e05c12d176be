"""Damage scores of the four methods, computed on one padded window of the store.

Each `<method>_score` takes the pre and post stacks of a window read with a halo of
`halo_px(params, pixel_size_m)` pixels on every side ((time, band, y, x) float32, NaN = nodata,
NaN outside the image), the method's parameters and a `ScoreContext` (band names, the relative
orbit of every date, the pixel size), and returns the float32 score of the whole padded window
(higher = more damage). The caller crops the halo off: every focal step treats pixels outside
the window as missing, so with the halo the cropped score equals the whole image's
(`ruinmap.kernels.focal`). Only kernels from `ruinmap.kernels` and NumPy are used here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ruinmap.cluster.spec import (
    CvaParams,
    LogRatioParams,
    MethodParams,
    NdChangeParams,
    PwttParams,
    metres_to_px,
)
from ruinmap.errors import InputError, SpecError
from ruinmap.kernels import (
    cva_magnitude,
    focal_mean,
    focal_median,
    lee_filter,
    log_ratio,
    nd_change,
    welch_t,
)

__all__ = [
    "ScoreContext",
    "band_indices",
    "check_bands",
    "compute_score",
    "cva_score",
    "halo_px",
    "log_ratio_score",
    "nd_change_score",
    "pwtt_score",
]


@dataclass(frozen=True)
class ScoreContext:
    """What a method needs to know about the store besides the pixels.

    `pre_orbits` / `post_orbits`: the relative orbit of each date of each side (all equal when
    unknown); `band_scale`: per band of the store, the pooled standard deviation of pre and
    post (only `cva` with `standardize` uses it; computed once over the whole image so tiles
    agree).
    """

    bands: tuple[str, ...]
    pre_orbits: tuple[int, ...]
    post_orbits: tuple[int, ...]
    pixel_size_m: float
    band_scale: tuple[float, ...] | None = None


def band_indices(bands: Sequence[str], wanted: Sequence[str], key: str) -> list[int]:
    """Positions of `wanted` band names in `bands` (case-insensitive); SpecError naming the
    parameter otherwise."""
    index = {name.upper(): i for i, name in enumerate(bands)}
    missing = [name for name in wanted if name.upper() not in index]
    if missing:
        raise SpecError(
            f"method_params.{key}: band(s) {', '.join(missing)} not in the imagery (bands: "
            f"{', '.join(bands)}); set {key} to bands the store has"
        )
    return [index[name.upper()] for name in wanted]


def halo_px(params: MethodParams, pixel_size_m: float) -> int:
    """Pixels of margin a window needs so that its cropped score equals the whole image's.

    The focal steps are chained, so their reaches add: for pwtt the Lee half-window, the
    median radius and the largest mean radius.
    """
    if isinstance(params, PwttParams):
        radius = max((metres_to_px(r, pixel_size_m) for r in params.radii_m), default=0)
        return params.lee_size // 2 + metres_to_px(params.focal_median_m, pixel_size_m) + radius
    return metres_to_px(params.radius_m, pixel_size_m)


def _nanmean_min(stack: np.ndarray, minimum: int) -> np.ndarray:
    """Mean over axis 0 of the valid values; NaN where fewer than `minimum` are valid."""
    valid = np.isfinite(stack)
    count = valid.sum(axis=0)
    total = np.where(valid, stack, 0.0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return np.where(count >= max(1, minimum), mean, np.nan).astype(np.float32)


def _directed(change: np.ndarray, direction: str) -> np.ndarray:
    if direction == "decrease":
        return np.negative(change)
    if direction == "increase":
        return change
    return np.abs(change)


def _log_sigma0(image: np.ndarray, size: int, enl: float) -> np.ndarray:
    filtered = lee_filter(image, size=size, enl=enl)
    with np.errstate(invalid="ignore", divide="ignore"):
        logged = np.log(filtered)
    # zero or negative power is nodata, never -inf
    logged[~np.isfinite(logged)] = np.nan
    return logged


def pwtt_score(
    pre: np.ndarray, post: np.ndarray, params: PwttParams, context: ScoreContext
) -> np.ndarray:
    """The pixel-wise t-test score of Ballinger (2024), as its reference code computes it.

    Source: O. Ballinger, "Open access battle damage detection via pixel-wise t-test on
    Sentinel-1 imagery", arXiv:2405.06323 (2024), and github.com/oballinger/PWTT code/pwtt.py.

    1. Every image, per polarisation: Lee filter of linear sigma0 (`lee_size` x `lee_size`,
       `lee_enl` looks; the paper's 3x3, ENL 5), then the natural log.
    2. Per relative orbit and per polarisation: Welch's t between the pre and the post stack
       of that orbit (`welch_t`), NaN where a pixel has fewer than `min_pre` (3) pre or
       `min_post` (2) post observations; |t| (the reference takes abs(t): a rise and a drop
       in backscatter both mark damage).
    3. Orbits combined by the maximum |t| (pwtt.py's `.max()` over the orbit collection),
       then the maximum over the polarisations (VV, VH).
    4. A focal median of radius `focal_median_m` (10 m: radius 1 at 10 m pixels), then
       circular means of that median at each radius of `radii_m` (50, 100, 150 m).
    5. score = weights . (median, mean_50, mean_100, mean_150), default 0.25 each (the paper's
       T = 0.25 (median + k50 + k100 + k150)); damaged where score > `threshold` (3.3).

    Radii are converted to pixels with `metres_to_px` and the pixel size. NaN (nodata) where
    no orbit and polarisation has enough observations and no valid neighbour reaches it.
    """
    pols = band_indices(context.bands, params.polarisations, "polarisations")
    pre_orbits = np.asarray(context.pre_orbits)
    post_orbits = np.asarray(context.post_orbits)
    best: np.ndarray | None = None
    for band in pols:
        pre_log = np.stack([_log_sigma0(pre[t, band], params.lee_size, params.lee_enl)
                            for t in range(pre.shape[0])])
        post_log = np.stack([_log_sigma0(post[t, band], params.lee_size, params.lee_enl)
                             for t in range(post.shape[0])])
        for orbit in sorted(set(pre_orbits.tolist()) & set(post_orbits.tolist())):
            t = welch_t(pre_log[pre_orbits == orbit], post_log[post_orbits == orbit],
                        min_pre=params.min_pre, min_post=params.min_post)
            assert isinstance(t, np.ndarray)
            np.abs(t, out=t)
            # fmax: an orbit without enough observations (NaN) does not mask another's t
            best = t if best is None else np.fmax(best, t)
        del pre_log, post_log
    if best is None:  # no orbit has both pre and post dates
        return np.full(pre.shape[2:], np.nan, np.float32)
    median = focal_median(best, metres_to_px(params.focal_median_m, context.pixel_size_m))
    score = np.float64(params.weights[0]) * median.astype(np.float64)
    for weight, radius_m in zip(params.weights[1:], params.radii_m, strict=True):
        score += weight * focal_mean(median, metres_to_px(radius_m, context.pixel_size_m))
    return score.astype(np.float32)


def log_ratio_score(
    pre: np.ndarray, post: np.ndarray, params: LogRatioParams, context: ScoreContext
) -> np.ndarray:
    """Absolute (or signed) log ratio of mean post to mean pre backscatter, focal-smoothed.

    r = 10 log10(mean_post / mean_pre) dB over each side's valid dates (`log_ratio`; Bazi,
    Bruzzone & Melgani 2005, IEEE TGRS 43(4)), NaN where a side has fewer than `min_pre` /
    `min_post` valid dates; score = |r| (`direction = "both"`), -r ("decrease") or r
    ("increase"), then a circular focal mean of radius `radius_m`.
    """
    band = band_indices(context.bands, [params.band or context.bands[0]], "band")[0]
    ratio = log_ratio(_nanmean_min(pre[:, band], params.min_pre),
                      _nanmean_min(post[:, band], params.min_post))
    ratio[~np.isfinite(ratio)] = np.nan
    return focal_mean(_directed(ratio, params.direction),
                      metres_to_px(params.radius_m, context.pixel_size_m))


def nd_change_score(
    pre: np.ndarray, post: np.ndarray, params: NdChangeParams, context: ScoreContext
) -> np.ndarray:
    """Change of a normalized difference (a - b) / (a + b) between mean pre and mean post.

    d = ND(mean_post_a, mean_post_b) - ND(mean_pre_a, mean_pre_b) (`nd_change`); the score is
    -d for `direction = "decrease"` (NDVI loss, Tucker 1979 index), d for "increase", |d| for
    "both" (NDBI, Zha et al. 2003), then a circular focal mean of radius `radius_m`.
    """
    assert params.a is not None and params.b is not None  # the params model fills them
    a, b = band_indices(context.bands, [params.a, params.b], "a/b")
    change = nd_change(
        _nanmean_min(pre[:, a], params.min_pre), _nanmean_min(pre[:, b], params.min_pre),
        _nanmean_min(post[:, a], params.min_post), _nanmean_min(post[:, b], params.min_post),
    )
    return focal_mean(_directed(change, params.direction or "both"),
                      metres_to_px(params.radius_m, context.pixel_size_m))


def cva_score(
    pre: np.ndarray, post: np.ndarray, params: CvaParams, context: ScoreContext
) -> np.ndarray:
    """Change-vector magnitude over (standardized) bands, focal-smoothed.

    m = sqrt(sum_k ((mean_post_k - mean_pre_k) / s_k)^2) (`cva_magnitude`; Malila 1980,
    Bovolo & Bruzzone 2007), s_k = band k's pooled standard deviation over the whole image
    (`context.band_scale`) with `standardize`, else 1; then a circular focal mean of radius
    `radius_m`.
    """
    names = list(params.bands or context.bands)
    idx = band_indices(context.bands, names, "bands")
    pre_mean = np.stack([_nanmean_min(pre[:, i], params.min_pre) for i in idx])
    post_mean = np.stack([_nanmean_min(post[:, i], params.min_post) for i in idx])
    scale = None
    if params.standardize:
        if context.band_scale is None:
            raise InputError("cva with standardize needs each band's pooled standard deviation")
        scale = np.array([context.band_scale[i] for i in idx], np.float64)
        scale[~(scale > 0)] = 1.0  # a constant band carries no change; leave it unscaled
    magnitude = cva_magnitude(pre_mean, post_mean, scale)
    return focal_mean(magnitude, metres_to_px(params.radius_m, context.pixel_size_m))


def check_bands(params: MethodParams, bands: Sequence[str]) -> None:
    """SpecError, naming the parameter, when the method needs a band the imagery lacks."""
    if isinstance(params, PwttParams):
        band_indices(bands, params.polarisations, "polarisations")
    elif isinstance(params, LogRatioParams):
        band_indices(bands, [params.band or bands[0]], "band")
    elif isinstance(params, NdChangeParams):
        band_indices(bands, [str(params.a), str(params.b)], "a/b")
    else:
        band_indices(bands, list(params.bands or bands), "bands")


_SCORERS: dict[type, Callable[..., np.ndarray]] = {
    PwttParams: pwtt_score,
    LogRatioParams: log_ratio_score,
    NdChangeParams: nd_change_score,
    CvaParams: cva_score,
}


def compute_score(
    pre: np.ndarray, post: np.ndarray, params: MethodParams, context: ScoreContext
) -> np.ndarray:
    """The score of the method `params` belongs to, on a padded window (float32)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows are expected
        return _SCORERS[type(params)](pre, post, params, context)
