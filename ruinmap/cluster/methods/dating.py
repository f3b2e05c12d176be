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
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ruinmap.cluster.methods.base import ScoreContext, band_indices
from ruinmap.cluster.methods.params import MAX_DATES, MethodParamsBase, SpecModel
from ruinmap.kernels import lee_filter, to_db
from ruinmap.kernels.dating import (
    CusumState,
    ExceedanceState,
    cusum_init,
    cusum_update,
    two_exceedance_init,
    two_exceedance_update,
)

__all__ = [
    "DatingBaseline",
    "DatingParams",
    "DatingRule",
    "DatingState",
    "advance_dates",
    "baseline_field_count",
    "baseline_fields",
    "baseline_from_fields",
    "date_window",
    "dates_magnitude",
    "dating_baseline",
    "dating_enabled",
    "dating_magnitude",
    "dating_state",
]

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


@dataclass(frozen=True, eq=False)
class DatingBaseline:
    """The pre-event baseline of a window: per band and orbit (`orbits`, the pre dates'),
    the centre and scale of x (NaN where the orbit has fewer than `dating_min_pre` valid pre
    dates at the pixel) and, for cusum, the inverse (y, x, pol, pol) covariance of the pre z.

    Computed once from the pre dates, it is all a new post date needs besides its own image:
    monitoring keeps it with the detector's state."""

    orbits: tuple[int, ...]
    centre: np.ndarray  # (band, orbit, y, x) float32
    scale: np.ndarray
    inverse: np.ndarray | None


def _centre_scale(ref: np.ndarray, min_pre: int, robust: bool) -> tuple[np.ndarray, np.ndarray]:
    count = np.isfinite(ref).sum(axis=0)
    if robust:
        centre = np.nanmedian(ref, axis=0)
        mad = np.nanmedian(np.abs(ref - centre), axis=0)
        sd = np.nanstd(ref, axis=0)
        scale = np.where(mad > 0, MAD_TO_SD * mad, np.where(sd > 0, sd, 1.0))
    else:
        centre = np.nanmean(ref, axis=0)
        scale = np.maximum(np.nanstd(ref, axis=0, ddof=1), SD_FLOOR)
    return centre, np.where(count >= min_pre, scale, np.nan)


def _normalise(x: np.ndarray, orbits: np.ndarray, band: int,
               baseline: DatingBaseline) -> np.ndarray:
    """z of the dates `x` (time, y, x) of one band, each against its own orbit's baseline;
    NaN for an orbit without pre dates."""
    z = np.full(x.shape, np.nan, np.float32)
    for k, orbit in enumerate(baseline.orbits):
        at = orbits == orbit
        if at.any():
            z[at] = (x[at] - baseline.centre[band, k]) / baseline.scale[band, k]
    return z


def _inverse_covariance(z_pre: np.ndarray) -> np.ndarray:
    """S^-1 per pixel (y, x, pol, pol), S the covariance of the pre z (pol, time, y, x) plus
    COV_RIDGE I; NaN where fewer than 2 dates have every polarisation."""
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
    return inverse


def dating_baseline(pre: np.ndarray, params: MethodParamsBase,
                    context: ScoreContext) -> DatingBaseline:
    """The pre-event baseline of a window (`DatingBaseline`; module doc for the formulas)."""
    assert isinstance(params, DatingParams)
    pre_orbits = np.asarray(context.pre_orbits)
    orbits = tuple(int(o) for o in np.unique(pre_orbits))
    robust = params.dating_rule == "cusum"
    bands = _bands(params, context.bands)
    shape = (len(bands), len(orbits), *pre.shape[2:])
    centre, scale = np.empty(shape, np.float32), np.empty(shape, np.float32)
    series = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels are expected
        for b, band in enumerate(bands):
            x = _series(pre, band, params)
            for k, orbit in enumerate(orbits):
                centre[b, k], scale[b, k] = _centre_scale(x[pre_orbits == orbit],
                                                          params.dating_min_pre, robust)
            series.append(x)
        baseline = DatingBaseline(orbits, centre, scale, None)
        if not robust:
            return baseline
        z_pre = np.stack([_normalise(x, pre_orbits, b, baseline)
                          for b, x in enumerate(series)])
        return DatingBaseline(orbits, centre, scale, _inverse_covariance(z_pre))


