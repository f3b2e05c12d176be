"""The tile phase alone against the store-read bound, on one cluster: bench_job's job without
its ingest and products.

Runs `bench_job.py`'s job (its scene's job.toml, kept with `--keep`) on an already ingested
store (`inputs.store`; e.g. `ruinmap ingest --pre 'pre/*.tif' --post 'post/*.tif' --out
store.zarr`) on --workers local workers, without products, then measures `store_read_s` on the
same cluster exactly as bench_job does, and prints one JSON line: `tiles_s`, `store_read_s`,
their ratio (the issue's target is >= 0.5) and the medians of the tiles' own timings
(`run_tile`'s read / score / write / total). Ingesting once makes code versions cheap to
compare on one store: run it from each checkout, interleaved.

    python benchmarks/bench_tile_phase.py /tmp/ruinmap-bench-job/scene_8192 store8192.zarr \
        /tmp/tile-phase-out --workers 2
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from bench_job import _median_map_seconds, _sum_store_tile


class _TileTimings(logging.Handler):
    """Collects the timings `run._run_tiles` logs for every finished tile."""

    def __init__(self) -> None:
        super().__init__()
        self.timings: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        # logging keeps a lone dict argument as the record's args itself
        if record.getMessage().startswith("tile timings") and isinstance(record.args, dict):
            self.timings.append(dict(record.args))


def tile_phase(scene: Path, store: str, out: Path, workers: int) -> dict[str, Any]:
    from ruinmap.cluster.compute.connect import open_client
    from ruinmap.cluster.job.run import run_job
    from ruinmap.cluster.job.spec import OutputSpec, load_spec
    from ruinmap.cluster.job.tiles import plan_tiles, tile_size
    from ruinmap.cluster.storage.store import StoreInfo

    collected = _TileTimings()
    logger = logging.getLogger("ruinmap.cluster.job.run")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(collected)
    spec = load_spec(scene / "job.toml")
    spec = spec.model_copy(update={"output": OutputSpec(dir=str(out)), "inputs":
                                   spec.inputs.model_copy(update={"store": store, "pre": [],
                                                                  "post": []})})
    shutil.rmtree(out, ignore_errors=True)
    with open_client("local", n_workers=workers, dashboard=False) as client:
        result = run_job(spec, client=client, progress=False, write_products=False)
        info = StoreInfo.read(store)
        tile_px = tile_size(info.grid.height, info.grid.width, info.chunk, info.shard)
        windows = [(t.row0, t.col0, t.row0 + t.height, t.col0 + t.width)
                   for t in plan_tiles(info.grid.height, info.grid.width, tile_px)]
        store_read = _median_map_seconds(client, _sum_store_tile, [store] * len(windows),
                                         windows)
    shutil.rmtree(out, ignore_errors=True)
    tiles_s = result.timings["tiles_s"]
    timings = collected.timings
    return {"tiles_s": round(tiles_s, 2), "store_read_s": round(store_read, 3),
            "store_read_over_tiles": round(store_read / tiles_s, 3),
            "tile_median_s": {k: round(statistics.median(t[k] for t in timings), 3)
                              for k in (timings[0] if timings else {})},
            "tiles": len(timings)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path, help="a bench_job scene folder (its job.toml)")
    parser.add_argument("store", help="the scene's ingested store")
    parser.add_argument("out", type=Path, help="the job's output folder (removed after)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(tile_phase(args.scene, args.store, args.out, args.workers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
