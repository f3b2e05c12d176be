"""`ruinmap bench`: every kernel on all cores, against a memory-bandwidth bound and NumPy.

For each kernel (see `cases.CASES`) on size x size float32 inputs: megapixels per second,
effective GB/s (input + output bytes once), the fraction of the bound set by a parallel triad
measured in the same run, and the speedup over the kernel's NumPy reference run through the
same row-strip harness. Importing this package compiles nothing; kernels and the triad are
compiled (or loaded from numba's cache) on first use.
"""

from __future__ import annotations

from ruinmap.bench.cases import CASES, KERNEL_NAMES, Case
from ruinmap.bench.measure import BenchResult, run_benchmarks
from ruinmap.bench.report import print_results, results_as_dicts
from ruinmap.bench.strips import concat_strips, map_strips, strip_bounds

__all__ = [
    "CASES",
    "KERNEL_NAMES",
    "BenchResult",
    "Case",
    "concat_strips",
    "map_strips",
    "print_results",
    "results_as_dicts",
    "run_benchmarks",
    "strip_bounds",
]
