"""The Poisson-binomial distribution: the number of successes among independent Bernoulli
trials of different probabilities (how many of a district's buildings are truly damaged, each
with its own probability).

    pmf_0 = [1],   pmf_k[j] = pmf_{k-1}[j] (1 - q_k) + pmf_{k-1}[j - 1] q_k

the exact recursion over the trials (e.g. Chen & Liu 1997, Statistica Sinica 7, eq. 5):
O(n^2) for n trials, and stable (every step a convex combination of probabilities).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ruinmap.errors import InputError

__all__ = ["poisson_binomial_pmf", "poisson_binomial_pmf_reference"]


@njit(cache=True, nogil=True)
def _pmf_rows(q: np.ndarray, out: np.ndarray) -> None:
    rows, n = q.shape
    for b in range(rows):
        out[b, 0] = 1.0
        for k in range(n):
            p = q[b, k]
            keep = 1.0 - p
            # backwards, so pmf[j - 1] is still the previous trial's: the reference's update
            for j in range(k + 1, 0, -1):
                out[b, j] = out[b, j] * keep + out[b, j - 1] * p
            out[b, 0] *= keep


def _checked(q: np.ndarray) -> np.ndarray:
    arr = np.asarray(q)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"q must be a 2-D float array (rows of success probabilities), got "
                         f"{arr.dtype} with shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def poisson_binomial_pmf(q: np.ndarray) -> np.ndarray:
    """(rows, n + 1) float64: row b is the distribution of the number of successes among n
    independent trials of success probabilities q[b] (rows, n), each in [0, 1] (module doc).
    InputError for an array that is not 2-D float."""
    arr = _checked(q)
    out = np.zeros((arr.shape[0], arr.shape[1] + 1))
    _pmf_rows(arr, out)
    return out


def poisson_binomial_pmf_reference(q: np.ndarray) -> np.ndarray:
    """`poisson_binomial_pmf` in whole-row NumPy steps, one trial at a time."""
    arr = _checked(q)
    rows, n = arr.shape
    pmf = np.zeros((rows, n + 1))
    pmf[:, 0] = 1.0
    for k in range(n):
        pk = arr[:, k : k + 1]
        pmf[:, 1 : k + 2] = pmf[:, 1 : k + 2] * (1 - pk) + pmf[:, : k + 1] * pk
        pmf[:, 0] *= 1 - pk[:, 0]
    return pmf
