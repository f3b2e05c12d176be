"""Choosing an automatic damage threshold from the job-wide score histogram.

With `threshold = "otsu" | "kittler-illingworth" | "gmm"` the tiles count their valid scores
into the fixed bins of `kernels.thresholds.score_hist_edges` (partial `s_hist`); the client
adds them up and picks the cut here, between the tile pass and the cheap second pass that
applies the classes (`job.classes`):

- `otsu`: the cut maximising the between-class variance (Otsu 1979),
  `skimage.filters.threshold_otsu(hist=...)`;
- `kittler-illingworth`: minimum error thresholding (Kittler & Illingworth 1986),
  `kernels.thresholds.kittler_illingworth`;
- `gmm`: a two-component Gaussian mixture (`sklearn.mixture.GaussianMixture`) fitted to the
  histogram, the cut where the higher component becomes the more likely.

Every rule sees the histogram's occupied range only; the threshold is a bin centre, so it is
resolved to half a bin (`resolution`). The class edges are `class_multiples` x the
threshold, so the threshold is always one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ruinmap.cluster.methods.params import THRESHOLD_RULES, MethodParamsBase
from ruinmap.errors import InputError
from ruinmap.kernels.thresholds import (
    ASINH_STEP,
    SCORE_HIST_BINS,
    SCORE_HIST_LIMIT,
    bin_centers,
    kittler_illingworth,
    score_hist_edges,
)

__all__ = ["GMM_SAMPLE", "ThresholdChoice", "choose_threshold", "threshold_choice"]

#: pixels a histogram is resampled to for the Gaussian mixture (bins repeated by count)
GMM_SAMPLE = 200_000


@dataclass(frozen=True)
class ThresholdChoice:
    """An automatic threshold, the class edges around it and what it was chosen from."""

    rule: str
    threshold: float
    class_thresholds: tuple[float, ...]
    n_valid: int
    score_min: float  # lower edge of the lowest occupied bin
    score_max: float  # upper edge of the highest occupied bin
    resolution: float  # half the width of the threshold's bin, score units

    def report(self) -> dict[str, Any]:
        """The record job.json keeps (`threshold_choice`)."""
        return {
            "rule": self.rule, "threshold": self.threshold,
            "class_thresholds": list(self.class_thresholds),
            "histogram": {
                "bins": SCORE_HIST_BINS, "spacing": "asinh", "limit": SCORE_HIST_LIMIT,
                "asinh_step": ASINH_STEP, "n_valid": self.n_valid,
                "occupied_min": self.score_min, "occupied_max": self.score_max,
            },
            "resolution": self.resolution,
        }  # fmt: skip


def _gmm_threshold(counts: np.ndarray, centers: np.ndarray) -> float:
    from sklearn.mixture import GaussianMixture

    # the mixture is fitted to points, not a histogram: repeat each centre by its count,
    # scaled down to GMM_SAMPLE points in all (deterministic, unlike a random draw)
    scale = min(1.0, GMM_SAMPLE / counts.sum())
    sample = np.repeat(centers, np.rint(counts * scale).astype(np.int64)).reshape(-1, 1)
    if np.unique(sample).size < 2:
        raise InputError("gmm: the histogram has too few distinct values to fit two "
                         "Gaussians; use threshold = \"otsu\" or a fixed threshold")
    mixture = GaussianMixture(n_components=2, random_state=0).fit(sample)
    high = int(np.argmax(mixture.means_.ravel()))
    low_mean = float(mixture.means_.ravel().min())
    candidates = centers[centers >= low_mean]
    above = mixture.predict_proba(candidates.reshape(-1, 1))[:, high] > 0.5
    if not np.any(above):
        raise InputError("gmm: the higher Gaussian is nowhere the more likely one; the score "
                         "has no second population; use a fixed threshold")
    # the last centre still on the lower side: pixels above it are the higher component's
    first = int(np.argmax(above))
    return float(candidates[max(first - 1, 0)])


def choose_threshold(rule: str, counts: np.ndarray, centers: np.ndarray) -> float:
    """The cut `rule` picks on a histogram (`counts` per level at `centers`); scores above it
    are damage."""
    if rule == "otsu":
        from skimage.filters import threshold_otsu

        return float(threshold_otsu(hist=(counts, centers)))
    if rule == "kittler-illingworth":
        return kittler_illingworth(counts, centers)
    if rule == "gmm":
        return _gmm_threshold(counts, centers)
    raise ValueError(f"unknown threshold rule {rule!r}; one of {THRESHOLD_RULES}")


def threshold_choice(params: MethodParamsBase, counts: np.ndarray) -> ThresholdChoice:
    """The automatic threshold of `params` on the job-wide histogram `counts` (over
    `score_hist_edges`), with the class edges `params.class_multiples` x threshold.

    InputError when the score has no valid pixel, is constant, or the rule finds no cut, or
    the cut is not positive (class multiples cannot be placed around it).
    """
    rule = str(params.threshold)
    counts = np.asarray(counts, np.int64)
    edges = score_hist_edges()
    occupied = np.flatnonzero(counts)
    method = f"method_params.threshold = \"{rule}\""
    if occupied.size == 0:
        raise InputError(f"{method}: the score has no valid pixel, so there is nothing to "
                         "choose a threshold from; check the imagery covers the districts")
    lo, hi = int(occupied[0]), int(occupied[-1])
    if lo == hi:
        value = bin_centers(edges)[lo]
        raise InputError(
            f"{method}: the score is constant (about {value:.6g}) over all {counts.sum()} "
            "valid pixels, so there are no two populations to separate; check the pre and "
            "post imagery differ, or give a fixed threshold"
        )
    part = counts[lo : hi + 1].astype(np.float64)
    centers = bin_centers(edges)[lo : hi + 1]
    threshold = choose_threshold(rule, part, centers)
    if not (threshold > 0 and math.isfinite(threshold)):
        raise InputError(
            f"{method} chose {threshold:.6g}, not a positive score, so class_multiples "
            "cannot place the class edges around it; use direction = \"both\" (a score >= 0) "
            "or a fixed threshold with class_thresholds"
        )
    multiples = params.class_multiples
    k = int(np.searchsorted(centers, threshold))
    resolution = 0.5 * float(edges[lo + k + 1] - edges[lo + k])
    return ThresholdChoice(
        rule=rule, threshold=threshold,
        class_thresholds=tuple(threshold * m for m in multiples),
        n_valid=int(counts.sum()), score_min=float(edges[lo]), score_max=float(edges[hi + 1]),
        resolution=resolution,
    )  # fmt: skip
