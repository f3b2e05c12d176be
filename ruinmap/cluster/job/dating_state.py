"""The per-pixel sequential dating state of a job, kept in its layer store (monitoring).

The detectors of `kernels.dating` carry a small state per pixel (`ExceedanceState`: the last
two valid dates, whether the last exceeded, the date, bracket and status; `CusumState`: also
S, the rise and the alarm candidate). A tile stores its state after the dates it dated in
ONE shard of the array `dating_state` (field, y, x), float64 (every int32 field is exact in
it), sharded by tile like the other layers, so a tile's state is written whole or not at
all. The work folder's `dating-ledger/` records, per tile and after that shard is durable,
how many post dates (in time order) the state holds, the last of them and the shard's
sha256.

Before the tiles run, `verify_states` checks every recorded state against its sha256 (as
`integrity` checks the tiles) and forgets the ones that fail, with a warning naming them. A
tile continues from its state (`resume_state`) only when the shard (checked again there)
matches its entry and the dates it holds are the first dates of the job's series; otherwise
(no entry, a changed or truncated shard, another series) the tile dates its whole series
again from the initial state. So a corrupted state is redone, never advanced.
"""

from __future__ import annotations

import logging

import numpy as np

from ruinmap.cluster.job.integrity import layer_shard, write_layer_shard
from ruinmap.cluster.job.plan import JobPlan
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.methods.dating import (
    DatingParams,
    DatingState,
    baseline_field_count,
    dating_state,
)
from ruinmap.cluster.storage.arrays import create_array, open_array
from ruinmap.cluster.storage.checksums import CHECKSUMS_KEY, file_checksum, verified_units
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import Location
from ruinmap.errors import StoreError

__all__ = ["BASELINE_ARRAY", "DATING_LEDGER", "STATE_ARRAY", "create_state_array",
           "dating_ledger", "resume_state", "save_state", "states_hold", "verify_states"]

log = logging.getLogger(__name__)

STATE_ARRAY = "dating_state"
#: the pre-event baseline the state was advanced against (`methods.dating.baseline_fields`),
#: kept beside it so that an append need not read the pre dates again
BASELINE_ARRAY = "dating_baseline"
DATING_LEDGER = "dating-ledger"


def dating_ledger(work_dir: Location) -> Ledger:
    return Ledger(work_dir.join(DATING_LEDGER))


def _fields(plan: JobPlan) -> tuple[str, ...]:
    return tuple(dating_state(plan.params, (1, 1))._fields)


def create_state_array(plan: JobPlan, chunk: int) -> None:
    """(Re)create the empty `dating_state` array of `plan` (and forget every tile's state)."""
    params = plan.params
    assert isinstance(params, DatingParams)
    fields = _fields(plan)
    create_array(plan.layers, STATE_ARRAY, shape=(len(fields), *plan.grid.shape),
                 dtype=np.float64, chunks=(len(fields), chunk, chunk),
                 shards=(len(fields), plan.tile_px, plan.tile_px), fill_value=np.nan,
                 dimension_names=("field", "y", "x"),
                 attributes={"fields": list(fields), "dating_rule": params.dating_rule,
                             "description": "per-pixel state of the dating rule after the "
                                            "dates in the job's dating-ledger"})
    create_array(plan.layers, BASELINE_ARRAY,
                 shape=(baseline_field_count(params, plan.context), *plan.grid.shape),
                 dtype=np.float64, chunks=(1, chunk, chunk), shards=(1, plan.tile_px,
                                                                     plan.tile_px),
                 fill_value=np.nan, dimension_names=("field", "y", "x"),
                 attributes={"dating_rule": params.dating_rule,
                             "description": "pre-event baseline of the dating rule (centre, "
                                            "scale and, for cusum, inverse covariance)"})
    dating_ledger(plan.work_dir).remove()


def verify_states(plan: JobPlan) -> set[str]:
    """Check every recorded tile state against its sha256 before the tiles run (on the
    client, so the log names each one here); forget those that fail, whose tiles then date
    their whole series again. Returns the keys of the tiles whose state is whole."""
    units = {tile.key: {"state": layer_shard(plan, STATE_ARRAY, tile),
                        "baseline": layer_shard(plan, BASELINE_ARRAY, tile)}
             for tile in plan.tiles}
    return verified_units(dating_ledger(plan.work_dir), units,
                          kind="dating state of tile")