def dating_magnitude(pre: np.ndarray | None, post: np.ndarray, params: MethodParamsBase,
                     context: ScoreContext, baseline: DatingBaseline | None = None
                     ) -> np.ndarray:
    """(post time, y, x) float32: the per-date magnitude the rule tests (module doc), against
    `baseline` (default: computed from `pre`, which may be None when it is given)."""
    assert isinstance(params, DatingParams)
    if baseline is None:
        if pre is None:
            raise ValueError("dating_magnitude needs the pre dates or their baseline")
        baseline = dating_baseline(pre, params, context)
    post_orbits = np.asarray(context.post_orbits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        z_post = [_normalise(_series(post, band, params), post_orbits, b, baseline)
                  for b, band in enumerate(_bands(params, context.bands))]
        if baseline.inverse is not None:
            z = np.stack(z_post)
            quad = np.einsum("ptyx,yxpq,qtyx->tyx", z, baseline.inverse, z)
            return np.sqrt(np.clip(quad, 0.0, None)).astype(np.float32)
        # fmax: a polarisation without a baseline does not mask the other's |z|
        magnitude = np.abs(z_post[0])
        for z in z_post[1:]:
            magnitude = np.fmax(magnitude, np.abs(z))
        return magnitude


def dates_magnitude(pre: np.ndarray | None, post: np.ndarray, params: MethodParamsBase,
                    context: ScoreContext, dates: Sequence[int],
                    baseline: DatingBaseline | None = None, first: int = 0) -> np.ndarray:
    """`dating_magnitude` of the post dates `dates` only (store indices, in the order
    given; `post` holds the store's post dates from index `first` on): each date's
    magnitude needs its own image and the pre-event baseline (`baseline`, else computed from
    `pre`), never the other post dates, so monitoring computes the appended dates' alone."""
    index = np.asarray(dates, dtype=np.int64)
    orbits = tuple(int(o) for o in np.asarray(context.post_orbits)[index])
    if baseline is None:  # the baseline reads every pre date's orbit: the whole context's
        if pre is None:
            raise ValueError("dates_magnitude needs the pre dates or their baseline")
        baseline = dating_baseline(pre, params, context)
    return dating_magnitude(None, post[index - first], params,
                            replace(context, post_orbits=orbits), baseline)


def baseline_fields(baseline: DatingBaseline) -> np.ndarray:
    """The baseline as (field, y, x) float64 (exact for every part): centre, scale, then
    (cusum) the inverse covariance, each flattened over its leading axes
    (`baseline_from_fields` undoes it)."""
    shape = baseline.centre.shape[-2:]
    parts = [baseline.centre.reshape(-1, *shape), baseline.scale.reshape(-1, *shape)]
    if baseline.inverse is not None:
        parts.append(np.moveaxis(baseline.inverse, (2, 3), (0, 1)).reshape(-1, *shape))
    return np.concatenate([part.astype(np.float64) for part in parts])


def baseline_field_count(params: MethodParamsBase, context: ScoreContext) -> int:
    """How many fields `baseline_fields` gives for a job of `params` over `context`."""
    assert isinstance(params, DatingParams)
    n_bands = len(_bands(params, context.bands))
    n_orbits = len(set(int(o) for o in context.pre_orbits))
    return 2 * n_bands * n_orbits + (n_bands**2 if params.dating_rule == "cusum" else 0)


def baseline_from_fields(fields: np.ndarray, params: MethodParamsBase,
                         context: ScoreContext) -> DatingBaseline:
    """The `DatingBaseline` that `baseline_fields` packed into `fields`."""
    assert isinstance(params, DatingParams)
    orbits = tuple(int(o) for o in np.unique(np.asarray(context.pre_orbits)))
    n_bands = len(_bands(params, context.bands))
    shape = fields.shape[-2:]
    half = n_bands * len(orbits)
    centre = fields[:half].reshape(n_bands, len(orbits), *shape).astype(np.float32)
    scale = fields[half:2 * half].reshape(n_bands, len(orbits), *shape).astype(np.float32)
    inverse = None
    if params.dating_rule == "cusum":
        inverse = np.moveaxis(fields[2 * half:].astype(np.float64)
                              .reshape(n_bands, n_bands, *shape), (0, 1), (2, 3))
    return DatingBaseline(orbits, centre, scale, inverse)


DatingState = ExceedanceState | CusumState


def dating_state(params: MethodParamsBase, shape: tuple[int, int]) -> DatingState:
    """The per-pixel state of the rule of `params` before any post-event date."""
    assert isinstance(params, DatingParams)
    return cusum_init(shape) if params.dating_rule == "cusum" else two_exceedance_init(shape)


def advance_dates(magnitude: np.ndarray, state: DatingState, params: MethodParamsBase,
                  offset: int) -> DatingState:
    """Advance `state` (in place) over the magnitudes of the post dates `offset`, ... in time
    order: appending dates costs work in the new dates only (monitoring)."""
    assert isinstance(params, DatingParams)
    if isinstance(state, CusumState):
        return cusum_update(magnitude, state, offset, params.dating_cusum_k,
                            params.dating_cusum_h, params.dating_cusum_persistence)
    return two_exceedance_update(magnitude, state, offset, params.dating_z_crit)


def date_window(pre: np.ndarray, post: np.ndarray, params: MethodParamsBase,
                context: ScoreContext, post_order: Sequence[int] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(date, earliest, status) of every pixel of a padded window: indices into the
    post-event dates in time order (`post_order`: the store's post index of each, default
    the store's order), -1 none, and the status (0 none, 1 uncertain, 2 confirmed)."""
    order = np.arange(post.shape[0]) if post_order is None else np.asarray(post_order)
    magnitude = dating_magnitude(pre, post, params, context)[order]
    state = advance_dates(magnitude, dating_state(params, magnitude.shape[1:]), params, 0)
    return state.date, state.earliest, state.status
