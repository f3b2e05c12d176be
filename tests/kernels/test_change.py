"""Change kernels against their NumPy references, the fast log's accuracy, and input checks.

Tolerances (kernel output is float32, references are float64 rounded once):
- fast log, float32: |error| <= 1e-6 dB + half an ulp of the float32 result, which is < 1e-5 dB
  for |dB| < 256; float64: relative 1e-13.
- to_db: 1e-6 dB + 1 ulp of the float32 result (the fast-log bound plus the output rounding);
  log_ratio: twice that (the quotient's rounding or a second mantissa log).
- normalized_difference: relative 4e-7 (float32 arithmetic: three roundings, plus the
  reference's); nd_change: 4e-7 * (|ND_pre| + |ND_post|) + 1 ulp of the result.
- welch_t t and dof: relative 1e-5, absolute 1e-5 (float64 shifted sums vs two-pass nanvar;
  the difference is float64 rounding, then both are rounded to float32).
- cva_magnitude: relative 1e-6 (float64 sums, one float32 rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba import njit

from ruinmap.errors import InputError
from ruinmap.kernels import fastlog
from ruinmap.kernels.cva import cva_magnitude, cva_magnitude_reference
from ruinmap.kernels.indices import (
    log_ratio,
    log_ratio_reference,
    nd_change,
    nd_change_reference,
    normalized_difference,
    normalized_difference_reference,
    to_db,
    to_db_reference,
)
from ruinmap.kernels.ttest import welch_t, welch_t_reference

DTYPES = [np.float32, np.float64]
SHAPES = [(0, 0), (0, 5), (5, 0), (1, 1), (1, 7), (7, 1), (13, 17)]
SETTINGS = settings(max_examples=60, deadline=None)
# Values a satellite never gives but a kernel must survive: tiny, huge, zero, negative.
SPECIAL = [
    float(np.float32(v)) for v in (0.0, -1.0, 1e-30, 1e30, 1e-38, 3e38, np.inf, -np.inf, np.nan)
]


# --- helpers ---------------------------------------------------------------------------------


def floats32(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats representable in float32 between lo and hi (rounded to float32 first)."""
    return st.floats(float(np.float32(lo)), float(np.float32(hi)), width=32)


def db_tolerance(ref: np.ndarray) -> np.ndarray:
    """1e-6 dB plus half an ulp of the float32 result (the fast log's bound), plus the
    rounding of the float32 output itself."""
    ref32 = np.abs(ref).astype(np.float32)
    return 1e-6 + np.spacing(ref32).astype(np.float64)


def assert_same_nan(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def assert_db_close(got: np.ndarray, want64: np.ndarray) -> None:
    """`got` (float32) against an unrounded float64 reference, with `db_tolerance`."""
    assert got.dtype == np.float32
    assert got.shape == want64.shape
    assert_same_nan(got, want64)
    finite = np.isfinite(want64)
    np.testing.assert_array_equal(
        got[~finite & ~np.isnan(want64)], want64[~finite & ~np.isnan(want64)]
    )
    err = np.abs(got[finite].astype(np.float64) - want64[finite])
    assert np.all(err <= db_tolerance(want64[finite])), err.max()


def images(dtype: type, shape: tuple[int, int] | None = None) -> st.SearchStrategy[np.ndarray]:
    """2-D float images mixing ordinary backscatter, magnitudes 1e-30..1e30 and specials."""
    elements = st.one_of(
        floats32(1e-4, 10.0),
        floats32(1e-30, 1e30),
        st.sampled_from(SPECIAL),
    )
    shape_strategy = (
        st.just(shape)
        if shape
        else hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=9)
    )
    return hnp.arrays(dtype, shape_strategy, elements=elements)


