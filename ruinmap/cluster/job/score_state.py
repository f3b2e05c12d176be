"""The score's state of a monitored pwtt job: per-pixel moments kept in its layer store, so
appended post dates cost work in those dates only (`method_params.incremental`, default on
with dating; `methods.pwtt_moments`).

Arrays (field, y, x) float64 of the job's layer store, sharded by tile like the layers:
`pwtt_moments_pre` (the pre-event series, which an append cannot change) and two buffers of
the post-event series, `pwtt_moments_post_0` and `_1`. A tile's focal steps read the
statistic of its neighbours' pixels (the halo), so a run never writes the buffer it reads:
an append reads the buffer every tile holds the old series in and writes the other one, so
a killed append leaves the old buffer whole and its resumption reads it again.

The work folder's `moments-ledger/` records, after a tile's shard is durable, its sha256 and
(for a post buffer) how many post dates (store indices 0..n-1) it holds and their digest.
Before the tiles run, `moments_base` (on the client) picks the buffer in which every tile
holds the same prefix of the job's series, verifies those shards and the pre shards against
their checksums, and the dating state (`dating_state.states_hold`) when the job dates: only
then do the tiles continue from kept moments (`MomentsBase.held` > 0); otherwise every tile
folds its whole series again (and writes the moments for the next append).

The kept moments are exact: folding the appended dates into them gives bitwise the moments
of the whole series (`kernels.moments`), so an append equals a whole-series run. To smooth the
same images, both runs blank the statistic in the margin of a tile's padded window beyond
what its focal steps read (`pwtt_moments.blank_outside`: the Lee filter's reach, where only
a whole-series run could know the values).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ruinmap.cluster.job.integrity import layer_shard, write_layer_shard
from ruinmap.cluster.job.plan import JobPlan, post_series
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.methods.base import ScoreLayers
from ruinmap.cluster.methods.pwtt import PwttParams, statistic_layers
from ruinmap.cluster.methods.pwtt_moments import (
    QUANTITIES,
    PwttMoments,
    advance_post,
    blank_outside,
    moment_orbits,
    moments_statistic,
    pwtt_moments,
)
from ruinmap.cluster.storage.arrays import consolidate, create_array, open_array
from ruinmap.cluster.storage.checksums import digest, file_checksum
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import Location
from ruinmap.errors import StoreError
from ruinmap.kernels.focal import focal_halo
from ruinmap.kernels.moments import Moments

__all__ = ["MOMENTS_LEDGER", "MOMENT_CHUNK_MAX", "MomentsBase", "keeps_moments", "moment_chunk",
           "moment_layers", "moments_base", "prepare_moment_arrays", "read_moments",
           "save_moments", "stat_margin"]

log = logging.getLogger(__name__)

PRE_ARRAY = "pwtt_moments_pre"
POST_ARRAYS = ("pwtt_moments_post_0", "pwtt_moments_post_1")
MOMENTS_LEDGER = "moments-ledger"
_MARKER = "moments.json"


@dataclass(frozen=True)
class MomentsBase:
    """What the tiles of this run do with kept moments: continue from the `held` first post
    dates (store order) kept in buffer `read` (none when `held` is 0: fold the whole series),
    and write the grown series' moments to buffer `write`."""

    held: int
    read: int | None
    write: int


def keeps_moments(plan: JobPlan) -> bool:
    params = plan.params
    return isinstance(params, PwttParams) and params.keeps_moments


def moments_ledger(work_dir: Location) -> Ledger:
    return Ledger(work_dir.join(MOMENTS_LEDGER))


