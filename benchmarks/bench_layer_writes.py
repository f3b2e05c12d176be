"""What writing pwtt's extra layers costs a tile: the shards of `p_value`, `n_pre` and `n_post`
of one 1024 px tile (pwtt on 5 pre + 3 post dates of gamma speckle, a nodata band as a
swath edge), each written durably and hashed as `integrity.write_layer_shard` does, with the
counts as float32 (as stored before) and as uint16 (now), in the same process, alternating;
medians of --repeat runs, the ratio, and the shard bytes.

    python benchmarks/bench_layer_writes.py --repeat 15
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from ruinmap.cluster.methods import PwttParams, ScoreContext, compute_layers, halo_px
from ruinmap.cluster.storage.arrays import create_array, open_array, shard_file, write_shard
from ruinmap.cluster.storage.checksums import file_checksum
from ruinmap.cluster.storage.location import as_location

TILE = 1024


def tile_layers() -> dict[str, np.ndarray]:
    """pwtt's extra layers of one tile (its halo cropped off)."""
    rng = np.random.default_rng(0)
    params = PwttParams()
    halo = halo_px(params, 10.0)
    side = TILE + 2 * halo
    pre = (rng.gamma(5.0, 0.2, (5, 2, side, side)) * 0.05).astype(np.float32)
    post = (rng.gamma(5.0, 0.2, (3, 2, side, side)) * 0.05).astype(np.float32)
    pre[:, :, :, : side // 5] = np.nan  # a swath edge: no dates there
    post[:, :, :, : side // 5] = np.nan
    context = ScoreContext(bands=("VV", "VH"), pre_orbits=(0,) * 5, post_orbits=(0,) * 3,
                           pixel_size_m=10.0)
    layers = compute_layers(pre, post, params, context).extra
    crop = (slice(halo, halo + TILE), slice(halo, halo + TILE))
    return {name: np.ascontiguousarray(layer[crop]) for name, layer in layers.items()}


def write_layers(root: str, layers: dict[str, np.ndarray], token: str) -> tuple[float, int]:
    """Seconds to write and hash every layer's shard (module doc), and the bytes written."""
    store = as_location(root)
    for name, layer in layers.items():
        fill: Any = 0 if layer.dtype.kind == "u" else np.nan
        create_array(store, name, shape=(TILE, TILE), dtype=layer.dtype, chunks=(512, 512),
                     shards=(TILE, TILE), fill_value=fill, dimension_names=("y", "x"),
                     attributes={})
    started = time.perf_counter()
    size = 0
    for name, layer in layers.items():
        array = open_array(store, name, "r+", token)
        write_shard(store, array, (0, 0), (slice(0, TILE), slice(0, TILE)), layer)
        target = shard_file(store, array, (0, 0))
        file_checksum(target)
        size += os.path.getsize(target)
    return time.perf_counter() - started, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    now = tile_layers()
    before = {name: layer.astype(np.float32) for name, layer in now.items()}
    times: dict[str, list[float]] = {"float32 counts": [], "uint16 counts": []}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="ruinmap-bench-writes-") as root:
        for run in range(args.repeat):
            for label, layers in (("float32 counts", before), ("uint16 counts", now)):
                seconds, sizes[label] = write_layers(f"{root}/{run}-{label[:7]}", layers,
                                                     f"{run}-{label}")
                times[label].append(seconds)
    medians = {label: round(statistics.median(values), 4) for label, values in times.items()}
    print(json.dumps({"tile_px": TILE, "repeat": args.repeat, "seconds": medians,
                      "uint16 / float32": round(medians["uint16 counts"]
                                                / medians["float32 counts"], 3),
                      "shard_bytes": sizes}))


if __name__ == "__main__":
    main()
