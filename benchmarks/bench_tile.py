"""One pwtt tile against the store-read bound, in this process: where a tile's time goes.

Given an ingested store (e.g. `bench_job.py --keep`'s `out_*/store.zarr`, or `ruinmap ingest`'s),
times, interleaved, medians of --repeat runs, for the tile of --size px at (--row, --col):

- `core_read_s`: reading the tile's window of every input array (both sides, all dates and
  bands), no halo: the store-read bound of `bench_job.py`, per tile;
- `halo_read_s`: the same window widened by pwtt's halo (17 px at 10 m), through zarr;
- `window_read_s`: that padded window as `run_tile` reads it (`storage.window_read`: each
  inner chunk decoded once, of the chunks above and below only the halo's rows);
- `score_s`: pwtt's score and layers of that padded window (`compute_layers`, no mask);

and the ratios `core_read_s / halo_read_s`, `core_read_s / window_read_s` (the most of the
bound a tile can reach while it reads its halo, through zarr and as the job reads) and
`core_read_s / (window_read_s + score_s)`.

    python benchmarks/bench_tile.py /tmp/ruinmap-bench-job/scene_8192/out_2w/store.zarr \
        --row 2048 --col 2048 --size 2048 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _median_s(func: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def tile_costs(store: Path, row: int, col: int, size: int, repeat: int) -> dict[str, Any]:
    from ruinmap.cluster.methods import PwttParams, ScoreContext, compute_layers, halo_px
    from ruinmap.cluster.storage.arrays import open_array
    from ruinmap.cluster.storage.location import as_location
    from ruinmap.cluster.storage.store import StoreInfo
    from ruinmap.cluster.storage.window_read import read_window

    info = StoreInfo.read(store)
    params = PwttParams()
    halo = halo_px(params, 10.0)
    location = as_location(store)

    def read(r0: int, c0: int, r1: int, c1: int) -> list[np.ndarray]:
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, info.grid.height), min(c1, info.grid.width)
        return [np.asarray(open_array(location, side)[:, :, r0:r1, c0:c1], np.float32)
                for side in ("pre", "post")]

    def read_as_job(r0: int, c0: int, r1: int, c1: int) -> list[np.ndarray]:
        window = (max(r0, 0), max(c0, 0), min(r1, info.grid.height), min(c1, info.grid.width))
        return [read_window(location, side, window) for side in ("pre", "post")]

    core = (row, col, row + size, col + size)
    padded = (row - halo, col - halo, row + size + halo, col + size + halo)
    pre, post = read(*padded)
    context = ScoreContext(bands=info.bands, pre_orbits=(0,) * info.n_times["pre"],
                           post_orbits=(0,) * info.n_times["post"], pixel_size_m=10.0)
    valid = np.zeros(pre.shape[2:], bool)

    def score() -> None:
        compute_layers(pre, post, params, context, None, valid)

    score()  # compiled kernels loaded before timing
    runs: dict[str, list[float]] = {"core_read_s": [], "halo_read_s": [], "window_read_s": [],
                                    "score_s": []}
    for _ in range(repeat):  # interleaved, so the machine's load falls on all alike
        runs["core_read_s"].append(_median_s(lambda: read(*core), 1))
        runs["halo_read_s"].append(_median_s(lambda: read(*padded), 1))
        runs["window_read_s"].append(_median_s(lambda: read_as_job(*padded), 1))
        runs["score_s"].append(_median_s(score, 1))
    costs = {k: round(float(np.median(v)), 3) for k, v in runs.items()}
    return {"size": size, "halo": halo, **costs,
            "core_over_halo_read": round(costs["core_read_s"] / costs["halo_read_s"], 3),
            "core_over_window_read": round(costs["core_read_s"] / costs["window_read_s"], 3),
            "core_over_read_and_score": round(
                costs["core_read_s"] / (costs["window_read_s"] + costs["score_s"]), 3),
            "runs": {k: [round(t, 3) for t in v] for k, v in runs.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--row", type=int, default=2048)
    parser.add_argument("--col", type=int, default=2048)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(tile_costs(args.store, args.row, args.col, args.size, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
