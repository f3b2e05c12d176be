"""The table of methods: one `Scorer` per method, by name.

Adding a method: a module beside this one with its parameters model and its `Scorer`, and
one line in `SCORERS` and in `MethodParams`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ruinmap.cluster.methods.base import ExtraLayer, ScoreContext, ScoreLayers, Scorer
from ruinmap.cluster.methods.cva import CVA, CvaParams
from ruinmap.cluster.methods.log_ratio import LOG_RATIO, LogRatioParams
from ruinmap.cluster.methods.nd_change import ND_CHANGE, NdChangeParams
from ruinmap.cluster.methods.params import MethodParamsBase, PixelSize
from ruinmap.cluster.methods.pwtt import PWTT, PwttParams

__all__ = ["METHODS", "PARAMS_BY_METHOD", "SCORERS", "Method", "MethodParams", "check_bands",
           "compute_layers", "compute_score", "extra_layers", "halo_px", "scorer_for"]

SCORERS: dict[str, Scorer[Any]] = {s.name: s for s in (PWTT, LOG_RATIO, ND_CHANGE, CVA)}
MethodParams = PwttParams | LogRatioParams | NdChangeParams | CvaParams
Method = Literal["pwtt", "log-ratio", "nd-change", "cva"]
METHODS: tuple[str, ...] = tuple(SCORERS)
PARAMS_BY_METHOD: dict[str, type[MethodParamsBase]] = {
    name: scorer.params_model for name, scorer in SCORERS.items()
}


def scorer_for(params: MethodParamsBase) -> Scorer[Any]:
    """The scorer of the method `params` belong to."""
    return SCORERS[params.method]


def halo_px(params: MethodParamsBase, pixel_size_m: PixelSize) -> int:
    """Pixels of margin a window needs so that its cropped score equals the whole image's."""
    return scorer_for(params).halo_px(params, pixel_size_m)


def check_bands(params: MethodParamsBase, bands: Sequence[str]) -> None:
    """SpecError, naming the parameter, when the method needs a band the imagery lacks."""
    scorer_for(params).check_bands(params, bands)


def compute_score(
    pre: np.ndarray, post: np.ndarray, params: MethodParamsBase, context: ScoreContext,
    mask: np.ndarray | None = None, valid: np.ndarray | None = None,
) -> np.ndarray:
    """The score of the method `params` belongs to, on a padded window (float32).

    `mask` (bool, True = built-up, or None) and `valid` (filled with where the method's
    statistic was valid): see `methods.base.mask_statistic`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows are expected
        return scorer_for(params).score(pre, post, params, context, mask, valid)


def extra_layers(params: MethodParamsBase) -> tuple[ExtraLayer, ...]:
    """The per-pixel layers the method of `params` gives besides its score."""
    return scorer_for(params).extra_layers(params)


def compute_layers(
    pre: np.ndarray, post: np.ndarray, params: MethodParamsBase, context: ScoreContext,
    mask: np.ndarray | None = None, valid: np.ndarray | None = None,
) -> ScoreLayers:
    """The score and the extra layers of the method `params` belongs to, on a padded window;
    `mask` and `valid` as for `compute_score`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows are expected
        return scorer_for(params).score_layers(pre, post, params, context, mask, valid)
