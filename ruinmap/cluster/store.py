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
  shards, compression, complete, ... (see `ingest.store_attrs`).
- while an ingest is unfinished, a ledger directory `_ruinmap_ledger/` of finished shards
  (see `ruinmap.cluster.ledger`); it is removed once the store is marked complete.

Metadata is consolidated into the root `zarr.json` after every attribute change, so readers
open the store with one read and never see stale attributes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor used below)
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from ruinmap.cluster import objectstore
from ruinmap.cluster.grid import Grid
from ruinmap.cluster.ledger import Ledger, ObjectLedger, open_ledger
from ruinmap.errors import SpecError, StoreError

STORE_FORMAT = "ruinmap-store"
FORMAT_VERSION = 1
SIDES = ("pre", "post")
LEDGER_DIR = "_ruinmap_ledger"
ATTRS_KEY = "ruinmap"


def time_dim(side: str) -> str:
    """The name of a side's time dimension and coordinate (`pre_time`, `post_time`)."""
    return f"{side}_time"


@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    # Consolidated metadata is a zarr-python extension to the v3 spec, and the ledger directory
    # is not a zarr node: both warnings are expected here and say nothing to a user.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"zarr\..*")
        warnings.filterwarnings("ignore", message=r".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=r".*not recognized as a component.*")
        yield


@dataclass(frozen=True)
class Compression:
    """The codec of every inner chunk: `zstd:<level>`, `blosc-<lz4|zstd>:<level>` or `none`."""

    codec: str = "zstd"
    level: int = 1

    @classmethod
    def parse(cls, text: str) -> Compression:
        name, _, level = text.strip().lower().partition(":")
        if name == "none":
            return cls("none", 0)
        if name not in ("zstd", "blosc-lz4", "blosc-zstd"):
            raise SpecError(
                f"--compression {text!r}: use zstd[:level], blosc-lz4[:level], "
                "blosc-zstd[:level] or none"
            )
        try:
            value = int(level) if level else (5 if name == "blosc-lz4" else 1)
        except ValueError:
            raise SpecError(f"--compression {text!r}: the level must be an integer") from None
        top = 22 if name == "zstd" else 9
        if not 0 <= value <= top:
            raise SpecError(f"--compression {text!r}: {name} levels run 0..{top}")
        return cls(name, value)

    def codecs(self) -> list[Any]:
        if self.codec == "none":
            return []
        if self.codec == "zstd":
            return [ZstdCodec(level=self.level)]
        cname: Any = self.codec.split("-", 1)[1]
        return [BloscCodec(cname=cname, clevel=self.level, shuffle="shuffle", typesize=4)]

    def to_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"codec": self.codec, "level": self.level}
        if self.codec.startswith("blosc"):
            attrs["shuffle"] = "byte"
        return attrs

    def __str__(self) -> str:
        return "none" if self.codec == "none" else f"{self.codec}:{self.level}"


def _root_json(path: Path | str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(objectstore.read_bytes(objectstore.join(path, "zarr.json"))))
    except (OSError, ValueError):
        return None


def _location(path: str | os.PathLike[str]) -> Path | str:
    # an s3:// URL stays text (Path would fold its "//"); a local path stays as given
    return str(path) if objectstore.is_url(path) else Path(path)


