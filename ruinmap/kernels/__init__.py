"""Pure numba and NumPy kernels: no dask, no xarray, no I/O.

Each kernel is a typed public function that validates and allocates, calling a jitted core
that only computes; its plain NumPy reference (`<name>_reference`) sits in the same module
and the tests hold the kernel to it.
"""

from __future__ import annotations

from ruinmap.kernels.classify import classify
from ruinmap.kernels.cva import cva_magnitude
from ruinmap.kernels.focal import focal_mean
from ruinmap.kernels.focal_median import focal_median
from ruinmap.kernels.grid import block_reduce
from ruinmap.kernels.indices import log_ratio, nd_change, normalized_difference, to_db
from ruinmap.kernels.lee import lee_filter
from ruinmap.kernels.ttest import welch_t
from ruinmap.kernels.zonal import LabelStats, label_quantile, label_stats, merge_label_stats

__all__ = [
    "LabelStats",
    "block_reduce",
    "classify",
    "cva_magnitude",
    "focal_mean",
    "focal_median",
    "label_quantile",
    "label_stats",
    "lee_filter",
    "log_ratio",
    "merge_label_stats",
    "nd_change",
    "normalized_difference",
    "to_db",
    "welch_t",
]
