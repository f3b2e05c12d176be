"""Count intervals held to brute-force references: every outcome enumerated for small
districts, scipy's binomial where all p are equal, a known logistic curve recovered."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from ruinmap.cluster.validation.intervals import (
    calibrate,
    count_intervals,
    district_dispersion,
    score_sigma,
    unvalidated_probabilities,
)
from ruinmap.errors import InputError


def _enumerated_bounds(p: np.ndarray, level: float) -> tuple[int, int]:
    """Central interval of sum(Bernoulli(p)) from all 2^n outcomes."""
    pmf = np.zeros(p.size + 1)
    for outcome in itertools.product((0, 1), repeat=p.size):
        o = np.array(outcome, bool)
        pmf[o.sum()] += np.prod(np.where(o, p, 1 - p))
    cdf = np.cumsum(pmf)
    tail = (1 - level) / 2
    return int(np.searchsorted(cdf, tail - 1e-12)), int(np.searchsorted(cdf, 1 - tail - 1e-12))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=9),
       st.sampled_from([0.5, 0.8, 0.9, 0.95]))
def test_exact_bounds_match_enumeration(probs: list[float], level: float) -> None:
    p = np.array(probs)
    got = count_intervals(np.zeros(p.size, np.int64), 1, p=p, level=level,
                          method="unvalidated", assumptions="")
    assert (int(got.low[0]), int(got.high[0])) == _enumerated_bounds(p, level)
    assert got.expected[0] == pytest.approx(p.sum())


@pytest.mark.parametrize("n", [50, 5000])  # exact convolution, then the normal approximation
@pytest.mark.parametrize("q", [0.03, 0.4])
def test_equal_probabilities_give_the_binomial_interval(n: int, q: float) -> None:
    got = count_intervals(np.zeros(n, np.int64), 1, p=np.full(n, q), level=0.9,
                          method="unvalidated", assumptions="")
    low, high = binom.ppf([0.05, 0.95], n, q)
    tolerance = 0 if n <= 1000 else 1  # the normal approximation may differ by one
    assert abs(int(got.low[0]) - low) <= tolerance
    assert abs(int(got.high[0]) - high) <= tolerance


def test_districts_are_counted_apart_and_unscored_buildings_left_out() -> None:
    p = np.array([1.0, 1.0, 0.0, np.nan, 1.0, 0.5])
    district = np.array([0, 0, 0, 0, 2, -1])
    got = count_intervals(district, 4, p=p, method="unvalidated", assumptions="")
    assert got.expected.tolist() == [2.0, 0.0, 1.0, 0.0]
    assert got.low.tolist() == [2, 0, 1, 0]
    assert got.high.tolist() == [2, 0, 1, 0]


def test_resampled_probabilities_widen_the_interval() -> None:
    rng = np.random.default_rng(3)
    p = np.full(400, 0.3)
    boot = np.clip(0.3 + rng.normal(0, 0.08, (200, 1)), 0, 1) * np.ones((1, 400))
    plain = count_intervals(np.zeros(400, np.int64), 1, p=p, method="x", assumptions="")
    mixed = count_intervals(np.zeros(400, np.int64), 1, p=p, p_boot=boot, method="x",
                            assumptions="")
    assert mixed.high[0] - mixed.low[0] > 1.5 * (plain.high[0] - plain.low[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_calibration_recovers_a_known_logistic_curve(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.normal(2, 2, 20000)
    damaged = rng.random(scores.size) < 1 / (1 + np.exp(-(-3.0 + 1.5 * scores)))
    fit = calibrate(scores, damaged, n_boot=30, seed=seed)
    assert fit.intercept == pytest.approx(-3.0, abs=0.15)
    assert fit.slope == pytest.approx(1.5, abs=0.08)
    assert fit.boot_slopes.std() > 0
    assert fit.boot_probabilities(scores[:5]).shape == (30, 5)


def test_calibration_needs_both_classes() -> None:
    with pytest.raises(InputError, match="1 damaged and 9 undamaged"):
        calibrate(np.arange(10.0), np.arange(10) == 3)


@pytest.mark.parametrize("method, expected", [("pwtt", 1.0), ("log-ratio", 1.4826 * 0.5)])
def test_score_sigma(method: str, expected: float) -> None:
    # below the threshold: 0, 0.5, 1 repeated, MAD 0.5
    scores = np.array([0.0, 0.5, 1.0] * 10 + [9.0, np.nan])
    assert score_sigma(method, scores, threshold=3.0) == pytest.approx(expected)


def test_unvalidated_probability_is_half_at_the_threshold() -> None:
    p = unvalidated_probabilities(np.array([3.3, 4.3, np.nan]), 3.3, 1.0)
    assert p[0] == pytest.approx(0.5)
    assert p[1] == pytest.approx(0.8413, abs=1e-4)
    assert np.isnan(p[2])
    with pytest.raises(InputError, match="sigma"):
        unvalidated_probabilities(np.zeros(2), 0.0, 0.0)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5])
def test_level_must_be_a_probability(level: float) -> None:
    with pytest.raises(InputError, match="level"):
        count_intervals(np.zeros(1, np.int64), 1, p=np.ones(1), level=level, method="x",
                        assumptions="")


@pytest.mark.parametrize("tau", [0.0, 0.5])
def test_district_dispersion_recovers_the_offset_variance(tau: float) -> None:
    rng = np.random.default_rng(7)
    n_blocks, per_block = 60, 400
    block = np.repeat(np.arange(n_blocks), per_block)
    logit = rng.normal(-1.5, 1.0, block.size)
    offset = rng.normal(0, tau, n_blocks)[block]
    damaged = rng.random(block.size) < 1 / (1 + np.exp(-(logit + offset)))
    p = 1 / (1 + np.exp(-logit))  # the model without the offsets
    tau2, used = district_dispersion(p, damaged, block)
    assert used == n_blocks
    # delta method: a logit offset of variance tau^2 moves counts by about tau^2 V^2
    assert tau2 == pytest.approx(tau**2, abs=0.06)


def test_dispersion_widens_and_student_t_widens_further() -> None:
    p = np.full(300, 0.2)
    district = np.zeros(300, np.int64)
    plain = count_intervals(district, 1, p=p, method="x", assumptions="")
    spread = count_intervals(district, 1, p=p, tau2=0.2, method="x", assumptions="")
    few = count_intervals(district, 1, p=p, tau2=0.2, tau2_blocks=4, method="x",
                          assumptions="")
    widths = [int(c.high[0] - c.low[0]) for c in (plain, spread, few)]
    assert widths[0] < widths[1] < widths[2]
