"""pwtt: the pixel-wise t-test on Sentinel-1 backscatter (Ballinger 2024)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio

from ruinmap.cluster.methods.base import (
    ExtraLayer,
    ScoreContext,
    ScoreLayers,
    Scorer,
    band_indices,
    mask_statistic,
)
from ruinmap.cluster.methods.params import POWER_FLOOR, PixelSize, floor_power, metres_to_px
from ruinmap.cluster.methods.pwtt_params import REFERENCE, PwttParams
from ruinmap.cluster.storage.confined import confined_raster_path, current_roots
from ruinmap.cluster.storage.location import as_location, gdal_env
from ruinmap.cluster.storage.store import StoreInfo
from ruinmap.errors import SpecError
from ruinmap.kernels import focal_mean, focal_median
from ruinmap.kernels.combine import (
    P_VALUE_FLOOR,
    latest_z,
    mahalanobis_distance,
    normal_two_sided_p,
    stouffer_z,
)
from ruinmap.kernels.focal import focal_halo
from ruinmap.kernels.lee import lee_log_filter
from ruinmap.kernels.ttest import two_sample_t

__all__ = [
    "PWTT",
    "PWTT_LAYERS",
    "REFERENCE",
    "PwttParams",
    "PwttScorer",
    "PwttStatistic",
    "combine_orbits",
    "date_orbits",
    "dates_of_orbit",
    "orbit_logs",
    "pwtt_layers",
    "pwtt_score",
    "pwtt_statistic",
    "smooth_statistic",
    "statistic_layers",
]

#: pwtt's layers besides the score (p_value float32, NaN = nodata; the counts uint16)
PWTT_LAYERS = (
    ExtraLayer("p_value", "1", "two-sided p-value of the per-pixel statistic (normal "
               "approximation, before smoothing)"),
    ExtraLayer("n_pre", "1", "pre-event dates used per pixel (summed over orbits with "
               "stouffer, the most of any orbit with max)", is_count=True),
    ExtraLayer("n_post", "1", "post-event dates used per pixel (summed over orbits with "
               "stouffer, the most of any orbit with max)", is_count=True),
)

def _log_sigma0(image: np.ndarray, size: int, enl: float, is_filtered: bool,
                out: np.ndarray) -> None:
    """ln sigma0 of one image into `out`, Lee-filtered first when `is_filtered` (one fused
    pass, `lee_log_filter`). Zero power is data (darker than the sensor resolves): floored at
    POWER_FLOOR, never -inf or nodata."""
    if is_filtered:
        lee_log_filter(image, size=size, enl=enl, floor=POWER_FLOOR, out=out)
        return
    with np.errstate(invalid="ignore"):
        np.log(floor_power(image), out=out)
    out[~np.isfinite(out)] = np.nan


@dataclass(frozen=True)
class PwttStatistic:
    """The per-pixel statistic before smoothing (the reference's `max_change`), its
    two-sided p-value and the dates it used (float32 images, NaN = nodata)."""

    statistic: np.ndarray
    p_value: np.ndarray
    n_pre: np.ndarray
    n_post: np.ndarray


def orbit_logs(stack: np.ndarray, pols: list[int], params: PwttParams) -> np.ndarray:
    """(time, pol, y, x) log backscatter, Lee-filtered per image with lee_mode 'per_image'."""
    is_filtered = params.lee_mode == "per_image"
    logs = np.empty((stack.shape[0], len(pols), *stack.shape[2:]), np.float32)
    for t in range(stack.shape[0]):
        for k, band in enumerate(pols):  # each image straight into its slot: no stacking copy
            _log_sigma0(stack[t, band], params.lee_size, params.lee_enl, is_filtered, logs[t, k])
    return logs


def dates_of_orbit(logs: np.ndarray, orbits: np.ndarray, orbit: int) -> np.ndarray:
    """The dates of `logs` (axis 0) taken in `orbit`: a view when all are (the usual single
    orbit), else a copy of the matching dates."""
    is_orbit = orbits == orbit
    return logs if bool(is_orbit.all()) else logs[is_orbit]


def _per_orbit_tests(pre_log: np.ndarray, post_log: np.ndarray, params: PwttParams
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """|t| (or |z|) and df per polarisation (pol, y, x), and the pre / post counts of the
    first polarisation (the reference counts VV, :119, :123) of one orbit."""
    stats, dofs = [], []
    n_pre = n_post = np.zeros(pre_log.shape[2:], np.float32)
    for k in range(pre_log.shape[1]):
        if params.statistic == "z":
            z = np.abs(latest_z(pre_log[:, k], post_log[:, k], ddof=params.ddof,
                                min_pre=params.min_pre))
            counts = np.sum(~np.isnan(pre_log[:, k]), axis=0).astype(np.float32)
            has_post = (~np.isnan(post_log[:, k])).any(axis=0)
            # the reference weights a z by n_pre in Stouffer's sum (:201-203); one post image
            stats.append(z)
            dofs.append(np.where(np.isnan(z), np.nan, counts).astype(np.float32))
            if k == 0:
                n_pre, n_post = counts, has_post.astype(np.float32)
        else:
            result = two_sample_t(pre_log[:, k], post_log[:, k], test=params.ttest,
                                  ddof=params.ddof, min_pre=params.min_pre,
                                  min_post=max(2, params.min_post))
            stats.append(np.abs(result.t))  # a rise and a drop both mark damage (:150)
            dofs.append(result.dof)
            if k == 0:
                n_pre, n_post = result.n_pre, result.n_post
    return np.stack(stats), np.stack(dofs), n_pre, n_post


def _mahalanobis_statistic(pre_log: np.ndarray, post_log: np.ndarray, pre_orbits: np.ndarray,
                           post_orbits: np.ndarray, orbits: list[int],
                           params: PwttParams) -> PwttStatistic:
    """sqrt(D2) of the orbit-normalised bands, pooled over orbits (reference :473-544, :633):
    every image of an orbit becomes (x - mean_pre) / max(sd_pre, 1e-10) with that orbit's
    pre mean and population sd per band (NaN where the orbit has a single pre value at the
    pixel, unlike the reference), then all orbits' pre and post images are one sample each."""
    pre_parts, post_parts = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels are expected
        for orbit in orbits:
            a = pre_log[pre_orbits == orbit]
            b = post_log[post_orbits == orbit]
            if a.shape[0] == 0:
                continue  # an orbit without pre images has no baseline (:477-485)
            mean = np.nanmean(a, axis=0)
            sd = np.maximum(np.nanstd(a, axis=0), 1e-10)
            # one pre value has no spread: the reference divides by its 1e-10 floor and gets
            # values of 1e10 that swamp the covariance; such an orbit gives that pixel nothing
            sd[np.sum(~np.isnan(a), axis=0) < 2] = np.nan
            pre_parts.append((a - mean) / sd)
            post_parts.append((b - mean) / sd)
    shape = pre_log.shape[2:]
    if not pre_parts:  # pragma: no cover - check_orbit_dates refuses such a job
        empty = np.full(shape, np.nan, np.float32)
        return PwttStatistic(empty, empty.copy(), np.zeros(shape, np.float32),
                             np.zeros(shape, np.float32))
    d2, n_pre, n_post = mahalanobis_distance(
        np.concatenate(pre_parts), np.concatenate(post_parts), min_pre=params.min_pre,
        min_post=params.min_post)
    with np.errstate(invalid="ignore", divide="ignore"):
        t2 = n_pre * n_post / (n_pre + n_post) * d2.astype(np.float64)
        # chi-squared approximation of the reference (:636), exact for two bands
        p = np.maximum(np.exp(-0.5 * t2), P_VALUE_FLOOR)
        effect = np.sqrt(np.maximum(d2, 0.0))
    return PwttStatistic(effect.astype(np.float32), np.where(np.isnan(d2), np.nan, p)
                         .astype(np.float32), n_pre, n_post)


def pwtt_statistic(pre: np.ndarray, post: np.ndarray, params: PwttParams,
                   context: ScoreContext) -> PwttStatistic:
    """The per-pixel PWTT statistic before any smoothing, as the reference computes it.

    Source: O. Ballinger, "Open access battle damage detection via pixel-wise t-test on
    Sentinel-1 imagery", arXiv:2405.06323 (2024), and the reference code `REFERENCE`
    (line numbers below are of pwtt/__init__.py there).

    1. Every image, per polarisation: with `lee_mode` 'per_image' a Lee filter of linear
       sigma0 (`lee_size`, `lee_enl`; :62-103, :416-417), then the natural log (:418; zero
       power raised to `params.POWER_FLOOR`, -60 dB: zero is data, not nodata).
    2. Per relative orbit with post dates (the reference's orbit list, :402-408):
       - statistic 't': per polarisation |t| of `ttest` (Welch with Welch-Satterthwaite df,
         or pooled with df = n_pre + n_post - 2; variances per `variance`; :125-150), NaN
         where the orbit has fewer than `min_pre` pre or `min_post` post dates (:159);
       - statistic 'z': |x_latest - mean_pre| / sd_pre per polarisation (:187-190), NaN
         under `min_pre` pre dates (:195), df = n_pre (:201-203).
    3. Orbits combined (`orbit_combination`):
       - 'stouffer' (:721-741): per polarisation Z = sum(w |t|) / sqrt(sum(w^2)), w =
         sqrt(df), df = the orbit's largest df over the polarisations; statistic = max over
         polarisations; p = min(1, 2 p2(statistic)) (x2: a Bonferroni for the two
         polarisations); n_pre, n_post = sums over orbits;
       - 'max' (:743-754): statistic = max |t| over orbits and polarisations; p = min(1,
         n_orbits min p2(|t|)); n_pre, n_post = the most of any orbit.
       p2 is the two-sided normal p-value (`normal_two_sided_p`, :26-59).
    4. statistic 'mahalanobis' replaces 2-3 (`_mahalanobis_statistic`).

    n_pre and n_post count the first polarisation's valid dates (VV in the reference, :119).
    """
    pols = band_indices(context.bands, params.polarisations, "polarisations")
    pre_orbits = np.asarray(context.pre_orbits)
    post_orbits = np.asarray(context.post_orbits)
    orbits = sorted(set(post_orbits.tolist()))
    pre_log = orbit_logs(pre, pols, params)
    post_log = orbit_logs(post, pols, params)
    shape = pre.shape[2:]
    if params.statistic == "mahalanobis":
        return _mahalanobis_statistic(pre_log, post_log, pre_orbits, post_orbits, orbits, params)
    per_orbit = [_per_orbit_tests(dates_of_orbit(pre_log, pre_orbits, orbit),
                                  dates_of_orbit(post_log, post_orbits, orbit), params)
                 for orbit in orbits]
    del pre_log, post_log
    return combine_orbits(per_orbit, params, shape)


OrbitTests = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def combine_orbits(per_orbit: Sequence[OrbitTests], params: PwttParams,
                   shape: tuple[int, ...]) -> PwttStatistic:
    """The statistic of the orbits' tests (|t| and df per polarisation, the first
    polarisation's n_pre and n_post; `pwtt_statistic` step 3)."""
    if not per_orbit:  # no post date at all
        empty = np.full(shape, np.nan, np.float32)
        zeros = np.zeros(shape, np.float32)
        return PwttStatistic(empty, empty.copy(), zeros, zeros.copy())
    stats = np.stack([o[0] for o in per_orbit])  # (orbit, pol, y, x)
    dofs = np.stack([o[1] for o in per_orbit])
    n_pre = np.stack([o[2] for o in per_orbit])
    n_post = np.stack([o[3] for o in per_orbit])
    if params.orbit_combination == "stouffer":
        # one weight per orbit: its largest df over polarisations (:725), NaN if any is NaN
        weight = np.max(dofs, axis=1)
        z = np.stack([stouffer_z(stats[:, k], weight) for k in range(stats.shape[1])])
        statistic = np.fmax.reduce(z, axis=0)
        with np.errstate(invalid="ignore"):
            p = np.minimum(2.0 * normal_two_sided_p(statistic), 1.0)
        return PwttStatistic(statistic.astype(np.float32), p.astype(np.float32),
                             n_pre.sum(axis=0).astype(np.float32),
                             n_post.sum(axis=0).astype(np.float32))
    statistic = np.fmax.reduce(stats.reshape(-1, *shape), axis=0)
    p_min = np.fmin.reduce(normal_two_sided_p(stats).reshape(-1, *shape), axis=0)
    with np.errstate(invalid="ignore"):
        p = np.minimum(p_min * len(per_orbit), 1.0)  # Bonferroni over the orbits (:753-754)
    return PwttStatistic(statistic.astype(np.float32), p.astype(np.float32),
                         n_pre.max(axis=0).astype(np.float32),
                         n_post.max(axis=0).astype(np.float32))


def smooth_statistic(statistic: np.ndarray, params: PwttParams,
                     pixel_size_m: PixelSize) -> np.ndarray:
    """The score of the per-pixel statistic: a focal median of radius `focal_median_m`, then
    circular means of that median at each radius of `radii_m`, weighted by `weights`
    (reference :784-819 and the paper's T = 0.25 (median + k50 + k100 + k150)).

    Radii are converted to pixels with `metres_to_px` and the pixel size; NaN neighbours are
    skipped, so NaN where no valid neighbour reaches a pixel.
    """
    median = focal_median(statistic, metres_to_px(params.focal_median_m, pixel_size_m))
    score = np.float64(params.weights[0]) * median.astype(np.float64)
    for weight, radius_m in zip(params.weights[1:], params.radii_m, strict=True):
        score += weight * focal_mean(median, metres_to_px(radius_m, pixel_size_m))
    return score.astype(np.float32)


def pwtt_layers(pre: np.ndarray, post: np.ndarray, params: PwttParams,
                context: ScoreContext, mask: np.ndarray | None = None,
                valid: np.ndarray | None = None) -> ScoreLayers:
    """The PWTT score of a padded window (`pwtt_statistic`, NaN outside the built-up `mask`
    (`mask_statistic`, the reference's mask before smoothing), then `smooth_statistic`; with
    `mask_score_to_data` NaN where the unmasked statistic is, reference :821-822) and its
    layers `p_value`, `n_pre`, `n_post` (`PWTT_LAYERS`). Damaged where score > `threshold`
    (3.3, :374)."""
    return statistic_layers(pwtt_statistic(pre, post, params, context), params, context,
                            mask, valid)


def statistic_layers(stat: PwttStatistic, params: PwttParams, context: ScoreContext,
                     mask: np.ndarray | None = None, valid: np.ndarray | None = None
                     ) -> ScoreLayers:
    """`pwtt_layers` from the per-pixel statistic of the padded window (masking,
    smoothing and the extra layers)."""
    has_data = np.isfinite(stat.statistic)  # the reference re-masks to its data, not built-up
    statistic = mask_statistic(stat.statistic, mask, valid)
    score = smooth_statistic(statistic, params, context.pixel_size_m)
    if params.mask_score_to_data:
        score[~has_data] = np.nan
    if not params.layers:
        return ScoreLayers(score)
    return ScoreLayers(score, {"p_value": stat.p_value, "n_pre": date_count(stat.n_pre),
                               "n_post": date_count(stat.n_post)})


def date_count(count: np.ndarray) -> np.ndarray:
    """A count of dates as its layer's uint16 (`ExtraLayer.is_count`; NaN, never made by
    the kernels, would be 0: no date)."""
    return np.nan_to_num(count, nan=0.0).astype(np.uint16)


def pwtt_score(
    pre: np.ndarray, post: np.ndarray, params: PwttParams, context: ScoreContext,
    mask: np.ndarray | None = None, valid: np.ndarray | None = None,
) -> np.ndarray:
    """The PWTT score of a padded window (`pwtt_layers` without the extra layers)."""
    return pwtt_layers(pre, post, params, context, mask, valid).score


def _orbit_of_file(path: str, params: PwttParams) -> int | None:
    orbit = params.orbit_from_spec(path)
    location = as_location(path)
    if orbit is not None or not location.is_file():
        return orbit
    try:
        with gdal_env([location]), \
                confined_raster_path(path, current_roots()) as name, rasterio.open(name) as src:
            tags = src.tags()
    except rasterio.errors.RasterioIOError:
        return None
    for name in params.orbit_tags:
        with contextlib.suppress(KeyError, ValueError):
            return int(float(tags[name]))
    return None


def date_orbits(attrs: Mapping[str, Any], side: str, count: int, params: Any) -> tuple[int, ...]:
    """Relative orbit of each date of a side: spec globs, else file tags, else 0 (one orbit).

    `attrs` is a store's `ruinmap` attribute (its `sources`); other methods than pwtt have no
    orbits (all 0).
    """
    orbits = [0] * count
    if not isinstance(params, PwttParams):
        return tuple(orbits)
    found: dict[int, int] = {}
    for source in attrs.get("sources", []):
        if source.get("side") != side or source.get("time_index") in found:
            continue
        orbit = source.get("orbit")
        if orbit is None:
            orbit = _orbit_of_file(str(source.get("path", "")), params)
        if orbit is not None:
            found[int(source["time_index"])] = int(orbit)
    for t, orbit in found.items():
        if 0 <= t < count:
            orbits[t] = orbit
    return tuple(orbits)


class PwttScorer(Scorer[PwttParams]):
    name = "pwtt"
    params_model = PwttParams

    def needed_bands(self, params: PwttParams, bands: Sequence[str]) -> tuple[str, list[str]]:
        return "polarisations", list(params.polarisations)

    def halo_px(self, params: PwttParams, pixel_size_m: PixelSize) -> int:
        """Lee filter, then focal median, then circular means of the median: their reaches
        add up (the Lee half-window, the median radius, the largest mean radius)."""
        mean_reach = max((focal_halo(metres_to_px(r, pixel_size_m)) for r in params.radii_m),
                         default=0)
        return (focal_halo(params.lee_size // 2)
                + focal_halo(metres_to_px(params.focal_median_m, pixel_size_m)) + mean_reach)

    def context(self, params: PwttParams, store: StoreInfo,
                pixel_size_m: PixelSize) -> ScoreContext:
        """The relative orbit of every date: spec globs, else file tags (`date_orbits`);
        SpecError when no orbit has enough dates on both sides (`check_orbit_dates`)."""
        context = ScoreContext(
            bands=store.bands,
            pre_orbits=date_orbits(store.attrs, "pre", store.n_times["pre"], params),
            post_orbits=date_orbits(store.attrs, "post", store.n_times["post"], params),
            pixel_size_m=pixel_size_m,
        )
        check_orbit_dates(params, context.pre_orbits, context.post_orbits)
        return context

    def score(self, pre: np.ndarray, post: np.ndarray, params: PwttParams,
              context: ScoreContext, mask: np.ndarray | None = None,
              valid: np.ndarray | None = None) -> np.ndarray:
        return pwtt_score(pre, post, params, context, mask, valid)

    def extra_layers(self, params: PwttParams) -> tuple[ExtraLayer, ...]:
        return PWTT_LAYERS if params.layers else ()

    def score_layers(self, pre: np.ndarray, post: np.ndarray, params: PwttParams,
                     context: ScoreContext, mask: np.ndarray | None = None,
                     valid: np.ndarray | None = None) -> ScoreLayers:
        return pwtt_layers(pre, post, params, context, mask, valid)


def check_orbit_dates(params: PwttParams, pre_orbits: Sequence[int],
                      post_orbits: Sequence[int]) -> None:
    """SpecError when no relative orbit has `min_pre` pre and `min_post` post dates: then no
    pixel could be scored (the score would be all NaN), so say how many dates are needed."""
    per_orbit = {orbit: (list(pre_orbits).count(orbit), list(post_orbits).count(orbit))
                 for orbit in sorted(set(post_orbits))}
    if params.statistic == "mahalanobis":  # its orbits are pooled after normalising
        pooled = (sum(a for a, _ in per_orbit.values() if a),
                  sum(b for a, b in per_orbit.values() if a))
        per_orbit = {0: pooled}
    if any(a >= params.min_pre and b >= params.min_post for a, b in per_orbit.values()):
        return
    counts = ", ".join(f"orbit {o}: {a} pre, {b} post" for o, (a, b) in per_orbit.items())
    one_post = (" With a single post image per orbit, set method_params.statistic = 'z' (the "
                "reference's z-test of the latest image against the pre baseline; about 6 % "
                "lower AUC)." if params.statistic != "z" else "")
    raise SpecError(
        f"method pwtt (statistic '{params.statistic}') needs, in at least one relative orbit, "
        f"min_pre = {params.min_pre} pre-event and min_post = {params.min_post} post-event "
        f"dates, but the imagery has {counts or 'no post-event date'}: no pixel could be "
        f"scored. Add images of one orbit (or set method_params.orbits), or lower "
        f"min_pre / min_post to what the orbits have (min_pre >= 2)." + one_post
    )


PWTT = PwttScorer()
