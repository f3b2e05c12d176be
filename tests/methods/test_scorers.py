"""Method scores against plain NumPy pipelines built from the kernels' references."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from ruinmap.cluster.methods import (
    CvaParams,
    LogRatioParams,
    NdChangeParams,
    PwttParams,
    ScoreContext,
    band_indices,
    compute_score,
    halo_px,
)
from ruinmap.errors import SpecError
from ruinmap.kernels.cva import cva_magnitude_reference
from ruinmap.kernels.focal import focal_mean_reference
from ruinmap.kernels.focal_median import focal_median_reference
from ruinmap.kernels.indices import log_ratio_reference, nd_change_reference
from ruinmap.kernels.lee import lee_filter_reference
from ruinmap.kernels.ttest import welch_t_reference

SHAPE = (40, 36)


def _stacks(n_pre: int, n_post: int, seed: int = 0, nan_fraction: float = 0.02
            ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.gamma(4.0, 0.02, size=(1, 2, *SHAPE))
    pre = (base * rng.gamma(5.0, 0.2, size=(n_pre, 2, *SHAPE))).astype(np.float32)
    post = (base * rng.gamma(5.0, 0.2, size=(n_post, 2, *SHAPE))).astype(np.float32)
    post[:, :, 10:20, 8:18] *= 0.2  # a destroyed block: backscatter drops
    for stack in (pre, post):
        stack[rng.random(stack.shape) < nan_fraction] = np.nan
    return pre, post


def _context(n_pre: int, n_post: int, pre_orbits: tuple[int, ...] | None = None,
             post_orbits: tuple[int, ...] | None = None, **kw: object) -> ScoreContext:
    return ScoreContext(bands=("VV", "VH"), pre_orbits=pre_orbits or (0,) * n_pre,
                        post_orbits=post_orbits or (0,) * n_post, pixel_size_m=10.0,
                        **kw)  # type: ignore[arg-type]


def _pwtt_reference(pre: np.ndarray, post: np.ndarray, params: PwttParams,
                    pre_orbits: np.ndarray, post_orbits: np.ndarray,
                    mask: np.ndarray | None = None) -> np.ndarray:
    def log_lee(img: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.log(lee_filter_reference(img, 3, 5.0).astype(np.float64))
        out[~np.isfinite(out)] = np.nan
        return out

    best = np.full(SHAPE, np.nan)
    for band in (0, 1):
        a = np.stack([log_lee(img) for img in pre[:, band]])
        b = np.stack([log_lee(img) for img in post[:, band]])
        for orbit in set(pre_orbits.tolist()):
            t = welch_t_reference(a[pre_orbits == orbit], b[post_orbits == orbit],
                                  min_pre=params.min_pre, min_post=params.min_post)
            best = np.fmax(best, np.abs(np.asarray(t, np.float64)))
    if mask is not None:  # PWTT's mask_before_smooth
        best[~mask] = np.nan
    median = focal_median_reference(best.astype(np.float32), 1)
    layers = [median.astype(np.float64)] + [
        focal_mean_reference(median, r).astype(np.float64) for r in (5, 10, 15)
    ]
    return (0.25 * sum(layers)).astype(np.float32)


def test_pwtt_halo_adds_the_lee_median_and_largest_mean_reach() -> None:
    assert halo_px(PwttParams(), 10.0) == 1 + 1 + 15
    assert halo_px(PwttParams(), 5.0) == 1 + 2 + 30
    assert halo_px(LogRatioParams(radius_m=30.0), 10.0) == 3


#: the statistic our pwtt had before it followed the reference of today (max |t| over orbits,
#: sample variances, the smoothed score not masked back to the data); still offered
LEGACY = {"orbit_combination": "max", "variance": "sample", "mask_score_to_data": False}


def test_pwtt_score_equals_numpy_reference_pipeline() -> None:
    pre, post = _stacks(5, 3)
    params = PwttParams(**LEGACY)
    got = compute_score(pre, post, params, _context(5, 3))
    want = _pwtt_reference(pre, post, params, np.zeros(5, int), np.zeros(3, int))
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4, equal_nan=True)


def _built_up(seed: int = 0) -> np.ndarray:
    """A mask of blocks (True = built-up) over SHAPE, covering about half of it."""
    rng = np.random.default_rng(seed)
    return np.kron(rng.random((SHAPE[0] // 4, SHAPE[1] // 4)) < 0.5, np.ones((4, 4), bool))


def test_pwtt_with_a_mask_equals_reference_masked_before_the_median() -> None:
    pre, post = _stacks(5, 3)
    params = PwttParams(**LEGACY)  # what `_pwtt_reference` transcribes
    mask = _built_up()
    got = compute_score(pre, post, params, _context(5, 3), mask)
    want = _pwtt_reference(pre, post, params, np.zeros(5, int), np.zeros(3, int), mask)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4, equal_nan=True)
    unmasked = compute_score(pre, post, params, _context(5, 3))
    assert np.nanmax(np.abs(got - unmasked)) > 0.1  # fields no longer smooth into it


METHOD_PARAMS = [PwttParams(), LogRatioParams(band="VV", radius_m=30.0),
                 NdChangeParams(preset=None, a="VV", b="VH", direction="both", radius_m=20.0),
                 CvaParams(radius_m=20.0)]


@pytest.mark.parametrize("params", METHOD_PARAMS, ids=lambda p: p.method)
def test_masked_score_ignores_the_pixels_outside_the_mask(params: object) -> None:
    """What lies outside the mask (beyond the Lee filter's reach for pwtt) changes nothing."""
    pre, post = _stacks(5, 3, seed=4)
    mask = _built_up(1)
    reach = np.zeros_like(mask)  # the mask widened by one pixel: the 3x3 Lee window
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            reach |= np.roll(np.roll(mask, dr, 0), dc, 1)
    context = _context(5, 3, band_scale=(0.05, 0.02))
    got = compute_score(pre, post, params, context, mask)  # type: ignore[arg-type]
    rng = np.random.default_rng(9)
    for stack in (pre, post):
        stack[..., ~reach] *= rng.gamma(2.0, 2.0, size=stack[..., ~reach].shape)
    again = compute_score(pre, post, params, context, mask)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, again)
    assert np.isfinite(got[mask]).mean() > 0.9


