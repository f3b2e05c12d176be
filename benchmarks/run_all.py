"""Run every benchmark group once and print the ratios, with the medians they come from.

    .venv/bin/python benchmarks/run_all.py [--group SUBSTRING ...] [--json]

The same groups and contenders as `pytest benchmarks/ --benchmark-only`, timed with a plain
median (one warm-up call, then the contender's rounds), for pasting figures into a note.
Sizes and rounds come from RUINMAP_BENCH_* environment variables (see README.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("NUMBA_CACHE_DIR", str(HERE.parent / ".numba-cache"))

from suite_core import (  # noqa: E402  (needs the path above)
    SIZE,
    SIZE_LARGE,
    SIZE_PEER,
    THREADS,
    format_ratio_rows,
    median_time,
    ratio_rows,
)
from suite_groups import GROUPS, RATIOS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", help="only groups whose name contains this")
    parser.add_argument("--json", action="store_true", help="print the ratio rows as JSON")
    args = parser.parse_args(argv)
    groups = [g for g in GROUPS if not args.group or any(s in g.name for s in args.group)]
    print(
        f"run_all: {THREADS} threads; sizes {SIZE}, large {SIZE_LARGE}, peer {SIZE_PEER}",
        file=sys.stderr,
    )
    medians: dict[tuple[str, str], float] = {}
    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="bench") as pool:
        for group in groups:
            print(f"run_all: {group.name}: building inputs", file=sys.stderr, flush=True)
            contenders = group.build(pool)
            for name in group.contenders:
                medians[(group.name, name)] = median_time(contenders[name])
                print(
                    f"run_all:   {name:<44} median {medians[(group.name, name)] * 1e3:10.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
            del contenders
            gc.collect()
    rows = ratio_rows(RATIOS, medians)
    if args.json:
        report = {
            "threads": THREADS,
            "sizes": {"size": SIZE, "large": SIZE_LARGE, "peer": SIZE_PEER},
            "medians_s": [
                {"group": g, "contender": c, "median_s": m} for (g, c), m in medians.items()
            ],
            "ratios": rows,
        }
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(format_ratio_rows(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
