"""What pwtt's extra layers (p_value, float32, and the uint16 counts n_pre, n_post in the job's
store, pwtt_layers.tif, the districts' mean_n_post) cost: the whole job (`bench_job`'s scene:
5 pre + 3 post dates, VV + VH, 100 districts, 50,000 footprints; ingest, tiles, merge, every
product) with `layers = true` and `layers = false`, runs interleaved, the median of each.

    python benchmarks/bench_pwtt_layers.py --size 2048 --repeats 3 --workers 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_job import make_scene


def run_once(job: Path, out: Path, workers: int, layers: bool) -> dict[str, Any]:
    import shutil

    from ruinmap.cluster.compute.connect import open_client
    from ruinmap.cluster.job.run import run_job
    from ruinmap.cluster.job.spec import OutputSpec, load_spec

    spec = load_spec(job)
    params = spec.method_params.model_copy(update={"layers": layers})
    spec = spec.model_copy(update={"output": OutputSpec(dir=str(out)), "method_params": params})
    shutil.rmtree(out, ignore_errors=True)
    with open_client("local", n_workers=workers, dashboard=False) as client:
        started = time.perf_counter()
        result = run_job(spec, client=client, progress=False)
        wall = time.perf_counter() - started
    return {"wall_s": wall, **{k: v for k, v in result.timings.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ruinmap-bench-layers"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    job = make_scene(args.workdir / f"scene_{args.size}", args.size)
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    run_once(job, args.workdir / "warm", args.workers, True)  # compile and cache first
    for i in range(args.repeats):
        for layers in (False, True) if i % 2 == 0 else (True, False):
            runs[layers].append(run_once(job, args.workdir / f"out_{layers}", args.workers,
                                         layers))
    report: dict[str, Any] = {"size": args.size, "workers": args.workers}
    for layers, found in runs.items():
        key = "with_layers" if layers else "without_layers"
        report[key] = {name: round(statistics.median(r[name] for r in found), 3)
                       for name in ("wall_s", "tiles_s", "products_s")
                       if all(name in r for r in found)}
        report[key]["runs_wall_s"] = [round(r["wall_s"], 2) for r in found]
    with_s, without_s = report["with_layers"]["wall_s"], report["without_layers"]["wall_s"]
    report["extra_cost"] = round(with_s / without_s - 1.0, 4)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
