"""Damage dating: when each pixel's change first became significant over the post-event dates.

`DatingParams` holds the `dating*` keys a method's parameters gain (pwtt and log-ratio);
`date_window` dates every pixel of a padded window with the detectors of
`ruinmap.kernels.dating`. The per-date magnitude follows the source of each rule
(github.com/oballinger/PWTT at e116b6b16768127fce2f5fd0d05a4dd9693f30cf):

- `two_exceedance` (code/estimate_damage_date.py:39-72, 331-356): per relative orbit and
  polarisation, z_t = (x_t - mean_pre) / sd_pre with that orbit's pre-event mean and standard
  deviation (sd floored at 1e-10, :59-60), then z_max = max over polarisations of |z_t|;
- `cusum` (code/cusum_damage_detector.py:47-66): per orbit and polarisation, the robust z
  (x_t - median_pre) / (1.4826 MAD_pre) (the standard deviation where the MAD is 0, else 1),
  fused over the polarisations by the Mahalanobis magnitude m_t = sqrt(z' S^-1 z) with S the
  pre-event covariance of the robust z plus 1e-6 I.

x is, for pwtt, the log of the Lee-filtered sigma0 (the method's own `lee_size`,
`lee_enl`), for log-ratio the band in dB. The source takes its pre-event baseline from 12
months before the event; here it is the job's pre-event dates.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ruinmap.cluster.methods.base import ScoreContext, band_indices
from ruinmap.cluster.methods.params import MAX_DATES, MethodParamsBase, SpecModel
from ruinmap.kernels import lee_filter, to_db
from ruinmap.kernels.dating import (
    cusum_init,
    cusum_update,
    two_exceedance_init,
    two_exceedance_update,
)

__all__ = ["DatingParams", "DatingRule", "date_window", "dating_enabled", "dating_magnitude"]

DatingRule = Literal["two_exceedance", "cusum"]

#: the floor of a pre-event standard deviation (estimate_damage_date.py:60)
SD_FLOOR = 1e-10
#: MAD to standard deviation of a normal distribution (cusum_damage_detector.py:51)
MAD_TO_SD = 1.4826
#: ridge added to the pre-event covariance before inverting it (cusum_damage_detector.py:62)
COV_RIDGE = 1e-6


class DatingParams(SpecModel):
    """The `dating*` keys of a method's parameters (module doc for the sources)."""

    dating: bool = Field(default=False, description="date each pixel's and building's damage")
    dating_rule: DatingRule = Field(
        default="two_exceedance",
        description="two_exceedance (PWTT's damage-date rule) or cusum (Page CUSUM)")
    dating_z_crit: float = Field(
        default=2.576, gt=0, le=1e3, allow_inf_nan=False,
        description="|z| above which a date exceeds (2.576: two-sided 99 %)")
    dating_min_pre: int = Field(
        default=2, ge=2, le=MAX_DATES,
        description="fewest valid pre dates of an orbit to normalise a pixel against")
    dating_cusum_k: float = Field(default=2.0, ge=0, le=1e3, allow_inf_nan=False,
                                  description="CUSUM reference value (slack)")
    dating_cusum_h: float = Field(default=5.0, ge=0, le=1e6, allow_inf_nan=False,
                                  description="CUSUM decision interval")
    dating_cusum_persistence: int = Field(
        default=3, ge=1, le=MAX_DATES,
        description="consecutive dates with m > k an alarm needs")

    @model_validator(mode="after")
    def _rule_keys_need_dating(self) -> DatingParams:
        if not self.dating and self.dating_rule != "two_exceedance":
            raise ValueError("dating_rule is set but dating is false; set dating = true")
        return self


def dating_enabled(params: MethodParamsBase) -> bool:
    return isinstance(params, DatingParams) and params.dating


def _series(stack: np.ndarray, band: int, params: MethodParamsBase) -> np.ndarray:
    """(time, y, x) float32 of one band: log Lee-filtered sigma0 (pwtt) or dB (others)."""
    lee_size = getattr(params, "lee_size", None)  # pwtt's Lee filter; other methods none
    lee_enl = getattr(params, "lee_enl", 1.0)
    out = np.empty((stack.shape[0], *stack.shape[2:]), np.float32)
    for t in range(stack.shape[0]):
        image = stack[t, band]
        if lee_size is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                out[t] = np.log(lee_filter(image, size=lee_size, enl=lee_enl))
        else:
            out[t] = to_db(image)
    out[~np.isfinite(out)] = np.nan
    return out


def _bands(params: MethodParamsBase, bands: Sequence[str]) -> list[int]:
    polarisations = getattr(params, "polarisations", None)  # pwtt's; log-ratio has `band`
    if polarisations is not None:
        return band_indices(bands, polarisations, "polarisations")
    band = getattr(params, "band", None) or bands[0]
    return band_indices(bands, [band], "band")