@pytest.mark.parametrize("params", METHOD_PARAMS, ids=lambda p: p.method)
def test_valid_is_where_the_statistic_was_valid_before_the_mask(params: object) -> None:
    pre, post = _stacks(5, 3, seed=5, nan_fraction=0.0)
    pre[:, :, 5:9, 5:9] = np.nan  # a hole of nodata: the focal steps score it from around
    post[:, :, 5:9, 5:9] = np.nan
    context = _context(5, 3, band_scale=(0.05, 0.02))
    valid = np.empty(SHAPE, bool)
    score = compute_score(pre, post, params, context, None, valid)  # type: ignore[arg-type]
    assert not valid[5:9, 5:9].any() and valid.sum() == valid.size - 16
    # the focal steps spread into the hole (not valid area), unless the method re-masks its
    # score to its data afterwards (pwtt's mask_score_to_data, as its reference)
    spread = bool(np.isfinite(score[5:9, 5:9]).any())
    assert spread != getattr(params, "mask_score_to_data", False)
    masked_valid = np.empty(SHAPE, bool)
    compute_score(pre, post, params, context, _built_up(2), masked_valid)  # type: ignore[arg-type]
    np.testing.assert_array_equal(masked_valid, valid)


def test_pwtt_combines_orbits_by_maximum_abs_t() -> None:
    pre, post = _stacks(6, 4, seed=1)
    params = PwttParams(min_pre=3, min_post=2, **LEGACY)
    orbits_pre, orbits_post = (1, 2, 1, 2, 1, 2), (1, 2, 1, 2)
    got = compute_score(pre, post, params, _context(6, 4, orbits_pre, orbits_post))
    want = _pwtt_reference(pre, post, params, np.array(orbits_pre), np.array(orbits_post))
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4, equal_nan=True)


