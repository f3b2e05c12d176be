"""The job-wide score bins and Kittler-Illingworth minimum error thresholding, against their
NumPy references and the closed form on two Gaussians."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ruinmap.errors import InputError
from ruinmap.kernels.thresholds import (
    ASINH_STEP,
    SCORE_HIST_BINS,
    SCORE_HIST_LIMIT,
    bin_centers,
    kittler_illingworth,
    kittler_illingworth_criterion,
    kittler_illingworth_criterion_reference,
    score_hist_edges,
)

SETTINGS = settings(max_examples=80, deadline=None)


def test_score_bins_are_ascending_symmetric_and_as_fine_as_documented() -> None:
    edges = score_hist_edges()
    assert edges.size == SCORE_HIST_BINS + 1 and np.all(np.diff(edges) > 0)
    assert edges[0] == pytest.approx(-SCORE_HIST_LIMIT) and edges[-1] == pytest.approx(
        SCORE_HIST_LIMIT)
    np.testing.assert_allclose(edges, -edges[::-1], atol=1e-9)
    width = np.diff(edges)
    centre = bin_centers(edges)
    # about ASINH_STEP wide near 0, ASINH_STEP x |score| far from it
    assert width[np.argmin(np.abs(centre))] == pytest.approx(ASINH_STEP, rel=1e-3)
    far = np.abs(centre) > 10
    np.testing.assert_allclose(width[far] / np.abs(centre[far]), ASINH_STEP, rtol=0.01)
    assert ASINH_STEP < 0.002


histograms = st.integers(2, 40).flatmap(lambda n: st.tuples(
    hnp.arrays(np.int64, n, elements=st.integers(0, 1000)),
    st.lists(st.floats(-50, 50), min_size=n, max_size=n, unique=True).map(sorted),
))


@SETTINGS
@given(histograms)
def test_kittler_illingworth_criterion_equals_reference(hist: tuple[np.ndarray, list[float]]
                                                        ) -> None:
    counts, centers = hist
    x = np.asarray(centers)
    if np.any(np.diff(x) <= 1e-6):  # ascending strictly, with room for the moments
        return
    got = kittler_illingworth_criterion(counts, x)
    want = kittler_illingworth_criterion_reference(counts, x)
    assert np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize(("m1", "s1", "p1", "m2", "s2"), [
    (0.0, 1.0, 0.5, 6.0, 1.0),
    (1.0, 0.5, 0.9, 4.0, 1.5),  # unequal weights and spreads: Otsu's blind spot
    (100.0, 5.0, 0.7, 160.0, 10.0),
])
def test_kittler_illingworth_finds_the_minimum_error_cut_of_two_gaussians(
    m1: float, s1: float, p1: float, m2: float, s2: float,
) -> None:
    x = np.linspace(m1 - 6 * s1, m2 + 6 * s2, 2001)
    pdf1 = p1 * np.exp(-0.5 * ((x - m1) / s1) ** 2) / s1
    pdf2 = (1 - p1) * np.exp(-0.5 * ((x - m2) / s2) ** 2) / s2
    counts = np.rint(1e7 * (pdf1 + pdf2) / (pdf1 + pdf2).sum())
    # the Bayes cut between the means: where the two weighted densities cross
    between = (x > m1) & (x < m2)
    crossing = x[between][np.argmin(np.abs(pdf1 - pdf2)[between])]
    step = x[1] - x[0]
    # each side's fit sees a truncated Gaussian, so the cut is biased where they overlap
    # (Cho, Haralick & Yi 1989): within 5 % of the means' distance here
    assert abs(kittler_illingworth(counts, x) - crossing) <= 0.05 * (m2 - m1) + step


def test_kittler_illingworth_without_two_populations_is_an_error() -> None:
    with pytest.raises(InputError, match="two populations"):
        kittler_illingworth([0, 10, 0, 0], [0.0, 1.0, 2.0, 3.0])


def test_kittler_illingworth_is_unchanged_by_a_shift_of_the_scores() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 100, 64)
    x = np.linspace(0, 10, 64)
    base = kittler_illingworth(counts, x)
    assert kittler_illingworth(counts, x + 1e5) == pytest.approx(base + 1e5)
    assert math.isfinite(base)
