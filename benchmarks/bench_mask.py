"""Benchmark the built-up mask and pwtt's extra layers: the same job without either
(`[mask] source = "none"`, `method_params.layers = false`), with the default footprint mask,
and with the mask and the layers (`p_value`, `n_pre`, `n_post` and `pwtt_layers.tif`, the
defaults), side by side in one process on one cluster.

The scene is `bench_job.py`'s (size x size px at 10 m, 5 pre + 3 post dates, VV + VH, 100
districts, 50,000 footprints), ingested once; every run then reads that store
(`inputs.store`), so the times compared are the job's own work after the ingest: the tiles
(reading, scoring, the mask, writing, reducing), the merge and every product. The runs
alternate (none, buildings, none, ...) so that a load change on a shared machine hits both;
it prints each run, the medians and the ratios of the medians to the plain job's, whole and
for the tiles and products phases.

    python benchmarks/bench_mask.py --size 4096 --repeat 3 --workers 2

`--tile-only` times one tile's steps in this process instead (no cluster, no files): the
1024 px tile of the 4096 px scene with its pwtt halo, 5 pre + 3 post dates, and the ~3,100
footprints (of 50,000 over the scene) within its halo plus the 10 m buffer: the footprint
mask (`builtup.window_mask`), the score without and with the mask (`compute_score`), medians
of --repeat runs, and the mask's share of the tile's score time.

    python benchmarks/bench_mask.py --tile-only --repeat 5
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


def tile_costs(repeat: int) -> dict[str, Any]:
    """The footprint mask's cost on one tile against the score's (module doc)."""
    import numpy as np
    import shapely
    from affine import Affine

    from ruinmap.cluster.geo.grid import Grid
    from ruinmap.cluster.job.builtup import MaskChoice, window_mask
    from ruinmap.cluster.methods import PwttParams, ScoreContext, compute_score, halo_px

    rng = np.random.default_rng(0)
    params = PwttParams()
    halo = halo_px(params, 10.0)
    side = 1024 + 2 * halo
    grid = Grid.of("EPSG:32636", Affine(10.0, 0, 600000.0, 0, -10.0, 4000000.0), side, side)
    pre = (rng.gamma(5.0, 0.2, (5, 2, side, side)) * 0.05).astype(np.float32)
    post = (rng.gamma(5.0, 0.2, (3, 2, side, side)) * 0.05).astype(np.float32)
    extent = side * 10.0
    n = round(50_000 * (side / 4096) ** 2)  # the scene's footprint density
    cx = rng.uniform(600000.0, 600000.0 + extent, n)
    cy = rng.uniform(4000000.0 - extent, 4000000.0, n)
    w, h = rng.uniform(6, 30, n), rng.uniform(6, 30, n)
    wkb = shapely.to_wkb(shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    choice = MaskChoice(kind="buildings", chosen_by="default", buffer_m=10.0)
    context = ScoreContext(bands=("VV", "VH"), pre_orbits=(0,) * 5, post_orbits=(0,) * 3,
                           pixel_size_m=10.0)
    window = (0, 0, side, side)
    times: dict[str, list[float]] = {"mask_s": [], "score_s": [], "score_masked_s": []}
    mask = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        mask = window_mask(choice, grid, window, wkb, 10.0)
        times["mask_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        compute_score(pre, post, params, context, None, np.zeros((side, side), bool))
        times["score_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        compute_score(pre, post, params, context, mask, np.zeros((side, side), bool))
        times["score_masked_s"].append(time.perf_counter() - t0)
    out: dict[str, Any] = {k: round(statistics.median(v), 4) for k, v in times.items()}
    out["footprints"] = n
    out["built_share"] = round(float(mask.mean()), 3) if mask is not None else None
    out["mask_and_masked_score_vs_score"] = round(
        (out["mask_s"] + out["score_masked_s"]) / out["score_s"], 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ruinmap-bench-mask"))
    parser.add_argument("--keep", action="store_true", help="keep the scene afterwards")
    parser.add_argument("--tile-only", action="store_true",
                        help="time one tile's mask and score in this process (module doc)")
    args = parser.parse_args()
    if args.tile_only:
        print(json.dumps(tile_costs(args.repeat)), flush=True)
        return 0

    from ruinmap.cluster.compute.connect import open_client
    from ruinmap.cluster.job.run import run_job
    from ruinmap.cluster.job.spec import load_spec, parse_spec

    folder = args.workdir / f"scene_{args.size}"
    t0 = time.perf_counter()
    job = make_scene(folder, args.size)
    print(f"scene ready in {time.perf_counter() - t0:.0f} s", flush=True)
    base = load_spec(job).to_json_dict()
    store = folder / "ingested"
    configs = {"plain": ("none", False), "mask": ("buildings", False),
               "mask+layers": ("buildings", True)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    with open_client("local", n_workers=args.workers, dashboard=False) as client:
        t0 = time.perf_counter()
        first = parse_spec({**base, "output": {"dir": str(store)}, "mask": {"source": "none"}},
                           folder)
        run_job(first, client=client, progress=False, write_products=False)
        print(f"ingest and a warm-up run in {time.perf_counter() - t0:.0f} s", flush=True)
        inputs = {"store": str(store / "store.zarr")}
        for k in range(args.repeat):
            for name, (source, layers) in configs.items():
                out = folder / f"out_{source}_{layers}"
                shutil.rmtree(out, ignore_errors=True)
                params = {**base.get("method_params", {}), "layers": layers}
                spec = parse_spec({**base, "inputs": inputs, "output": {"dir": str(out)},
                                   "mask": {"source": source}, "method_params": params},
                                  folder)
                started = time.perf_counter()
                result = run_job(spec, client=client, progress=False)
                wall = time.perf_counter() - started
                run = {"wall_s": round(wall, 2),
                       "tiles_s": round(result.timings.get("tiles_s", float("nan")), 2),
                       "merge_s": round(result.timings.get("merge_s", float("nan")), 2),
                       "products_s": round(result.timings.get("products_s", float("nan")), 2),
                       "built_km2": round(float(result.districts["built_km2"].sum()), 2)}
                runs[name].append(run)
                print(f"run {k + 1} {name}: {json.dumps(run)}", flush=True)
    summary: dict[str, Any] = {"size": args.size, "workers": args.workers,
                               "repeat": args.repeat}
    for key in ("wall_s", "tiles_s", "products_s"):
        plain = statistics.median(r[key] for r in runs["plain"])
        summary[key] = {"plain": plain}
        for name in ("mask", "mask+layers"):
            value = statistics.median(r[key] for r in runs[name])
            summary[key][name] = value
            summary[key][f"{name} / plain"] = round(value / plain, 3)
    print(json.dumps(summary), flush=True)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
