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
  Errors are not independent between neighbours (a district of sheds or of fields scores
  high everywhere), so each district also gets a shared offset on the logit scale with
  variance tau^2, measured on the labels (`district_dispersion`): by the delta method the
  count's variance is V + tau^2 V^2, V = sum p_i (1 - p_i); as tau^2 is itself measured on
  a few blocks, the interval takes Student t quantiles (blocks - 1 degrees of freedom).

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
from scipy.stats import t as student_t
from sklearn.linear_model import LogisticRegression

from ruinmap.errors import InputError
from ruinmap.kernels.poisson_binomial import poisson_binomial_pmf

__all__ = ["DEFAULT_LEVEL", "Calibration", "CountIntervals", "calibrate", "count_intervals",
           "district_dispersion", "score_sigma", "unvalidated_probabilities"]

DEFAULT_LEVEL = 0.9
#: above this many buildings with 0 < p < 1 in a district, the normal approximation is used
EXACT_MAX = 3000
#: most distinct scores the calibration is fitted on (quantile bins beyond)
MAX_BINS = 2048
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
    unit_bin, bin_score = _score_bins(s)
    cells = unit_bin * 2 + y  # one weighted row per (bin, label)
    rows_x = np.repeat(bin_score, 2)
    rows_y = np.tile([False, True], bin_score.size)
    n_cells = 2 * bin_score.size
    intercept, slope = _fit(rows_x, rows_y, np.bincount(cells, minlength=n_cells))
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, 2))
    for b in range(n_boot):
        # a resample as counts per row: the weighted fit is the fit on the resample
        counts = np.bincount(cells[rng.integers(0, s.size, s.size)], minlength=n_cells)
        if not counts[1::2].any() or not counts[0::2].any():
            boots[b] = intercept, slope  # a resample of one class: keep the point fit
        else:
            boots[b] = _fit(rows_x, rows_y, counts)
    return Calibration(intercept=intercept, slope=slope, boot_intercepts=boots[:, 0],
                       boot_slopes=boots[:, 1], n_labelled=int(s.size), n_damaged=n_pos)


