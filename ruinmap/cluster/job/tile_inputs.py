"""A tile's date-independent inputs kept in the job's work folder: the built-up mask over its
padded window (from the footprints, `builtup.window_mask`) and the label image of its
footprints (`geo.rasterize.footprint_labels`), which the partial's per-building figures read.

Neither depends on the imagery's dates, so a monitored job's append (`monitor`), a resumed
run and a job started over with other parameters read them back instead of buffering and
rasterizing the footprints again (the largest cost of an appended tile after the moments).

Each is one file a tile (`tile-inputs/<role>_<iy>_<ix>.bin`: the mask's bits packed, the
labels' int32, zlib-compressed) written durably, then recorded in `tile-inputs-ledger/` with
its sha256 and the digest of everything it was made from (`inputs`): the footprints' WKB the
tile was given, the window and the grid's transform and CRS, the mask's settings and pixel
size. A tile uses a kept file only when its entry's `inputs` equal its own and the file
matches its checksum; else (missing, damaged, made from other footprints or settings) it
makes it again, logs why, and keeps the new one. So a kept input is bitwise what the tile
would make, and an append stays equal to a whole-series run.

Padded windows overlap, so the mask is kept per tile, as the tile made it over its own
window, rather than as one grid-wide array: neighbours' pixels could round differently at a
footprint's edge in another window's transform. A raster mask is read for each window as
before (its file's content is not hashed on the workers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import shapely
from affine import Affine

from ruinmap.cluster.geo.rasterize import footprint_labels
from ruinmap.cluster.job.builtup import window_mask
from ruinmap.cluster.job.plan import JobPlan
from ruinmap.cluster.job.polygons import TileVectors
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.storage.checksums import digest
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import Location
from ruinmap.errors import StoreError

__all__ = ["TILE_INPUTS", "TILE_INPUTS_LEDGER", "kept_footprint_labels", "kept_window_mask",
           "tile_inputs_ledger"]

log = logging.getLogger(__name__)

TILE_INPUTS = "tile-inputs"
TILE_INPUTS_LEDGER = "tile-inputs-ledger"
# bump when the encoding or what a kept input means changes: old entries then never match
_VERSION = 1


def tile_inputs_ledger(work_dir: Location) -> Ledger:
    return Ledger(work_dir.join(TILE_INPUTS_LEDGER))


def _inputs_digest(description: dict[str, Any], geometries_wkb: np.ndarray) -> str:
    """sha256 of `description` and the WKB of the geometries, in their order."""
    hashed = hashlib.sha256(json.dumps({**description, "version": _VERSION},
                                       sort_keys=True).encode())
    for wkb in geometries_wkb:
        hashed.update(len(wkb).to_bytes(8, "little"))
        hashed.update(wkb)
    return hashed.hexdigest()


def _decode(data: bytes, shape: tuple[int, int], dtype: type[np.generic]) -> np.ndarray | None:
    """The array `_encode` made, or None when `data` does not decode to `shape`."""
    try:
        raw = zlib.decompress(data)
    except zlib.error:
        return None
    if dtype is np.bool_:
        bits = np.frombuffer(raw, np.uint8)
        if bits.size != (shape[0] * shape[1] + 7) // 8:
            return None
        return np.unpackbits(bits, count=shape[0] * shape[1]).astype(bool).reshape(shape)
    if len(raw) != shape[0] * shape[1] * np.dtype(dtype).itemsize:
        return None
    return np.frombuffer(raw, dtype).reshape(shape).copy()


def _encode(array: np.ndarray) -> bytes:
    raw = np.packbits(array).tobytes() if array.dtype == np.bool_ else array.tobytes()
    return zlib.compress(raw, 1)  # mostly zeros: level 1 is small and fast enough


def _kept(plan: JobPlan, tile: Tile, role: str, inputs: str, shape: tuple[int, int],
          dtype: type[np.generic], make: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
    """`tile`'s input `role`: the kept one when whole and made from `inputs`, else made
    (`make`) and kept. Returns it and whether it was kept."""
    ledger = tile_inputs_ledger(plan.work_dir)
    key = f"{role}-{tile.key}"
    file = plan.work_dir.join(TILE_INPUTS, f"{role}_{tile.iy}_{tile.ix}.bin")
    try:
        entry: dict[str, Any] | None = ledger.info(key)
    except StoreError:
        entry = None
    if entry is not None and entry.get("inputs") == inputs:
        try:
            data: bytes | None = file.read_bytes()
        except OSError:
            data = None
        recorded = entry.get("checksums", {}).get(role)
        kept = (_decode(data, shape, dtype)
                if data is not None and digest(data) == recorded else None)
        if kept is not None:
            return kept, True
        log.warning("%s: its kept %s (%s) is missing or does not match its checksum; made "
                    "again", tile.key, role, file)
    elif entry is not None:
        log.info("%s: its footprints or mask settings changed since its %s was kept; made "
                 "again", tile.key, role)
    made = make()
    data = _encode(made.astype(dtype, copy=False))
    plan.work_dir.join(TILE_INPUTS).ensure_folder()
    file.write_durably(data)
    ledger.record(key, {"inputs": inputs}, checksums={role: digest(data)})  # after the data
    return made, False


def _grid_description(plan: JobPlan) -> dict[str, Any]:
    return {"crs": plan.grid.crs_wkt, "transform": list(tuple(plan.grid.affine)[:6])}


def kept_window_mask(plan: JobPlan, tile: Tile, window: tuple[int, int, int, int],
                     vectors: TileVectors) -> tuple[np.ndarray | None, bool]:
    """`builtup.window_mask` over `tile`'s padded `window`, kept for the next run when it is
    made from the footprints (module doc). Returns it and whether it was kept."""
    if plan.mask.kind != "buildings":
        return window_mask(plan.mask, plan.grid, window, vectors.mask_wkb,
                           plan.pixel_size_m), False
    inputs = _inputs_digest({"role": "mask", "mask": plan.mask.to_json(), "window": window,
                             "pixel_size_m": plan.pixel_size_m, **_grid_description(plan)},
                            vectors.mask_wkb)

    def make() -> np.ndarray:
        mask = window_mask(plan.mask, plan.grid, window, vectors.mask_wkb, plan.pixel_size_m)
        assert mask is not None  # a footprint mask is applied
        return mask

    return _kept(plan, tile, "mask", inputs, (window[2] - window[0], window[3] - window[1]),
                 np.bool_, make)


def kept_footprint_labels(plan: JobPlan, tile: Tile, vectors: TileVectors, transform: Affine,
                          shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """`footprint_labels` of the tile's footprints over the tile, kept for the next run
    (module doc). Returns them and whether they were kept."""
    def make() -> np.ndarray:
        return footprint_labels(shapely.from_wkb(vectors.building_wkb), transform, shape)

    if len(vectors.building_wkb) == 0:
        return make(), False  # all 0: nothing worth keeping
    inputs = _inputs_digest({"role": "labels", "transform": list(tuple(transform)[:6]),
                             "shape": list(shape), "crs": plan.grid.crs_wkt},
                            vectors.building_wkb)
    return _kept(plan, tile, "labels", inputs, shape, np.int32, make)