def _normalised(pre: np.ndarray, post: np.ndarray, pre_orbits: np.ndarray,
                post_orbits: np.ndarray, min_pre: int, robust: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """(z_pre, z_post) of one band, each date against its own orbit's pre-event baseline;
    NaN where that orbit has fewer than `min_pre` valid pre dates at the pixel."""
    z_pre = np.full(pre.shape, np.nan, np.float32)
    z_post = np.full(post.shape, np.nan, np.float32)
    for orbit in np.unique(np.concatenate([pre_orbits, post_orbits])):
        ref = pre[pre_orbits == orbit]
        count = np.isfinite(ref).sum(axis=0)
        if robust:
            centre = np.nanmedian(ref, axis=0)
            mad = np.nanmedian(np.abs(ref - centre), axis=0)
            sd = np.nanstd(ref, axis=0)
            scale = np.where(mad > 0, MAD_TO_SD * mad, np.where(sd > 0, sd, 1.0))
        else:
            centre = np.nanmean(ref, axis=0)
            scale = np.maximum(np.nanstd(ref, axis=0, ddof=1), SD_FLOOR)
        scale = np.where(count >= min_pre, scale, np.nan)
        z_pre[pre_orbits == orbit] = (ref - centre) / scale
        z_post[post_orbits == orbit] = (post[post_orbits == orbit] - centre) / scale
    return z_pre, z_post


def _mahalanobis(z_pre: np.ndarray, z_post: np.ndarray) -> np.ndarray:
    """sqrt(z' S^-1 z) per post date and pixel, S the (pol, pol) covariance of the pre z.

    z_pre, z_post: (pol, time, y, x). NaN where a pixel's covariance or a date is missing."""
    n_pol = z_pre.shape[0]
    centred = z_pre - np.nanmean(z_pre, axis=1, keepdims=True)
    valid = np.all(np.isfinite(centred), axis=0)
    centred = np.where(valid, centred, 0.0)
    count = valid.sum(axis=0)
    cov = np.einsum("ptyx,qtyx->yxpq", centred, centred) / np.maximum(count - 1, 1)[..., None, None]
    cov += COV_RIDGE * np.eye(n_pol)
    cov[count < 2] = np.nan
    inverse = np.linalg.inv(np.where(np.isfinite(cov), cov, np.eye(n_pol)))
    inverse[count < 2] = np.nan
    quad = np.einsum("ptyx,yxpq,qtyx->tyx", z_post, inverse, z_post)
    return np.sqrt(np.clip(quad, 0.0, None)).astype(np.float32)


def dating_magnitude(pre: np.ndarray, post: np.ndarray, params: MethodParamsBase,
                     context: ScoreContext) -> np.ndarray:
    """(post time, y, x) float32: the per-date magnitude the rule tests (module doc)."""
    assert isinstance(params, DatingParams)
    pre_orbits = np.asarray(context.pre_orbits)
    post_orbits = np.asarray(context.post_orbits)
    robust = params.dating_rule == "cusum"
    z_pre_all, z_post_all = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels are expected
        for band in _bands(params, context.bands):
            z_pre, z_post = _normalised(_series(pre, band, params), _series(post, band, params),
                                        pre_orbits, post_orbits, params.dating_min_pre, robust)
            z_pre_all.append(z_pre)
            z_post_all.append(z_post)
        if robust:
            return _mahalanobis(np.stack(z_pre_all), np.stack(z_post_all))
        # fmax: a polarisation without a baseline does not mask the other's |z|
        magnitude = np.abs(z_post_all[0])
        for z in z_post_all[1:]:
            magnitude = np.fmax(magnitude, np.abs(z))
        return magnitude


def date_window(pre: np.ndarray, post: np.ndarray, params: MethodParamsBase,
                context: ScoreContext, post_order: Sequence[int] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(date, earliest, status) of every pixel of a padded window: indices into the
    post-event dates in time order (`post_order`: the store's post index of each, default
    the store's order), -1 none, and the status (0 none, 1 uncertain, 2 confirmed)."""
    assert isinstance(params, DatingParams)
    order = np.arange(post.shape[0]) if post_order is None else np.asarray(post_order)
    magnitude = dating_magnitude(pre, post, params, context)[order]
    shape = magnitude.shape[1:]
    if params.dating_rule == "cusum":
        cusum = cusum_update(magnitude, cusum_init(shape), 0, params.dating_cusum_k,
                             params.dating_cusum_h, params.dating_cusum_persistence)
        return cusum.date, cusum.earliest, cusum.status
    state = two_exceedance_update(magnitude, two_exceedance_init(shape), 0,
                                  params.dating_z_crit)
    return state.date, state.earliest, state.status
