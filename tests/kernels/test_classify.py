"""Damage classes from a score and ascending thresholds, against np.searchsorted.

Exact comparison: classes are integers and the kernel compares in float64, like the reference,
so there is no tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ruinmap.errors import InputError
from ruinmap.kernels.classify import MAX_THRESHOLDS, NODATA_CLASS, classify, classify_reference

DTYPES = [np.float32, np.float64]
SETTINGS = settings(max_examples=80, deadline=None)


def scores(dtype: type) -> st.SearchStrategy[np.ndarray]:
    elements = st.one_of(
        st.floats(-5.0, 5.0, width=32),
        st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0, 2.0, float(np.float32(1e30))]),
    )
    shape = hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=9)
    return hnp.arrays(dtype, shape, elements=elements)


# Few thresholds take the branch-free counting loop, many the binary search; both are drawn.
thresholds_strategy = st.one_of(
    st.lists(st.floats(-4.0, 4.0), min_size=1, max_size=6, unique=True),
    st.lists(st.floats(-4.0, 4.0), min_size=17, max_size=60, unique=True),
    st.lists(st.sampled_from([0.0, 1.0, 2.0, 0.5, -1.0]), min_size=1, max_size=5, unique=True),
).map(sorted)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_classify_matches_reference(dtype: type, data: st.DataObject) -> None:
    score = data.draw(scores(dtype))
    thresholds = data.draw(thresholds_strategy)
    got = classify(score, thresholds)
    assert got.dtype == np.uint8 and got.shape == score.shape
    np.testing.assert_array_equal(got, classify_reference(score, thresholds))


@pytest.mark.parametrize("n_thresholds", [1, 3, 16, 17, 100, MAX_THRESHOLDS])
def test_classify_counts_thresholds_strictly_below(n_thresholds: int) -> None:
    thresholds = np.arange(n_thresholds, dtype=np.float64)
    # Exactly on each threshold, just above it, and beyond both ends.
    score = np.concatenate([thresholds, thresholds + 0.5, [-1.0, n_thresholds + 1.0]])[None, :]
    got = classify(score, thresholds)[0]
    np.testing.assert_array_equal(got[:n_thresholds], np.arange(n_thresholds))
    np.testing.assert_array_equal(got[n_thresholds : 2 * n_thresholds], np.arange(n_thresholds) + 1)
    assert got[-2] == 0 and got[-1] == n_thresholds


@pytest.mark.parametrize("thresholds", [[1.0, 2.0], list(np.linspace(-3, 3, 40))])
def test_classify_nan_is_255_and_infinities_are_extreme_classes(thresholds: list[float]) -> None:
    score = np.array([[np.nan, -np.inf, np.inf]], np.float32)
    got = classify(score, thresholds)
    assert got.tolist() == [[NODATA_CLASS, 0, len(thresholds)]]


def test_classify_compares_float32_scores_in_float64() -> None:
    # float32(0.1) is 0.10000000149..., above the float64 threshold 0.1.
    got = classify(np.array([[np.float32(0.1)]], np.float32), [0.1])
    assert got[0, 0] == 1


@pytest.mark.parametrize("shape", [(0, 0), (0, 4), (4, 0), (1, 1)])
def test_classify_any_shape(shape: tuple[int, int]) -> None:
    got = classify(np.full(shape, 1.5, np.float32), [1.0, 2.0])
    assert got.shape == shape and got.dtype == np.uint8
    assert np.all(got == 1)


@pytest.mark.parametrize("layout", ["transposed", "step", "window"])
@pytest.mark.parametrize("thresholds", [[0.0, 1.0], list(np.linspace(-2, 2, 30))])
def test_classify_non_contiguous_equals_contiguous(layout: str, thresholds: list[float]) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1.5, (20, 30)).astype(np.float32)
    base[::4, ::3] = np.nan
    view = {"transposed": base.T, "step": base[::2, 1::3], "window": base[3:15, 5:27]}[layout]
    np.testing.assert_array_equal(
        classify(view, thresholds), classify(np.ascontiguousarray(view), thresholds)
    )


def test_classify_accepts_integer_and_float32_thresholds() -> None:
    score = np.array([[0.5, 1.5, 2.5]], np.float64)
    expected = [[0, 1, 2]]
    assert classify(score, [1, 2]).tolist() == expected
    assert classify(score, np.array([1, 2], np.float32)).tolist() == expected


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ([], "non-empty"),
        ([[1.0, 2.0]], "1-D"),
        (2.0, "1-D"),
        ([2.0, 1.0], "ascending"),
        ([1.0, 1.0], "ascending"),
        ([1.0, np.nan], "finite"),
        ([1.0, np.inf], "finite"),
        (list(range(MAX_THRESHOLDS + 1)), "at most 254"),
        (["a", "b"], "numbers"),
        ([True, False], "numbers"),
    ],
)
def test_classify_bad_thresholds_raise(thresholds: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        classify(np.zeros((2, 2), np.float32), thresholds)


@pytest.mark.parametrize(
    "score",
    [
        np.zeros((2, 2), np.int16),
        np.zeros((2, 2), np.uint8),
        np.zeros(4, np.float32),
        np.zeros((1, 2, 2), np.float32),
    ],
)
def test_classify_bad_score_raises(score: np.ndarray) -> None:
    with pytest.raises(InputError, match="score"):
        classify(score, [1.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_classify_thresholds_beyond_float32_range_compare_exactly(dtype: type) -> None:
    score = np.array([[-np.inf, -3e38, 3e38, np.inf]], dtype)
    assert classify(score, [1e300]).tolist() == [[0, 0, 0, 1]]
    assert classify(score, [-1e300]).tolist() == [[0, 1, 1, 1]]


@SETTINGS
@given(
    score=hnp.arrays(np.float32, (1, 16), elements=st.floats(-1.0, 1.0, width=32)),
    thresholds=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=8, unique=True).map(sorted),
)
def test_classify_float32_score_with_unrepresentable_thresholds_matches_float64(
    score: np.ndarray, thresholds: list[float]
) -> None:
    # Thresholds like 0.1 fall between float32 values; the class must still be the float64 one.
    np.testing.assert_array_equal(
        classify(score, thresholds), classify_reference(score, thresholds)
    )


def test_classify_out_is_written_and_returned() -> None:
    out = np.zeros((3, 4), np.uint8)
    score = np.linspace(-1, 2, 12, dtype=np.float32).reshape(3, 4)
    assert classify(score, [0.0, 1.0], out=out) is out
    np.testing.assert_array_equal(out, classify_reference(score, [0.0, 1.0]))


@pytest.mark.parametrize(
    "bad", [np.zeros((3, 4), np.int8), np.zeros((4, 3), np.uint8), np.zeros((4, 3), np.uint8).T]
)
def test_classify_bad_out_raises(bad: np.ndarray) -> None:
    with pytest.raises(InputError, match="out"):
        classify(np.zeros((3, 4), np.float32), [1.0], out=bad)
