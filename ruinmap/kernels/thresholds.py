"""Histogram thresholds: the fixed score bins every tile counts into, and Kittler-Illingworth.

A score of unknown scale (8-bit SAR, optical change) is counted into `SCORE_HIST_BINS` bins
equally spaced in asinh(score) between -`SCORE_HIST_LIMIT` and +`SCORE_HIST_LIMIT`: one set of
edges for every tile and every method, so tiles' histograms add up without a first pass over
the data. asinh is linear near 0 and logarithmic far from it, so a bin is about
`ASINH_STEP` wide in score units near 0 and `ASINH_STEP` x |score| wide far from it (the
relative resolution: 0.18 % of the threshold's value for |threshold| > 1).

`kittler_illingworth` is minimum error thresholding (Kittler & Illingworth 1986, Pattern
Recognition 19(1):41-47) on such a histogram: the cut that minimises
J(t) = 1 + 2 [P1 ln s1 + P2 ln s2] - 2 [P1 ln P1 + P2 ln P2], where P, s are the weight and
standard deviation of the levels at or below t (1) and above it (2). scikit-image has Otsu
(`threshold_otsu(hist=...)`) but not this rule.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ruinmap.errors import InputError

__all__ = ["ASINH_STEP", "SCORE_HIST_BINS", "SCORE_HIST_LIMIT", "bin_centers",
           "kittler_illingworth", "kittler_illingworth_criterion",
           "kittler_illingworth_criterion_reference", "score_hist_edges"]

#: bins of the job-wide score histogram
SCORE_HIST_BINS = 16384
#: |score| covered by the bins (the spec's bound on thresholds); beyond, the end bins count
SCORE_HIST_LIMIT = 1e6
#: width of a bin in asinh(score)
ASINH_STEP = 2.0 * math.asinh(SCORE_HIST_LIMIT) / SCORE_HIST_BINS


def score_hist_edges() -> np.ndarray:
    """The SCORE_HIST_BINS + 1 edges (float64, strictly ascending), equal steps in asinh."""
    top = math.asinh(SCORE_HIST_LIMIT)
    return np.sinh(np.linspace(-top, top, SCORE_HIST_BINS + 1))


def bin_centers(edges: np.ndarray) -> np.ndarray:
    """The middle of each bin in score units (the level a bin's pixels stand for)."""
    edges = np.asarray(edges, np.float64)
    return 0.5 * (edges[:-1] + edges[1:])


def _as_histogram(counts: object, centers: object) -> tuple[np.ndarray, np.ndarray]:
    h = np.ascontiguousarray(counts, dtype=np.float64)
    x = np.ascontiguousarray(centers, dtype=np.float64)
    if h.ndim != 1 or h.shape != x.shape or h.size < 2:
        raise InputError(f"histogram: counts {h.shape} and centers {x.shape} must be 1-D, of "
                         "one length >= 2")
    if not (np.all(np.isfinite(h)) and np.all(h >= 0) and np.all(np.isfinite(x))):
        raise InputError("histogram: counts must be finite and >= 0, centers finite")
    if np.any(np.diff(x) <= 0):
        raise InputError("histogram: centers must be strictly ascending")
    return h, x


@njit(cache=True, nogil=True)
def _ki_criterion(h: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    # cumulative weight, first and second moments; levels are shifted by the weighted mean so
    # the variances do not cancel catastrophically when the scores sit far from 0
    total = 0.0
    shift = 0.0
    for i in range(h.size):
        total += h[i]
        shift += h[i] * x[i]
    shift = shift / total if total > 0 else 0.0
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    all1 = 0.0
    all2 = 0.0
    occupied = 0
    for i in range(h.size):
        d = x[i] - shift
        all1 += h[i] * d
        all2 += h[i] * d * d
        occupied += 1 if h[i] > 0 else 0
    below = 0
    for t in range(h.size):
        d = x[t] - shift
        s0 += h[t]
        s1 += h[t] * d
        s2 += h[t] * d * d
        below += 1 if h[t] > 0 else 0
        n2 = total - s0
        out[t] = np.inf
        # a side on one level has no spread; rounding would leave it a tiny one
        if below < 2 or occupied - below < 2:
            continue
        m1 = s1 / s0
        m2 = (all1 - s1) / n2
        v1 = s2 / s0 - m1 * m1
        v2 = (all2 - s2) / n2 - m2 * m2
        if v1 <= 0 or v2 <= 0:
            continue
        p1 = s0 / total
        p2 = n2 / total
        out[t] = 1.0 + (p1 * math.log(v1) + p2 * math.log(v2)) \
            - 2.0 * (p1 * math.log(p1) + p2 * math.log(p2))


def kittler_illingworth_criterion(counts: object, centers: object) -> np.ndarray:
    """J(t) for a cut after each level (module docstring); +inf where a side is empty or has
    zero variance (no Gaussian fits it). `counts` >= 0 per level, `centers` ascending."""
    h, x = _as_histogram(counts, centers)
    out = np.empty(h.size, np.float64)
    _ki_criterion(h, x, out)
    return out


def kittler_illingworth_criterion_reference(counts: object, centers: object) -> np.ndarray:
    """Plain NumPy J(t): each side's weight, mean and variance computed afresh for each t."""
    h, x = _as_histogram(counts, centers)
    total = h.sum()
    out = np.full(h.size, np.inf)
    for t in range(h.size):
        lo_h, hi_h = h[: t + 1], h[t + 1 :]
        if np.count_nonzero(lo_h) < 2 or np.count_nonzero(hi_h) < 2:
            continue  # a side on one level (or none) has no spread
        sides = []
        for w, v in ((lo_h, x[: t + 1]), (hi_h, x[t + 1 :])):
            mean = np.average(v, weights=w)
            sides.append((w.sum() / total, np.average((v - mean) ** 2, weights=w)))
        # 2 P ln s = P ln s^2
        out[t] = 1.0 + sum(p * np.log(var) for p, var in sides) \
            - 2.0 * sum(p * np.log(p) for p, _ in sides)
    return out


def kittler_illingworth(counts: object, centers: object) -> float:
    """The minimum error threshold of a histogram: the level t minimising J(t); scores above
    it are the second (change) class. InputError when no cut leaves two populations that
    each have a spread."""
    criterion = kittler_illingworth_criterion(counts, centers)
    if not np.any(np.isfinite(criterion)):
        raise InputError("histogram: no cut leaves two populations that each have a spread; "
                         "minimum error thresholding needs two")
    return float(np.asarray(centers, np.float64)[int(np.argmin(criterion))])
