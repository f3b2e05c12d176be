"""Time each case over row strips on all cores, against the triad bound and the NumPy reference.

Timing rules: a warm-up call first (numba compiles or loads its cache, pages get touched), then
`repeat` timed calls of the whole strip harness; the median is reported. The reference runs
through the same harness, so the speedup compares like with like. References too slow to run
`repeat` times at full size within `REFERENCE_BUDGET_S` are timed on a top-left crop and scaled
per pixel (`reference_size` says which side was used).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ruinmap.bench.bound import TriadBound, measure_triad
from ruinmap.bench.cases import CASES, KERNEL_NAMES, Case
from ruinmap.bench.inputs import Inputs
from ruinmap.bench.strips import map_strips, strip_bounds
from ruinmap.errors import SpecError

MIN_SIZE = 16
REFERENCE_BUDGET_S = 6.0  # wall seconds per case for all reference runs together
PROBE_SIDE = 256  # crop side of the first, untimed-for-report reference call
TRIAD_MIN_RUNS = 7


@dataclass(frozen=True)
class BenchResult:
    """One row of `ruinmap bench`; times in seconds, rates per second of the kernel's median."""

    kernel: str
    params: dict[str, Any]
    size: int
    threads: int
    strips: int
    repeat: int
    median_s: float
    times_s: list[float]
    mpx_per_s: float
    bytes_moved: int
    gb_per_s: float
    bound_s: float
    bandwidth_fraction: float
    triad_gb_per_s: float
    load_average_1m: float  # at the start of the run: other work on the machine skews timings
    reference: str
    reference_size: int
    reference_median_s: float
    speedup_vs_numpy: float
    reference_single_call_s: float | None = None
    # kernels with `out=` are timed writing into a preallocated image; this is the median
    # with a fresh output per call, page faults included
    median_s_allocating: float | None = None
    speedup_vs_numpy_single_call: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        shown = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kernel} {shown}".strip()


