"""The PWTT statistics kernels against their NumPy references: the two-sample t (Welch and
pooled, both variances), the normal p-value, Stouffer's Z, the latest-image z and the
Mahalanobis distance.

Tolerances: t and dof relative 1e-5 + absolute 1e-5 (float64 sums, one float32 rounding);
p-value absolute 2e-7 (A&S 26.2.17's 7.5e-8 doubled, plus float32 rounding); the others
relative 1e-5 (float64 throughout, one float32 rounding); Mahalanobis relative 1e-4 (a
solve against an explicit inverse of a possibly ill-conditioned 2x2).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ruinmap.errors import InputError
from ruinmap.kernels.combine import (
    latest_z,
    latest_z_reference,
    mahalanobis_distance,
    mahalanobis_distance_reference,
    normal_two_sided_p,
    normal_two_sided_p_reference,
    stouffer_z,
    stouffer_z_reference,
)
from ruinmap.kernels.ttest import (
    pooled_t,
    pooled_t_reference,
    two_sample_t,
    two_sample_t_reference,
    welch_t,
)

SETTINGS = settings(max_examples=25, deadline=None)


def close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


@st.composite
def stacks(draw: st.DrawFn, bands: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A pre and a post stack (time, [band,] y, x) of log-backscatter-like values with NaN."""
    ny, nx = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    n_pre, n_post = draw(st.integers(1, 7)), draw(st.integers(1, 5))
    extra = () if bands is None else (bands,)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    values = st.floats(-6.0, 2.0, width=32)

    def one(n: int) -> np.ndarray:
        arr = draw(hnp.arrays(dtype, (n, *extra, ny, nx), elements=values))
        holes = draw(hnp.arrays(np.bool_, arr.shape, elements=st.booleans()))
        return np.where(holes & draw(st.booleans()), np.nan, arr).astype(dtype)

    return one(n_pre), one(n_post)


@SETTINGS
@given(stacks(), st.sampled_from(["welch", "pooled"]), st.sampled_from([0, 1]),
       st.integers(2, 4), st.integers(2, 3))
def test_two_sample_t_matches_reference(sides: tuple[np.ndarray, np.ndarray], test: str,
                                        ddof: int, min_pre: int, min_post: int) -> None:
    pre, post = sides
    got = two_sample_t(pre, post, test=test, ddof=ddof, min_pre=min_pre, min_post=min_post)
    want = two_sample_t_reference(pre, post, test=test, ddof=ddof, min_pre=min_pre,
                                  min_post=min_post)
    # a near-zero standard error makes t ill-conditioned: compare where it is not
    close(got.t, want.t, rtol=1e-4, atol=1e-4)
    close(got.dof, want.dof, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got.n_pre, want.n_pre)
    np.testing.assert_array_equal(got.n_post, want.n_post)


@SETTINGS
@given(stacks(), st.sampled_from([0, 1]))
def test_pooled_t_matches_pixel_loop_reference(sides: tuple[np.ndarray, np.ndarray],
                                               ddof: int) -> None:
    pre, post = sides
    close(pooled_t(pre, post, ddof=ddof), pooled_t_reference(pre, post, ddof=ddof),
          rtol=1e-4, atol=1e-4)


def test_pooled_t_equals_scipy_equal_variance_t() -> None:
    rng = np.random.default_rng(3)
    pre, post = rng.normal(size=(9, 4, 5)), rng.normal(0.5, 2.0, size=(4, 4, 5))
    want = scipy.stats.ttest_ind(post, pre, axis=0, equal_var=True).statistic
    np.testing.assert_allclose(pooled_t(pre, post), want, rtol=1e-5)
    result = two_sample_t(pre, post, test="pooled")
    np.testing.assert_array_equal(result.dof, np.full((4, 5), 9 + 4 - 2, np.float32))


def test_welch_with_sample_variance_is_welch_t() -> None:
    rng = np.random.default_rng(4)
    pre, post = rng.normal(size=(6, 3, 8)), rng.normal(size=(3, 3, 8))
    np.testing.assert_allclose(two_sample_t(pre, post).t, welch_t(pre, post), rtol=1e-6)


def test_population_variance_scales_t_by_the_sample_size_ratio() -> None:
    # Earth Engine's stdDev (ddof 0): with equal n, var_pop = var (n-1)/n, so t grows by
    # sqrt(n / (n - 1))
    rng = np.random.default_rng(5)
    pre, post = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 3))
    ratio = two_sample_t(pre, post, ddof=0).t / two_sample_t(pre, post, ddof=1).t
    np.testing.assert_allclose(ratio, np.sqrt(4 / 3), rtol=1e-5)


@pytest.mark.parametrize("bad", [{"test": "student"}, {"ddof": 2}, {"min_post": 1}])
def test_two_sample_t_refuses_bad_options(bad: dict[str, object]) -> None:
    with pytest.raises(InputError):
        two_sample_t(np.zeros((3, 1, 1)), np.zeros((3, 1, 1)), **bad)  # type: ignore[arg-type]


@SETTINGS
@given(hnp.arrays(np.float64, st.tuples(st.integers(0, 4), st.integers(0, 6)),
                  elements=st.floats(-40, 40) | st.just(np.nan)))
