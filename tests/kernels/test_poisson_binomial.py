"""`kernels.poisson_binomial` against its NumPy reference (bitwise: the same operations in the
same order), against the binomial distribution when every probability is equal, and against
counting by brute force over every outcome of a few trials."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import binom

from ruinmap.errors import InputError
from ruinmap.kernels.poisson_binomial import (
    poisson_binomial_pmf,
    poisson_binomial_pmf_reference,
)

probabilities = hnp.arrays(
    np.float64, st.tuples(st.integers(1, 4), st.integers(0, 60)),
    elements=st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 0.5, 1e-300])))


@given(probabilities)
@settings(max_examples=60, deadline=None)
def test_equals_the_reference_bitwise(q: np.ndarray) -> None:
    got = poisson_binomial_pmf(q)
    np.testing.assert_array_equal(got, poisson_binomial_pmf_reference(q))
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("n", [0, 1, 7, 300, 3000])
@pytest.mark.parametrize("p", [0.0, 0.03, 0.5, 1.0])
def test_equal_probabilities_give_the_binomial(n: int, p: float) -> None:
    got = poisson_binomial_pmf(np.full((1, n), p))[0]
    np.testing.assert_allclose(got, binom.pmf(np.arange(n + 1), n, p), atol=1e-12)


def test_few_trials_match_counting_every_outcome() -> None:
    q = np.array([[0.1, 0.7, 0.35, 0.9, 0.5]])
    want = np.zeros(6)
    for outcome in itertools.product([0, 1], repeat=5):
        hits = np.array(outcome, bool)
        want[hits.sum()] += np.prod(np.where(hits, q[0], 1 - q[0]))
    np.testing.assert_allclose(poisson_binomial_pmf(q)[0], want, rtol=1e-13)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 3), np.int64), np.zeros((1, 2, 3))])
def test_not_2d_float_is_an_input_error(bad: np.ndarray) -> None:
    with pytest.raises(InputError, match="2-D float array"):
        poisson_binomial_pmf(bad)