def stat_margin(plan: JobPlan) -> int:
    """How far a tile's focal steps read its statistic beyond the tile: the halo less the
    Lee filter's reach."""
    params = plan.params
    assert isinstance(params, PwttParams)
    return plan.halo - focal_halo(params.lee_size // 2)


def _fields(plan: JobPlan) -> int:
    params = plan.params
    assert isinstance(params, PwttParams)
    return len(moment_orbits(plan.context)) * len(params.polarisations) * QUANTITIES


def _series_digest(plan: JobPlan, held: int) -> str:
    entries = [entry for entry in post_series(plan.store) if entry[0] < held]
    return digest(json.dumps(entries).encode())


#: largest inner chunk side of the moment arrays: an appended tile reads its neighbours'
#: moments a few pixels past its edge (`stat_margin`), and each chunk it touches is decoded
#: whole, so the store's 512 px chunks would decode 4x a 1024 px tile's moments (0.9 s of a
#: 2.9 s tile); 128 px chunks decode 1.6x
MOMENT_CHUNK_MAX = 128


def moment_chunk(tile_px: int, chunk: int) -> int:
    """The inner chunk side of the moment arrays: the largest divisor of the tile (their
    shard) no larger than the store's `chunk` or `MOMENT_CHUNK_MAX`; the store's `chunk`
    where that is tiny (a tile of few divisors), as tiny chunks cost more than they save."""
    limit = max(1, min(chunk, MOMENT_CHUNK_MAX, tile_px))
    best = max(d for d in range(1, limit + 1) if tile_px % d == 0)
    return best if best >= min(chunk, MOMENT_CHUNK_MAX // 4) else chunk


def prepare_moment_arrays(plan: JobPlan, chunk: int) -> None:
    """(Re)create the empty moment arrays and forget every kept shard unless this job (its
    base signature and orbits) made them."""
    marker = plan.work_dir.join(_MARKER)
    params = plan.params
    assert isinstance(params, PwttParams)
    layout = {"signature": plan.base_signature, "orbits": list(moment_orbits(plan.context)),
              "polarisations": list(params.polarisations)}
    store = plan.layers
    if all(store.join(name, "zarr.json").is_file() for name in (PRE_ARRAY, *POST_ARRAYS)):
        try:
            if json.loads(marker.read_bytes()) == layout:
                return
        except (OSError, ValueError):
            pass
    fields = _fields(plan)
    chunk = moment_chunk(plan.tile_px, chunk)
    for name in (PRE_ARRAY, *POST_ARRAYS):
        create_array(store, name, shape=(fields, *plan.grid.shape), dtype=np.float64,
                     chunks=(fields, chunk, chunk), shards=(fields, plan.tile_px, plan.tile_px),
                     fill_value=np.nan, dimension_names=("field", "y", "x"),
                     attributes={"orbits": layout["orbits"],
                                 "polarisations": layout["polarisations"],
                                 "quantities": list(Moments._fields),
                                 "description": "per-pixel moments of the log backscatter "
                                                "(orbit, polarisation, quantity) of pwtt's "
                                                "t-test, kept for monitoring"})
    consolidate(store)
    moments_ledger(plan.work_dir).remove()
    marker.write_durably(json.dumps(layout).encode())


def _entry(ledger: Ledger, key: str) -> dict[str, Any] | None:
    try:
        return ledger.info(key)
    except StoreError:
        return None


def _shards_whole(plan: JobPlan, name: str, key_of: str) -> bool:
    """Whether every tile's shard of `name` matches the checksum its ledger entry holds
    (hashed in threads: hashlib and file reads release the GIL)."""
    ledger = moments_ledger(plan.work_dir)

    def whole(tile: Tile) -> bool:
        entry = _entry(ledger, f"{key_of}-{tile.key}")
        recorded = (entry or {}).get("checksums", {}).get("moments")
        return recorded is not None and file_checksum(layer_shard(plan, name, tile)) == recorded

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="ruinmap-verify") as pool:
        for tile, is_whole in zip(plan.tiles, pool.map(whole, plan.tiles), strict=True):
            if not is_whole:
                log.warning("tile %s: its kept moments (%s) are missing or changed; every "
                            "tile folds its whole series again", tile.key, name)
                return False
    return True


def moments_base(plan: JobPlan,
                 dating_holds: Callable[[int], bool] | None = None) -> MomentsBase:
    """This run's `MomentsBase` (module doc): continue from the buffer in which every tile
    holds the same prefix of the series, verified, else fold the whole series into buffer
    0. `dating_holds(held)`: whether every tile's dating state holds the first `held` dates
    too (a job that dates needs both to skip the old dates)."""
    ledger = moments_ledger(plan.work_dir)
    n_post = plan.store.n_times["post"]
    best: tuple[int, int] | None = None
    for buffer in (0, 1):
        held: set[tuple[Any, Any]] = set()
        for tile in plan.tiles:
            entry = _entry(ledger, f"post{buffer}-{tile.key}")
            held.add((None, None) if entry is None else (entry.get("held"), entry.get("series")))
        if len(held) != 1:
            continue
        [(count, series)] = held
        if (isinstance(count, int) and 0 < count <= n_post
                and series == _series_digest(plan, count)
                and (best is None or count > best[0])):
            best = (count, buffer)
    if best is None:
        return MomentsBase(0, None, 0)
    count, buffer = best
    if not (_shards_whole(plan, PRE_ARRAY, "pre")
            and _shards_whole(plan, POST_ARRAYS[buffer], f"post{buffer}")):
        return MomentsBase(0, None, 0)
    if dating_holds is not None and not dating_holds(count):
        log.info("the dating state does not hold the same %d post dates as the kept moments; "
                 "every tile folds its whole series again", count)
        return MomentsBase(0, None, 0)
    return MomentsBase(count, buffer, 1 - buffer)


def read_moments(plan: JobPlan, base: MomentsBase, window: tuple[int, int, int, int],
                 inner: tuple[int, int, int, int]) -> PwttMoments:
    """The kept moments over `inner` (row0, col0, row1, col1 of the grid) placed in empty
    moments of the padded `window`."""
    assert base.read is not None
    params = plan.params
    assert isinstance(params, PwttParams)
    r0, c0, r1, c1 = window
    moments = PwttMoments.empty(moment_orbits(plan.context), len(params.polarisations),
                                (r1 - r0, c1 - c0))
    i0, j0, i1, j1 = inner
    at = (slice(i0 - r0, i1 - r0), slice(j0 - c0, j1 - c0))
    for name, block in ((PRE_ARRAY, moments.pre), (POST_ARRAYS[base.read], moments.post)):
        data = np.asarray(open_array(plan.layers, name, "r", plan.signature)[:, i0:i1, j0:j1])
        block.reshape(-1, *moments.shape)[:, at[0], at[1]] = data
    return moments


def save_moments(plan: JobPlan, tile: Tile, base: MomentsBase, moments: PwttMoments,
                 origin: tuple[int, int]) -> None:
    """Write `tile`'s moments (its pixels, at `origin` in the padded window) to the buffer
    `base.write` (and, when it folded the whole series, to the pre array), durably, then
    record them."""
    dr, dc = origin
    crop = (slice(None), slice(dr, dr + tile.height), slice(dc, dc + tile.width))
    ledger = moments_ledger(plan.work_dir)
    n_post = plan.store.n_times["post"]
    if base.held == 0:
        pre = np.ascontiguousarray(moments.pre.reshape(-1, *moments.shape)[crop])
        ledger.record(f"pre-{tile.key}",
                      checksums={"moments": write_layer_shard(plan, PRE_ARRAY, tile, pre)})
    post = np.ascontiguousarray(moments.post.reshape(-1, *moments.shape)[crop])
    checksum = write_layer_shard(plan, POST_ARRAYS[base.write], tile, post)
    ledger.record(f"post{base.write}-{tile.key}",
                  {"held": n_post, "series": _series_digest(plan, n_post)},
                  checksums={"moments": checksum})


def moment_layers(plan: JobPlan, tile: Tile, base: MomentsBase, pre: np.ndarray | None,
                  post: np.ndarray, window: tuple[int, int, int, int],
                  origin: tuple[int, int], mask: np.ndarray | None,
                  valid: np.ndarray) -> ScoreLayers:
    """pwtt's layers of `tile`'s padded `window` through its moments: folded from `pre`
    and `post` (the whole series), or the kept ones over what the focal steps read with
    the appended dates `post` (`base.held` on) folded in; saved for the next append, then
    blanked beyond what the focal steps read (module doc)."""
    params = plan.params
    assert isinstance(params, PwttParams)
    inner = plan.grid.padded(tile.row0, tile.col0, tile.height, tile.width, stat_margin(plan))
    if base.held:
        moments = read_moments(plan, base, window, inner)
        advance_post(moments, post, plan.context.post_orbits[base.held:], params, plan.context)
    else:
        assert pre is not None
        moments = pwtt_moments(pre, post, params, plan.context)
    save_moments(plan, tile, base, moments, origin)
    r0, c0 = window[0], window[1]
    blank_outside(moments, slice(inner[0] - r0, inner[2] - r0),
                  slice(inner[1] - c0, inner[3] - c0))
    return statistic_layers(moments_statistic(moments, params), params, plan.context, mask,
                            valid)
