"""validation.png: the ROC curve, the precision-recall curve and the score histogram by label,
side by side, readable when printed in a report (150 dpi, 12 x 4 in)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ruinmap.cluster.storage.durable import atomic_path
from ruinmap.cluster.validation.metrics import AtThreshold, Curves

__all__ = ["draw_validation_figure"]

_DPI = 150
_DAMAGED, _INTACT, _MARK = "#c0392b", "#2c7fb8", "#222222"


def draw_validation_figure(path: Path, *, curves: Curves | None, scores: np.ndarray,
                           damaged: np.ndarray, auc: float | None, job: AtThreshold,
                           best: AtThreshold | None, title: str) -> Path:
    """Draw the three panels into `path` (atomically); returns `path`."""
    fig = Figure(figsize=(12, 4.2), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)  # no pyplot state: safe in threads
    roc, pr, hist = fig.subplots(1, 3)
    if curves is not None:
        roc.plot(curves.fpr, curves.tpr, color=_DAMAGED, lw=1.8,
                 label=f"AUC {auc:.3f}" if auc is not None else None)
        pr.plot(curves.recall, curves.precision, color=_DAMAGED, lw=1.8)
    else:
        roc.text(0.5, 0.5, "no undamaged labels:\nno ROC curve", ha="center", va="center")
    roc.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--", label="chance")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1),
            ylim=(0, 1.01), title="ROC (threshold-free)")
    roc.legend(loc="lower right", frameon=False)
    pr.scatter([job.recall], [job.precision], color=_MARK, zorder=3,
               label=f"job threshold {job.threshold:g}: F1 {job.f1:.2f}")
    if best is not None:
        pr.scatter([best.recall], [best.precision], marker="D", facecolor="white",
                   edgecolor=_MARK, zorder=3,
                   label=f"F1-max {best.threshold:.3g}: F1 {best.f1:.2f} (optimistic)")
    pr.axhline(float(np.mean(damaged)), color="#999999", lw=0.8, ls="--",
               label="share damaged")
    pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01),
           title="Precision-recall")
    pr.legend(loc="lower left", bbox_to_anchor=(0.0, 0.18), frameon=False, fontsize=8)
    finite = scores[np.isfinite(scores)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    bins = np.linspace(min(lo, job.threshold), max(hi, job.threshold), 41)
    # each class as a density: a few hundred damaged next to thousands intact stay visible
    for mask, color, name in ((~damaged, _INTACT, "undamaged"), (damaged, _DAMAGED, "damaged")):
        if mask.any():
            hist.hist(np.clip(scores[mask], bins[0], bins[-1]), bins=bins, color=color,
                      alpha=0.55, density=True, label=f"{name} ({int(mask.sum()):,})")
    hist.axvline(job.threshold, color=_MARK, lw=1.2, ls="--", label="job threshold")
    hist.set(xlabel="score (outer 0.5 % of each tail in the end bins)",
             ylabel="density within each label", title="Score by label")
    hist.legend(frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, facecolor="white")
    return path
