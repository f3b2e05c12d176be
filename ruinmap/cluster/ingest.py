"""Ingest: pre- and post-event GeoTIFFs into one aligned, sharded Zarr v3 store.

`ingest(pre, post, out)` inspects every file (headers only), decides the common grid, creates
the store's metadata, then writes it shard by shard on a Dask cluster: each task reads one
window of one acquisition from its source file(s) (directly when the source is on the grid,
else through a WarpedVRT), writes exactly one shard, fsyncs it and records it in the store's
ledger. Tasks never share a shard, so no locks are needed; a re-run skips recorded shards and
rewrites any other from scratch, so a killed ingest resumes without trusting a half-written
shard. The store is marked complete only after every shard is recorded. Source checksums
(provenance) are computed in this process's threads while the workers write.

Defaults, chosen by measurement (README "Ingest" and benchmarks/bench_ingest.py):
inner chunk 512 x 512 px, shard 2048 x 2048 px (all bands of one date), blosc-zstd level 1
with byte shuffle.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import zarr
from distributed import Client
from rasterio.windows import Window

from ruinmap import __version__
from ruinmap.cluster import objectstore
from ruinmap.cluster.connect import WORKER_ENV, open_client
from ruinmap.cluster.dates import acquisition_date, parse_date_text
from ruinmap.cluster.files import is_folder_pattern, match_files
from ruinmap.cluster.grid import RESAMPLING_METHODS, Grid, SourceRead, pixel_offset, read_window
from ruinmap.cluster.grid import target_grid as _target_grid
from ruinmap.cluster.progress import track
from ruinmap.cluster.store import (
    FORMAT_VERSION,
    SIDES,
    STORE_FORMAT,
    Compression,
    clean_partial_writes,
    is_ruinmap_store,
    ledger_of,
    read_store_attrs,
    remove_store,
    shard_file,
    update_store_attrs,
    write_template,
)
from ruinmap.errors import InputError, RuinmapError, SpecError, StoreError

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 512
DEFAULT_SHARD = 2048
DEFAULT_COMPRESSION = "blosc-zstd:1"
# Largest float32 shard (all bands) an automatic shard size may reach. A task holds about
# three copies of its shard (source read, float32 block, encoded shard), so this bounds a
# worker's memory whatever the image size: 3 x 128 MiB plus GDAL's 64 MiB cache.
MAX_AUTO_SHARD_BYTES = 128 * 2**20
_HASH_BLOCK = 8 * 2**20


@dataclass(frozen=True)
class IngestOptions:
    """Everything about an ingest except its inputs, output and cluster.

    crs, resolution, bbox (minx, miny, maxx, maxy in bbox_crs, default the target CRS): the
    target grid (see `grid.target_grid`). chunk: inner Zarr chunk side (px). shard: shard side
    (px, a multiple of chunk; None = 2048 rounded to chunks, smaller when many bands).
    compression: "blosc-zstd:1" (default), "zstd:3", "blosc-lz4:5" or "none". resampling:
    GDAL method for inputs not on the grid. nodata: overrides every file's nodata value.
    bands: band names overriding the files' descriptions. stack_bands: files of one side with
    the same date are one acquisition, their bands stacked in file-name order (per-band
    Sentinel-2 files). pre_dates/post_dates: one date per file, overriding tags and names.
    overwrite: replace an existing ruinmap store instead of resuming it or leaving a complete
    one alone. durable: fsync every shard before recording it (off only for benchmarks).
    """

    crs: str | None = None
    resolution: tuple[float, float] | None = None
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: str | None = None
    chunk: int = DEFAULT_CHUNK
    shard: int | None = None
    compression: str = DEFAULT_COMPRESSION
    resampling: str = "bilinear"
    nodata: float | None = None
    bands: tuple[str, ...] | None = None
    stack_bands: bool = False
    pre_dates: tuple[str, ...] | None = None
    post_dates: tuple[str, ...] | None = None
    overwrite: bool = False
    durable: bool = True


@dataclass(frozen=True)
class SourceFile:
    """One input raster as inspected (header and two probe pixels only)."""

    path: str
    side: str
    grid: Grid
    count: int
    dtype: str
    nodata: float | None
    descriptions: tuple[str | None, ...]
    date: np.datetime64 | None
    date_source: str
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class Acquisition:
    """One date of one side: one file, or several stacked along bands (`stack_bands`)."""

    side: str
    files: tuple[SourceFile, ...]
    date: np.datetime64 | None
    band_names: tuple[str, ...]


@dataclass(frozen=True)
class IngestPlan:
    """What the workers need, sent to each once (scattered), not with every task."""

    store: str
    store_id: str
    grid: Grid
    shard: int
    resampling: str
    nodata: float | None
    reads: dict[str, tuple[tuple[SourceRead, ...], ...]]  # side -> time index -> files
    durable: bool
    # the client's object-storage endpoint and GDAL /vsis3/ settings (s3:// inputs or store)
    storage_options: dict[str, Any] = field(default_factory=dict)
    gdal_options: dict[str, str] = field(default_factory=dict)


@dataclass
class IngestReport:
    """What an ingest did."""

    out: Path | str  # a local path, or an s3:// URL
    grid: Grid
    bands: tuple[str, ...]
    times: dict[str, list[str | None]]
    units_total: int
    units_written: int
    units_skipped: int
    was_noop: bool
    seconds: float
    bytes_written: int = 0  # float32 bytes written by this run (uncompressed)
    stored_bytes: int = 0  # bytes of the data arrays on disk
    notes: list[str] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # inspect, checksums, write

    @property
    def mb_per_s(self) -> float:
        return self.bytes_written / 1e6 / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Inputs


def expand_inputs(patterns: Sequence[str | os.PathLike[str]], what: str) -> list[Path | str]:
    """Files named by `patterns` (paths or globs, local or s3://), in the given order, each once.

    Local files come back as absolute Paths, objects as s3:// URLs. Raises InputError naming
    the first pattern that matches no file.
    """
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    if not patterns:
        raise InputError(f"{what}: no files given")
    found: list[Path | str] = []
    for pattern in patterns:
        if objectstore.is_url(pattern):
            urls = objectstore.glob(str(objectstore.as_location(pattern)))
            if not urls:
                hint = (
                    f"it is a folder; give a glob such as '{str(pattern).rstrip('/')}/*.tif'"
                    if objectstore.is_prefix(str(pattern))
                    else "check the bucket, the key or glob, and the AWS credentials"
                )
                raise InputError(f"{what} {pattern!r}: no objects match; {hint}")
            found.extend(u for u in urls if u not in found)
            continue
        matches = match_files(pattern)
        if not matches:
            text = os.fspath(pattern)
            hint = (
                f"it is a folder; give a glob such as {os.path.join(text, '*.tif')!r}"
                if is_folder_pattern(pattern)
                else "check the path or glob (quote it)"
            )
            raise InputError(f"{what} {text!r}: no files match; {hint}")
        for path in matches:
            resolved = path.absolute()
            if resolved not in found:
                found.append(resolved)
    return found


_SUPPORTED_KINDS = "uif"


def inspect_source(path: Path | str, side: str, user_nodata: float | None = None) -> SourceFile:
    """Open one raster's header, check it can be ingested, and describe it.

    Raises InputError naming the file: not a raster, truncated (its first or last pixel
    cannot be read), no CRS, georeferenced by GCPs only, unsupported data type, or a user
    nodata value that does not fit the data type.
    """
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{path}: not a readable raster, or truncated ({exc})") from None
    with src:
        dtype = np.dtype(src.dtypes[0])
        if dtype.kind not in _SUPPORTED_KINDS or any(d != src.dtypes[0] for d in src.dtypes):
            raise InputError(
                f"{path}: data type {', '.join(sorted(set(src.dtypes)))} is not supported; "
                "ingest takes one integer or float type per file (stored as float32)"
            )
        if src.crs is None:
            hint = (
                "it has ground control points only: warp it first (`rio warp`)"
                if src.gcps[0]
                else ""
            )
            hint = hint or "assign one, e.g. `rio edit-info --crs EPSG:32636 FILE`"
            raise InputError(f"{path}: no CRS; {hint}")
        if src.transform.is_identity and src.gcps[0]:
            raise InputError(f"{path}: georeferenced by ground control points only; warp it first")
        if user_nodata is not None:
            _check_nodata_fits(user_nodata, dtype, path)
        try:
            last = Window(src.width - 1, src.height - 1, 1, 1)
            src.read(window=Window(0, 0, 1, 1))
            src.read(window=last)
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(
                f"{path}: pixels cannot be read ({exc.__cause__ or exc}); the file is "
                "truncated or corrupt"
            ) from None
        tags = dict(src.tags())
        date, date_source = acquisition_date(tags, objectstore.name_of(path))
        size_bytes, mtime_ns = objectstore.stat(path)
        return SourceFile(
            path=str(path),
            side=side,
            grid=Grid.of(src.crs, src.transform, src.width, src.height),
            count=src.count,
            dtype=dtype.name,
            nodata=None if src.nodata is None else float(src.nodata),
            descriptions=tuple(d or None for d in src.descriptions),
            date=date,
            date_source=date_source,
            size_bytes=size_bytes,
            mtime_ns=mtime_ns,
        )


def _check_nodata_fits(value: float, dtype: np.dtype, path: Path | str) -> None:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not (math.isfinite(value) and value == int(value) and info.min <= value <= info.max):
            raise InputError(
                f"{path}: --nodata {value:g} does not fit its {dtype.name} values "
                f"({info.min}..{info.max}) (integer overflow); give a value of that range"
            )
    elif dtype == np.float32 and math.isfinite(value) and abs(value) > np.finfo(np.float32).max:
        raise InputError(f"{path}: --nodata {value:g} overflows its float32 values")


_TOKEN_SPLIT = re.compile(r"[_\-.\s]+")


def _band_tokens(files: Sequence[SourceFile]) -> list[str | None]:
    """Per file, the part of its name that differs from the others of its group (`B02`)."""
    stems = [_TOKEN_SPLIT.split(Path(f.path).stem) for f in files]
    if len(files) < 2 or len({len(s) for s in stems}) != 1:
        return [None] * len(files)
    differing = [i for i in range(len(stems[0])) if len({s[i] for s in stems}) > 1]
    if not differing:
        return [None] * len(files)
    return ["_".join(s[i] for i in differing) for s in stems]


def _file_band_names(files: Sequence[SourceFile]) -> tuple[str | None, ...]:
    """Band names of an acquisition made of `files`: descriptions, else name tokens, else None."""
    tokens = _band_tokens(files)
    names: list[str | None] = []
    for file, token in zip(files, tokens, strict=True):
        for i, desc in enumerate(file.descriptions):
            if desc:
                names.append(desc)
            elif token is not None:
                names.append(token if file.count == 1 else f"{token}_{i + 1}")
            else:
                names.append(None)
    return tuple(names)


def _user_dates(
    dates: Sequence[str] | None, files: Sequence[Path | str], what: str
) -> list[Any]:
    if dates is None:
        return [None] * len(files)
    if len(dates) != len(files):
        raise SpecError(f"{what}: {len(dates)} dates for {len(files)} files; give one per file")
    parsed = []
    for text in dates:
        value = parse_date_text(text)
        if value is None:
            raise SpecError(f"{what} {text!r}: not a date (use YYYY-MM-DD)")
        parsed.append(value)
    return parsed


def build_acquisitions(
    files: Sequence[SourceFile], side: str, *, stack_bands: bool
) -> list[Acquisition]:
    """Group one side's files into acquisitions and order them by date.

    Without `stack_bands` each file is one acquisition. With it, files of the same calendar
    day form one acquisition, bands stacked in file-name order; every file needs a date.
    Acquisitions are sorted by date when every one has a date, else kept in the given order.
    """
    groups: list[list[SourceFile]]
    if stack_bands:
        undated = [f.path for f in files if f.date is None]
        if undated:
            raise InputError(
                f"{undated[0]}: --stack-bands groups files by date, and this file has none in "
                "its tags or name; give dates with --pre-dates/--post-dates"
            )
        by_day: dict[Any, list[SourceFile]] = {}
        for f in files:
            by_day.setdefault(np.asarray(f.date).astype("datetime64[D]").item(), []).append(f)
        groups = [sorted(g, key=lambda f: Path(f.path).name) for g in by_day.values()]
    else:
        groups = [[f] for f in files]
    acquisitions = []
    for group in groups:
        names = _file_band_names(group)
        dates = [f.date for f in group if f.date is not None]
        acquisitions.append(
            Acquisition(
                side=side,
                files=tuple(group),
                date=min(dates) if len(dates) == len(group) else None,
                band_names=tuple(n if n is not None else "" for n in names),
            )
        )
    if all(a.date is not None for a in acquisitions):
        acquisitions.sort(key=lambda a: a.date)  # type: ignore[arg-type, return-value]
    return acquisitions


def common_bands(
    acquisitions: Sequence[Acquisition], user_bands: Sequence[str] | None
) -> tuple[str, ...]:
    """The band names every acquisition shares, or InputError naming two that differ."""
    first = acquisitions[0]
    for acq in acquisitions[1:]:
        if len(acq.band_names) != len(first.band_names):
            raise InputError(
                f"{acq.files[0].path}: {len(acq.band_names)} band(s), but "
                f"{first.files[0].path} has {len(first.band_names)}; every acquisition must "
                "have the same bands (select bands with `rio convert --bidx` or pass files "
                "with the same bands)"
            )
    if user_bands is not None:
        if len(user_bands) != len(first.band_names):
            raise SpecError(
                f"--bands {','.join(user_bands)}: {len(user_bands)} name(s) for "
                f"{len(first.band_names)} band(s) in {first.files[0].path}"
            )
        if len(set(user_bands)) != len(user_bands):
            raise SpecError(f"--bands {','.join(user_bands)}: names must be distinct")
        return tuple(user_bands)
    named = [a for a in acquisitions if all(a.band_names)]
    if not named:
        return tuple(f"b{i + 1}" for i in range(len(first.band_names)))
    reference = named[0]
    for acq in acquisitions:
        if acq.band_names != reference.band_names:
            shown = ", ".join(n or "(unnamed)" for n in acq.band_names)
            raise InputError(
                f"{acq.files[0].path}: bands ({shown}) differ from "
                f"({', '.join(reference.band_names)}) of {reference.files[0].path}; give the "
                "same bands in the same order, or name them with --bands"
            )
    if len(set(reference.band_names)) != len(reference.band_names):
        raise InputError(
            f"{reference.files[0].path}: band names {reference.band_names} repeat; name the "
            "bands with --bands"
        )
    return reference.band_names


def choose_shard(chunk: int, shard: int | None, band_count: int) -> int:
    """The shard side: `shard` checked, or the default 2048 rounded up to whole chunks and
    halved (in whole chunks) while a float32 shard of all bands exceeds 128 MiB."""
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise SpecError(f"--chunk {chunk!r}: must be a positive integer (pixels)")
    if shard is not None:
        if not isinstance(shard, int) or isinstance(shard, bool) or shard < chunk or shard % chunk:
            raise SpecError(f"--shard {shard!r}: must be a multiple of --chunk {chunk}")
        return shard
    n_chunks = max(1, math.ceil(DEFAULT_SHARD / chunk))
    while n_chunks > 1 and band_count * (n_chunks * chunk) ** 2 * 4 > MAX_AUTO_SHARD_BYTES:
        n_chunks //= 2
    return n_chunks * chunk


# ---------------------------------------------------------------------------------------------
# Worker tasks


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with objectstore.open_binary(path) as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _open_array(plan: IngestPlan, side: str) -> zarr.Array:
    return _open_array_cached(plan.store, side, plan.store_id,
                              tuple(sorted(plan.storage_options.items())))


@lru_cache(maxsize=8)
def _open_array_cached(
    store: str, side: str, store_id: str, options: tuple[tuple[str, Any], ...]
) -> zarr.Array:
    # store_id keys the cache, so an overwritten store at the same path is reopened
    return zarr.open_array(store=objectstore.zarr_store(store, dict(options)), path=side,
                           mode="r+", zarr_format=3)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_unit(plan: IngestPlan, side: str, t: int, iy: int, ix: int) -> int:
    """Write one shard (all bands of date `t` of `side`) and record it; returns bytes written.

    Order: read and convert, delete any shard file an unrecorded earlier attempt left, write,
    fsync the shard and its directory, then record the key in the ledger (last).
    """
    grid, step = plan.grid, plan.shard
    row0, col0 = iy * step, ix * step
    window = Window(col0, row0, min(step, grid.width - col0), min(step, grid.height - row0))
    # the GDAL settings of s3:// inputs are the client's, applied here on the worker
    gdal_cache = int(WORKER_ENV["GDAL_CACHEMAX"]) * 2**20
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache, **plan.gdal_options):
        parts = [
            read_window(read, grid, window, resampling=plan.resampling, nodata=plan.nodata)
            for read in plan.reads[side][t]
        ]
    block = parts[0] if len(parts) == 1 else np.concatenate(parts)
    array = _open_array(plan, side)
    if objectstore.is_url(plan.store):
        # one PUT writes the shard whole; drop one an unrecorded attempt left all the same,
        # so an all-nodata shard (which zarr does not store) never keeps stale data
        key = array.metadata.encode_chunk_key((t, 0, iy, ix))
        objectstore.remove(f"{plan.store}/{array.path}/{key}", plan.storage_options)
        array[t, :, row0 : row0 + block.shape[1], col0 : col0 + block.shape[2]] = block
    else:
        target = shard_file(plan.store, array, (t, 0, iy, ix))
        target.unlink(missing_ok=True)
        array[t, :, row0 : row0 + block.shape[1], col0 : col0 + block.shape[2]] = block
        if plan.durable and target.exists():  # an all-nodata shard is not stored at all
            _fsync(target)
            _fsync(target.parent)
    ledger_of(plan.store, plan.storage_options).record(unit_key(side, t, iy, ix))
    return int(block.nbytes)


def unit_key(side: str, t: int, iy: int, ix: int) -> str:
    return f"{side}/{t}/{iy}/{ix}"


# ---------------------------------------------------------------------------------------------
# Store attributes and plans


def _iso(date: np.datetime64 | None) -> str | None:
    return None if date is None else str(np.asarray(date).astype("datetime64[s]"))


def store_attrs(
    *,
    grid: Grid,
    acquisitions: dict[str, list[Acquisition]],
    bands: Sequence[str],
    chunk: int,
    shard: int,
    compression: Compression,
    options: IngestOptions,
    checksums: Mapping[str, str | None],
) -> dict[str, Any]:
    """The `ruinmap` root attribute of a new store (provenance and layout)."""
    sources = []
    for side in SIDES:
        for t, acq in enumerate(acquisitions[side]):
            first_band = 0
            for f in acq.files:
                sources.append(
                    {
                        "path": f.path,
                        "side": side,
                        "time": _iso(acq.date),
                        "time_index": t,
                        "bands": list(bands[first_band : first_band + f.count]),
                        "size_bytes": f.size_bytes,
                        "mtime_ns": f.mtime_ns,
                        "sha256": checksums.get(f.path),
                        "date_source": f.date_source,
                        "dtype": f.dtype,
                        "nodata": f.nodata,
                        "crs_wkt": f.grid.crs_wkt if f.grid.crs_wkt != grid.crs_wkt else None,
                    }
                )
                first_band += f.count
    return {
        "format": STORE_FORMAT,
        "format_version": FORMAT_VERSION,
        "ruinmap_version": __version__,
        "store_id": uuid.uuid4().hex,
        "grid": grid.to_attrs(),
        "bands": list(bands),
        "sources": sources,
        "compression": compression.to_attrs(),
        "chunks": [1, 1, chunk, chunk],
        "shards": [1, len(bands), shard, shard],
        "resampling": options.resampling,
        "nodata": options.nodata,
        "complete": False,
    }


_VOLATILE = ("complete", "ruinmap_version", "store_id")
_SOURCE_STAT_KEYS = ("path", "side", "time", "time_index", "bands", "size_bytes", "mtime_ns")
_SOURCE_CONTENT_KEYS = ("path", "side", "time", "time_index", "bands", "size_bytes", "sha256")


def _recorded_sources(attrs: dict[str, Any]) -> dict[tuple[str, int, int | None], str | None]:
    """sha256 (None: not computed yet) of each source a store records, by (path, size, mtime)."""
    return {
        (s["path"], s["size_bytes"], s.get("mtime_ns")): s.get("sha256")
        for s in attrs.get("sources", [])
    }


def _known_checksums(attrs: dict[str, Any]) -> dict[tuple[str, int, int | None], str]:
    """sha256 of each source a store records, by (path, size, mtime): reused while unchanged."""
    return {
        (s["path"], s["size_bytes"], s.get("mtime_ns")): s["sha256"]
        for s in attrs.get("sources", [])
        if s.get("sha256")
    }


def _signature(attrs: dict[str, Any], by_content: bool) -> dict[str, Any]:
    keys = _SOURCE_CONTENT_KEYS if by_content else _SOURCE_STAT_KEYS
    sig = {k: v for k, v in attrs.items() if k not in (*_VOLATILE, "sources")}
    sig["sources"] = [{k: s.get(k) for k in keys} for s in attrs.get("sources", [])]
    return sig


def _differences(old: dict[str, Any], new: dict[str, Any], by_content: bool) -> list[str]:
    a, b = _signature(old, by_content), _signature(new, by_content)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


# ---------------------------------------------------------------------------------------------
# The driver


# what a template upload cut short can leave under an s3:// --out (no root zarr.json yet)
_TEMPLATE_MEMBERS = ("pre/", "post/", "x/", "y/", "band/", "pre_time/", "post_time/",
                     "spatial_ref/")


def _is_unfinished_template(url: str) -> bool:
    names = objectstore.list_names(url)
    return bool(names) and all(n.startswith(_TEMPLATE_MEMBERS) for n in names)


def _check_out_url(out: str) -> None:
    if not objectstore.bucket_exists(out):
        raise StoreError(f"--out {out}: the bucket does not exist (or these credentials cannot "
                         "see it); create it first")
    if is_ruinmap_store(out) or not objectstore.list_names(out) or _is_unfinished_template(out):
        return
    raise StoreError(
        f"--out {out}: holds objects and is not a ruinmap store; choose a new prefix or remove "
        "them (ruinmap only ever replaces its own stores)"
    )


def _check_out_path(out: Path | str) -> None:
    if isinstance(out, str):
        _check_out_url(out)
        return
    if not out.exists():
        if not out.parent.is_dir():
            raise StoreError(f"--out {out}: its parent directory does not exist")
        return
    if is_ruinmap_store(out):
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    raise StoreError(
        f"--out {out}: exists and is not a ruinmap store; choose a new path or remove it "
        "(ruinmap only ever replaces its own stores)"
    )


def _create_store(out: Path | str, **template: Any) -> None:
    """Write the template beside `out` and rename it into place, so `out` is never half made.

    On S3 (no rename) the template is written locally and uploaded with its root `zarr.json`
    last: until that object exists the prefix is not a ruinmap store, and a re-run replaces
    whatever an upload cut short left.
    """
    if isinstance(out, str):
        objectstore.remove_prefix(out)
        with objectstore.local_staging() as folder:
            write_template(folder / "store.zarr", **template)
            objectstore.upload_tree(folder / "store.zarr", out, last="zarr.json")
        return
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    write_template(tmp, **template)
    if out.exists():
        out.rmdir()  # an empty directory (checked before)
    os.rename(tmp, out)


def plan_inputs(
    pre: Sequence[str | os.PathLike[str]],
    post: Sequence[str | os.PathLike[str]],
    options: IngestOptions,
) -> tuple[dict[str, list[Acquisition]], tuple[str, ...], Grid]:
    """Inspect the inputs and decide acquisitions, band names and the target grid.

    Reads headers only; raises InputError/SpecError for every bad input, before anything
    is written. s3:// inputs are read through GDAL's /vsis3/ (`objectstore.gdal_options`).
    """
    remote = any(objectstore.is_url(p) for p in (*_as_list(pre), *_as_list(post)))
    with rasterio.Env(**objectstore.gdal_options()) if remote else contextlib.nullcontext():
        return _plan_inputs(pre, post, options)


def _as_list(patterns: Sequence[str | os.PathLike[str]] | str) -> list[str | os.PathLike[str]]:
    return [patterns] if isinstance(patterns, str | os.PathLike) else list(patterns)


def _plan_inputs(
    pre: Sequence[str | os.PathLike[str]],
    post: Sequence[str | os.PathLike[str]],
    options: IngestOptions,
) -> tuple[dict[str, list[Acquisition]], tuple[str, ...], Grid]:
    if options.resampling not in RESAMPLING_METHODS:
        raise SpecError(
            f"--resampling {options.resampling!r}: use one of {', '.join(RESAMPLING_METHODS)}"
        )
    acquisitions: dict[str, list[Acquisition]] = {}
    first_given: dict[str, SourceFile] = {}
    for side, patterns, dates in (
        ("pre", pre, options.pre_dates),
        ("post", post, options.post_dates),
    ):
        paths = expand_inputs(patterns, f"--{side}")
        user_dates = _user_dates(dates, paths, f"--{side}-dates")
        files = []
        for path, user_date in zip(paths, user_dates, strict=True):
            info = inspect_source(path, side, options.nodata)
            if user_date is not None:
                info = replace(info, date=user_date, date_source="user")
            files.append(info)
        first_given[side] = files[0]
        acquisitions[side] = build_acquisitions(files, side, stack_bands=options.stack_bands)
    every = acquisitions["pre"] + acquisitions["post"]
    bands = common_bands(every, options.bands)
    reference = first_given["pre"].grid  # the first --pre file, whatever its date
    footprints = [(f.path, f.grid) for acq in every for f in acq.files]
    grid = _target_grid(
        reference,
        footprints,
        crs=options.crs,
        resolution=options.resolution,
        bbox=options.bbox,
        bbox_crs=options.bbox_crs,
    )
    return acquisitions, bands, grid


@contextlib.contextmanager
def _client_for(client: Client | None, scheduler: str | None) -> Iterator[Client]:
    if client is not None:
        yield client
    else:
        with open_client(scheduler) as own:
            yield own


def ingest(
    pre: Sequence[str | os.PathLike[str]],
    post: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    options: IngestOptions | None = None,
    *,
    client: Client | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> IngestReport:
    """Ingest pre- and post-event rasters (paths or globs, local or s3://) into the ruinmap
    store `out` (a local path or an s3:// URL).

    Uses `client` when given, else opens one for `scheduler` (a profile such as "local" or
    "slurm", or "tcp://host:port"; None: the Dask config `ruinmap.cluster.address`).
    Resumes an unfinished store made from the same inputs and settings; does nothing to a
    complete one unless `options.overwrite`. Raises InputError/SpecError for bad inputs
    (before writing anything), StoreError for an output path that is not a ruinmap store or
    a store made from other inputs, ClusterError when the cluster cannot be used.
    """
    options = options or IngestOptions()
    started = time.perf_counter()
    out = objectstore.as_location(out)
    compression = Compression.parse(options.compression)
    _check_out_path(out)
    acquisitions, bands, grid = plan_inputs(pre, post, options)
    shard = choose_shard(options.chunk, options.shard, len(bands))
    times = {side: [_iso(a.date) for a in acquisitions[side]] for side in SIDES}
    counts = {side: len(acquisitions[side]) for side in SIDES}
    units = [
        (side, t, iy, ix)
        for side in SIDES
        for t in range(counts[side])
        for iy in range(math.ceil(grid.height / shard))
        for ix in range(math.ceil(grid.width / shard))
    ]
    report = IngestReport(out, grid, bands, times, len(units), 0, 0, False, 0.0)
    report.phase_seconds["inspect"] = time.perf_counter() - started
    attrs_args: dict[str, Any] = dict(
        grid=grid,
        acquisitions=acquisitions,
        bands=bands,
        chunk=options.chunk,
        shard=shard,
        compression=compression,
        options=options,
    )
    existing = read_store_attrs(out) if is_ruinmap_store(out) else None
    if existing is not None and existing.get("complete") and not options.overwrite:
        differs = _differences(existing, store_attrs(**attrs_args, checksums={}), False)
        if differs == ["sources"]:
            # touched or copied files: compare their contents before calling them different
            stored = _known_checksums(existing)
            sums = {
                f.path: stored.get((f.path, f.size_bytes, f.mtime_ns)) or _sha256(f.path)
                for side in SIDES
                for a in acquisitions[side]
                for f in a.files
            }
            differs = _differences(existing, store_attrs(**attrs_args, checksums=sums), True)
        if differs:
            raise StoreError(
                f"{out}: a complete store made from other inputs or settings (differs in: "
                f"{', '.join(differs)}); pass --overwrite to replace it, or choose another --out"
            )
        report.was_noop = True
        report.units_skipped = len(units)
        report.seconds = time.perf_counter() - started
        report.notes.append("store already complete; nothing to do (--overwrite redoes it)")
        return report

    files = list(
        {f.path: f for side in SIDES for a in acquisitions[side] for f in a.files}.values()
    )
    if existing is not None and options.overwrite:
        existing = None  # removed below, once the cluster is up
    # Checksums are provenance, not needed to write: hash in this process's threads while the
    # workers write, except files an unfinished store must be compared with first.
    recorded = _recorded_sources(existing) if existing is not None else {}
    checksums: dict[str, str | None] = {}
    for f in files:
        stat_key = (f.path, f.size_bytes, f.mtime_ns)
        if stat_key in recorded:
            checksums[f.path] = recorded[stat_key]  # unchanged since recorded (None: not yet)
    changed = [f.path for f in files if f.path not in checksums]
    if existing is not None:
        checksums.update(_hash_all(changed))
    hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ruinmap-sha256")
    background = {
        path: hashing.submit(_sha256, path)
        for path in (f.path for f in files)
        if not checksums.get(path)
    }
    try:
        report = _write_store(
            out,
            existing,
            units,
            report,
            attrs_args,
            checksums,
            background,
            client=client,
            scheduler=scheduler,
            progress=progress,
            started=started,
        )
    finally:
        hashing.shutdown(wait=False, cancel_futures=True)
    return report


def _hash_all(paths: Sequence[str]) -> dict[str, str | None]:
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ruinmap-sha256") as pool:
        return dict(zip(paths, pool.map(_sha256, paths), strict=True))


def _write_store(
    out: Path | str,
    existing: dict[str, Any] | None,
    units: list[tuple[str, int, int, int]],
    report: IngestReport,
    attrs_args: dict[str, Any],
    checksums: dict[str, str | None],
    background: dict[str, Future[str]],
    *,
    client: Client | None,
    scheduler: str | None,
    progress: bool | None,
    started: float,
) -> IngestReport:
    """Create or resume the store, write every pending unit, then mark the store complete."""
    options: IngestOptions = attrs_args["options"]
    grid: Grid = attrs_args["grid"]
    shard: int = attrs_args["shard"]
    acquisitions: dict[str, list[Acquisition]] = attrs_args["acquisitions"]
    bands: tuple[str, ...] = attrs_args["bands"]
    compression: Compression = attrs_args["compression"]
    tiles = math.ceil(grid.height / shard) * math.ceil(grid.width / shard)
    with _client_for(client, scheduler) as cl:
        attrs = store_attrs(**attrs_args, checksums=checksums)
        report.phase_seconds["checksums"] = (
            time.perf_counter() - started - sum(report.phase_seconds.values())
        )
        if options.overwrite and is_ruinmap_store(out):
            remove_store(out)
        if existing is not None:
            differs = _differences(existing, attrs, True)
            if differs:
                raise StoreError(
                    f"{out}: an unfinished ingest of other inputs or settings (differs in: "
                    f"{', '.join(differs)}); re-run it with its own arguments, or pass "
                    "--overwrite to start over"
                )
            attrs = existing
            report.notes.append("resumed an unfinished store")
        else:
            _create_store(
                out,
                grid=grid,
                times={side: [a.date for a in acquisitions[side]] for side in SIDES},
                bands=bands,
                chunk=options.chunk,
                shard=shard,
                compression=compression,
                attrs=attrs,
            )

        remote = objectstore.is_url(out) or any(
            objectstore.is_url(f.path) for side in SIDES for a in acquisitions[side]
            for f in a.files
        )
        ledger = ledger_of(out)
        ledger.clean()
        clean_partial_writes(out)
        done = ledger.done()
        pending = [u for u in units if unit_key(*u) not in done]
        report.units_skipped = len(units) - len(pending)
        plan = IngestPlan(
            store=str(out),
            store_id=str(attrs["store_id"]),
            grid=grid,
            shard=shard,
            resampling=options.resampling,
            nodata=options.nodata,
            reads={
                side: tuple(
                    tuple(
                        SourceRead(
                            f.path, f.count, f.dtype, f.nodata, f.grid, pixel_offset(f.grid, grid)
                        )
                        for f in acq.files
                    )
                    for acq in acquisitions[side]
                )
                for side in SIDES
            },
            durable=options.durable,
            storage_options=objectstore.storage_options() if remote else {},
            gdal_options=objectstore.gdal_options() if remote else {},
        )
        log.info(
            "ingest %s: grid %dx%d, %d shard(s) per date, %d to write, %d already done",
            out,
            grid.width,
            grid.height,
            tiles,
            len(pending),
            report.units_skipped,
        )
        if pending:
            [plan_future] = cl.scatter([plan], broadcast=True, hash=False)
            futures = [
                cl.submit(
                    write_unit,
                    plan_future,
                    *u,
                    key=f"ingest-{unit_key(*u)}-{uuid.uuid4().hex[:8]}",
                    pure=False,
                )
                for u in pending
            ]
            try:
                for future in track(futures, "ingest", enabled=progress):
                    report.bytes_written += future.result()
                    report.units_written += 1
            except BaseException:
                cl.cancel(futures)
                raise
        missing = ledger.pending(unit_key(*u) for u in units)
        if missing:
            raise RuinmapError(f"{out}: {len(missing)} shard(s) not recorded, e.g. {missing[0]}")
        report.phase_seconds["write"] = (
            time.perf_counter() - started - sum(report.phase_seconds.values())
        )
        final = dict(checksums)
        for path, job in background.items():
            try:
                final[path] = job.result()
            except OSError as exc:
                raise InputError(f"{path}: cannot be read to checksum it ({exc})") from None
        sources = store_attrs(**attrs_args, checksums=final)["sources"]
        update_store_attrs(out, sources=sources, complete=True)
        ledger.remove()
    report.stored_bytes = sum(objectstore.total_bytes(objectstore.join(out, side))
                              for side in SIDES)
    report.seconds = time.perf_counter() - started
    report.phase_seconds["finish"] = report.seconds - sum(report.phase_seconds.values())
    return report
