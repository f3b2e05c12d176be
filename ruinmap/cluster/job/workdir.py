"""The job's own folder, `<output.dir>/.ruinmap-job/`: what lets a re-run resume.

- `job.json`: the signature of the job the folder belongs to (method, parameters, store,
  polygons, grid, tiles); another job's folder is emptied and its layers re-created;
- `ledger/`: the finished tiles (`storage.ledger`), each recorded after its data, with the
  sha256 of its files (verified by `integrity` before the tile is trusted);
- `partials/tile_<iy>_<ix>.npz`: each finished tile's partial aggregates and its tile key;
- `class-ledger/` and `partials/classes_<iy>_<ix>.npz`: the second pass of a job with an
  automatic threshold (`classes`);
- `vectors/`: while a pass of tiles runs, each tile's polygons, which its task reads
  (`vector_files`; removed when the pass ends);
- `products.json`: the signature of the job whose products were last written completely;
- with `method_params.dating`: `dating.json` (whose date layers these are) and
  `dating-ledger/` (each tile's sequential dating state: how many dates it holds and its
  sha256, `dating_state`), both kept when a monitored job appends post dates (`monitor`),
  as is the list of runs in `job.json`;
- with the score's moments kept (`method_params.incremental`, default with dating):
  `moments.json` (whose moment arrays these are) and `moments-ledger/` (each tile's kept
  moments: how many post dates they hold and their sha256, `score_state`), also kept when
  a monitored job appends post dates;
- `tile-inputs/` and `tile-inputs-ledger/`: each tile's built-up mask and footprint labels,
  with the digest of what they were made from (`tile_inputs`): kept on an append and when
  the folder starts over (a tile makes its own again when those inputs changed).

Nothing else belongs here (`WORK_ENTRIES`; `outdir.claim_output_dir` refuses a work folder
holding anything else), and starting over removes only these entries.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.job.layers import create_output_arrays, output_arrays_exist
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.methods import ExtraLayer
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import Location

__all__ = ["JOB_MARKER", "KEPT_ALWAYS", "KEPT_ON_APPEND", "PRODUCTS_MARKER", "STORE_NAME",
           "WORK_DIR", "WORK_ENTRIES", "mark_products_current", "partial_location",
           "prepare_work_dir", "products_are_current", "read_job_marker", "tile_ledger"]

WORK_DIR = ".ruinmap-job"
#: the job's own store in output.dir: the ingested imagery (unless `inputs.store` names
#: another) and always the job's layers
STORE_NAME = "store.zarr"
JOB_MARKER = "job.json"
PRODUCTS_MARKER = "products.json"
# every name ruinmap writes at the top of the work folder (add new ones here)
WORK_ENTRIES = (JOB_MARKER, PRODUCTS_MARKER, "ledger", "partials", "class-ledger",
                "dating.json", "dating-ledger", "moments.json", "moments-ledger",
                "tile-inputs", "tile-inputs-ledger", "vectors")
#: what a monitored job keeps when it appends post dates (`monitor`): the dating state and
#: the score's moments
KEPT_ON_APPEND = (JOB_MARKER, "dating.json", "dating-ledger", "moments.json",
                  "moments-ledger")
#: kept by any run: keyed by the digest of what they were made from (`tile_inputs`)
KEPT_ALWAYS = ("tile-inputs", "tile-inputs-ledger")


def tile_ledger(work_dir: Location) -> Ledger:
    return Ledger(work_dir.join("ledger"))


def partial_location(work_dir: Location, tile: Tile) -> Location:
    return work_dir.join("partials", f"tile_{tile.iy}_{tile.ix}.npz")


def _signature_in(marker: Location) -> str | None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return str(json.loads(marker.read_bytes())["signature"])
    return None


def _marker_body(signature: str) -> bytes:
    return json.dumps({"signature": signature}).encode()


def read_job_marker(work_dir: Location) -> dict[str, Any]:
    """The work folder's `job.json` ({} when absent or unreadable)."""
    with contextlib.suppress(OSError, ValueError):
        body = json.loads(work_dir.join(JOB_MARKER).read_bytes())
        if isinstance(body, dict):
            return body
    return {}


def prepare_work_dir(work_dir: Location, signature: str, store: Location, grid: Grid,
                     chunk: int, tile_px: int, extra: Sequence[ExtraLayer] = (), *,
                     marker: dict[str, Any] | None = None, is_append: bool = False) -> bool:
    """Keep the ledger and partials of the same job; start over for any other. `extra`: the
    method's layers besides `score` and `damage`; `marker`: what `job.json` records
    besides the signature. `is_append`: the same job over more post dates (`monitor`):
    every tile runs again but the dating state (`KEPT_ON_APPEND`) and the arrays are kept.
    Returns whether the folder was (re)started."""
    if (_signature_in(work_dir.join(JOB_MARKER)) == signature
            and output_arrays_exist(store, extra)):
        return False
    is_append = is_append and output_arrays_exist(store, extra)
    for name in WORK_ENTRIES:  # only ruinmap's own entries: never a file someone put here
        if (is_append and name in KEPT_ON_APPEND) or name in KEPT_ALWAYS:
            continue
        entry = work_dir.join(name)
        entry.remove_tree()
        entry.remove()
    if not is_append:
        create_output_arrays(store, grid, chunk, tile_px, extra)
    work_dir.join("partials").ensure_folder()
    body = {**(marker or {}), "signature": signature}
    work_dir.join(JOB_MARKER).write_durably(json.dumps(body).encode())
    return True


def products_are_current(work_dir: Location, signature: str) -> bool:
    """Whether the products were last written, completely, by the job with `signature`."""
    return _signature_in(work_dir.join(PRODUCTS_MARKER)) == signature


def mark_products_current(work_dir: Location, signature: str) -> None:
    """Record that every product is written for the job with `signature` (call last)."""
    work_dir.join(PRODUCTS_MARKER).write_durably(_marker_body(signature))