def _score_bins(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bin of each unit, mean score of each bin): every unit its own bin up to MAX_BINS
    units, else MAX_BINS quantile bins (their mean scores stand for their members, which
    moves a fitted probability by far less than the bootstrap spread)."""
    if scores.size <= MAX_BINS:
        return np.arange(scores.size), scores
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, MAX_BINS + 1)[1:-1]))
    unit_bin = np.searchsorted(edges, scores, side="right")
    n = edges.size + 1
    mean = np.bincount(unit_bin, weights=scores, minlength=n) / np.maximum(
        np.bincount(unit_bin, minlength=n), 1)
    return unit_bin, mean


def _fit(scores: np.ndarray, damaged: np.ndarray,
         weights: np.ndarray) -> tuple[float, float]:
    # a large C: a plain maximum-likelihood logistic curve, not a shrunk one; Newton steps
    # suit two parameters (4-20x faster than L-BFGS here)
    model = LogisticRegression(C=1e6, solver="newton-cholesky", max_iter=200)
    keep = weights > 0
    model.fit(scores[keep].reshape(-1, 1), damaged[keep],
              sample_weight=weights[keep].astype(np.float64))
    return float(model.intercept_[0]), float(model.coef_[0, 0])


def district_dispersion(p: np.ndarray, damaged: np.ndarray, block: np.ndarray, *,
                        min_units: int = 20) -> tuple[float, int]:
    """(tau^2, blocks used): the variance of a block-wide logit offset, by the method of
    moments over blocks of at least `min_units` labelled units: for a block's residual
    r = sum(y - p) and V = sum p (1 - p), E[r^2] = V + tau^2 V^2, so
    tau^2 = max(0, sum(r^2 - V) / sum(V^2)). `block` < 0: in no block."""
    p = np.asarray(p, np.float64)
    y = np.asarray(damaged, np.float64)
    block = np.asarray(block, np.int64)
    inside = block >= 0
    if not inside.any():
        return 0.0, 0
    n = int(block[inside].max()) + 1
    size = np.bincount(block[inside], minlength=n)
    resid = np.bincount(block[inside], weights=(y - p)[inside], minlength=n)
    var = np.bincount(block[inside], weights=(p * (1 - p))[inside], minlength=n)
    used = size >= min_units
    denominator = float((var[used] ** 2).sum())
    if not used.any() or denominator <= 0:
        return 0.0, int(used.sum())
    return max(0.0, float((resid[used] ** 2 - var[used]).sum()) / denominator), int(used.sum())


def _bounds(p: np.ndarray, level: float, rng: np.random.Generator, tau2: float,
            df: int | None) -> tuple[int, int]:
    """Central `level` interval of a count that is, with equal weight for each row of `p`
    (B, n), a sum of Bernoulli(p_row) with a shared logit offset of variance `tau2`: exact
    (tau2 = 0) up to EXACT_MAX buildings, else a mixture of normals with the same means and
    variances; with `df` (tau2 measured on df + 1 blocks), Student t instead of normal, for
    the uncertainty of tau2 itself."""
    tail = (1.0 - level) / 2.0
    n = p.shape[1]
    if n == 0:
        return 0, 0
    if tau2 == 0 and n <= EXACT_MAX // max(1, p.shape[0] // 20):
        cdf = np.cumsum(poisson_binomial_pmf(p).mean(axis=0))
        low = int(np.searchsorted(cdf, tail - 1e-12))
        high = int(np.searchsorted(cdf, 1 - tail - 1e-12))
        return low, min(high, n)
    mean = p.sum(axis=1)
    v = (p * (1 - p)).sum(axis=1)
    sd = np.sqrt(v + tau2 * v**2)
    if p.shape[0] == 1:
        z = float(norm.ppf(1 - tail) if df is None else student_t.ppf(1 - tail, df))
        lo, hi = mean[0] - z * sd[0], mean[0] + z * sd[0]
    else:
        shape = (p.shape[0], _DRAWS_PER_REPLICATE)
        unit = rng.standard_normal(shape) if df is None else rng.standard_t(df, shape)
        draws = mean[:, None] + sd[:, None] * unit
        lo, hi = np.quantile(draws, [tail, 1 - tail])
    return max(0, math.floor(lo + 0.5)), min(n, math.ceil(hi - 0.5))


def count_intervals(district: np.ndarray, n_districts: int, *, p: np.ndarray,
                    p_boot: np.ndarray | None = None, level: float = DEFAULT_LEVEL,
                    tau2: float = 0.0, tau2_blocks: int | None = None, method: str,
                    assumptions: str, seed: int = 0) -> CountIntervals:
    """Per district: expected true damaged count and its central `level` interval.

    `district`: each building's 0-based district (-1: none); `p`: its P(damaged) (NaN: not
    scored, not counted); `p_boot`: (n_boot, n_buildings) probabilities under resampled
    calibrations (None: `p` is all the uncertainty there is); `tau2`: the variance of a
    district-wide logit offset (`district_dispersion`), measured on `tau2_blocks` blocks
    (the interval then uses Student t with tau2_blocks - 1 degrees of freedom)."""
    if not 0 < level < 1:
        raise InputError(f"interval level must be between 0 and 1, got {level!r}")
    district = np.asarray(district, np.int64)
    p = np.asarray(p, np.float64)
    counted = (district >= 0) & np.isfinite(p)
    expected = np.bincount(district[counted], weights=p[counted], minlength=n_districts)
    low = np.zeros(n_districts, np.int64)
    high = np.zeros(n_districts, np.int64)
    rng = np.random.default_rng(seed)
    df = None if tau2_blocks is None or tau2_blocks < 2 else tau2_blocks - 1
    order = np.argsort(district[counted], kind="stable")
    members = np.flatnonzero(counted)[order]
    starts = np.searchsorted(district[members], np.arange(n_districts + 1))
    for d in range(n_districts):
        idx = members[starts[d] : starts[d + 1]]
        if idx.size == 0:
            continue
        rows = p[idx][None, :] if p_boot is None else p_boot[:, idx]
        low[d], high[d] = _bounds(rows, level, rng, tau2, df)
    return CountIntervals(expected=expected, low=low, high=high, level=level, method=method,
                          assumptions=assumptions)