def run_benchmarks(
    size: int = 4096, repeat: int = 5, kernels: Sequence[str] | None = None
) -> list[BenchResult]:
    """Benchmark every kernel (or those named in `kernels`) on size x size float32 inputs.

    Prints one progress line per kernel to stderr. Raises SpecError on a bad size, repeat or
    kernel name.
    """
    cases = _select(kernels)
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise SpecError(f"--size must be an integer >= {MIN_SIZE} pixels, got {size!r}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise SpecError(f"--repeat must be an integer >= 1, got {repeat!r}")

    threads = os.cpu_count() or 1
    load = os.getloadavg()[0]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench") as pool:
        triad = measure_triad(size * size, max(repeat, TRIAD_MIN_RUNS))
        _progress(
            f"triad bound: {triad.bytes_per_s / 1e9:.2f} GB/s "
            f"({size}x{size} float32, {triad.threads} numba threads, median of {triad.runs}); "
            f"load average {load:.2f} on {threads} cores"
        )
        inputs = Inputs(size, pool, threads)
        layers = max(c.layers for c in cases)
        inputs.sigma0("pre", layers)  # draw the deepest stacks once; single images are views
        inputs.sigma0("post", layers)
        results = []
        for case in cases:
            result = _measure(case, inputs, pool, threads, repeat, triad, load)
            _progress(
                f"{result.label:<34} {result.mpx_per_s:10.1f} Mpx/s {result.gb_per_s:8.2f} GB/s "
                f"{result.bandwidth_fraction:7.1%} of bound {result.speedup_vs_numpy:8.1f}x NumPy"
                f"  ({result.median_s * 1e3:.2f} ms)"
            )
            results.append(result)
    return results


def _select(kernels: Sequence[str] | None) -> list[Case]:
    if not kernels:
        return list(CASES)
    unknown = [k for k in kernels if k not in KERNEL_NAMES]
    if unknown:
        raise SpecError(
            f"--kernel: unknown kernel {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(KERNEL_NAMES)}"
        )
    return [c for c in CASES if c.kernel in set(kernels)]


def _progress(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


def _measure(
    case: Case,
    inputs: Inputs,
    pool: Executor,
    threads: int,
    repeat: int,
    triad: TriadBound,
    load: float,
) -> BenchResult:
    kernel, reference, combine = case.functions()
    arrays = case.inputs(inputs)
    size = inputs.size

    def run(func: Callable[..., Any], args: Sequence[np.ndarray]) -> Any:
        parts = map_strips(pool, threads, func, args, halo=case.halo, quantum=case.quantum)
        return combine(parts) if combine is not None else parts

    out = run(kernel, arrays)
    bytes_moved = sum(a.nbytes for a in arrays) + _nbytes(out)
    del out
    allocating: float | None = None
    if case.out_dtype is None:
        times = _times(lambda: run(kernel, arrays), repeat)
    else:
        allocating = float(np.median(_times(lambda: run(kernel, arrays), repeat)))
        dest = np.zeros(arrays[0].shape[-2:], case.out_dtype)  # zeros: pages mapped up front

        def into(*args: np.ndarray) -> np.ndarray:
            return kernel(*args[:-1], out=args[-1])

        with_dest = [*arrays, dest]
        run(into, with_dest)
        times = _times(lambda: run(into, with_dest), repeat)
    median = float(np.median(times))

    ref = _time_reference(case, reference, arrays, size, threads, repeat, run)
    bound = triad.bound_s(bytes_moved)
    return BenchResult(
        kernel=case.kernel,
        params=dict(case.params),
        size=size,
        threads=threads,
        strips=len(strip_bounds(size, threads, case.quantum)),
        repeat=repeat,
        median_s=median,
        times_s=times,
        mpx_per_s=size * size / 1e6 / median,
        bytes_moved=bytes_moved,
        gb_per_s=bytes_moved / 1e9 / median,
        bound_s=bound,
        bandwidth_fraction=bound / median,
        triad_gb_per_s=triad.bytes_per_s / 1e9,
        load_average_1m=load,
        reference=f"{case.module}.{case.kernel}_reference",
        reference_size=ref.side,
        reference_median_s=ref.median_s,
        speedup_vs_numpy=ref.median_s / median,
        reference_single_call_s=ref.single_call_s,
        speedup_vs_numpy_single_call=(
            None if ref.single_call_s is None else ref.single_call_s / median
        ),
        notes=ref.notes,
        median_s_allocating=allocating,
    )


@dataclass(frozen=True)
class _Reference:
    side: int
    median_s: float  # scaled to the full size
    single_call_s: float | None  # scaled to the full size; None when too slow to run
    notes: list[str]


def _time_reference(
    case: Case,
    reference: Callable[..., Any],
    arrays: Sequence[np.ndarray],
    size: int,
    threads: int,
    repeat: int,
    run: Callable[[Callable[..., Any], Sequence[np.ndarray]], Any],
) -> _Reference:
    def crop(side: int) -> list[np.ndarray]:
        return [a[..., :side, :side] for a in arrays]

    probe_side = _aligned(min(size, PROBE_SIDE), case.quantum, size)
    t0 = time.perf_counter()
    run(reference, crop(probe_side))
    per_px = (time.perf_counter() - t0) / probe_side**2

    side = size
    if per_px * size * size * (repeat + 1) > REFERENCE_BUDGET_S:
        fit = math.isqrt(int(REFERENCE_BUDGET_S / (repeat + 1) / per_px))
        side = max(probe_side, _aligned(fit, math.lcm(64, case.quantum), size))
    args = crop(side)
    scale = (size / side) ** 2
    run(reference, args)  # warm-up, as for the kernel
    median = float(np.median(_times(lambda: run(reference, args), repeat))) * scale

    notes = []
    if side != size:
        notes.append(f"reference timed on {side}x{side} and scaled per pixel")
    single: float | None = None
    single_runs = min(repeat, 3)
    if median / scale * threads * single_runs <= REFERENCE_BUDGET_S:
        single = float(np.median(_times(lambda: reference(*args), single_runs))) * scale
    else:
        notes.append("reference single-call time skipped (over the time budget)")
    return _Reference(side=side, median_s=median, single_call_s=single, notes=notes)


def _aligned(side: int, quantum: int, size: int) -> int:
    """`side` rounded down to a multiple of `quantum`, at least one quantum, at most `size`."""
    return min(size, max(quantum, side // quantum * quantum))


def _times(call: Callable[[], Any], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def _nbytes(obj: Any) -> int:
    """Bytes of every array in a result: an array, a list/tuple of them, or a dataclass."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, list | tuple):
        return sum(_nbytes(o) for o in obj)
    fields = getattr(obj, "__dataclass_fields__", None)
    if fields is not None:
        return sum(_nbytes(getattr(obj, name)) for name in fields)
    return 0
