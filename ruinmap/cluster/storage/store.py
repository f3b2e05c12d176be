"""The ruinmap store: one Zarr v3 directory holding the pre- and post-event stacks on one grid.

Layout (format_version 1):

- arrays `pre` (pre_time, band, y, x) and `post` (post_time, band, y, x): float32, NaN = nodata
  (fill_value NaN), Zarr v3 sharding codec (inner chunks (1, 1, chunk, chunk), shards
  (1, bands, shard, shard)), attributes `grid_mapping: "spatial_ref"`. The two sides have
  their own time dimension because their dates differ (one Dataset cannot hold two `time`
  coordinates of different lengths); `side_array(ds, "pre")` returns a side with its time
  dimension named `time`, i.e. dims (time, band, y, x).
- coordinates `x`, `y` (float64 pixel centres), `pre_time`, `post_time` (datetime64[ns], NaT
  where a file had no date), `band` (str) and a scalar `spatial_ref` carrying `crs_wkt`,
  `spatial_ref` and `GeoTransform` as rioxarray writes them, so `xr.open_zarr(path).rio.crs`
  works and GDAL (>= 3.9 reads the CF `grid_mapping`; see README for its Zarr v3 limits) can
  find the CRS.
- root attribute `ruinmap`: format, format_version, ruinmap_version, grid, sources, chunks,
  shards, compression, complete, ... (see `ingest.layout.StoreLayout.attrs`).
- while an ingest is unfinished, a ledger directory `_ruinmap_ledger/` of finished shards
  (see `ledger`); it is removed once the store is marked complete.

Metadata is consolidated into the root `zarr.json` after every attribute change, so readers
open the store with one read and never see stale attributes. `StoreInfo.read` is that read:
a run reads it once and passes the typed value on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import rioxarray  # noqa: F401  (registers the .rio accessor used below)
import xarray as xr
import zarr

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.storage.arrays import DEFAULT_CHUNK, SIDES, consolidate, quiet_zarr, time_dim
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import Location, as_location
from ruinmap.errors import SpecError, StoreError

__all__ = [
    "ATTRS_KEY", "FORMAT_VERSION", "LEDGER_DIR", "SIDES", "STORE_FORMAT", "StoreInfo",
    "is_complete", "is_ruinmap_store", "ledger_of", "mark_complete", "open_store",
    "read_store_attrs", "remove_store", "side_array", "time_dim", "update_store_attrs",
    "validate_store",
]

STORE_FORMAT = "ruinmap-store"
FORMAT_VERSION = 1
LEDGER_DIR = "_ruinmap_ledger"
ATTRS_KEY = "ruinmap"


def _node_json(location: Location) -> dict[str, Any] | None:
    try:
        return dict(json.loads(location.join("zarr.json").read_bytes()))
    except (OSError, ValueError):
        return None


def _checked_attrs(root: Location, meta: dict[str, Any] | None) -> dict[str, Any]:
    attrs = (meta or {}).get("attributes", {}).get(ATTRS_KEY)
    if meta is None or meta.get("zarr_format") != 3 or not isinstance(attrs, dict):
        raise StoreError(
            f"{root}: not a ruinmap store (no Zarr v3 group with a 'ruinmap' attribute)"
        )
    if attrs.get("format") != STORE_FORMAT:
        raise StoreError(f"{root}: its 'ruinmap' attribute is not a {STORE_FORMAT} description")
    version = attrs.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StoreError(
            f"{root}: store format_version {version!r} is newer than this ruinmap reads "
            f"({FORMAT_VERSION}); upgrade ruinmap"
        )
    return attrs


def read_store_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `ruinmap` root attribute of a store, or StoreError when `path` is not a ruinmap store."""
    root = as_location(path)
    return _checked_attrs(root, _node_json(root))


