"""`kernels.moments` against its NumPy reference and against `ttest.two_sample_t`.

Folding a series in two parts gives bitwise the moments of folding it whole (what lets a
monitored job keep them), and the t from moments is bitwise `two_sample_t`'s. The moments
match the NumPy reference to float64 summation order (relative 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ruinmap.errors import InputError
from ruinmap.kernels.moments import (
    Moments,
    accumulate_moments,
    accumulate_moments_reference,
    moments_two_sample_t,
    new_moments,
)
from ruinmap.kernels.ttest import two_sample_t, two_sample_t_reference

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def series(draw: st.DrawFn, min_time: int = 0) -> np.ndarray:
    """A (time, y, x) stack of log-backscatter-like values with NaN holes."""
    shape = (draw(st.integers(min_time, 7)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    values = draw(hnp.arrays(dtype, shape, elements=st.floats(-6.0, 2.0, width=32)))
    holes = draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
    return np.where(holes, np.nan, values).astype(dtype)


def folded(stack: np.ndarray, *cuts: int) -> Moments:
    moments = new_moments(stack.shape[1:])
    for part in np.split(stack, list(cuts)):
        accumulate_moments(part, moments)
    return moments


def assert_bitwise(a: Moments, b: Moments) -> None:
    for name, x, y in zip(Moments._fields, a, b, strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)


@SETTINGS
@given(stack=series(), data=st.data())
def test_folding_in_parts_is_bitwise_folding_whole(stack: np.ndarray, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, stack.shape[0]))
    assert_bitwise(folded(stack, cut), folded(stack))


@SETTINGS
@given(stack=series())
def test_moments_match_the_reference(stack: np.ndarray) -> None:
    got = folded(stack)
    want = accumulate_moments_reference(stack, new_moments(stack.shape[1:]))
    np.testing.assert_array_equal(got.shift, want.shift)
    np.testing.assert_array_equal(got.n, want.n)
    np.testing.assert_allclose(got.sum1, want.sum1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.sum2, want.sum2, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(pre=series(min_time=1), data=st.data(), test=st.sampled_from(["welch", "pooled"]),
       ddof=st.sampled_from([0, 1]))
def test_t_from_moments_is_two_sample_t(pre: np.ndarray, data: st.DataObject, test: str,
                                        ddof: int) -> None:
    n_post = data.draw(st.integers(1, 5))
    post = data.draw(hnp.arrays(pre.dtype, (n_post, *pre.shape[1:]),
                                elements=st.floats(-6.0, 2.0, width=32)))
    want = two_sample_t(pre, post, test=test, ddof=ddof, min_pre=2, min_post=2)
    got = moments_two_sample_t(folded(pre), folded(post, n_post // 2), test=test, ddof=ddof,
                               min_pre=2, min_post=2)
    reference = two_sample_t_reference(pre, post, test=test, ddof=ddof)
    for name in ("t", "dof", "n_pre", "n_post"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        np.testing.assert_allclose(getattr(got, name), getattr(reference, name), rtol=1e-4,
                                   atol=1e-4, equal_nan=True, err_msg=name)


def test_a_constant_series_has_zero_spread() -> None:
    moments = folded(np.full((5, 2, 3), -2.7, np.float32), 2)
    assert (moments.n == 5).all() and (moments.sum1 == 0).all() and (moments.sum2 == 0).all()


def test_no_dates_and_all_nan_leave_the_moments_empty() -> None:
    empty = new_moments((2, 2))
    accumulate_moments(np.empty((0, 2, 2), np.float32), empty)
    accumulate_moments(np.full((3, 2, 2), np.nan), empty)
    assert_bitwise(empty, new_moments((2, 2)))


@pytest.mark.parametrize("bad", [
    Moments(np.zeros((2, 2), np.float32), *new_moments((2, 2))[1:]),
    Moments(*new_moments((2, 3))),
])
def test_moments_of_the_wrong_kind_are_refused(bad: Moments) -> None:
    with pytest.raises(InputError, match="moments"):
        accumulate_moments(np.zeros((1, 2, 2)), bad)


def test_integer_stacks_and_bad_tests_are_refused() -> None:
    with pytest.raises(InputError, match="dtype"):
        accumulate_moments(np.zeros((1, 2, 2), np.int16), new_moments((2, 2)))
    with pytest.raises(InputError, match="test must be"):
        moments_two_sample_t(new_moments((1, 1)), new_moments((1, 1)), test="student")
