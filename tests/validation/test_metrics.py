"""Accuracy metrics held to independent computations: AUC as the Mann-Whitney statistic,
precision/recall/F1 from counted confusion cells, the best F1 by trying every cut."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruinmap.cluster.validation.metrics import at_threshold, best_f1, curves, score_accuracy
from ruinmap.errors import InputError


def _mann_whitney_auc(scores: np.ndarray, damaged: np.ndarray, w: np.ndarray) -> float:
    pos, neg = scores[damaged], scores[~damaged]
    wp, wn = w[damaged], w[~damaged]
    greater = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return float((wp[:, None] * wn[None, :] * greater).sum() / (wp.sum() * wn.sum()))


def _confusion_f1(scores: np.ndarray, damaged: np.ndarray, t: float,
                  w: np.ndarray) -> tuple[float, float, float]:
    predicted = scores > t
    tp = w[predicted & damaged].sum()
    fp = w[predicted & ~damaged].sum()
    fn = w[~predicted & damaged].sum()
    precision = tp / (tp + fp) if tp + fp > 0 else np.nan
    recall = tp / (tp + fn)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0
    return precision, recall, f1


_cases = st.integers(4, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-5, 5).map(float), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n),
    st.lists(st.floats(0.5, 50), min_size=n, max_size=n),
)).filter(lambda c: any(c[1]) and not all(c[1]))


@settings(max_examples=80, deadline=None)
@given(_cases, st.booleans())
def test_metrics_match_independent_counts(case: tuple[list[float], list[bool], list[float]],
                                          weighted: bool) -> None:
    s, y = np.array(case[0]), np.array(case[1])
    w = np.array(case[2]) if weighted else np.ones(s.size)
    got = score_accuracy(s, y, [(0.0, "t0"), (2.0, "t2")],
                         weights=w if weighted else None)
    assert got.auc == pytest.approx(_mann_whitney_auc(s, y, w))
    for at, t in zip(got.at, (0.0, 2.0), strict=True):
        precision, recall, f1 = _confusion_f1(s, y, t, w)
        assert at.recall == pytest.approx(recall)
        assert at.f1 == pytest.approx(f1)
        if np.isnan(precision):
            assert np.isnan(at.precision)
        else:
            assert at.precision == pytest.approx(precision)
    # best F1: no cut between the observed scores does better
    cuts = np.concatenate([np.unique(s) - 0.5, [s.max()]])
    assert got.best is not None
    assert got.best.f1 == pytest.approx(max(_confusion_f1(s, y, t, w)[2] for t in cuts))


def test_best_f1_is_labelled_optimistic_and_its_threshold_reproduces_it() -> None:
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2])
    y = np.array([False, False, True, True, True, False])
    best = best_f1(s, y)
    assert "optimistic" in best.label
    assert at_threshold(s, y, best.threshold, "again").f1 == pytest.approx(best.f1)
    assert best.f1 == pytest.approx(6 / 7)  # cut below 0.35: 3 hits, the 0.4 a false alarm


def test_one_class_labels() -> None:
    s, y = np.array([1.0, 2.0]), np.array([True, True])
    got = score_accuracy(s, y, [(1.5, "job")])
    assert got.auc is None and got.best is None
    assert got.at[0].recall == pytest.approx(0.5)
    assert curves(s, y) is None
    with pytest.raises(InputError, match="no damaged labels"):
        score_accuracy(s, ~y, [(1.5, "job")])
    with pytest.raises(InputError, match="NaN"):
        score_accuracy(np.array([np.nan, 1.0]), y, [(1.5, "job")])
