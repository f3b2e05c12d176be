"""Zarr arrays of a ruinmap store: codecs, the empty template, shards and small arrays.

- `write_template` / `create_store`: a new store's metadata and coordinates, never half made
  (written beside and renamed locally; uploaded with its root `zarr.json` last in object
  storage);
- `write_shard`: one task writes one whole shard: the shard an earlier, unrecorded attempt
  left is removed first (so an all-fill shard, which zarr does not store, never keeps stale
  data), then zarr writes it, then it is made durable (`Location.sync`) before the caller
  records it in a ledger;
- `create_array`, `write_array`: the job's output layers beside the inputs.

Every function takes a `Location`, local or s3://.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor used below)
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.storage.cf import coordinate_attrs, imagery_attrs
from ruinmap.cluster.storage.durable import disk_full_error, is_disk_full
from ruinmap.cluster.storage.location import (
    LocalPath,
    Location,
    ObjectURL,
    as_location,
    local_staging,
)
from ruinmap.errors import SpecError

__all__ = [
    "DEFAULT_CHUNK", "SIDES", "Compression", "clean_partial_writes", "consolidate",
    "create_array",
    "create_store", "is_unfinished_template", "open_array", "quiet_zarr", "shard_file",
    "time_dim", "write_array", "write_shard", "write_template",
]

DEFAULT_CHUNK = 512
SIDES = ("pre", "post")
# what a template upload cut short can leave under an s3:// store (no root zarr.json yet)
_TEMPLATE_MEMBERS = ("pre/", "post/", "x/", "y/", "band/", "pre_time/", "post_time/",
                     "spatial_ref/")


def time_dim(side: str) -> str:
    """The name of a side's time dimension and coordinate (`pre_time`, `post_time`)."""
    return f"{side}_time"


