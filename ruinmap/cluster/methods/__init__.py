"""Damage-mapping methods: one scorer per method (its parameters, bands, halo, pre-pass and
score on one padded window), listed in `registry.SCORERS`.

Only kernels from `ruinmap.kernels`, NumPy and (for whole-image pre-passes) the store are
used here; nothing knows about jobs.
"""

from __future__ import annotations

from ruinmap.cluster.methods.base import (
    ExtraLayer,
    ScoreContext,
    ScoreLayers,
    Scorer,
    band_indices,
)
from ruinmap.cluster.methods.cva import CvaParams
from ruinmap.cluster.methods.log_ratio import LogRatioParams
from ruinmap.cluster.methods.nd_change import ND_PRESETS, NdChangeParams
from ruinmap.cluster.methods.params import DEFAULT_CLASS_NAMES, MethodParamsBase, metres_to_px
from ruinmap.cluster.methods.pwtt import PwttParams
from ruinmap.cluster.methods.registry import (
    METHODS,
    PARAMS_BY_METHOD,
    SCORERS,
    Method,
    MethodParams,
    check_bands,
    compute_layers,
    compute_score,
    extra_layers,
    halo_px,
    scorer_for,
)

__all__ = [
    "DEFAULT_CLASS_NAMES", "METHODS", "ND_PRESETS", "PARAMS_BY_METHOD", "SCORERS", "CvaParams",
    "ExtraLayer", "LogRatioParams", "Method", "MethodParams", "MethodParamsBase",
    "NdChangeParams", "PwttParams", "ScoreContext", "ScoreLayers", "Scorer", "band_indices",
    "check_bands", "compute_layers", "compute_score", "extra_layers", "halo_px", "metres_to_px",
    "scorer_for",
]