def test_normal_p_matches_erfc(x: np.ndarray) -> None:
    got = normal_two_sided_p(x)
    want = normal_two_sided_p_reference(x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-7)
    assert (got[~np.isnan(got)] >= 1e-10).all()


def test_normal_p_of_float32_equals_that_of_the_same_values_in_float64() -> None:
    x = np.random.default_rng(3).normal(0, 4, (2, 7, 5)).astype(np.float32)
    x[0, 0, :2] = np.nan
    np.testing.assert_array_equal(normal_two_sided_p(x), normal_two_sided_p(x.astype(np.float64)))


def test_normal_p_is_one_at_zero_and_five_percent_at_1_96() -> None:
    got = normal_two_sided_p(np.array([0.0, 1.959964, -1.959964]))
    np.testing.assert_allclose(got, [1.0, 0.05, 0.05], atol=2e-7)


@SETTINGS
@given(st.integers(1, 4).flatmap(lambda k: st.tuples(
    hnp.arrays(np.float64, (k, 3, 4), elements=st.floats(0, 20) | st.just(np.nan)),
    hnp.arrays(np.float64, (k, 3, 4), elements=st.floats(0.5, 500) | st.just(np.nan)))))
def test_stouffer_z_matches_reference(pair: tuple[np.ndarray, np.ndarray]) -> None:
    stat, dof = pair
    close(stouffer_z(stat, dof), stouffer_z_reference(stat, dof))


def test_stouffer_z_of_equal_tests_grows_with_sqrt_k() -> None:
    stat = np.full((4, 1, 1), 2.0)
    np.testing.assert_allclose(stouffer_z(stat, np.full_like(stat, 10.0)), [[4.0]])
    np.testing.assert_allclose(stouffer_z(stat[:1], stat[:1] * 5), [[2.0]])


@SETTINGS
@given(stacks(), st.sampled_from([0, 1]), st.integers(2, 4))
def test_latest_z_matches_reference(sides: tuple[np.ndarray, np.ndarray], ddof: int,
                                    min_pre: int) -> None:
    pre, post = sides
    close(latest_z(pre, post, ddof=ddof, min_pre=min_pre),
          latest_z_reference(pre, post, ddof=ddof, min_pre=min_pre), rtol=1e-4, atol=1e-4)


def test_latest_z_takes_the_last_valid_post_value() -> None:
    pre = np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)
    post = np.array([10.0, 4.0, np.nan]).reshape(3, 1, 1)
    np.testing.assert_allclose(latest_z(pre, post), [[(4.0 - 2.0) / np.std([1.0, 2, 3])]],
                               rtol=1e-6)


@SETTINGS
@given(stacks(bands=2), st.integers(2, 4), st.integers(2, 3))
def test_mahalanobis_matches_reference(sides: tuple[np.ndarray, np.ndarray], min_pre: int,
                                       min_post: int) -> None:
    pre, post = sides
    got = mahalanobis_distance(pre, post, min_pre=min_pre, min_post=min_post, ridge=1e-3)
    want = mahalanobis_distance_reference(pre, post, min_pre=min_pre, min_post=min_post,
                                          ridge=1e-3)
    close(got[0], want[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


def test_mahalanobis_of_one_band_is_the_squared_pooled_effect_size() -> None:
    rng = np.random.default_rng(6)
    pre, post = rng.normal(size=(8, 1, 2, 3)), rng.normal(1.0, 1.0, size=(5, 1, 2, 3))
    d2, n_pre, n_post = mahalanobis_distance(pre, post, ridge=0.0)
    t = pooled_t(pre[:, 0], post[:, 0])
    # T^2 = n_pre n_post / (n_pre + n_post) D^2: the pooled t squared
    np.testing.assert_allclose(n_pre * n_post / (n_pre + n_post) * d2, t**2, rtol=1e-5)


def test_mahalanobis_effect_does_not_grow_with_post_dates() -> None:
    # the same shift seen in 4 or 40 post dates: t grows like sqrt(n), D2 stays put
    rng = np.random.default_rng(7)
    pre = rng.normal(size=(20, 2, 30, 30))
    few = rng.normal(1.0, 1.0, size=(4, 2, 30, 30))
    many = rng.normal(1.0, 1.0, size=(40, 2, 30, 30))
    d_few = np.median(mahalanobis_distance(pre, few)[0])
    d_many = np.median(mahalanobis_distance(pre, many)[0])
    t_few = np.median(np.abs(pooled_t(pre[:, 0], few[:, 0])))
    t_many = np.median(np.abs(pooled_t(pre[:, 0], many[:, 0])))
    assert t_many > 1.8 * t_few
    assert 0.6 < d_many / d_few < 1.4


def test_mahalanobis_of_collinear_bands_is_nan_not_an_error() -> None:
    pre = np.arange(4.0).reshape(4, 1, 1, 1).repeat(2, axis=1) * 1e10  # VH = VV, huge
    post = pre[:2] + 1e10
    d2, _, _ = mahalanobis_distance(pre, post, ridge=0.0)
    assert np.isnan(d2).all()