@contextlib.contextmanager
def quiet_zarr() -> Iterator[None]:
    # Consolidated metadata is a zarr-python extension to the v3 spec, and the ledger directory
    # is not a zarr node: both warnings are expected here and say nothing to a user.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"zarr\..*")
        warnings.filterwarnings("ignore", message=r".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=r".*not recognized as a component.*")
        yield


def consolidate(path: str | os.PathLike[str]) -> None:
    """Rewrite the root `zarr.json` with every node's metadata (readers open with one read)."""
    with quiet_zarr():
        zarr.consolidate_metadata(as_location(path).zarr_store(), zarr_format=3)


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


def write_template(
    path: LocalPath,
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
        # CF and GeoZarr attributes (`cf`); grid_mapping is set again below, after rioxarray
        side_attrs = imagery_attrs(side, bands, grid)
        side_attrs.pop("grid_mapping")
        data_vars[side] = xr.Variable((tdim, "band", "y", "x"), template, attrs=side_attrs)
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
    for axis in ("x", "y"):
        ds[axis].attrs.update(coordinate_attrs(grid, axis))
    for side in SIDES:
        ds[side].encoding.pop("grid_mapping", None)
        ds[side].attrs["grid_mapping"] = "spatial_ref"
    ds.attrs["ruinmap"] = attrs
    with quiet_zarr():
        ds.to_zarr(
            str(path), mode="w-", zarr_format=3, encoding=encoding, compute=False, consolidated=True
        )


def create_store(out: Location, **template: Any) -> None:
    """Write the template (`write_template`) at `out` so that `out` is never half made.

    Locally it is written beside `out` and renamed into place (`out` is absent or an empty
    folder). In object storage (no rename) it is written locally and uploaded with its root
    `zarr.json` last: until that object exists the prefix is not a ruinmap store, and a
    re-run replaces whatever an upload cut short left.
    """
    if isinstance(out, ObjectURL):
        out.remove_tree()
        with local_staging() as folder:
            write_template(folder / "store.zarr", **template)
            _upload_tree(folder / "store.zarr", out, last="zarr.json")
        return
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        if stale.is_dir():
            stale.remove_tree()
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    write_template(tmp, **template)
    if out.exists():
        out.rmdir()  # an empty directory (checked before)
    os.rename(tmp, out)


def _upload_tree(local: LocalPath, url: ObjectURL, *, last: str) -> None:
    """Upload every file under `local` below `url`; the relative key `last` goes last (a
    reader that looks for it sees the tree only once the rest is there)."""
    files = sorted(p for p in local.rglob("*") if p.is_file())
    ordered = [p for p in files if p.relative_to(local).as_posix() != last]
    ordered += [p for p in files if p.relative_to(local).as_posix() == last]
    for path in ordered:
        url.join(path.relative_to(local).as_posix()).upload_from(path)


def is_unfinished_template(location: Location) -> bool:
    """Whether `location` holds only what an interrupted `create_store` upload leaves."""
    names = location.list_names()
    return bool(names) and all(n.startswith(_TEMPLATE_MEMBERS) for n in names)


def open_array(location: Location, name: str, mode: str = "r", token: str = "") -> zarr.Array:
    """Array `name` of the store at `location`, opened once per process (cached).

    `token` (the store's id, a job's signature) keys the cache, so an array re-created at the
    same path for another store or job is reopened, never written through stale metadata.
    """
    options = tuple(sorted(location.options.items()))
    return _open_array(str(location), location.is_remote, options, name, mode, token)


@lru_cache(maxsize=16)
def _open_array(text: str, remote: bool, options: tuple[tuple[str, Any], ...], name: str,
                mode: str, token: str) -> zarr.Array:
    location: Location = ObjectURL(text, dict(options)) if remote else LocalPath(text)
    return zarr.open_array(store=location.zarr_store(), path=name, mode=mode, zarr_format=3)


def shard_file(store: str | os.PathLike[str], array: zarr.Array,
               coords: Sequence[int]) -> Location:
    """Where one shard of `array` lives (shard grid coordinates)."""
    key = array.metadata.encode_chunk_key(tuple(coords))
    return as_location(store).join(array.path, key)


def write_shard(store: Location, array: zarr.Array, coords: Sequence[int],
                selection: tuple[int | slice, ...], data: np.ndarray, *,
                durable: bool = True) -> None:
    """Write the whole shard at `coords` of `array` (`selection` covers exactly it).

    The shard an unrecorded earlier attempt left is removed first, then written; with
    `durable` the shard and its folder are fsync'd (one PUT is durable already). A full disk
    removes the shard and is a `DiskFullError` naming it (the shard is unrecorded, so a re-run
    writes it again).
    """
    target = shard_file(store, array, coords)
    target.remove()
    try:
        array[selection] = data
        if durable:
            target.sync()
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        target.remove()
        clean_partial_writes(store)
        # data.nbytes: the shard uncompressed, the most it can need
        raise disk_full_error(Path(str(target)), 0, int(data.nbytes)) from None


def clean_partial_writes(store: str | os.PathLike[str]) -> int:
    """Remove temporary files a killed zarr write left (`*.partial`); returns how many.

    Nothing to do in object storage: an object is written whole by one PUT or not at all.
    """
    root = as_location(store)
    if root.is_remote:
        return 0
    removed = 0
    for side in SIDES:
        for name in root.join(side).list_names():
            if name.endswith(".partial"):
                root.join(side, name).remove()
                removed += 1
    return removed


def create_array(store: Location, name: str, *, shape: tuple[int, ...], dtype: Any,
                 chunks: tuple[int, ...], shards: tuple[int, ...], fill_value: Any,
                 dimension_names: tuple[str, ...], attributes: dict[str, Any]) -> None:
    """(Re)create an empty array `name` in the store (zstd level 1), replacing any old one."""
    store.join(name).remove_tree()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.create_array(
            store=store.zarr_store(), name=name, shape=shape, dtype=dtype, chunks=chunks,
            shards=shards, fill_value=fill_value, dimension_names=dimension_names,
            attributes=attributes, compressors=[ZstdCodec(level=1)], overwrite=True,
        )


def write_array(store: Location, name: str, data: np.ndarray, *,
                dimension_names: tuple[str, ...], attributes: dict[str, Any]) -> None:
    """Write a small array `name` whole (one chunk), replacing any old one."""
    fill = np.nan if data.dtype.kind == "f" else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = zarr.create_array(
            store=store.zarr_store(), name=name, shape=data.shape, dtype=data.dtype,
            fill_value=fill, dimension_names=dimension_names, attributes=attributes,
            overwrite=True,
        )
        array[...] = data
