"""Accuracy of building scores against labels: threshold-free AUC, and precision, recall and
F1 at given thresholds, each plain and weighted (by footprint area, as PWTT reports).

All come from scikit-learn's `roc_auc_score`, `precision_recall_fscore_support` and
`precision_recall_curve`; this module only decides what is reported and names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import (
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from ruinmap.errors import InputError

__all__ = ["AtThreshold", "Curves", "ScoreAccuracy", "at_threshold", "best_f1", "curves",
           "score_accuracy"]


@dataclass(frozen=True)
class AtThreshold:
    """Damaged = score > threshold, held against the labels."""

    threshold: float
    label: str  # e.g. "job threshold", "class 2 (likely)", "F1-maximising (optimistic)"
    precision: float
    recall: float
    f1: float
    predicted_damaged: int
    true_positives: int

    def as_dict(self) -> dict[str, Any]:
        return {k: _finite_or_none(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ScoreAccuracy:
    """One weighting's metrics (`weighting`: "buildings" or "area")."""

    weighting: str
    auc: float | None  # None when the labels hold one class only
    at: tuple[AtThreshold, ...]
    best: AtThreshold | None

    def as_dict(self) -> dict[str, Any]:
        return {"weighting": self.weighting, "auc": _finite_or_none(self.auc),
                "at_thresholds": [a.as_dict() for a in self.at],
                "best_f1": None if self.best is None else self.best.as_dict()}


@dataclass(frozen=True)
class Curves:
    """ROC and precision-recall curves, for the figure."""

    fpr: np.ndarray
    tpr: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _checked(scores: np.ndarray, damaged: np.ndarray,
             weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    s = np.asarray(scores, np.float64)
    y = np.asarray(damaged, bool)
    if s.shape != y.shape or s.ndim != 1:
        raise InputError(f"scores {s.shape} and labels {y.shape} must be 1-D of one length")
    if not np.isfinite(s).all():
        raise InputError("scores hold NaN or infinity; pass only scored buildings")
    if not y.any():
        raise InputError("no damaged labels among the scored buildings: no accuracy to report")
    w = None if weights is None else np.asarray(weights, np.float64)
    if w is not None and (w.shape != s.shape or not (np.isfinite(w) & (w >= 0)).all()):
        raise InputError("weights must be finite, non-negative and one per building")
    return s, y, w


def at_threshold(scores: np.ndarray, damaged: np.ndarray, threshold: float, label: str,
                 weights: np.ndarray | None = None) -> AtThreshold:
    """Precision, recall and F1 of `score > threshold` against `damaged` (weighted sums with
    `weights`); precision is NaN when nothing is predicted damaged."""
    s, y, w = _checked(scores, damaged, weights)
    predicted = s > threshold
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, average="binary", sample_weight=w, zero_division=np.nan)
    return AtThreshold(threshold=float(threshold), label=label, precision=float(precision),
                       recall=float(recall), f1=float(f1) if np.isfinite(f1) else 0.0,
                       predicted_damaged=int(predicted.sum()),
                       true_positives=int((predicted & y).sum()))


def best_f1(scores: np.ndarray, damaged: np.ndarray,
            weights: np.ndarray | None = None) -> AtThreshold:
    """The threshold that maximises F1 on these very labels: optimistic, reported apart."""
    s, y, w = _checked(scores, damaged, weights)
    precision, recall, thresholds = precision_recall_curve(y, s, sample_weight=w)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
    i = int(np.argmax(f1[:-1]))  # the last point (recall 0) has no threshold
    # sklearn's thresholds mean score >= t; ours is score > t: step just below t
    cut = float(np.nextafter(thresholds[i], -np.inf))
    return at_threshold(s, y, cut, "F1-maximising on these labels (optimistic)", w)


def score_accuracy(scores: np.ndarray, damaged: np.ndarray,
                   thresholds: Sequence[tuple[float, str]], *, weighting: str = "buildings",
                   weights: np.ndarray | None = None) -> ScoreAccuracy:
    """AUC, metrics at each (threshold, label) and the F1-maximising threshold."""
    s, y, w = _checked(scores, damaged, weights)
    auc = float(roc_auc_score(y, s, sample_weight=w)) if (~y).any() else None
    at = tuple(at_threshold(s, y, t, label, w) for t, label in thresholds)
    return ScoreAccuracy(weighting=weighting, auc=auc, at=at,
                         best=best_f1(s, y, w) if (~y).any() else None)


def curves(scores: np.ndarray, damaged: np.ndarray) -> Curves | None:
    """ROC and PR curves; None when the labels hold one class only."""
    s, y, _ = _checked(scores, damaged, None)
    if not (~y).any():
        return None
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    return Curves(fpr=fpr, tpr=tpr, precision=precision, recall=recall)
