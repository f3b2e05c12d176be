"""The memory-bandwidth bound: a parallel STREAM triad measured in the same run.

a[i] = b[i] + s * c[i] over float32 arrays reads two and writes one array per element, the
access pattern of our element-wise kernels (McCalpin, STREAM, 1995). Its bandwidth,
3 * nbytes / time, is what this machine sustains with all cores right now; a kernel that moves
`B` bytes cannot beat B / bandwidth seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TriadBound:
    """Result of the triad: median seconds over `runs` runs of `n` float32 elements."""

    n: int
    runs: int
    median_s: float
    threads: int

    @property
    def bytes_moved(self) -> int:
        return 3 * 4 * self.n

    @property
    def bytes_per_s(self) -> float:
        return self.bytes_moved / self.median_s

    def bound_s(self, nbytes: int) -> float:
        """Seconds to move `nbytes` at the triad's bandwidth."""
        return nbytes / self.bytes_per_s


@cache
def triad_kernel() -> Any:
    """The jitted parallel triad `triad(a, b, c, s)`: a[:] = b + s * c, float32 1-D arrays.

    Built on first use so that importing ruinmap.bench compiles nothing.
    """
    from numba import njit, prange

    @njit(parallel=True, nogil=True, cache=True)
    def triad(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: np.float32) -> None:
        for i in prange(a.size):
            a[i] = b[i] + s * c[i]

    return triad


def measure_triad(n: int, runs: int) -> TriadBound:
    """Median time of the parallel triad over `n` float32 elements, after a warm-up run."""
    import numba

    kernel = triad_kernel()
    a = np.zeros(n, np.float32)  # np.full/zeros then a first run: pages are touched pre-timing
    b = np.full(n, 1.0, np.float32)
    c = np.full(n, 2.0, np.float32)
    s = np.float32(3.0)
    kernel(a, b, c, s)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        kernel(a, b, c, s)
        times.append(time.perf_counter() - t0)
    return TriadBound(
        n=n, runs=runs, median_s=float(np.median(times)), threads=numba.get_num_threads()
    )
