"""The job's own folder, `<output.dir>/.ruinmap-job/`: what lets a re-run resume.

- `job.json`: the signature of the job the folder belongs to (method, parameters, store,
  polygons, grid, tiles); another job's folder is emptied and its layers re-created;
- `ledger/`: the finished tiles (`storage.ledger`), each recorded after its data, with the
  sha256 of its files (verified by `integrity` before the tile is trusted);
- `partials/tile_<iy>_<ix>.npz`: each finished tile's partial aggregates and its tile key;
- `class-ledger/` and `partials/classes_<iy>_<ix>.npz`: the second pass of a job with an
  automatic threshold (`classes`);
- `products.json`: the signature of the job whose products were last written completely.

Nothing else belongs here (`WORK_ENTRIES`; `outdir.claim_output_dir` refuses a work folder
holding anything else), and starting over removes only these entries.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.job.layers import create_output_arrays, output_arrays_exist
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.methods import ExtraLayer
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import Location

__all__ = ["JOB_MARKER", "PRODUCTS_MARKER", "STORE_NAME", "WORK_DIR", "WORK_ENTRIES",
           "mark_products_current", "partial_location", "prepare_work_dir",
           "products_are_current", "tile_ledger"]

WORK_DIR = ".ruinmap-job"
#: the job's own store in output.dir: the ingested imagery (unless `inputs.store` names
#: another) and always the job's layers
STORE_NAME = "store.zarr"
JOB_MARKER = "job.json"
PRODUCTS_MARKER = "products.json"
# every name ruinmap writes at the top of the work folder (add new ones here)
WORK_ENTRIES = (JOB_MARKER, PRODUCTS_MARKER, "ledger", "partials", "class-ledger")


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


def prepare_work_dir(work_dir: Location, signature: str, store: Location, grid: Grid,
                     chunk: int, tile_px: int, extra: Sequence[ExtraLayer] = ()) -> None:
    """Keep the ledger and partials of the same job; start over for any other. `extra`: the
    method's layers besides `score` and `damage`."""
    if (_signature_in(work_dir.join(JOB_MARKER)) == signature
            and output_arrays_exist(store, extra)):
        return
    for name in WORK_ENTRIES:  # only ruinmap's own entries: never a file someone put here
        entry = work_dir.join(name)
        entry.remove_tree()
        entry.remove()
    create_output_arrays(store, grid, chunk, tile_px, extra)
    work_dir.join("partials").ensure_folder()
    work_dir.join(JOB_MARKER).write_durably(_marker_body(signature))


def products_are_current(work_dir: Location, signature: str) -> bool:
    """Whether the products were last written, completely, by the job with `signature`."""
    return _signature_in(work_dir.join(PRODUCTS_MARKER)) == signature


def mark_products_current(work_dir: Location, signature: str) -> None:
    """Record that every product is written for the job with `signature` (call last)."""
    work_dir.join(PRODUCTS_MARKER).write_durably(_marker_body(signature))
