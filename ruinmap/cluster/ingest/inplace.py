"""Dates read in place: source files already on the job's grid that tiles read directly, so the
ingest writes no second copy of them (`inputs.ingest`, `ruinmap ingest --ingest`).

Modes: "always" copies every date into the store (the store alone holds the pixels); "auto"
reads in place every date whose files are local, tiled GeoTIFFs (COGs included) on the grid
(same CRS and pixel size, whole-pixel shift) and not mosaicked, and copies the rest; "never"
copies nothing and refuses, naming the file and why, any date that would have to be copied.

A date read in place is read by the tile through `warp.read_source_window`, the very function
an ingest shard uses, on a grid-aligned window: read directly (bit for bit, no resampling),
nodata and the product's mask applied, dB and amplitude converted to linear power on read.
Each pixel's value depends only on that pixel, so a tile's window holds the values the
ingested store would hold, byte for byte, whatever the read path.

The decision is recorded in the store's `ruinmap` attribute (`in_place`: per side, per time
index, how to read each file, with its size and mtime), so the store still describes every
date (its arrays keep their shape; an in-place date's shards are never written and read as
NaN), a resumed ingest compares it like any other setting, and a job checks before its tiles
run that no in-place file changed since (`check_in_place_unchanged`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from ruinmap.cluster.geo.grid import Grid, pixel_offset
from ruinmap.cluster.ingest.plan import InputPlan, file_band_names, source_read
from ruinmap.cluster.ingest.sources import Acquisition, SourceFile, sha256_of
from ruinmap.cluster.ingest.warp import SourceRead, read_source_window
from ruinmap.cluster.settings import WORKER_ENV
from ruinmap.cluster.storage.confined import Roots, confined_raster_path
from ruinmap.cluster.storage.location import Location, as_location
from ruinmap.cluster.storage.store import SIDES
from ruinmap.cluster.storage.window_read import read_window
from ruinmap.errors import InputError, SpecError, StoreError

__all__ = ["INGEST_MODES", "InPlaceDates", "InPlaceFile", "check_in_place_unchanged",
           "check_ingest_mode", "plan_in_place", "read_dates_window"]

INGEST_MODES = ("auto", "always", "never")


def check_ingest_mode(mode: str, what: str = "inputs.ingest") -> str:
    """`mode` if it is one of INGEST_MODES, else SpecError naming `what`."""
    if mode not in INGEST_MODES:
        raise SpecError(f"{what} {mode!r}: use one of {', '.join(INGEST_MODES)}")
    return mode


@dataclass(frozen=True)
class InPlaceFile:
    """One file of an in-place date: how a tile reads it, and its size and mtime as planned
    (a file changed since is refused rather than read)."""

    read: SourceRead
    size_bytes: int
    mtime_ns: int

    def to_attrs(self) -> dict[str, Any]:
        return {**_read_attrs(self.read), "size_bytes": self.size_bytes,
                "mtime_ns": self.mtime_ns}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> InPlaceFile:
        return cls(_read_from_attrs(attrs), int(attrs["size_bytes"]), int(attrs["mtime_ns"]))


def _read_attrs(read: SourceRead) -> dict[str, Any]:
    return {
        "path": read.path, "count": read.count, "dtype": read.dtype, "nodata": read.nodata,
        "grid": read.grid.to_attrs(),
        "offset": None if read.offset is None else list(read.offset),
        "scale": read.scale,
        "converted": None if read.converted is None else list(read.converted),
        "mask_kind": read.mask_kind,
        "mask": None if read.mask is None else _read_attrs(read.mask),
    }


def _read_from_attrs(attrs: Mapping[str, Any]) -> SourceRead:
    offset = attrs.get("offset")
    converted = attrs.get("converted")
    mask = attrs.get("mask")
    return SourceRead(
        path=str(attrs["path"]), count=int(attrs["count"]), dtype=str(attrs["dtype"]),
        nodata=attrs.get("nodata"), grid=Grid.from_attrs(attrs["grid"]),
        offset=None if offset is None else (int(offset[0]), int(offset[1])),
        scale=str(attrs.get("scale", "power")),
        converted=None if converted is None else tuple(bool(c) for c in converted),
        mask_kind=attrs.get("mask_kind"),
        mask=None if mask is None else _read_from_attrs(mask),
    )


@dataclass(frozen=True)
class InPlaceDates:
    """The dates read in place: side -> time index -> its files, in band order."""

    dates: dict[str, dict[int, tuple[InPlaceFile, ...]]] = field(
        default_factory=lambda: {side: {} for side in SIDES})
    # the roots every in-place file is opened confined to (IngestOptions.confine_to)
    confine_to: tuple[str, ...] | None = None

    def __bool__(self) -> bool:
        return any(self.dates.get(side) for side in SIDES)

    def is_in_place(self, side: str, t: int) -> bool:
        return t in self.dates.get(side, {})

    def count(self) -> int:
        return sum(len(self.dates.get(side, {})) for side in SIDES)

    def to_attrs(self) -> dict[str, Any]:
        """The store's `in_place` attribute (JSON: time indexes as strings)."""
        return {
            "confine_to": None if self.confine_to is None else list(self.confine_to),
            "dates": {side: {str(t): [f.to_attrs() for f in files]
                             for t, files in sorted(self.dates.get(side, {}).items())}
                      for side in SIDES},
        }

    @classmethod
    def from_store_attrs(cls, attrs: Mapping[str, Any]) -> InPlaceDates:
        """The in-place dates a store's `ruinmap` attribute records (none for a store that
        copied every date, as every store written before `in_place` existed)."""
        recorded = attrs.get("in_place")
        if not recorded:
            return cls()
        dates = {side: {int(t): tuple(InPlaceFile.from_attrs(f) for f in files)
                        for t, files in recorded.get("dates", {}).get(side, {}).items()}
                 for side in SIDES}
        roots = recorded.get("confine_to")
        return cls(dates, None if roots is None else tuple(roots))


