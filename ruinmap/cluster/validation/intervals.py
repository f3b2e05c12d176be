"""Intervals on damaged-building counts: how many buildings of a district are truly damaged.

Each scored building gets a probability p_i of being damaged; a district's true count is then
a sum of independent Bernoulli(p_i), a Poisson-binomial variable, and its central `level`
interval is read off that distribution. Where the p_i come from is the method, written next
to every interval:

- `unvalidated` (no labels): the building's mean score is taken to carry a normal error of
  `sigma` score units, so p_i = Phi((s_i - threshold) / sigma). For pwtt (a Welch t
  statistic, unit variance under the null) sigma is 1; for the other methods it is the robust
  spread (1.4826 MAD) of the scores of buildings below the threshold, the noise of presumed
  intact buildings. This is a stated prior, not a measured accuracy.
- `calibrated` (with labels): P(damaged | score) is a logistic curve fitted on the labelled
  buildings (`calibrate`); the fit is repeated on `n_boot` bootstrap resamples of them, so
  the interval carries the calibration's own uncertainty (a mixture over the resamples).

Counts are exact (a convolution, averaged over the resamples) for districts of up to
`EXACT_MAX` buildings (fewer with resamples), a normal approximation with the same means and
variances beyond.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression

from ruinmap.errors import InputError

__all__ = ["DEFAULT_LEVEL", "Calibration", "CountIntervals", "calibrate", "count_intervals",
           "score_sigma", "unvalidated_probabilities"]

DEFAULT_LEVEL = 0.9
#: above this many buildings with 0 < p < 1 in a district, the normal approximation is used
EXACT_MAX = 3000
#: normal draws per bootstrap replicate when mixing the replicates' count distributions
_DRAWS_PER_REPLICATE = 50


@dataclass(frozen=True)
class CountIntervals:
    """Per district: the expected true damaged count and its central interval."""

    expected: np.ndarray  # float, (n_districts,)
    low: np.ndarray  # int64
    high: np.ndarray  # int64
    level: float
    method: str  # "unvalidated" or "calibrated"
    assumptions: str


@dataclass(frozen=True)
class Calibration:
    """P(damaged | score) = 1 / (1 + exp(-(intercept + slope * score))), with resamples."""

    intercept: float
    slope: float
    boot_intercepts: np.ndarray
    boot_slopes: np.ndarray
    n_labelled: int
    n_damaged: int

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """P(damaged) of each score under the point fit."""
        return _logistic(self.intercept + self.slope * np.asarray(scores, np.float64))

    def boot_probabilities(self, scores: np.ndarray) -> np.ndarray:
        """(n_boot, n) probabilities under each bootstrap fit."""
        s = np.asarray(scores, np.float64)
        return _logistic(self.boot_intercepts[:, None] + self.boot_slopes[:, None] * s[None, :])


def _logistic(z: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))


def score_sigma(method: str, scores: np.ndarray, threshold: float) -> float:
    """The score error assumed without labels (module doc): 1 for pwtt, else 1.4826 MAD of
    the building scores at or below `threshold` (1.0 when fewer than 10 such buildings)."""
    if method == "pwtt":
        return 1.0
    s = np.asarray(scores, np.float64)
    below = s[np.isfinite(s) & (s <= threshold)]
    if below.size < 10:
        return 1.0
    mad = float(np.median(np.abs(below - np.median(below))))
    return 1.4826 * mad if mad > 0 else 1.0


def unvalidated_probabilities(scores: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """p_i = Phi((s_i - threshold) / sigma); NaN scores give NaN."""
    if not (sigma > 0 and math.isfinite(sigma)):
        raise InputError(f"score sigma must be a positive number, got {sigma!r}")
    return np.asarray(ndtr((np.asarray(scores, np.float64) - threshold) / sigma))


def calibrate(scores: np.ndarray, damaged: np.ndarray, *, n_boot: int = 200,
              seed: int = 0) -> Calibration:
    """Fit P(damaged | score) on labelled buildings, and on `n_boot` bootstrap resamples.

    `scores` and `damaged` (bool) are the labelled, scored buildings. InputError when the
    labels hold fewer than 2 damaged or 2 undamaged buildings (nothing to fit)."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(damaged, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos < 2 or n_neg < 2:
        raise InputError(
            f"cannot calibrate counts on {n_pos} damaged and {n_neg} undamaged labelled "
            "buildings; at least 2 of each are needed")
    intercept, slope = _fit(s, y)
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, 2))
    for b in range(n_boot):
        pick = rng.integers(0, s.size, s.size)
        yb = y[pick]
        if yb.all() or not yb.any():  # a resample of one class: keep the point fit
            boots[b] = intercept, slope
        else:
            boots[b] = _fit(s[pick], yb)
    return Calibration(intercept=intercept, slope=slope, boot_intercepts=boots[:, 0],
                       boot_slopes=boots[:, 1], n_labelled=int(s.size), n_damaged=n_pos)


