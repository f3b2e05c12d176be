"""Per-label statistics: the kernel against its np.bincount reference, tile merging, quantiles."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruinmap.errors import InputError
from ruinmap.kernels.zonal import (
    LabelStats,
    label_quantile,
    label_stats,
    label_stats_reference,
    merge_label_stats,
)

LABEL_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
# Each label dtype is a numba specialization per kind of edges; hypothesis draws from a
# signed/unsigned, narrow/wide subset to keep compile time down, the parametrized test covers all.
HYPOTHESIS_LABEL_DTYPES = ["int8", "uint16", "int32", "uint64"]
VALUE_DTYPES = ["float32", "float64"]
UNIFORM_EDGES = np.linspace(0.0, 1.0, 11)
UNEVEN_EDGES = np.array([-0.5, 0.0, 0.1, 0.15, 0.5, 0.9, 1.0, 2.0])
# Sums may differ from the reference by summation order only.
SUM_RTOL = 1e-12


def assert_stats_equal(got: LabelStats, want: LabelStats, exact_sums: bool = False) -> None:
    np.testing.assert_array_equal(got.edges, want.edges)
    np.testing.assert_array_equal(got.count, want.count)
    np.testing.assert_array_equal(got.hist, want.hist)
    np.testing.assert_array_equal(got.min, want.min)
    np.testing.assert_array_equal(got.max, want.max)
    for name in ("sum", "sum_sq"):
        g, w = getattr(got, name), getattr(want, name)
        if exact_sums:
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:
            # Tolerance relative to the sum of magnitudes, which bounds the rounding error.
            np.testing.assert_allclose(g, w, rtol=SUM_RTOL, atol=1e-12, err_msg=name)
    assert got.count.dtype == np.int64 and got.hist.dtype == np.int64
    for name in ("sum", "sum_sq", "min", "max", "edges"):
        assert getattr(got, name).dtype == np.float64


def make_case(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n_labels: int,
    label_dtype: str = "int32",
    value_dtype: str = "float32",
    nan_fraction: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, n_labels + 1, shape).astype(label_dtype)
    values = rng.uniform(-0.3, 1.3, shape).astype(value_dtype)
    values[rng.random(shape) < nan_fraction] = np.nan
    return labels, values


@st.composite
def cases(draw: st.DrawFn, integer_values: bool = False) -> tuple:
    h = draw(st.integers(0, 12))
    w = draw(st.integers(0, 12))
    n_labels = draw(st.integers(0, 6))
    label_dtype = draw(st.sampled_from(HYPOTHESIS_LABEL_DTYPES))
    value_dtype = draw(st.sampled_from(VALUE_DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    nan_pattern = draw(st.sampled_from(["none", "some", "all", "rows"]))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_labels + 1, (h, w)).astype(label_dtype)
    if draw(st.booleans()):  # zones as runs, as in a rasterized district map
        labels = np.sort(labels, axis=1)
    if integer_values:
        values = rng.integers(-3, 15, (h, w)).astype(value_dtype)
    else:
        values = rng.uniform(-0.3, 1.3, (h, w)).astype(value_dtype)
    if nan_pattern == "some":
        values[rng.random((h, w)) < 0.3] = np.nan
    elif nan_pattern == "all":
        values[:] = np.nan
    elif nan_pattern == "rows":
        values[::2] = np.nan
    edges = draw(st.sampled_from([UNIFORM_EDGES, UNEVEN_EDGES, np.arange(-3.0, 16.0)]))
    return labels, values, n_labels, edges


@settings(max_examples=80, deadline=None)
@given(cases())
def test_label_stats_matches_reference(case: tuple) -> None:
    labels, values, n_labels, edges = case
    assert_stats_equal(
        label_stats(labels, values, n_labels, edges),
        label_stats_reference(labels, values, n_labels, edges),
    )


@pytest.mark.parametrize("label_dtype", LABEL_DTYPES)
@pytest.mark.parametrize("value_dtype", VALUE_DTYPES)
def test_label_stats_accepts_every_integer_label_dtype(label_dtype: str, value_dtype: str) -> None:
    labels, values = make_case(np.random.default_rng(1), (23, 17), 5, label_dtype, value_dtype)
    assert_stats_equal(
        label_stats(labels, values, 5, UNIFORM_EDGES),
        label_stats_reference(labels, values, 5, UNIFORM_EDGES),
    )


@pytest.mark.parametrize("layout", ["transposed", "strided", "fortran"])
def test_label_stats_non_contiguous_inputs_match_contiguous(layout: str) -> None:
    labels, values = make_case(np.random.default_rng(2), (30, 40), 4)
    view = {
        "transposed": lambda a: a.T,
        "strided": lambda a: a[::2, ::3],
        "fortran": np.asfortranarray,
    }[layout]
    lab, val = view(labels), view(values)
    assert_stats_equal(
        label_stats(lab, val, 4, UNEVEN_EDGES),
        label_stats(np.ascontiguousarray(lab), np.ascontiguousarray(val), 4, UNEVEN_EDGES),
        exact_sums=True,
    )


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
def test_label_stats_empty_image_gives_empty_stats(shape: tuple[int, int]) -> None:
    stats = label_stats(np.zeros(shape, np.int32), np.zeros(shape, np.float32), 3, UNIFORM_EDGES)
    assert_stats_equal(stats, LabelStats.empty(3, UNIFORM_EDGES), exact_sums=True)


def test_label_stats_one_pixel() -> None:
    stats = label_stats(np.array([[2]]), np.array([[0.25]]), 3, UNIFORM_EDGES)
    np.testing.assert_array_equal(stats.count, [0, 1, 0])
    np.testing.assert_array_equal(stats.sum, [0.0, 0.25, 0.0])
    np.testing.assert_array_equal(stats.min, [np.inf, 0.25, np.inf])
    np.testing.assert_array_equal(stats.max, [-np.inf, 0.25, -np.inf])
    assert stats.hist[1, 2] == 1 and stats.hist.sum() == 1


def test_label_stats_label_zero_everywhere_counts_nothing() -> None:
    _, values = make_case(np.random.default_rng(3), (9, 11), 3)
    stats = label_stats(np.zeros((9, 11), np.uint16), values, 3, UNIFORM_EDGES)
    assert_stats_equal(stats, LabelStats.empty(3, UNIFORM_EDGES), exact_sums=True)
    assert np.all(np.isnan(stats.mean)) and np.all(np.isnan(stats.variance))


def test_label_stats_single_label_matches_numpy() -> None:
    _, values = make_case(np.random.default_rng(4), (15, 13), 1, value_dtype="float64")
    stats = label_stats(np.ones((15, 13), np.int8), values, 1, UNIFORM_EDGES)
    valid = values[~np.isnan(values)]
    assert stats.count[0] == valid.size
    np.testing.assert_allclose(stats.mean[0], valid.mean(), rtol=1e-12)
    np.testing.assert_allclose(stats.variance[0], valid.var(), rtol=1e-9)
    assert stats.min[0] == valid.min() and stats.max[0] == valid.max()


def test_label_stats_labels_without_pixels_are_empty_rows() -> None:
    labels = np.array([[1, 1], [3, 0]], np.int32)
    values = np.array([[0.5, np.nan], [0.2, 0.7]], np.float32)
    stats = label_stats(labels, values, 4, UNIFORM_EDGES)
    np.testing.assert_array_equal(stats.count, [1, 0, 1, 0])
    np.testing.assert_array_equal(np.isnan(stats.mean), [False, True, False, True])


def test_label_stats_histogram_clamps_out_of_range_values_into_end_bins() -> None:
    labels = np.ones((1, 5), np.int32)
    values = np.array([[-7.0, 0.0, 0.5, 1.0, 42.0]])
    stats = label_stats(labels, values, 1, UNIFORM_EDGES)
    assert stats.hist[0, 0] == 2  # -7 and 0
    assert stats.hist[0, -1] == 2  # 1.0 (== last edge) and 42
    assert stats.hist[0].sum() == stats.count[0] == 5


@pytest.mark.parametrize("edges", [np.linspace(0.0, 1.0, 11), np.linspace(-1.3, 2.9, 43)])
def test_label_stats_values_on_uniform_edges_land_where_searchsorted_puts_them(
    edges: np.ndarray,
) -> None:
    # (v - e0) / width rounds across an edge for some of these; the kernel must not.
    values = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    values = values[None, :]
    labels = np.ones(values.shape, np.int32)
    want = np.bincount(
        np.clip(np.searchsorted(edges, values[0], "right") - 1, 0, edges.size - 2),
        minlength=edges.size - 1,
    )
    np.testing.assert_array_equal(label_stats(labels, values, 1, edges).hist[0], want)
    # Same edges perturbed out of uniformity take the binary search, with the same answer.
    uneven = edges.copy()
    uneven[1] += (edges[2] - edges[1]) * 1e-3
    assert_stats_equal(
        label_stats(labels, values, 1, uneven), label_stats_reference(labels, values, 1, uneven)
    )


def test_label_stats_infinite_values_are_counted() -> None:
    labels = np.ones((1, 3), np.int32)
    values = np.array([[np.inf, 0.5, -np.inf]])
    stats = label_stats(labels, values, 1, UNIFORM_EDGES)
    assert stats.count[0] == 3
    assert stats.min[0] == -np.inf and stats.max[0] == np.inf
    np.testing.assert_array_equal(stats.hist[0, [0, 5, -1]], [1, 1, 1])


@st.composite
def tilings(draw: st.DrawFn, shape: tuple[int, int]) -> tuple[list[int], list[int]]:
    h, w = shape
    # Always at least one tile, even along an empty axis; tiles may be empty.
    rows = [0, *sorted(draw(st.lists(st.integers(0, h), max_size=4))), h]
    cols = [0, *sorted(draw(st.lists(st.integers(0, w), max_size=4))), w]
    return rows, cols


def tile_stats(
    labels: np.ndarray, values: np.ndarray, n_labels: int, edges: np.ndarray, cuts: tuple
) -> list[LabelStats]:
    rows, cols = cuts
    return [
        label_stats(labels[r0:r1, c0:c1], values[r0:r1, c0:c1], n_labels, edges)
        for r0, r1 in itertools.pairwise(rows)
        for c0, c1 in itertools.pairwise(cols)
    ]


@settings(max_examples=60, deadline=None)
@given(st.data(), st.booleans())
def test_label_stats_merged_over_tiles_equal_whole_image(
    data: st.DataObject, integer_values: bool
) -> None:
    labels, values, n_labels, edges = data.draw(cases(integer_values=integer_values))
    parts = tile_stats(labels, values, n_labels, edges, data.draw(tilings(labels.shape)))
    # Integer-valued floats sum exactly in any order, so every field must match bit for bit.
    assert_stats_equal(
        merge_label_stats(parts),
        label_stats(labels, values, n_labels, edges),
        exact_sums=integer_values,
    )


def test_merge_label_stats_of_one_part_is_that_part() -> None:
    labels, values = make_case(np.random.default_rng(5), (8, 8), 3)
    stats = label_stats(labels, values, 3, UNIFORM_EDGES)
    assert_stats_equal(merge_label_stats([stats]), stats, exact_sums=True)
    assert_stats_equal(
        merge_label_stats(iter([stats, LabelStats.empty(3, UNIFORM_EDGES)])), stats, True
    )


def test_merge_label_stats_does_not_modify_its_parts() -> None:
    labels, values = make_case(np.random.default_rng(6), (8, 8), 3)
    a = label_stats(labels, values, 3, UNIFORM_EDGES)
    before = a.count.copy()
    merge_label_stats([a, a])
    np.testing.assert_array_equal(a.count, before)


def test_merge_label_stats_refuses_different_n_labels() -> None:
    a = LabelStats.empty(3, UNIFORM_EDGES)
    b = LabelStats.empty(4, UNIFORM_EDGES)
    with pytest.raises(InputError, match="labels"):
        merge_label_stats([a, b])


def test_merge_label_stats_refuses_different_edges() -> None:
    a = LabelStats.empty(3, UNIFORM_EDGES)
    b = LabelStats.empty(3, UNIFORM_EDGES * 2)
    with pytest.raises(InputError, match="edges"):
        merge_label_stats([a, b])


def test_merge_label_stats_refuses_no_parts() -> None:
    with pytest.raises(InputError, match="no parts"):
        merge_label_stats([])


def test_label_stats_survives_pickling() -> None:
    labels, values = make_case(np.random.default_rng(7), (8, 8), 3)
    stats = label_stats(labels, values, 3, UNEVEN_EDGES)
    assert_stats_equal(pickle.loads(pickle.dumps(stats)), stats, exact_sums=True)


def test_label_stats_is_frozen() -> None:
    stats = LabelStats.empty(2, UNIFORM_EDGES)
    with pytest.raises(AttributeError):
        stats.count = np.ones(2, np.int64)  # type: ignore[misc]


def test_label_stats_mean_and_variance_match_numpy_per_label() -> None:
    labels, values = make_case(np.random.default_rng(8), (40, 30), 4, value_dtype="float64")
    stats = label_stats(labels, values, 4, UNIFORM_EDGES)
    for k in range(1, 5):
        v = values[(labels == k) & ~np.isnan(values)]
        np.testing.assert_allclose(stats.mean[k - 1], v.mean(), rtol=1e-12)
        np.testing.assert_allclose(stats.variance[k - 1], v.var(), rtol=1e-9)


def test_label_stats_inconsistent_arrays_are_refused() -> None:
    e = LabelStats.empty(3, UNIFORM_EDGES)
    with pytest.raises(InputError, match="hist"):
        LabelStats(e.count, e.sum, e.sum_sq, e.min, e.max, e.hist[:, :-1], e.edges)


# --- quantiles ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(cases(), st.floats(0.0, 1.0))
def test_label_quantile_within_one_bin_of_the_order_statistic(case: tuple, q: float) -> None:
    # The estimate lies in the bin holding the ceil(q * n)-th smallest value, narrowed to
    # [min, max]; edges here cover the data, so that is at most one bin width away.
    labels, values, n_labels, _ = case
    edges = np.linspace(-0.3, 1.3, 33)
    values = np.clip(values, -0.29, 1.29)
    est = label_quantile(label_stats(labels, values, n_labels, edges), q)
    assert est.shape == (n_labels,) and est.dtype == np.float64
    for k in range(1, n_labels + 1):
        v = np.sort(values[(labels == k) & ~np.isnan(values)].astype(np.float64))
        if v.size == 0:
            assert np.isnan(est[k - 1])
            continue
        rank = max(int(np.ceil(q * v.size)), 1)
        assert abs(est[k - 1] - v[rank - 1]) <= edges[1] - edges[0] + 1e-12
        assert v[0] <= est[k - 1] <= v[-1]


@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.9, 0.99, 1.0])
def test_label_quantile_close_to_np_quantile_on_dense_data(q: float) -> None:
    rng = np.random.default_rng(9)
    labels = rng.integers(1, 4, (200, 150)).astype(np.int16)
    values = rng.beta(2, 5, (200, 150))
    edges = np.linspace(0.0, 1.0, 1001)
    est = label_quantile(label_stats(labels, values, 3, edges), q)
    want = [np.quantile(values[labels == k], q) for k in (1, 2, 3)]
    np.testing.assert_allclose(est, want, atol=edges[1] - edges[0])


def test_label_quantile_0_and_1_are_min_and_max() -> None:
    labels, values = make_case(np.random.default_rng(10), (20, 20), 3)
    stats = label_stats(labels, values, 3, UNEVEN_EDGES)
    np.testing.assert_array_equal(label_quantile(stats, 0.0), stats.min)
    np.testing.assert_array_equal(label_quantile(stats, 1.0), stats.max)


def test_label_quantile_reaches_into_clamped_end_bins() -> None:
    labels = np.ones((1, 4), np.int32)
    values = np.array([[-5.0, -4.0, 9.0, 10.0]])
    stats = label_stats(labels, values, 1, UNIFORM_EDGES)
    assert label_quantile(stats, 0.0)[0] == -5.0
    assert label_quantile(stats, 1.0)[0] == 10.0
    # The clamped first bin spans [min, edges[1]]: the estimate interpolates over that span.
    assert label_quantile(stats, 0.25)[0] == pytest.approx(-5.0 + 0.5 * (0.1 + 5.0))
    assert label_quantile(stats, 0.75)[0] == pytest.approx(0.9 + 0.5 * (10.0 - 0.9))


def test_label_quantile_is_nan_where_count_is_zero() -> None:
    stats = label_stats(np.array([[2]]), np.array([[0.3]]), 3, UNIFORM_EDGES)
    est = label_quantile(stats, 0.9)
    assert np.isnan(est[0]) and np.isnan(est[2]) and est[1] == 0.3


def test_label_quantile_of_no_labels_is_empty() -> None:
    assert label_quantile(LabelStats.empty(0, UNIFORM_EDGES), 0.5).shape == (0,)


@pytest.mark.parametrize("q", [-0.1, 1.5, float("nan"), "0.9", None, True])
def test_label_quantile_refuses_q_outside_unit_interval(q: object) -> None:
    with pytest.raises(InputError, match="q must"):
        label_quantile(LabelStats.empty(2, UNIFORM_EDGES), q)  # type: ignore[arg-type]


# --- bad inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 4, 200])
def test_label_stats_label_out_of_range_names_the_value(bad: int) -> None:
    labels = np.array([[1, 2], [bad, 3]], np.int16)
    values = np.zeros((2, 2), np.float32)
    with pytest.raises(InputError, match=rf"value {bad} at \(row 1, col 0\)"):
        label_stats(labels, values, 3, UNIFORM_EDGES)
    with pytest.raises(InputError, match=f"value {bad}"):
        label_stats_reference(labels, values, 3, UNIFORM_EDGES)


def test_label_stats_out_of_range_label_under_nan_value_is_still_refused() -> None:
    labels = np.array([[1, 9]], np.int32)
    values = np.array([[0.5, np.nan]])
    with pytest.raises(InputError, match="value 9"):
        label_stats(labels, values, 3, UNIFORM_EDGES)


def test_label_stats_huge_uint64_label_names_the_value() -> None:
    labels = np.array([[1, 2**63 + 5]], np.uint64)
    with pytest.raises(InputError, match=f"value {2**63 + 5}"):
        label_stats(labels, np.zeros((1, 2)), 3, UNIFORM_EDGES)


def test_label_stats_any_label_with_zero_labels_is_refused() -> None:
    with pytest.raises(InputError, match=r"outside 0\.\.0"):
        label_stats(np.array([[1]]), np.array([[0.5]]), 0, UNIFORM_EDGES)


@pytest.mark.parametrize(
    ("labels", "values", "match"),
    [
        (np.ones((2, 2), np.float32), np.zeros((2, 2)), "labels: dtype float32"),
        (np.ones((2, 2), bool), np.zeros((2, 2)), "labels: dtype bool"),
        (np.ones((2, 2, 2), np.int32), np.zeros((2, 2, 2)), "labels: expected a 2-D"),
        (np.ones((2, 2), np.int32), np.zeros((2, 2), np.int32), "values: dtype int32"),
        (np.ones((2, 2), np.int32), np.zeros((2, 3)), "shapes differ"),
    ],
)
def test_label_stats_refuses_bad_arrays(labels: np.ndarray, values: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        label_stats(labels, values, 2, UNIFORM_EDGES)


@pytest.mark.parametrize(
    ("bins", "match"),
    [
        ([0.5], "at least 2"),
        (np.zeros((2, 2)), "1-D"),
        ([0.0, 0.5, 0.5, 1.0], "strictly ascending"),
        ([1.0, 0.0], "strictly ascending"),
        ([0.0, np.nan, 1.0], "finite"),
        ([0.0, np.inf], "finite"),
        ("abc", "bins"),
    ],
)
def test_label_stats_refuses_bad_bins(bins: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        label_stats(np.ones((2, 2), np.int32), np.zeros((2, 2)), 2, bins)


@pytest.mark.parametrize("n_labels", [-1, 2.0, True, "3"])
def test_label_stats_refuses_bad_n_labels(n_labels: object) -> None:
    with pytest.raises(InputError, match="n_labels"):
        label_stats(np.ones((2, 2), np.int32), np.zeros((2, 2)), n_labels, UNIFORM_EDGES)  # type: ignore[arg-type]


def test_label_stats_built_from_lists_gets_numpy_dtypes() -> None:
    stats = LabelStats([1], [0.5], [0.25], [0.5], [0.5], [[0, 1]], [0, 0.5, 1])
    assert stats.count.dtype == np.int64 and stats.hist.dtype == np.int64
    assert stats.edges.dtype == np.float64 and stats.mean[0] == 0.5


def test_label_quantile_refuses_what_is_not_label_stats() -> None:
    with pytest.raises(InputError, match="LabelStats"):
        label_quantile(np.zeros(3), 0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "edges",
    [
        np.r_[np.linspace(0.0, 1e-9, 40), 1.0],  # 39 bins crowded into one guide cell
        np.r_[0.0, np.geomspace(1e-6, 1.0, 30)],
        np.array([-1.0, 1.0]),
    ],
)
def test_label_stats_uneven_edges_bin_like_searchsorted(edges: np.ndarray) -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate(
        [edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), rng.random(200)]
    )[None, :]
    labels = np.ones(values.shape, np.int32)
    assert_stats_equal(
        label_stats(labels, values, 1, edges), label_stats_reference(labels, values, 1, edges)
    )


def test_merge_label_stats_refuses_what_is_not_label_stats() -> None:
    with pytest.raises(InputError, match="part 1 is a dict"):
        merge_label_stats([LabelStats.empty(2, UNIFORM_EDGES), {}])  # type: ignore[list-item]