def _is_remote(path: str) -> bool:
    return "://" in path


def _is_tiled(f: SourceFile, confine_to: Roots | None) -> bool:
    with confined_raster_path(as_location(f.path), confine_to) as name, \
            rasterio.open(name) as src:
        return bool(src.profile.get("tiled", False)) and src.driver == "GTiff"


def _why_copied(f: SourceFile, grid: Grid, confine_to: Roots | None) -> str | None:
    """Why `f` cannot be read in place on `grid` (None: it can)."""
    if f.item is not None or _is_remote(f.path) or f.read_path is not None:
        return ("it is remote (s3://, http(s):// or a STAC asset); only local files are "
                "read in place, remote ones are copied once")
    if pixel_offset(f.grid, grid) is None:
        return ("it is not on the job's grid (another CRS, pixel size or a sub-pixel shift) "
                "and must be warped")
    if not _is_tiled(f, confine_to):
        return ("it is not a tiled GeoTIFF (a COG or `gdal_translate -co TILED=YES`), so a "
                "tile's window would read whole strips")
    mask = f.mask_source
    if mask is not None:
        if _is_remote(mask.path) or pixel_offset(mask.grid, grid) is None:
            return f"its mask layer {mask.path} is remote or not on the job's grid"
    return None


def _acquisition_reason(acq: Acquisition, inputs: InputPlan, confine_to: Roots | None
                        ) -> tuple[str, str] | None:
    """(file, why) of the first reason `acq` must be copied, or None."""
    if acq.members:
        return (acq.members[0].label, "its tiles (or STAC items) are mosaicked into one date")
    for f in acq.files:
        reason = _why_copied(f, inputs.grid, confine_to)
        if reason is not None:
            return f.path, reason
    return None


