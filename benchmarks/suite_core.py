"""Shared pieces of the benchmark suite: sizes, contenders, groups, ratios and plain timing.

Both `bench_kernels.py` (pytest-benchmark) and `run_all.py` (plain script) time the same
contenders of the same groups, so their figures agree; each prints the ratios of one run.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# Image sides. SIZE for kernel-only comparisons, LARGE where the brief names 10000 x 10000,
# PEER for xarray-spatial, whose per-pixel cost makes a full 4096 x 4096 run take minutes.
SIZE = _env_int("RUINMAP_BENCH_SIZE", 4096)
SIZE_LARGE = _env_int("RUINMAP_BENCH_SIZE_LARGE", 10000)
SIZE_PEER = _env_int("RUINMAP_BENCH_SIZE_PEER", 2048)
ROUNDS = _env_int("RUINMAP_BENCH_ROUNDS", 5)  # timed rounds of fast contenders
SLOW_ROUNDS = _env_int("RUINMAP_BENCH_SLOW_ROUNDS", 3)  # of references and peers
THREADS = os.cpu_count() or 1


@dataclass(frozen=True)
class Contender:
    """One timed callable of a group; `rounds` timed calls after one warm-up call."""

    call: Callable[[], Any]
    rounds: int = ROUNDS


@dataclass(frozen=True)
class Group:
    """Contenders that run on the same inputs; one pytest-benchmark group.

    `build(pool)` draws the inputs, checks that the contenders agree where they should, and
    returns the contenders by name; `contenders` lists those names without building anything.
    """

    name: str
    contenders: tuple[str, ...]
    build: Callable[[Executor], Mapping[str, Contender]]


@dataclass(frozen=True)
class Ratio:
    """time(numerator) / time(denominator) within one group, and the target it should meet."""

    title: str
    group: str
    numerator: str
    denominator: str
    target_op: str = ""  # ">=", "<=" or "" (reported only)
    target: float = 0.0

    def value(self, medians: Mapping[tuple[str, str], float]) -> float | None:
        num = medians.get((self.group, self.numerator))
        den = medians.get((self.group, self.denominator))
        return None if num is None or den is None else num / den

    def met(self, value: float) -> bool | None:
        if self.target_op == ">=":
            return value >= self.target
        if self.target_op == "<=":
            return value <= self.target
        return None


def ratio_rows(
    ratios: tuple[Ratio, ...], medians: Mapping[tuple[str, str], float]
) -> list[dict[str, Any]]:
    """One dict per ratio whose two medians were measured: the figures to paste in a note."""
    rows = []
    for r in ratios:
        value = r.value(medians)
        if value is None:
            continue
        rows.append(
            {
                "ratio": r.title,
                "group": r.group,
                "numerator": r.numerator,
                "numerator_median_s": medians[(r.group, r.numerator)],
                "denominator": r.denominator,
                "denominator_median_s": medians[(r.group, r.denominator)],
                "value": value,
                "target": f"{r.target_op} {r.target:g}" if r.target_op else "",
                "met": r.met(value),
            }
        )
    return rows


def format_ratio_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Fixed-width text lines of `ratio_rows` (no colour, so they paste anywhere)."""
    lines = [
        f"{'ratio':<52} {'value':>9} {'target':>8} {'ok':>4}   medians (numerator / denominator)"
    ]
    for row in rows:
        ok = {True: "yes", False: "NO", None: "-"}[row["met"]]
        lines.append(
            f"{row['ratio']:<52} {row['value']:9.3g} {row['target']:>8} {ok:>4}   "
            f"{row['numerator_median_s'] * 1e3:,.1f} ms / "
            f"{row['denominator_median_s'] * 1e3:,.1f} ms"
        )
    return lines


def median_time(contender: Contender) -> float:
    """Median seconds of `contender.rounds` calls after one warm-up call."""
    contender.call()
    times = []
    for _ in range(contender.rounds):
        t0 = time.perf_counter()
        contender.call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