def read_store_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `ruinmap` root attribute of a store, or StoreError when `path` is not a ruinmap store."""
    root = _location(path)
    meta = _root_json(root)
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


def ledger_of(
    path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> Ledger | ObjectLedger:
    """The ledger of unfinished work inside a store (local folder or s3:// URL)."""
    return open_ledger(objectstore.join(_location(path), LEDGER_DIR), storage_options)


def _consolidate(path: Path | str) -> None:
    with _quiet_zarr():
        zarr.consolidate_metadata(objectstore.zarr_store(path), zarr_format=3)


def update_store_attrs(path: str | os.PathLike[str], **changes: Any) -> dict[str, Any]:
    """Change keys of the `ruinmap` root attribute, then re-consolidate; returns the new value."""
    attrs = read_store_attrs(path)
    attrs.update(changes)
    with _quiet_zarr():
        group = zarr.open_group(objectstore.zarr_store(_location(path)), mode="r+",
                                zarr_format=3)
        group.attrs[ATTRS_KEY] = attrs
    _consolidate(_location(path))
    return attrs


def mark_complete(path: str | os.PathLike[str]) -> None:
    """Mark a store complete (its writer has written and recorded every unit)."""
    update_store_attrs(path, complete=True)


def remove_store(path: str | os.PathLike[str]) -> None:
    """Delete a ruinmap store; refuses anything that is not one."""
    root = _location(path)
    read_store_attrs(root)
    if isinstance(root, str):
        # no rename on S3: drop the root metadata first, so it stops being a store at once
        objectstore.remove(str(objectstore.join(root, "zarr.json")))
        objectstore.remove_prefix(root)
        return
    trash = root.with_name(f".{root.name}.trash-{uuid.uuid4().hex[:8]}")
    os.rename(root, trash)  # gone from its name at once, even if the deletion below is cut short
    shutil.rmtree(trash)


def validate_store(
    path: str | os.PathLike[str], *, require_complete: bool = True
) -> dict[str, Any]:
    """Check a store's layout; return its `ruinmap` attribute or raise StoreError."""
    root = _location(path)
    attrs = read_store_attrs(root)
    if require_complete and not attrs.get("complete"):
        raise StoreError(
            f"{root}: the ingest that writes this store has not finished; re-run `ruinmap "
            "ingest` with the same arguments to complete it"
        )
    for side in SIDES:
        meta = _root_json(objectstore.join(root, side))
        if meta is None or meta.get("node_type") != "array":
            raise StoreError(f"{root}: array {side!r} is missing")
        dims = meta.get("dimension_names")
        if dims != [time_dim(side), "band", "y", "x"]:
            raise StoreError(
                f"{root}/{side}: dimensions {dims}, expected ({time_dim(side)}, band, y, x)"
            )
        if meta.get("data_type") != "float32":
            raise StoreError(f"{root}/{side}: data type {meta.get('data_type')}, expected float32")
    if _root_json(objectstore.join(root, "spatial_ref")) is None:
        raise StoreError(f"{root}: the spatial_ref variable (CRS) is missing")
    return attrs


def open_store(path: str | os.PathLike[str], *, require_complete: bool = True) -> xr.Dataset:
    """Open a ruinmap store lazily (dask arrays chunked like its inner Zarr chunks)."""
    validate_store(path, require_complete=require_complete)
    with _quiet_zarr():
        return xr.open_zarr(objectstore.zarr_store(_location(path)), consolidated=True,
                            decode_coords="all")


def side_array(ds: xr.Dataset, side: str) -> xr.DataArray:
    """One side of an opened store with dims (time, band, y, x)."""
    if side not in SIDES:
        raise SpecError(f"side {side!r}: expected one of {SIDES}")
    return ds[side].rename({time_dim(side): "time"})


def shard_file(store: str | os.PathLike[str], array: zarr.Array, coords: Sequence[int]) -> Path:
    """The file holding one shard of `array` in a local store (shard grid coordinates)."""
    key = array.metadata.encode_chunk_key(tuple(coords))
    return Path(store) / array.path / key


def clean_partial_writes(store: str | os.PathLike[str]) -> int:
    """Remove temporary files a killed zarr write left (`*.partial`); returns how many.

    Nothing to do in object storage: an object is written whole by one PUT or not at all.
    """
    if objectstore.is_url(store):
        return 0
    removed = 0
    for side in SIDES:
        for dirpath, _, files in os.walk(Path(store) / side):
            for name in files:
                if name.endswith(".partial"):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
    return removed


def write_template(
    path: Path,
    *,
    grid: Grid,
    times: dict[str, Sequence[np.datetime64 | None]],
    bands: Sequence[str],
    chunk: int,
    shard: int,
    compression: Compression,
    attrs: dict[str, Any],
) -> None:
    """Create an empty store at `path` (which must not exist): metadata and coordinates only.

    The data arrays are all fill value (NaN) until units are written into them.
    """
    band = np.array(list(bands), dtype=object)
    coords: dict[str, Any] = {
        "band": ("band", band),
        "y": ("y", grid.y_coords()),
        "x": ("x", grid.x_coords()),
    }
    data_vars = {}
    encoding: dict[str, dict[str, Any]] = {}
    for side in SIDES:
        tdim = time_dim(side)
        stamps = np.array(
            [np.datetime64("NaT", "ns") if t is None else t for t in times[side]],
            dtype="datetime64[ns]",
        )
        coords[tdim] = (tdim, stamps)
        shape = (len(stamps), len(band), grid.height, grid.width)
        shards = (1, len(band), shard, shard)
        template = da.empty(shape, dtype=np.float32, chunks=shards)
        data_vars[side] = xr.Variable(
            (tdim, "band", "y", "x"), template, attrs={"grid_mapping": "spatial_ref"}
        )
        encoding[side] = {
            "chunks": (1, 1, chunk, chunk),
            "shards": shards,
            "compressors": compression.codecs(),
            "fill_value": np.nan,
        }
        encoding[tdim] = {"units": "nanoseconds since 1970-01-01", "dtype": "int64"}
    ds = xr.Dataset(data_vars, coords=coords)
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(grid.affine)
    ds["spatial_ref"].attrs["GeoTransform"] = grid.gdal_geotransform()
    for side in SIDES:
        ds[side].encoding.pop("grid_mapping", None)
        ds[side].attrs["grid_mapping"] = "spatial_ref"
    ds.attrs[ATTRS_KEY] = attrs
    with _quiet_zarr():
        ds.to_zarr(
            str(path), mode="w-", zarr_format=3, encoding=encoding, compute=False, consolidated=True
        )