def variants(x: np.ndarray) -> dict[str, np.ndarray]:
    """The same values in other memory layouts: transposed twice, a strided and a window view."""
    big = np.full((x.shape[0] * 2 + 1, x.shape[1] * 3 + 2), 7.0, x.dtype)
    big[1::2, 2::3][: x.shape[0], : x.shape[1]] = x
    window = np.full((x.shape[0], x.shape[1] + 5), 7.0, x.dtype)
    window[:, 3 : 3 + x.shape[1]] = x
    return {
        "c": x,
        "fortran": np.asfortranarray(x),
        "step": big[1::2, 2::3][: x.shape[0], : x.shape[1]],
        "window": window[:, 3 : 3 + x.shape[1]],
    }


# --- fast log --------------------------------------------------------------------------------


@njit(cache=True)
def _apply_db(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.size):
        out[i] = fastlog.fast_db(x[i])


@njit(cache=True)
def _apply_log10(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.size):
        out[i] = fastlog.fast_log10(x[i])


@njit(cache=True)
def _apply_ln_log2_log10_f32(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.size):
        out[0, i] = fastlog.ln_f32(x[i])
        out[1, i] = fastlog.log2_f32(x[i])
        out[2, i] = fastlog.log10_f32(x[i])


@njit(cache=True)
def _apply_ln_log2_log10_f64(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.size):
        out[0, i] = fastlog.ln_f64(x[i])
        out[1, i] = fastlog.log2_f64(x[i])
        out[2, i] = fastlog.log10_f64(x[i])


def _all_positive_float32(n: int) -> np.ndarray:
    """Subnormal to largest float32, sampled uniformly in bit pattern plus the edges."""
    rng = np.random.default_rng(1)
    bits = rng.integers(1, 0x7F800000, n, dtype=np.int64).astype(np.uint32)
    edges = np.array(
        [
            1e-45,
            1.1754942e-38,
            1.1754944e-38,
            0.70710677,
            0.7071068,
            1.0,
            1.4142135,
            1.4142137,
            2.0,
            3.4028235e38,
        ],
        np.float32,
    )
    return np.concatenate([bits.view(np.float32), edges])


def test_fast_db_float32_within_bound_from_subnormal_to_max() -> None:
    x = _all_positive_float32(400_000)
    got = np.empty_like(x)
    _apply_db(x, got)
    want = 10.0 * np.log10(x.astype(np.float64))
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= 1e-6 + 0.5 * np.spacing(np.abs(want).astype(np.float32))), err.max()
    assert err[np.abs(want) < 256].max() < 1e-5


def test_fast_db_float32_near_one_is_accurate_to_1e6_db() -> None:
    x = np.linspace(0.5, 2.0, 100_001, dtype=np.float32)
    got = np.empty_like(x)
    _apply_db(x, got)
    np.testing.assert_allclose(got, 10.0 * np.log10(x.astype(np.float64)), rtol=0, atol=1e-6)


