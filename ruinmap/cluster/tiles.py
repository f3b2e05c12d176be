"""One task per output tile: read a window plus its halo from the store, score, write, reduce.

Tiles follow the store's shard grid, and the `score` and `damage` arrays have the same shards
as the input, so no two tasks ever write the same shard file and no locks are needed. A task
reads its window plus a halo (`methods.halo_px`, clipped at the image edge) straight from the
Zarr store (a global `map_overlap` keeps neighbours' blocks alive far longer, dask/dask#3671),
scores it, crops the halo off, writes `score` and `damage`, fsyncs the shard files, reduces
the tile to a `TilePartial` saved beside the ledger, and records the tile in the ledger last.
So a recorded tile's outputs and partial are whole and durable; anything else is redone.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import zarr
from affine import Affine

from ruinmap.cluster import objectstore
from ruinmap.cluster.aggregate import TilePartial, load_partial, save_partial, tile_partial
from ruinmap.cluster.grid import Grid
from ruinmap.cluster.ledger import Ledger, ObjectLedger, open_ledger
from ruinmap.cluster.methods import ScoreContext, compute_score
from ruinmap.cluster.rasterize import (
    TileVectors,
    footprint_labels,
    labels_on_window,
    window_transform,
)
from ruinmap.cluster.spec import MethodParams
from ruinmap.cluster.store import shard_file
from ruinmap.kernels import classify

__all__ = ["Tile", "TileJob", "load_tile_partial", "partial_path", "plan_tiles",
           "read_window_stack", "run_tile"]


@dataclass(frozen=True)
class Tile:
    """One output tile: shard-grid position (iy, ix) and pixel window."""

    iy: int
    ix: int
    row0: int
    col0: int
    height: int
    width: int

    @property
    def key(self) -> str:
        return f"tile/{self.iy}/{self.ix}"

    @property
    def bounds_px(self) -> tuple[int, int, int, int]:
        return self.row0, self.col0, self.row0 + self.height, self.col0 + self.width


#: A scene that the store's shards cut into fewer tiles than this gets smaller tiles, halving
#: down to MIN_TILE_PX: a 4096² city had 4 tiles of 2048 px, so on a workstation all but 4
#: workers sat idle and 2 workers reached 1.30x of one.
MIN_TILES = 16
#: Below this the halo (the largest focal reach, ~17 px for pwtt at 10 m) and the per-task
#: costs grow out of proportion: at 1024 px the halo adds 7 % to the reads, at 512 px 14 %.
MIN_TILE_PX = 1024


def tile_size(height: int, width: int, chunk: int, shard: int) -> int:
    """The side of the job's tiles: the store's shard, halved while the image has fewer than
    MIN_TILES tiles and the half is a multiple of `chunk` and at least MIN_TILE_PX.

    Depends only on the store, never on the cluster, so a resumed job keeps its tiles.
    """
    tile = shard
    while (
        math.ceil(height / tile) * math.ceil(width / tile) < MIN_TILES
        and tile % 2 == 0
        and (tile // 2) % chunk == 0
        and tile // 2 >= max(chunk, MIN_TILE_PX)
    ):
        tile //= 2
    return tile


def plan_tiles(height: int, width: int, tile_px: int) -> list[Tile]:
    """Tiles of `tile_px` square covering the image, row by row; edge tiles are smaller."""
    return [
        Tile(iy, ix, iy * tile_px, ix * tile_px,
             min(tile_px, height - iy * tile_px), min(tile_px, width - ix * tile_px))
        for iy in range(math.ceil(height / tile_px))
        for ix in range(math.ceil(width / tile_px))
    ]  # fmt: skip


@lru_cache(maxsize=16)
def _array(store: str, name: str, mode: str, token: str = "",
           options: tuple[tuple[str, Any], ...] = ()) -> zarr.Array:
    # `token` (the job signature) keys the cache: arrays re-created for another job at the
    # same path are reopened, never written through stale metadata
    return zarr.open_array(store=objectstore.zarr_store(store, dict(options)), path=name,
                           mode=mode, zarr_format=3)


def read_window_stack(
    store: str, side: str, tile: Tile, halo: int, grid: Grid, token: str = "",
    storage_options: dict[str, Any] | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """The (time, band, y, x) window of `tile` widened by `halo` (clipped at the image edge).

    Returns the block and the (row, col) of the tile's first pixel inside it.
    """
    r0, c0 = max(0, tile.row0 - halo), max(0, tile.col0 - halo)
    r1 = min(grid.height, tile.row0 + tile.height + halo)
    c1 = min(grid.width, tile.col0 + tile.width + halo)
    options = tuple(sorted((storage_options or {}).items()))
    block = np.asarray(_array(store, side, "r", token, options)[:, :, r0:r1, c0:c1],
                       dtype=np.float32)
    return block, (tile.row0 - r0, tile.col0 - c0)


@dataclass(frozen=True)
class TileJob:
    """Everything every tile task shares (sent to the workers once)."""

    store: str
    work_dir: str
    grid: Grid
    params: MethodParams
    context: ScoreContext
    halo: int
    cell_px: int
    n_districts: int
    edges: np.ndarray
    signature: str
    # the client's object-storage endpoint, for an s3:// store or output folder
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def ledger(self) -> Ledger | ObjectLedger:
        return open_ledger(objectstore.join(self.work_dir, "ledger"), self.storage_options)

    @property
    def options_key(self) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted(self.storage_options.items()))


def partial_path(work_dir: str | Path, tile: Tile) -> Path | str:
    name = f"tile_{tile.iy}_{tile.ix}.npz"
    if objectstore.is_url(work_dir):
        return f"{str(work_dir).rstrip('/')}/partials/{name}"
    return Path(work_dir) / "partials" / name


def save_tile_partial(job: TileJob, tile: Tile, partial: TilePartial) -> None:
    """Save a tile's partial durably: fsync'd and renamed locally, one PUT in object storage."""
    target = partial_path(job.work_dir, tile)
    if isinstance(target, Path):
        save_partial(partial, target)
        return
    buffer = io.BytesIO()
    np.savez(buffer, **{name: getattr(partial, name) for name in partial.__dataclass_fields__})
    objectstore.put_bytes(target, buffer.getvalue(), job.storage_options)


def load_tile_partial(job: TileJob, tile: Tile) -> TilePartial:
    """The partial `save_tile_partial` saved for `tile`."""
    target = partial_path(job.work_dir, tile)
    if isinstance(target, Path):
        return load_partial(target)
    data = io.BytesIO(objectstore.read_bytes(target, job.storage_options))
    with np.load(data) as arrays:
        return TilePartial(**{name: arrays[name] for name in TilePartial.__dataclass_fields__})


def _fsync(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_output(job: TileJob, name: str, tile: Tile, data: np.ndarray) -> None:
    array = _array(job.store, name, "r+", job.signature, job.options_key)
    shard = array.shards[0] if array.shards else array.chunks[0]
    coords = (tile.row0 // shard, tile.col0 // shard)
    if objectstore.is_url(job.store):
        # one PUT writes the shard whole; drop a stale one as below all the same
        key = array.metadata.encode_chunk_key(coords)
        objectstore.remove(f"{job.store}/{array.path}/{key}", job.storage_options)
        array[tile.row0 : tile.row0 + tile.height, tile.col0 : tile.col0 + tile.width] = data
        return
    target = shard_file(job.store, array, coords)
    target.unlink(missing_ok=True)  # never keep a shard an unrecorded attempt left
    array[tile.row0 : tile.row0 + tile.height, tile.col0 : tile.col0 + tile.width] = data
    _fsync(target)
    _fsync(target.parent)


def run_tile(job: TileJob, tile: Tile, vectors: TileVectors) -> dict[str, float]:
    """Score, write and reduce one tile, then record it; returns timings in seconds."""
    started = time.perf_counter()
    pre, (dr, dc) = read_window_stack(job.store, "pre", tile, job.halo, job.grid, job.signature,
                                      job.storage_options)
    post, _ = read_window_stack(job.store, "post", tile, job.halo, job.grid, job.signature,
                                job.storage_options)
    read_s = time.perf_counter() - started
    padded = compute_score(pre, post, job.params, job.context)
    del pre, post
    score = np.ascontiguousarray(padded[dr : dr + tile.height, dc : dc + tile.width])
    del padded
    classes = classify(score, job.params.class_thresholds)
    score_s = time.perf_counter() - started - read_s
    _write_output(job, "score", tile, score)
    _write_output(job, "damage", tile, classes)
    write_s = time.perf_counter() - started - read_s - score_s

    transform = window_transform(Affine(*job.grid.transform), tile.row0, tile.col0)
    shape = (tile.height, tile.width)
    districts = labels_on_window(shapely.from_wkb(vectors.district_wkb), vectors.district_label,
                                 transform, shape)
    buildings = footprint_labels(shapely.from_wkb(vectors.building_wkb), transform, shape)
    partial = tile_partial(
        score, classes,
        threshold=job.params.threshold, n_classes=len(job.params.class_thresholds) + 1,
        edges=job.edges, district_labels=districts, n_districts=job.n_districts,
        building_labels=buildings, building_index=vectors.building_index,
        centroid_index=vectors.centroid_index, centroid_rc=vectors.centroid_rc,
        origin=(tile.row0, tile.col0), cell_px=job.cell_px,
    )  # fmt: skip
    save_tile_partial(job, tile, partial)
    total_s = time.perf_counter() - started
    # last: a recorded tile's outputs and partial are durable
    job.ledger.record(tile.key, {"signature": job.signature, "seconds": round(total_s, 3)})
    return {"read_s": read_s, "score_s": score_s, "write_s": write_s, "total_s": total_s}
