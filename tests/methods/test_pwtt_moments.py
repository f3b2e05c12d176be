"""`methods.pwtt_moments`: pwtt's statistic from moments, continued over appended post dates,
is bitwise `pwtt_statistic` of the whole series, for every t-test option and several orbits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from ruinmap.cluster.methods.base import ScoreContext
from ruinmap.cluster.methods.pwtt import PwttParams, pwtt_statistic
from ruinmap.cluster.methods.pwtt_moments import (
    advance_post,
    blank_outside,
    moments_statistic,
    pwtt_moments,
)

PRE_ORBITS = (1, 2, 1, 2, 1, 2, 1)
POST_ORBITS = (2, 1, 2, 1, 1)


def _stacks(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pre = rng.gamma(5.0, 0.02, (len(PRE_ORBITS), 2, 21, 17)).astype(np.float32)
    post = rng.gamma(5.0, 0.03, (len(POST_ORBITS), 2, 21, 17)).astype(np.float32)
    for stack in (pre, post):
        stack[rng.random(stack.shape) < 0.1] = np.nan
        stack[rng.random(stack.shape) < 0.02] = 0.0  # zero power is data
    return pre, post


def _context(post_orbits: tuple[int, ...] = POST_ORBITS) -> ScoreContext:
    return ScoreContext(bands=("VV", "VH"), pre_orbits=PRE_ORBITS, post_orbits=post_orbits,
                        pixel_size_m=10.0)


@pytest.mark.parametrize("options", [
    {},
    {"ttest": "pooled", "variance": "sample"},
    {"orbit_combination": "max"},
    {"lee_mode": "composite", "min_pre": 2},
    {"polarisations": ["VH"], "lee_size": 5},
])
@pytest.mark.parametrize("held", [2, 4, 5])  # every prefix holds both orbits
def test_appended_moments_give_the_whole_series_statistic(options: dict[str, Any],
                                                          held: int) -> None:
    pre, post = _stacks(held)
    params = PwttParams(dating=True, **options)
    want = pwtt_statistic(pre, post, params, _context())
    moments = pwtt_moments(pre, post[:held], params, _context(POST_ORBITS[:held]))
    advance_post(moments, post[held:], POST_ORBITS[held:], params, _context())
    got = moments_statistic(moments, params)
    for name in ("statistic", "p_value", "n_pre", "n_post"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert np.isfinite(got.statistic).mean() > 0.5  # not a comparison of NaN images


def test_blanked_pixels_have_no_statistic() -> None:
    pre, post = _stacks(1)
    params = PwttParams(dating=True)
    moments = pwtt_moments(pre, post, params, _context())
    full = moments_statistic(moments, params)
    blank_outside(moments, slice(3, 10), slice(2, 8))
    got = moments_statistic(moments, params)
    inside = np.zeros(got.statistic.shape, bool)
    inside[3:10, 2:8] = True
    assert np.isnan(got.statistic[~inside]).all() and (got.n_post[~inside] == 0).all()
    np.testing.assert_array_equal(got.statistic[inside], full.statistic[inside])


def test_a_date_of_an_orbit_the_moments_do_not_keep_is_refused() -> None:
    pre, post = _stacks(2)
    params = PwttParams(dating=True)
    moments = pwtt_moments(pre, post, params, _context())
    with pytest.raises(ValueError, match=r"orbits \[3\]"):
        advance_post(moments, post[:1], (3,), params, _context())


def test_which_jobs_keep_their_moments() -> None:
    assert PwttParams(dating=True).keeps_moments
    assert not PwttParams().keeps_moments
    assert PwttParams(incremental=True).keeps_moments
    assert not PwttParams(dating=True, incremental=False).keeps_moments
    with pytest.raises(ValidationError, match="incremental = true needs statistic = 't'"):
        PwttParams(incremental=True, statistic="z")
