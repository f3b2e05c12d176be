"""The worker task of an ingest: one shard (all bands of one date of one side) read from its
source files onto the grid, written whole, made durable and recorded in the store's ledger.

Tasks never share a shard, so no locks are needed; a re-run skips recorded shards and rewrites
any other from scratch, so a killed ingest resumes without trusting a half-written shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import rasterio
from rasterio.windows import Window

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.ingest.layout import unit_key
from ruinmap.cluster.ingest.mosaic import MosaicRead, read_mosaic
from ruinmap.cluster.ingest.warp import SourceRead, read_source_window
from ruinmap.cluster.settings import WORKER_ENV
from ruinmap.cluster.storage.arrays import open_array, shard_file, write_shard
from ruinmap.cluster.storage.checksums import file_checksum
from ruinmap.cluster.storage.location import Location
from ruinmap.cluster.storage.store import ledger_of

__all__ = ["ShardTask", "write_unit"]


@dataclass(frozen=True)
class ShardTask:
    """What every shard task needs, sent to each worker once (scattered), not with every task."""

    store: Location
    store_id: str
    grid: Grid
    shard: int
    resampling: str
    nodata: float | None
    reads: dict[str, tuple[tuple[SourceRead, ...], ...]]  # side -> time index -> files
    durable: bool
    # the client's GDAL /vsis3/ settings, for s3:// inputs
    gdal_options: dict[str, str] = field(default_factory=dict)
    # the roots every local source is opened confined to (IngestOptions.confine_to)
    confine_to: tuple[str, ...] | None = None
    # side -> time index -> the acquisition's mosaic (tiles of one date, STAC items), read
    # instead of reads[side][t] (`ingest.mosaic`)
    mosaics: dict[str, dict[int, MosaicRead]] = field(default_factory=dict)


def write_unit(task: ShardTask, side: str, t: int, iy: int, ix: int) -> int:
    """Write one shard (all bands of date `t` of `side`) and record it; returns bytes written.

    Order: read and convert, delete any shard an unrecorded earlier attempt left, write,
    make the shard durable, then record the key in the ledger (last) with the shard file's
    sha256, which a resumed ingest verifies before it skips the shard.
    """
    grid, step = task.grid, task.shard
    row0, col0 = iy * step, ix * step
    window = Window(col0, row0, min(step, grid.width - col0), min(step, grid.height - row0))
    # the GDAL settings of s3:// inputs are the client's, applied here on the worker
    gdal_cache = int(WORKER_ENV["GDAL_CACHEMAX"]) * 2**20
    mosaic = task.mosaics.get(side, {}).get(t)
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache, **task.gdal_options):
        if mosaic is not None:
            parts = [read_mosaic(mosaic, grid, window, resampling=task.resampling,
                                 nodata=task.nodata, confine_to=task.confine_to)]
        else:
            # each file's mask layer applied as nodata, its values converted to linear power
            parts = [
                read_source_window(read, grid, window, resampling=task.resampling,
                                   nodata=task.nodata, confine_to=task.confine_to)[0]
                for read in task.reads[side][t]
            ]
    block = parts[0] if len(parts) == 1 else np.concatenate(parts)
    # keyed by the side's length too: a monitored store grows along post_time (`append`),
    # and a worker that wrote the store before must not write through its old shape
    n_dates = max(len(task.reads.get(side, ())), max(task.mosaics.get(side, {}), default=-1) + 1)
    array = open_array(task.store, side, "r+", f"{task.store_id}:{n_dates}")
    selection = (t, slice(None), slice(row0, row0 + block.shape[1]),
                 slice(col0, col0 + block.shape[2]))
    write_shard(task.store, array, (t, 0, iy, ix), selection, block, durable=task.durable)
    # hashed as read back (locally from the page cache): what a resume will verify
    checksum = file_checksum(shard_file(task.store, array, (t, 0, iy, ix)))
    ledger_of(task.store).record(unit_key(side, t, iy, ix), checksums={"shard": checksum})
    return int(block.nbytes)