def test_pwtt_scores_the_destroyed_block_above_threshold() -> None:
    pre, post = _stacks(5, 3, seed=2, nan_fraction=0.0)
    score = compute_score(pre, post, PwttParams(), _context(5, 3))
    assert np.nanmean(score[12:18, 10:16]) > 3.3 > np.nanmean(score[30:, 28:])


def test_pwtt_is_nodata_where_too_few_observations() -> None:
    pre, post = _stacks(5, 3, nan_fraction=0.0)
    post[1:] = np.nan  # one post date: Welch's t needs min_post = 2
    score = compute_score(pre, post, PwttParams(), _context(5, 3))
    assert np.isnan(score).all()


def test_log_ratio_score_is_focal_mean_of_abs_db_ratio() -> None:
    pre, post = _stacks(3, 2)
    params = LogRatioParams(band="VH", radius_m=20.0)
    got = compute_score(pre, post, params, _context(3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ratio = log_ratio_reference(np.nanmean(pre[:, 1], axis=0), np.nanmean(post[:, 1], axis=0))
    want = focal_mean_reference(np.abs(ratio).astype(np.float32), 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, equal_nan=True)


def test_nd_change_decrease_is_negated_focal_mean_of_index_change() -> None:
    pre, post = _stacks(2, 2)
    params = NdChangeParams(preset=None, a="VV", b="VH", direction="decrease", radius_m=10.0)
    got = compute_score(pre, post, params, _context(2, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = [np.nanmean(s[:, i], axis=0) for s in (pre, post) for i in (0, 1)]
    change = nd_change_reference(*means)
    want = focal_mean_reference((-change).astype(np.float32), 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_cva_standardizes_each_band_by_the_given_scale() -> None:
    pre, post = _stacks(2, 2)
    params = CvaParams(radius_m=0.0)
    scale = (0.05, 0.01)
    got = compute_score(pre, post, params, _context(2, 2, band_scale=scale))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = np.nanmean(pre, axis=0)
        b = np.nanmean(post, axis=0)
    want = cva_magnitude_reference(a, b, np.array(scale))
    np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True)


def test_unknown_band_names_the_parameter() -> None:
    with pytest.raises(SpecError, match=r"method_params\.polarisations: band\(s\) HH"):
        band_indices(("VV", "VH"), ("VV", "HH"), "polarisations")


def test_orbit_of_each_date_comes_from_spec_globs_then_file_tags(tmp_path: Path) -> None:
    from ruinmap.cluster.methods.pwtt import date_orbits
    from ruinmap.synthetic import make_city

    city = make_city(tmp_path / "city", size=64, n_pre=4, n_post=2, orbits=(87, 14))
    sources = [{"path": str(p), "side": "pre", "time_index": i}
               for i, p in enumerate(city.pre_files)]
    tagged = date_orbits({"sources": sources}, "pre", 4, PwttParams())
    assert tagged == tuple(city.orbit_of[p] for p in city.pre_files)
    assert set(tagged) == {87, 14}
    first = city.pre_files[0].name
    override = date_orbits({"sources": sources}, "pre", 4, PwttParams(orbits={first: 5}))
    assert override == (5, *tagged[1:])
    assert date_orbits({"sources": []}, "pre", 4, PwttParams()) == (0, 0, 0, 0)
    assert date_orbits({"sources": sources}, "pre", 4, LogRatioParams()) == (0, 0, 0, 0)


@pytest.mark.parametrize("method", ["pwtt", "log-ratio"])
def test_zero_power_is_data_not_nodata(method: str) -> None:
    pre, post = _stacks(5, 3, seed=4, nan_fraction=0.0)
    post[:, :, 24:34, 4:14] = 0.0  # darker than the sensor resolves after the event
    params = PwttParams() if method == "pwtt" else LogRatioParams(radius_m=10.0)
    score = compute_score(pre, post, params, _context(5, 3))
    block = score[26:32, 6:12]
    assert np.isfinite(block).all()
    assert block.mean() > 3.3 if method == "pwtt" else block.mean() > 30  # a drop to -60 dB