def test_fast_db_float64_relative_error_below_1e13_over_whole_range() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(1, 0x7FF0000000000000, 200_000, dtype=np.int64).view(np.float64)
    x = np.concatenate([x, [5e-324, 2.2250738585072014e-308, 1.0, 1.7976931348623157e308]])
    got = np.empty_like(x)
    _apply_db(x, got)
    want = 10.0 * np.log10(x)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_ln_log2_log10_agree_with_numpy(dtype: type) -> None:
    x = np.geomspace(1e-37, 1e37, 20_001).astype(dtype)
    got = np.empty((3, x.size), dtype)
    apply = _apply_ln_log2_log10_f32 if dtype == np.float32 else _apply_ln_log2_log10_f64
    apply(x, got)
    x64 = x.astype(np.float64)
    atol = 1e-6 if dtype == np.float32 else 1e-13
    for row, fn in zip(got, (np.log, np.log2, np.log10), strict=True):
        want = fn(x64)
        # float32: the bound of the dB case scaled to each base, plus the result's own rounding.
        np.testing.assert_allclose(row, want, rtol=2 * np.finfo(dtype).eps, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_log10_dispatches_on_dtype(dtype: type) -> None:
    x = np.array([1e-3, 0.5, 1.0, 7.0, 1e12], dtype)
    got = np.empty_like(x)
    _apply_log10(x, got)
    np.testing.assert_allclose(got, np.log10(x.astype(np.float64)), rtol=0, atol=2e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_db_domain_zero_negative_nan_give_nan_and_inf_gives_inf(dtype: type) -> None:
    x = np.array([0.0, -0.0, -1.0, -np.inf, np.nan, np.inf], dtype)
    got = np.empty_like(x)
    _apply_db(x, got)
    assert np.all(np.isnan(got[:5]))
    assert got[5] == np.inf


# --- to_db -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_to_db_matches_reference(dtype: type, data: st.DataObject) -> None:
    x = data.draw(images(dtype))
    assert_db_close(to_db(x), 10.0 * np.log10(np.where(x > 0, x, np.nan).astype(np.float64)))
    np.testing.assert_array_equal(np.isnan(to_db(x)), np.isnan(to_db_reference(x)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_to_db_any_shape_returns_float32_of_same_shape(shape: tuple[int, int], dtype: type) -> None:
    x = np.full(shape, 0.1, dtype)
    got = to_db(x)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, -10.0, atol=1e-6)


@pytest.mark.parametrize("layout", ["c", "fortran", "step", "window"])
def test_to_db_non_contiguous_equals_contiguous(layout: str) -> None:
    x = np.random.default_rng(3).gamma(4.0, 0.025, (23, 37)).astype(np.float32)
    x[::5, ::3] = np.nan
    np.testing.assert_array_equal(to_db(variants(x)[layout]), to_db(x))


def test_to_db_non_positive_nan_give_nan_inf_gives_inf() -> None:
    got = to_db(np.array([[0.0, -0.5, np.nan, np.inf, 1.0]], np.float32))
    assert np.isnan(got[0, :3]).all()
    assert got[0, 3] == np.inf and got[0, 4] == 0.0


# --- log_ratio -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_log_ratio_matches_reference(dtype: type, data: st.DataObject) -> None:
    pre = data.draw(images(dtype))
    post = data.draw(images(dtype, pre.shape))
    want = log_ratio_reference(pre, post)
    got = log_ratio(pre, post)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (pre > 0) & (post > 0)
        want64 = 10.0 * (
            np.log10(np.where(ok, post, np.nan).astype(np.float64))
            - np.log10(np.where(ok, pre, np.nan).astype(np.float64))
        )
    assert_same_nan(got, want)
    finite = np.isfinite(want64)
    err = np.abs(got[finite].astype(np.float64) - want64[finite])
    # Two logs' worth of the fast-log bound.
    assert np.all(err <= 2 * db_tolerance(want64[finite])), err.max()
    infinite = ~finite & ~np.isnan(want64)
    np.testing.assert_array_equal(got[infinite], want64[infinite])


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_ratio_extremes_do_not_overflow(dtype: type) -> None:
    pre = np.array([[1e-30, 1e30, 0.2, 1.0, np.inf, np.inf]], dtype)
    post = np.array([[1e30, 1e-30, 0.1, np.inf, 1.0, np.inf]], dtype)
    got = log_ratio(pre, post)
    np.testing.assert_allclose(got[0, :3], [600.0, -600.0, -3.0103], atol=1e-3)
    assert got[0, 3] == np.inf and got[0, 4] == -np.inf and np.isnan(got[0, 5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_ratio_pixel_values_do_not_depend_on_row_mates(dtype: type) -> None:
    # A row with an overflowing quotient takes a second pass; its other pixels must not change.
    pre = np.array([[0.3, 0.07, 1e-30, 0.2]], dtype)
    post = np.array([[0.1, 0.11, 1e30, 0.4]], dtype)
    together = log_ratio(pre, post)
    alone = [log_ratio(pre[:, [j]], post[:, [j]])[0, 0] for j in range(4)]
    np.testing.assert_array_equal(together[0], alone)


@pytest.mark.parametrize("layout", ["fortran", "step", "window"])
def test_log_ratio_non_contiguous_equals_contiguous(layout: str) -> None:
    rng = np.random.default_rng(4)
    pre, post = rng.gamma(4.0, 0.025, (2, 19, 31)).astype(np.float32)
    np.testing.assert_array_equal(
        log_ratio(variants(pre)[layout], variants(post)[layout]), log_ratio(pre, post)
    )


def test_log_ratio_mixed_dtypes_use_float64() -> None:
    pre = np.full((2, 2), 0.1, np.float32)
    post = np.full((2, 2), 0.2, np.float64)
    np.testing.assert_allclose(log_ratio(pre, post), log_ratio_reference(pre, post), atol=1e-5)


# --- normalized differences ------------------------------------------------------------------


def reflectances(
    dtype: type, shape: tuple[int, int] | None = None
) -> st.SearchStrategy[np.ndarray]:
    elements = st.one_of(
        floats32(0.0, 1.0),
        floats32(-1e30, 1e30),
        st.sampled_from([float(np.float32(v)) for v in (0.0, 1e-30, -1e-30, 1e30, np.nan)]),
    )
    shape_strategy = (
        st.just(shape)
        if shape
        else hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=9)
    )
    return hnp.arrays(dtype, shape_strategy, elements=elements)


def nd64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(a + b == 0, np.nan, (a - b) / (a + b))


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_normalized_difference_matches_reference(dtype: type, data: st.DataObject) -> None:
    a = data.draw(reflectances(dtype))
    b = data.draw(reflectances(dtype, a.shape))
    got = normalized_difference(a, b)
    want = normalized_difference_reference(a, b)
    assert got.dtype == np.float32
    assert_same_nan(got, want)
    # atol: one float32 subnormal step, where relative error is meaningless.
    np.testing.assert_allclose(got, want, rtol=4e-7, atol=1.5e-45)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_nd_change_matches_reference(dtype: type, data: st.DataObject) -> None:
    pre_a = data.draw(reflectances(dtype))
    pre_b, post_a, post_b = (data.draw(reflectances(dtype, pre_a.shape)) for _ in range(3))
    got = nd_change(pre_a, pre_b, post_a, post_b)
    want = nd_change_reference(pre_a, pre_b, post_a, post_b)
    assert_same_nan(got, want)
    ok = ~np.isnan(want)
    scale = np.abs(nd64(pre_a, pre_b)) + np.abs(nd64(post_a, post_b))
    tol = 4e-7 * scale[ok] + np.spacing(np.abs(want[ok]))
    assert np.all(np.abs(got[ok].astype(np.float64) - want[ok]) <= tol)


def test_normalized_difference_zero_sum_gives_nan() -> None:
    a = np.array([[0.0, 0.3, -0.2, 0.5]], np.float32)
    b = np.array([[0.0, -0.3, 0.2, 0.5]], np.float32)
    got = normalized_difference(a, b)
    assert np.isnan(got[0, :3]).all() and got[0, 3] == 0.0


def test_nd_change_nan_on_either_date_gives_nan() -> None:
    one = np.ones((1, 3), np.float32)
    hole = np.array([[np.nan, 1.0, 1.0]], np.float32)
    zero = np.array([[1.0, -1.0, 1.0]], np.float32)
    got = nd_change(hole, one, one, zero)
    assert np.isnan(got[0, :2]).all() and got[0, 2] == 0.0


@pytest.mark.parametrize("layout", ["fortran", "step", "window"])
def test_nd_change_non_contiguous_equals_contiguous(layout: str) -> None:
    arrays = np.random.default_rng(5).uniform(0.0, 0.6, (4, 21, 33)).astype(np.float32)
    views = [variants(a)[layout] for a in arrays]
    np.testing.assert_array_equal(nd_change(*views), nd_change(*arrays))


def test_nd_change_is_post_minus_pre_index() -> None:
    nir_pre, red_pre = np.full((1, 1), 0.5, np.float32), np.full((1, 1), 0.1, np.float32)
    nir_post, red_post = np.full((1, 1), 0.2, np.float32), np.full((1, 1), 0.2, np.float32)
    # NDVI falls from 0.4/0.6 to 0: vegetation lost.
    np.testing.assert_allclose(nd_change(nir_pre, red_pre, nir_post, red_post), -2 / 3, rtol=1e-6)


# --- welch_t ---------------------------------------------------------------------------------


def stack_pair(
    rng: np.random.Generator,
    n_pre: int,
    n_post: int,
    shape: tuple[int, int],
    dtype: type,
    nan_fraction: float = 0.3,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    pre = (rng.normal(-12.0, 1.5, (n_pre, *shape)) * scale).astype(dtype)
    post = (rng.normal(-13.0, 2.0, (n_post, *shape)) * scale).astype(dtype)
    pre[rng.random(pre.shape) < nan_fraction] = np.nan
    post[rng.random(post.shape) < nan_fraction] = np.nan
    return pre, post


def assert_t_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32
    assert_same_nan(got, want)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(
    n_pre=st.integers(0, 9),
    n_post=st.integers(0, 9),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=8),
    nan_fraction=st.sampled_from([0.0, 0.2, 0.6, 1.0]),
    scale=st.sampled_from([1.0, 1e-30, 1e30]),
    seed=st.integers(0, 2**32 - 1),
)
def test_welch_t_matches_reference(
    dtype: type,
    n_pre: int,
    n_post: int,
    shape: tuple[int, int],
    nan_fraction: float,
    scale: float,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    pre, post = stack_pair(rng, n_pre, n_post, shape, dtype, nan_fraction, scale)
    t, dof = welch_t(pre, post, return_dof=True)
    t_ref, dof_ref = welch_t_reference(pre, post, return_dof=True)
    assert t.shape == dof.shape == shape
    assert_t_close(t, t_ref)
    assert_t_close(dof, dof_ref)


@SETTINGS
@given(data=st.data())
def test_welch_t_matches_reference_on_arbitrary_values(data: st.DataObject) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=4))
    elements = st.one_of(
        floats32(-1e6, 1e6),
        st.sampled_from([float(np.float32(v)) for v in (np.nan, 0.0, 1.0, 1e-30, -1e30)]),
    )
    pre = data.draw(
        hnp.arrays(np.float32, (data.draw(st.integers(0, 6)), *shape), elements=elements)
    )
    post = data.draw(
        hnp.arrays(np.float32, (data.draw(st.integers(0, 6)), *shape), elements=elements)
    )
    assert_t_close(welch_t(pre, post), welch_t_reference(pre, post))


def test_welch_t_dof_and_t_match_scipy_with_uneven_nan() -> None:
    rng = np.random.default_rng(6)
    pre, post = stack_pair(rng, 9, 7, (3, 4), np.float64, nan_fraction=0.25)
    pre[:, 0, 0] = [np.nan] * 6 + [-11.0, -12.5, -14.0]  # 3 valid pre observations
    post[:, 0, 1] = [np.nan] * 4 + [-15.0, -13.0, -13.5]  # 3 valid post observations
    t, dof = welch_t(pre, post, return_dof=True)
    for y, x in [(0, 0), (0, 1), (1, 2), (2, 3)]:
        res = scipy.stats.ttest_ind(post[:, y, x], pre[:, y, x], equal_var=False, nan_policy="omit")
        np.testing.assert_allclose(t[y, x], res.statistic, rtol=1e-5)
        np.testing.assert_allclose(dof[y, x], res.df, rtol=1e-5)


def test_welch_t_positive_when_post_brighter() -> None:
    pre = np.array([1.0, 2.0, 3.0], np.float32)[:, None, None]
    post = np.array([4.0, 5.0, 6.0], np.float32)[:, None, None]
    # Means 2 and 5, variances 1 and 1: t = 3 / sqrt(2/3).
    np.testing.assert_allclose(welch_t(pre, post)[0, 0], 3 / np.sqrt(2 / 3), rtol=1e-6)


def test_welch_t_both_sides_constant_gives_nan_one_side_constant_is_finite() -> None:
    pre = np.full((5, 1, 2), 0.1, np.float32)
    post = np.full((4, 1, 2), 0.3, np.float32)
    post[:, 0, 1] = [0.3, 0.31, 0.29, 0.3]
    t = welch_t(pre, post)
    assert np.isnan(t[0, 0])
    assert np.isfinite(t[0, 1]) and t[0, 1] > 0
    assert_t_close(t, welch_t_reference(pre, post))


def test_welch_t_too_few_valid_observations_give_nan() -> None:
    pre = np.array([[1.0, 2.0, np.nan], [1.0, np.nan, np.nan]], np.float32).T[:, :, None]
    post = np.array([[3.0, 5.0, 4.0], [3.0, 5.0, 4.0]], np.float32).T[:, :, None]
    t = welch_t(pre, post)
    assert np.isfinite(t[0, 0]) and np.isnan(t[1, 0])


@pytest.mark.parametrize(
    ("min_pre", "min_post", "defined"), [(2, 2, True), (3, 2, False), (2, 4, False)]
)
def test_welch_t_min_observations_apply_per_side(
    min_pre: int, min_post: int, defined: bool
) -> None:
    pre = np.array([1.0, 2.0, np.nan], np.float32)[:, None, None]
    post = np.array([3.0, 5.0, 4.0], np.float32)[:, None, None]
    t = welch_t(pre, post, min_pre=min_pre, min_post=min_post)
    assert np.isfinite(t[0, 0]) == defined
    ref = welch_t_reference(pre, post, min_pre=min_pre, min_post=min_post)
    assert_t_close(t, ref)


@pytest.mark.parametrize(
    "layout", ["row_strip", "window", "step", "transposed", "fortran", "reversed_time"]
)
def test_welch_t_non_contiguous_equals_contiguous(layout: str) -> None:
    rng = np.random.default_rng(7)
    pre, post = stack_pair(rng, 8, 6, (30, 24), np.float32)

    def view(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(view in the given layout, the C-contiguous values it holds)."""
        if layout == "row_strip":
            v = s[:, 5:17]
        elif layout == "window":
            v = s[:, 5:17, 3:20]
        elif layout == "step":
            v = s[:, ::2, ::3]
        elif layout == "transposed":
            v = s.transpose(0, 2, 1)
        elif layout == "fortran":
            v = np.asfortranarray(s)
        else:
            v = s[::-1]
        return v, np.ascontiguousarray(v)

    (pre_v, pre_c), (post_v, post_c) = view(pre), view(post)
    t_v, dof_v = welch_t(pre_v, post_v, return_dof=True)
    t_c, dof_c = welch_t(pre_c, post_c, return_dof=True)
    np.testing.assert_array_equal(t_v, t_c)
    np.testing.assert_array_equal(dof_v, dof_c)


def test_welch_t_wide_rows_match_reference() -> None:
    # Rows longer than the unrolled loop's buffers' padding and with odd stack lengths.
    rng = np.random.default_rng(8)
    pre, post = stack_pair(rng, 7, 5, (2, 1031), np.float32)
    assert_t_close(welch_t(pre, post), welch_t_reference(pre, post))


def test_welch_t_returns_t_only_by_default() -> None:
    pre, post = stack_pair(np.random.default_rng(9), 4, 4, (2, 3), np.float32)
    assert isinstance(welch_t(pre, post), np.ndarray)
    t, dof = welch_t(pre, post, return_dof=True)
    assert t.dtype == dof.dtype == np.float32


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True, "2"])
def test_welch_t_min_observations_below_two_or_not_int_raise(bad: object) -> None:
    pre = np.zeros((3, 2, 2), np.float32)
    with pytest.raises(InputError, match="min_pre"):
        welch_t(pre, pre, min_pre=bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="min_post"):
        welch_t(pre, pre, min_post=bad)  # type: ignore[arg-type]


# --- cva_magnitude ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(
    n_bands=st.integers(0, 5),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=8),
    use_scale=st.booleans(),
    magnitude=st.sampled_from([1.0, 1e-30, 1e30]),
    seed=st.integers(0, 2**32 - 1),
)
def test_cva_magnitude_matches_reference(
    dtype: type,
    n_bands: int,
    shape: tuple[int, int],
    use_scale: bool,
    magnitude: float,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    pre = (rng.uniform(0, 1, (n_bands, *shape)) * magnitude).astype(dtype)
    post = (rng.uniform(0, 1, (n_bands, *shape)) * magnitude).astype(dtype)
    pre[rng.random(pre.shape) < 0.1] = np.nan
    scale = rng.uniform(0.1, 3.0, n_bands) if use_scale else None
    got = cva_magnitude(pre, post, scale)
    want = cva_magnitude_reference(pre, post, scale)
    assert got.dtype == np.float32 and got.shape == shape
    assert_same_nan(got, want)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_cva_magnitude_scale_divides_each_band() -> None:
    pre = np.zeros((2, 1, 1), np.float32)
    post = np.array([3.0, 8.0], np.float32)[:, None, None]
    np.testing.assert_allclose(cva_magnitude(pre, post), 73**0.5, rtol=1e-6)
    np.testing.assert_allclose(cva_magnitude(pre, post, np.array([1.0, 2.0])), 5.0, rtol=1e-6)


@pytest.mark.parametrize("layout", ["row_strip", "transposed", "step"])
def test_cva_magnitude_non_contiguous_equals_contiguous(layout: str) -> None:
    rng = np.random.default_rng(10)
    pre, post = rng.uniform(0, 1, (2, 3, 20, 16)).astype(np.float32)
    cut = {
        "row_strip": lambda s: s[:, 4:15],
        "transposed": lambda s: s.transpose(0, 2, 1),
        "step": lambda s: s[:, ::3, ::2],
    }[layout]
    np.testing.assert_array_equal(
        cva_magnitude(cut(pre), cut(post)),
        cva_magnitude(np.ascontiguousarray(cut(pre)), np.ascontiguousarray(cut(post))),
    )


@pytest.mark.parametrize(
    "scale",
    [
        [1.0],
        [1.0, 2.0, 3.0],
        [1.0, 0.0],
        [1.0, -1.0],
        [1.0, np.nan],
        [1.0, np.inf],
        [[1.0, 2.0]],
        ["a", "b"],
    ],
)
def test_cva_magnitude_bad_scale_raises(scale: object) -> None:
    pre = np.zeros((2, 3, 3), np.float32)
    with pytest.raises(InputError, match="scale"):
        cva_magnitude(pre, pre, scale)  # type: ignore[arg-type]


# --- input checks shared by every kernel -----------------------------------------------------

IMAGE = np.zeros((4, 5), np.float32)
STACK = np.zeros((3, 4, 5), np.float32)

IMAGE_KERNELS = {
    "to_db": lambda *a: to_db(*a[:1]),
    "log_ratio": lambda *a: log_ratio(*a[:2]),
    "normalized_difference": lambda *a: normalized_difference(*a[:2]),
    "nd_change": lambda *a: nd_change(*a[:4]),
}
STACK_KERNELS = {
    "welch_t": lambda *a: welch_t(*a[:2]),
    "cva_magnitude": lambda *a: cva_magnitude(*a[:2]),
}


@pytest.mark.parametrize("name", IMAGE_KERNELS)
@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.bool_, np.complex64])
def test_image_kernels_refuse_non_float_dtypes(name: str, dtype: type) -> None:
    bad = IMAGE.astype(dtype)
    with pytest.raises(InputError, match="dtype"):
        IMAGE_KERNELS[name](bad, bad, bad, bad)


@pytest.mark.parametrize("name", IMAGE_KERNELS)
@pytest.mark.parametrize("bad", [np.zeros(5, np.float32), STACK])
def test_image_kernels_refuse_wrong_ndim(name: str, bad: np.ndarray) -> None:
    with pytest.raises(InputError, match="2-D"):
        IMAGE_KERNELS[name](bad, bad, bad, bad)


@pytest.mark.parametrize("name", [n for n in IMAGE_KERNELS if n != "to_db"])
def test_image_kernels_refuse_mismatched_shapes(name: str) -> None:
    with pytest.raises(InputError, match="shapes differ"):
        IMAGE_KERNELS[name](IMAGE, IMAGE.T, IMAGE, IMAGE)


@pytest.mark.parametrize("name", STACK_KERNELS)
@pytest.mark.parametrize("bad", [IMAGE, STACK[None], STACK.astype(np.int32)])
def test_stack_kernels_refuse_wrong_ndim_or_dtype(name: str, bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        STACK_KERNELS[name](STACK, bad)


def test_welch_t_refuses_different_image_shapes_but_allows_different_lengths() -> None:
    with pytest.raises(InputError, match="image shapes"):
        welch_t(STACK, np.zeros((3, 5, 4), np.float32))
    assert welch_t(STACK, np.zeros((6, 4, 5), np.float32)).shape == (4, 5)


def test_cva_magnitude_refuses_different_band_counts() -> None:
    with pytest.raises(InputError, match="shapes differ"):
        cva_magnitude(STACK, np.zeros((2, 4, 5), np.float32))


# --- out= ------------------------------------------------------------------------------------

OUT_KERNELS = {
    "to_db": lambda a, out=None: to_db(a[0], out=out),
    "log_ratio": lambda a, out=None: log_ratio(a[0], a[1], out=out),
    "normalized_difference": lambda a, out=None: normalized_difference(a[0], a[1], out=out),
    "nd_change": lambda a, out=None: nd_change(*a[:4], out=out),
    "cva_magnitude": lambda a, out=None: cva_magnitude(a[:2], a[2:4], out=out),
}


@pytest.mark.parametrize("name", OUT_KERNELS)
def test_out_is_written_and_returned(name: str) -> None:
    arrays = np.random.default_rng(11).uniform(0.01, 1.0, (4, 6, 9)).astype(np.float32)
    big = np.full((10, 20), -1.0, np.float32)
    window = big[2:8, 5:14]  # a window: not C-contiguous, but unit stride along x
    got = OUT_KERNELS[name](arrays, out=window)
    assert got is window
    np.testing.assert_array_equal(window, OUT_KERNELS[name](arrays))
    assert (big[:2] == -1).all() and (big[:, :5] == -1).all()


@pytest.mark.parametrize("name", OUT_KERNELS)
@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((6, 9), np.float64),
        np.zeros((6, 8), np.float32),
        np.zeros((9, 6), np.float32).T,
        np.broadcast_to(np.zeros(9, np.float32), (6, 9)),
        [[0.0] * 9] * 6,
    ],
    ids=["float64", "wrong_shape", "transposed", "read_only", "list"],
)
def test_bad_out_raises(name: str, bad: object) -> None:
    arrays = np.ones((4, 6, 9), np.float32)
    with pytest.raises(InputError, match="out"):
        OUT_KERNELS[name](arrays, out=bad)
