"""Benchmark the built-up mask: the same job with `[mask] source = "none"` and with the
default footprint mask, side by side in one process on one cluster.

The scene is `bench_job.py`'s (size x size px at 10 m, 5 pre + 3 post dates, VV + VH, 100
districts, 50,000 footprints), ingested once; every run then reads that store
(`inputs.store`), so the times compared are the job's own work after the ingest: the tiles
(reading, scoring, the mask, writing, reducing), the merge and every product. The runs
alternate (none, buildings, none, ...) so that a load change on a shared machine hits both;
it prints each run, the medians and the ratio of the medians (mask / none), whole and for
the tiles phase.

    python benchmarks/bench_mask.py --size 4096 --repeat 3 --workers 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_job import make_scene


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ruinmap-bench-mask"))
    parser.add_argument("--keep", action="store_true", help="keep the scene afterwards")
    args = parser.parse_args()

    from ruinmap.cluster.compute.connect import open_client
    from ruinmap.cluster.job.run import run_job
    from ruinmap.cluster.job.spec import load_spec, parse_spec

    folder = args.workdir / f"scene_{args.size}"
    t0 = time.perf_counter()
    job = make_scene(folder, args.size)
    print(f"scene ready in {time.perf_counter() - t0:.0f} s", flush=True)
    base = load_spec(job).to_json_dict()
    store = folder / "ingested"
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "buildings": []}
    with open_client("local", n_workers=args.workers, dashboard=False) as client:
        t0 = time.perf_counter()
        first = parse_spec({**base, "output": {"dir": str(store)}, "mask": {"source": "none"}},
                           folder)
        run_job(first, client=client, progress=False, write_products=False)
        print(f"ingest and a warm-up run in {time.perf_counter() - t0:.0f} s", flush=True)
        inputs = {"store": str(store / "store.zarr")}
        for k in range(args.repeat):
            for source in ("none", "buildings"):
                out = folder / f"out_{source}"
                shutil.rmtree(out, ignore_errors=True)
                spec = parse_spec({**base, "inputs": inputs, "output": {"dir": str(out)},
                                   "mask": {"source": source}}, folder)
                started = time.perf_counter()
                result = run_job(spec, client=client, progress=False)
                wall = time.perf_counter() - started
                run = {"wall_s": round(wall, 2),
                       "tiles_s": round(result.timings.get("tiles_s", float("nan")), 2),
                       "merge_s": round(result.timings.get("merge_s", float("nan")), 2),
                       "products_s": round(result.timings.get("products_s", float("nan")), 2),
                       "built_km2": round(float(result.districts["built_km2"].sum()), 2)}
                runs[source].append(run)
                print(f"run {k + 1} mask {source}: {json.dumps(run)}", flush=True)
    summary: dict[str, Any] = {"size": args.size, "workers": args.workers,
                               "repeat": args.repeat}
    for key in ("wall_s", "tiles_s"):
        none = statistics.median(r[key] for r in runs["none"])
        masked = statistics.median(r[key] for r in runs["buildings"])
        summary[key] = {"none": none, "buildings": masked, "ratio": round(masked / none, 3)}
    print(json.dumps(summary), flush=True)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