def _entry(plan: JobPlan, tile: Tile, dates: tuple[str, ...]
           ) -> tuple[int, dict[str, str | None]] | str:
    """(dates held, {role: the shard's sha256}) of `tile`'s recorded state, or what is
    wrong."""
    ledger = dating_ledger(plan.work_dir)
    try:
        info = ledger.info(tile.key)
        held = int(info["dated"])  # type: ignore[call-overload]
        checksums = dict(info[CHECKSUMS_KEY])  # type: ignore[call-overload]
        str(checksums["state"])
        last = info["last_date"]
    except StoreError:
        return "no recorded state"
    except (KeyError, TypeError, ValueError):
        return f"its entry in {ledger.path} is not whole"
    if not 0 < held <= len(dates) or last != dates[held - 1]:
        return f"it holds {held} date(s) up to {last}, not the first of this series"
    return held, checksums


def _tile_block(plan: JobPlan, name: str, tile: Tile) -> np.ndarray:
    array = open_array(plan.layers, name, "r", plan.signature)
    return np.asarray(array[:, tile.row0:tile.row0 + tile.height,
                            tile.col0:tile.col0 + tile.width])


def resume_state(plan: JobPlan, tile: Tile, dates: tuple[str, ...]
                 ) -> tuple[int, DatingState, np.ndarray | None]:
    """How many of the post dates `dates` (ISO, time order) `tile`'s stored state holds,
    that state and the baseline it was advanced against (`baseline_fields` of the tile's
    pixels); (0, the initial state, None) when it cannot be trusted (module doc)."""
    shape = (tile.height, tile.width)
    fresh = dating_state(plan.params, shape)
    found = _entry(plan, tile, dates)
    if isinstance(found, str):
        if found != "no recorded state":
            log.warning("tile %s: dating state: %s; dating its whole series again",
                        tile.key, found)
        return 0, fresh, None
    held, checksums = found
    for role, name in (("state", STATE_ARRAY), ("baseline", BASELINE_ARRAY)):
        shard = layer_shard(plan, name, tile)
        if file_checksum(shard) != checksums.get(role):
            log.warning("tile %s: dating %s %s does not match its checksum (missing, "
                        "truncated or changed); dating its whole series again", tile.key,
                        role, shard)
            return 0, fresh, None
    data = _tile_block(plan, STATE_ARRAY, tile)
    state = type(fresh)(*(data[k].astype(field.dtype) for k, field in enumerate(fresh)))
    return held, state, _tile_block(plan, BASELINE_ARRAY, tile)


def states_hold(plan: JobPlan, dates: tuple[str, ...], held: int) -> bool:
    """Whether every tile's recorded state (verified by `verify_states`) holds exactly the
    first `held` of `dates`, with its baseline: then the tiles need no pre date to date
    the rest."""
    for tile in plan.tiles:
        found = _entry(plan, tile, dates)
        if isinstance(found, str) or found[0] != held or "baseline" not in found[1]:
            return False
    return True


def save_state(plan: JobPlan, tile: Tile, state: DatingState, dates: tuple[str, ...],
               baseline: np.ndarray) -> str:
    """Write `tile`'s state after all of `dates` and the baseline it was advanced against
    (`baseline_fields` of the tile's pixels), durably, then record them in the dating
    ledger; returns the state shard's sha256."""
    packed = np.stack([np.asarray(field, np.float64) for field in state])
    checksum = write_layer_shard(plan, STATE_ARRAY, tile, packed)
    baseline_checksum = write_layer_shard(plan, BASELINE_ARRAY, tile, baseline)
    if checksum is None:  # never: the fill is NaN and every field holds numbers
        raise StoreError(f"tile {tile.key}: its dating state was not written")
    dating_ledger(plan.work_dir).record(
        tile.key, {"dated": len(dates), "last_date": dates[-1]},
        checksums={"state": checksum, "baseline": baseline_checksum})
    return checksum