def _fit(scores: np.ndarray, damaged: np.ndarray) -> tuple[float, float]:
    # a large C: the fit is a plain maximum-likelihood logistic curve, not a shrunk one
    model = LogisticRegression(C=1e6, max_iter=1000)
    model.fit(scores.reshape(-1, 1), damaged)
    return float(model.intercept_[0]), float(model.coef_[0, 0])


def _pmf(q: np.ndarray) -> np.ndarray:
    """(B, n + 1) distribution of the number of successes of each row of Bernoulli(q), (B, n)."""
    b, n = q.shape
    pmf = np.zeros((b, n + 1))
    pmf[:, 0] = 1.0
    for k in range(n):
        pk = q[:, k : k + 1]
        pmf[:, 1 : k + 2] = pmf[:, 1 : k + 2] * (1 - pk) + pmf[:, : k + 1] * pk
        pmf[:, 0] *= 1 - pk[:, 0]
    return pmf


def _bounds(p: np.ndarray, level: float, rng: np.random.Generator) -> tuple[int, int]:
    """Central `level` interval of a count that is, with equal weight for each row of `p`
    (B, n), a sum of independent Bernoulli(p_row): exact up to EXACT_MAX buildings, a
    mixture of normals (with the same means and variances) beyond."""
    tail = (1.0 - level) / 2.0
    n = p.shape[1]
    if n == 0:
        return 0, 0
    if n <= EXACT_MAX // max(1, p.shape[0] // 20):
        cdf = np.cumsum(_pmf(p).mean(axis=0))
        low = int(np.searchsorted(cdf, tail - 1e-12))
        high = int(np.searchsorted(cdf, 1 - tail - 1e-12))
        return low, min(high, n)
    mean = p.sum(axis=1)
    sd = np.sqrt((p * (1 - p)).sum(axis=1))
    if p.shape[0] == 1:
        z = float(norm.ppf(1 - tail))
        lo, hi = mean[0] - z * sd[0], mean[0] + z * sd[0]
    else:
        draws = rng.normal(mean[:, None], sd[:, None], (p.shape[0], _DRAWS_PER_REPLICATE))
        lo, hi = np.quantile(draws, [tail, 1 - tail])
    return max(0, math.floor(lo + 0.5)), min(n, math.ceil(hi - 0.5))


def count_intervals(district: np.ndarray, n_districts: int, *, p: np.ndarray,
                    p_boot: np.ndarray | None = None, level: float = DEFAULT_LEVEL,
                    method: str, assumptions: str, seed: int = 0) -> CountIntervals:
    """Per district: expected true damaged count and its central `level` interval.

    `district`: each building's 0-based district (-1: none); `p`: its P(damaged) (NaN: not
    scored, not counted); `p_boot`: (n_boot, n_buildings) probabilities under resampled
    calibrations (None: `p` is all the uncertainty there is)."""
    if not 0 < level < 1:
        raise InputError(f"interval level must be between 0 and 1, got {level!r}")
    district = np.asarray(district, np.int64)
    p = np.asarray(p, np.float64)
    counted = (district >= 0) & np.isfinite(p)
    expected = np.bincount(district[counted], weights=p[counted], minlength=n_districts)
    low = np.zeros(n_districts, np.int64)
    high = np.zeros(n_districts, np.int64)
    rng = np.random.default_rng(seed)
    order = np.argsort(district[counted], kind="stable")
    members = np.flatnonzero(counted)[order]
    starts = np.searchsorted(district[members], np.arange(n_districts + 1))
    for d in range(n_districts):
        idx = members[starts[d] : starts[d + 1]]
        if idx.size == 0:
            continue
        rows = p[idx][None, :] if p_boot is None else p_boot[:, idx]
        low[d], high[d] = _bounds(rows, level, rng)
    return CountIntervals(expected=expected, low=low, high=high, level=level, method=method,
                          assumptions=assumptions)