def plan_in_place(inputs: InputPlan, mode: str, confine_to: Roots | None = None
                  ) -> InPlaceDates:
    """Decide per date whether tiles read it in place (`mode`: see the module docstring).

    Raises SpecError for an unknown mode, InputError with "never" for the first date that
    would have to be copied, naming its file and why.
    """
    check_ingest_mode(mode)
    roots = None if confine_to is None else tuple(confine_to)
    if mode == "always":
        return InPlaceDates(confine_to=roots)
    dates: dict[str, dict[int, tuple[InPlaceFile, ...]]] = {side: {} for side in SIDES}
    for side in SIDES:
        for t, acq in enumerate(inputs.acquisitions[side]):
            reason = _acquisition_reason(acq, inputs, confine_to)
            if reason is not None:
                if mode == "never":
                    path, why = reason
                    raise InputError(
                        f"{path}: inputs.ingest = \"never\", but this {side} date must be "
                        f"copied into the store: {why}; use ingest = \"auto\" (copy only "
                        "such dates) or make the file a COG on the grid (gdalwarp -of COG)")
                continue
            dates[side][t] = tuple(
                InPlaceFile(source_read(f, names, inputs.grid), f.size_bytes, f.mtime_ns)
                for f, names in file_band_names(acq, inputs.bands))
    return InPlaceDates(dates, roots)


def _changed(f: InPlaceFile, sha256: str | None, roots: Roots | None) -> str | None:
    """Why the file `f` no longer is the one planned (None: it is)."""
    try:
        info = os.stat(f.read.path)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if info.st_size != f.size_bytes:
        return f"its size is {info.st_size} bytes, {f.size_bytes} when planned"
    if info.st_mtime_ns == f.mtime_ns:
        return None
    # touched or copied with the same contents is the same file
    if sha256 is not None and sha256_of(f.read.path, roots) == sha256:
        return None
    return "it was modified since (its mtime and contents differ)"


def check_in_place_unchanged(store: Location, attrs: Mapping[str, Any]) -> None:
    """StoreError naming the first in-place file that changed since the store was planned
    (size, else mtime and then sha256): tiles would read other pixels than the store records."""
    in_place = InPlaceDates.from_store_attrs(attrs)
    if not in_place:
        return
    sums = {s["path"]: s.get("sha256") for s in attrs.get("sources", [])}
    for side in SIDES:
        for files in in_place.dates[side].values():
            for f in files:
                why = _changed(f, sums.get(f.read.path), in_place.confine_to)
                if why is not None:
                    raise StoreError(
                        f"{f.read.path}: read in place by the store {store}, but {why}; "
                        "re-run with --overwrite (or remove the store) so it is planned "
                        "again, or restore the file")


def _read_in_place(files: Sequence[InPlaceFile], grid: Grid, window: Window,
                   nodata: float | None, roots: Roots | None) -> np.ndarray:
    """One date's (band, y, x) window, read from its files as an ingest shard would be."""
    parts = []
    for f in files:
        try:
            size = os.stat(f.read.path).st_size
        except OSError:
            size = -1
        if size != f.size_bytes:  # replaced or truncated while the job runs
            raise StoreError(f"{f.read.path}: read in place, but its size changed since the "
                             "store was planned; re-run the job so it is checked again")
        # resampling is never used: an in-place file is on the grid and read directly
        block, _ = read_source_window(f.read, grid, window, resampling="nearest",
                                      nodata=nodata, confine_to=roots)
        parts.append(block)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def read_dates_window(store: Location, side: str, n_times: int, in_place: InPlaceDates,
                      grid: Grid, window: tuple[int, int, int, int], nodata: float | None,
                      token: str = "", first: int = 0) -> np.ndarray:
    """The (time, band, y, x) float32 block of `side` over `window` = (row0, col0, row1,
    col1) of `grid`: the dates the store holds from its array, the in-place dates from their
    files (`nodata`: the store's nodata override). With `first`, only the dates from that
    index on (a store without in-place dates: monitoring refuses those)."""
    r0, c0, r1, c1 = window
    here = in_place.dates.get(side, {})
    if first and here:
        raise ValueError("reading from a later date needs a store without in-place dates")
    if len(here) < n_times:
        # straight from the shards: a halo's chunks above and below decode only their rows
        block = read_window(store, side, window, token, first).astype(np.float32, copy=False)
        if not here:
            return block
    else:
        block = None
    target = Window(c0, r0, c1 - c0, r1 - r0)
    gdal_cache = int(WORKER_ENV["GDAL_CACHEMAX"]) * 2**20
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache):
        dates = {t: _read_in_place(files, grid, target, nodata, in_place.confine_to)
                 for t, files in here.items()}
    if block is None:
        return np.stack([dates[t] for t in range(n_times)])
    for t, values in dates.items():
        block[t] = values
    return block