def is_ruinmap_store(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a ruinmap store (complete or not)."""
    try:
        read_store_attrs(path)
    except StoreError:
        return False
    return True


def is_complete(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a ruinmap store whose writer finished and marked it complete."""
    try:
        return bool(read_store_attrs(path).get("complete"))
    except StoreError:
        return False


def ledger_of(path: str | os.PathLike[str]) -> Ledger:
    """The ledger of unfinished work inside a store (local folder or s3:// URL)."""
    return Ledger(as_location(path).join(LEDGER_DIR))


def update_store_attrs(path: str | os.PathLike[str], **changes: Any) -> dict[str, Any]:
    """Change keys of the `ruinmap` root attribute, then re-consolidate; returns the new value."""
    root = as_location(path)
    attrs = read_store_attrs(root)
    attrs.update(changes)
    with quiet_zarr():
        group = zarr.open_group(root.zarr_store(), mode="r+", zarr_format=3)
        group.attrs[ATTRS_KEY] = attrs
    consolidate(root)
    return attrs


def mark_complete(path: str | os.PathLike[str]) -> None:
    """Mark a store complete (its writer has written and recorded every unit)."""
    update_store_attrs(path, complete=True)


def remove_store(path: str | os.PathLike[str]) -> None:
    """Delete a ruinmap store; refuses anything that is not one. It stops being a store at
    once (renamed aside locally, its root metadata removed first in object storage), even if
    the deletion is cut short."""
    root = as_location(path)
    read_store_attrs(root)
    root.remove_tree_at_once(first="zarr.json")


def _checked_arrays(root: Location) -> dict[str, tuple[int, ...]]:
    """The shape of each side's array, or StoreError naming what is wrong."""
    shapes = {}
    for side in SIDES:
        meta = _node_json(root.join(side))
        if meta is None or meta.get("node_type") != "array":
            raise StoreError(f"{root}: array {side!r} is missing")
        dims = meta.get("dimension_names")
        if dims != [time_dim(side), "band", "y", "x"]:
            raise StoreError(
                f"{root}/{side}: dimensions {dims}, expected ({time_dim(side)}, band, y, x)"
            )
        if meta.get("data_type") != "float32":
            raise StoreError(f"{root}/{side}: data type {meta.get('data_type')}, expected float32")
        shapes[side] = tuple(int(n) for n in meta.get("shape", ()))
    if _node_json(root.join("spatial_ref")) is None:
        raise StoreError(f"{root}: the spatial_ref variable (CRS) is missing")
    return shapes


def _require_complete(root: Location, attrs: dict[str, Any]) -> None:
    if not attrs.get("complete"):
        raise StoreError(
            f"{root}: the ingest that writes this store has not finished; re-run `ruinmap "
            "ingest` with the same arguments to complete it"
        )


def validate_store(
    path: str | os.PathLike[str], *, require_complete: bool = True
) -> dict[str, Any]:
    """Check a store's layout; return its `ruinmap` attribute or raise StoreError."""
    root = as_location(path)
    attrs = read_store_attrs(root)
    if require_complete:
        _require_complete(root, attrs)
    _checked_arrays(root)
    return attrs


@dataclass(frozen=True)
class StoreInfo:
    """What a run needs to know about a store, from one read of its metadata (`read`)."""

    location: Location
    attrs: dict[str, Any]  # the `ruinmap` root attribute, as stored
    grid: Grid
    bands: tuple[str, ...]
    chunk: int  # inner chunk side (px)
    shard: int  # shard side (px)
    n_times: dict[str, int]  # dates per side

    @classmethod
    def read(cls, path: str | os.PathLike[str], *, require_complete: bool = True) -> StoreInfo:
        """Validate the store at `path` and describe it; StoreError when it is not usable."""
        root = as_location(path)
        attrs = read_store_attrs(root)
        if require_complete:
            _require_complete(root, attrs)
        shapes = _checked_arrays(root)
        chunk = int(attrs.get("chunks", [1, 1, DEFAULT_CHUNK])[-1])
        return cls(
            location=root,
            attrs=attrs,
            grid=Grid.from_attrs(attrs["grid"]),
            bands=tuple(str(b) for b in attrs.get("bands", ())),
            chunk=chunk,
            shard=int(attrs.get("shards", [1, 1, chunk])[-1]),
            n_times={side: shapes[side][0] for side in SIDES},
        )

    @property
    def store_id(self) -> str:
        return str(self.attrs.get("store_id"))

    @property
    def sources(self) -> list[dict[str, Any]]:
        """Provenance of every source file (path, side, time_index, size, sha256, ...)."""
        return list(self.attrs.get("sources", []))


def open_store(path: str | os.PathLike[str], *, require_complete: bool = True) -> xr.Dataset:
    """Open a ruinmap store lazily (dask arrays chunked like its inner Zarr chunks)."""
    root = as_location(path)
    validate_store(root, require_complete=require_complete)
    with quiet_zarr():
        return xr.open_zarr(root.zarr_store(), consolidated=True, decode_coords="all")


def side_array(ds: xr.Dataset, side: str) -> xr.DataArray:
    """One side of an opened store with dims (time, band, y, x)."""
    if side not in SIDES:
        raise SpecError(f"side {side!r}: expected one of {SIDES}")
    return ds[side].rename({time_dim(side): "time"})
