"""What a tile leaves on disk, and checking it is whole and its own before it is trusted.

A finished tile has three files or more: its partial (`partials/tile_<iy>_<ix>.npz`, which
holds the tile's key) and its shards of the `score` and `damage` layers, of the method's
extra layers and of the date layers and dating state (`plan_layers`; a shard is absent when
all fill).
`run_tile` records their sha256 in the job's ledger; `verified_tiles` (before the tiles run)
and `load_verified_partial` (in the merge) check them, so a swapped, missing, truncated or
changed file, or a garbage ledger entry, makes its tile run again instead of being used.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ruinmap.cluster.job.partials import TilePartial, load_partial, partial_problem
from ruinmap.cluster.job.plan import JobPlan
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.methods import extra_layers
from ruinmap.cluster.methods.dating import dating_enabled
from ruinmap.cluster.storage.arrays import open_array, shard_file, write_shard
from ruinmap.cluster.storage.checksums import CHECKSUMS_KEY, file_checksum, verified_units
from ruinmap.cluster.storage.location import Location
from ruinmap.errors import StoreError

__all__ = ["DATING_LAYERS", "LAYERS", "load_verified_partial", "plan_layers", "tile_files",
           "verified_tiles", "write_layer_shard", "write_layer_shards"]

log = logging.getLogger(__name__)

#: the per-pixel layers a tile writes one shard of each
LAYERS = ("score", "damage")


#: the layers a tile of a job with `method_params.dating` also writes: its date layers
#: (`job.dating`) and its sequential dating state (`job.dating_state`)
DATING_LAYERS = ("damage_date_index", "damage_date_earliest_index", "damage_date_status",
                 "dating_state")


def plan_layers(plan: JobPlan) -> tuple[str, ...]:
    """Every per-pixel layer a tile of `plan` writes: `LAYERS`, the method's extra ones and,
    when it dates the damage, `DATING_LAYERS`."""
    dating = DATING_LAYERS if dating_enabled(plan.params) else ()
    return (*LAYERS, *(layer.name for layer in extra_layers(plan.params)), *dating)


def layer_shard(plan: JobPlan, name: str, tile: Tile) -> Location:
    """The file of `tile`'s shard of layer `name` (the layers are sharded by tile in y and
    x; a leading axis, as the dating state's fields, is one shard)."""
    store = plan.layers
    array = open_array(store, name, "r", plan.signature)
    shard = array.shards[-1] if array.shards else array.chunks[-1]
    leading = (0,) * (array.ndim - 2)
    return shard_file(store, array, (*leading, tile.row0 // shard, tile.col0 // shard))


def write_layer_shard(plan: JobPlan, name: str, tile: Tile, data: np.ndarray) -> str | None:
    """Write `tile`'s shard of layer `name` (durably); returns the sha256 of the shard file
    (None when zarr stored nothing: all fill)."""
    store = plan.layers
    array = open_array(store, name, "r+", plan.signature)
    shard = array.shards[-1] if array.shards else array.chunks[-1]
    leading = array.ndim - 2  # a leading axis (the dating state's fields) is whole
    selection = (*(slice(None),) * leading, slice(tile.row0, tile.row0 + tile.height),
                 slice(tile.col0, tile.col0 + tile.width))
    coords = (*(0,) * leading, tile.row0 // shard, tile.col0 // shard)
    write_shard(store, array, coords, selection, data)
    # hashed as read back (locally from the page cache): what a re-run will verify; the
    # shard's file from the array already open (`layer_shard` would open it again)
    return file_checksum(shard_file(store, array, coords))


def write_layer_shards(plan: JobPlan, tile: Tile, layers: Mapping[str, np.ndarray]
                       ) -> dict[str, str | None]:
    """`write_layer_shard` of each of `layers` ({name: data}), in threads: zstd, the fsyncs and
    hashlib release the GIL, so a tile's shards wait on the disk together (pwtt's score and
    three extra layers: 0.165 -> 0.133 s for the three extra ones at load 19 on the 2-core
    VM, fsync 40 % of it). Returns {name: sha256 or None}."""
    if len(layers) < 2:
        return {name: write_layer_shard(plan, name, tile, data) for name, data in layers.items()}
    with ThreadPoolExecutor(max_workers=len(layers),
                            thread_name_prefix="ruinmap-shards") as pool:
        written = {name: pool.submit(write_layer_shard, plan, name, tile, data)
                   for name, data in layers.items()}
        return {name: future.result() for name, future in written.items()}


def tile_files(plan: JobPlan, tile: Tile) -> dict[str, Location]:
    """{role: file} of every file `tile` writes: `partial` and one per `plan_layers` (not
    `damage` with an automatic threshold: the second pass writes it,
    `classes.verified_class_tiles`)."""
    layers = plan_layers(plan)
    if plan.spec.method_params.is_automatic:
        layers = tuple(name for name in layers if name != "damage")
    return {"partial": plan.partial(tile), **{name: layer_shard(plan, name, tile)
                                              for name in layers}}


def verified_tiles(plan: JobPlan) -> set[str]:
    """The keys of the recorded tiles whose files match their ledger entry; every other
    recorded tile is logged, forgotten and so run again."""
    units = {tile.key: tile_files(plan, tile) for tile in plan.tiles}
    return verified_units(plan.ledger, units, kind="tile",
                          checks={"partial": partial_problem})


def load_verified_partial(plan: JobPlan, tile: Tile) -> TilePartial:
    """`tile`'s partial, checked against its ledger entry and its own tile key.

    A partial that fails here was changed while this run went on (every one was verified
    before the tiles ran): its entry is forgotten and a StoreError says that a re-run redoes
    the tile.
    """
    try:
        checksum = plan.ledger.info(tile.key)[CHECKSUMS_KEY]["partial"]  # type: ignore[index]
        return load_partial(plan.partial(tile), tile.key, checksum)
    except (StoreError, ValueError, KeyError, TypeError) as exc:
        plan.ledger.forget(tile.key)
        raise StoreError(f"tile {tile.key}: {exc}; its ledger entry is removed: run the job "
                         "again to recompute the tile") from None
