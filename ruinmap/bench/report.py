"""Print `ruinmap bench` results: a rich table for people, or a bare JSON list for tools."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from ruinmap.bench.measure import BenchResult


def results_as_dicts(results: Sequence[BenchResult]) -> list[dict[str, object]]:
    """The JSON form: one plain dict per kernel row."""
    return [asdict(r) for r in results]


def print_results(results: Sequence[BenchResult], as_json: bool = False) -> None:
    """Print to stdout: only a JSON list with `as_json`, otherwise a table with a caption."""
    if as_json:
        print(json.dumps(results_as_dicts(results), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    if not results:
        print("no kernels benchmarked")
        return
    first = results[0]
    table = Table(
        title=(
            f"ruinmap bench: {first.size}x{first.size} float32, {first.threads} threads in "
            f"{first.strips} row strips, triad bound {first.triad_gb_per_s:.1f} GB/s, "
            f"load average {first.load_average_1m:.1f} at the start"
        ),
        caption=(
            "GB/s counts input + output bytes once. % bound = (bytes / triad bandwidth) / time. "
            "x NumPy = reference time / kernel time, both over the same row strips on all "
            "threads; 1-call = the reference as one single-threaded call (- = over the time "
            "budget). "
            "* reference timed on a crop (ref px) and scaled per pixel."
        ),
    )
    for name in ("kernel", "Mpx/s", "GB/s", "% bound", "x NumPy", "x 1-call", "ms", "ref px"):
        table.add_column(name, justify="left" if name == "kernel" else "right")
    for r in results:
        cropped = r.reference_size != r.size
        single = r.speedup_vs_numpy_single_call
        table.add_row(
            r.label,
            f"{r.mpx_per_s:,.0f}",
            f"{r.gb_per_s:.2f}",
            f"{r.bandwidth_fraction:.0%}",
            f"{r.speedup_vs_numpy:,.1f}" + ("*" if cropped else ""),
            "-" if single is None else f"{single:,.1f}" + ("*" if cropped else ""),
            f"{r.median_s * 1e3:,.2f}",
            str(r.reference_size),
        )
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
