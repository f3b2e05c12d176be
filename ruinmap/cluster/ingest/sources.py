"""The input rasters: each file's header inspected once, grouped into acquisitions (one date of
one side), with the band names every acquisition shares."""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.ingest.dates import acquisition_date, date_from_name, parse_date_text
from ruinmap.cluster.ingest.products import (
    Product,
    polarisation_order,
    recognise_product,
    refuse_safe,
)
from ruinmap.cluster.ingest.scale import ScaleDecision
from ruinmap.cluster.storage.confined import Roots, confined_raster_path, open_confined
from ruinmap.cluster.storage.location import Location, as_location
from ruinmap.errors import InputError, SpecError

__all__ = ["Acquisition", "Member", "SourceFile", "build_acquisitions", "check_polarisations",
           "common_bands", "inspect_source", "sha256_of", "user_dates"]

_HASH_BLOCK = 8 * 2**20


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
    # what the file is (an RTC product, a GEE export...), from its name and tags
    product: Product = field(default_factory=lambda: Product(kind="geotiff"))
    # how its values are read (decided in `plan.plan_inputs`, None before)
    scale: ScaleDecision | None = None
    # shares of a decimated read that are nodata, and masked by the product's mask layer
    nodata_fraction: float | None = None
    masked_fraction: float | None = None
    # the header of the product's mask layer (`product.mask`), inspected in `plan_inputs`
    mask_source: SourceFile | None = None
    orbit: int | None = None  # relative orbit (tag RELATIVE_ORBIT, or STAC sat:relative_orbit)
    item: str | None = None  # the STAC item (collection/id) the file is an asset of
    # the name GDAL reads when it differs from `path` (a signed URL; `path` is the unsigned
    # href, recorded in the store's provenance without its token)
    read_path: str | None = None


#: Tags naming a file's relative orbit (the synthetic city's, and GEE exports'), first wins
ORBIT_TAGS = ("RELATIVE_ORBIT", "relativeOrbitNumber_start")


@dataclass(frozen=True)
class Member:
    """One member of a mosaic: its files (bands stacked in order), the STAC item it comes from
    (None for plain files), per file the (scale, offset) of `raster:bands` (value * scale +
    offset; (1, 0) for plain files), and a class mask (Sentinel-2's SCL) whose `mask_classes`
    pixels are nodata in every band of the member."""

    files: tuple[SourceFile, ...]
    item: str | None = None
    scales: tuple[tuple[float, float], ...] = ()
    mask: SourceFile | None = None
    mask_classes: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        return self.item if self.item is not None else self.files[0].path


@dataclass(frozen=True)
class Acquisition:
    """One date of one side: one file, several stacked along bands (`stack_bands`), the
    per-polarisation files of one RTC product (`Product.group`), bands in VV, VH order, or a
    mosaic of `members` (tiles of one date and orbit, `ingest.mosaic`; `files` then lists
    every member's files in member order)."""

    side: str
    files: tuple[SourceFile, ...]
    date: np.datetime64 | None
    band_names: tuple[str, ...]
    members: tuple[Member, ...] = ()

    def band_parts(self) -> list[tuple[SourceFile, int, int | None]]:
        """Every file with the index of its first band and its mosaic member (None when the
        acquisition is no mosaic)."""
        if not self.members:
            firsts = np.cumsum([0] + [f.count for f in self.files])[:-1]
            return [(f, int(b), None) for f, b in zip(self.files, firsts, strict=True)]
        parts: list[tuple[SourceFile, int, int | None]] = []
        for m, member in enumerate(self.members):
            first = 0
            for f in member.files:
                parts.append((f, first, m))
                first += f.count
        return parts


_SUPPORTED_KINDS = "uif"


def inspect_source(path: Location, side: str, user_nodata: float | None = None,
                   confine_to: Roots | None = None) -> SourceFile:
    """Open one raster's header, check it can be ingested, and describe it.

    `confine_to`: the file is opened confined to these roots (`storage.confined`).

    Raises InputError naming the file: not a raster, truncated (its first or last pixel
    cannot be read), no CRS or no geotransform (each named), georeferenced by GCPs only,
    unsupported data type, or a user nodata value that does not fit the data type.
    """
    refuse_safe(str(path))
    with confined_raster_path(path, confine_to) as name:
        return _inspect(path, name, side, user_nodata)


def _inspect(path: Location, name: str | Location, side: str,
             user_nodata: float | None) -> SourceFile:
    try:
        src = rasterio.open(name)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{path}: not a readable raster, or truncated ({exc})") from None
    with src:
        dtype = np.dtype(src.dtypes[0])
        if dtype.kind not in _SUPPORTED_KINDS or any(d != src.dtypes[0] for d in src.dtypes):
            raise InputError(
                f"{path}: data type {', '.join(sorted(set(src.dtypes)))} is not supported; "
                "ingest takes one integer or float type per file (stored as float32)"
            )
        # GDAL reports a file without a geotransform as the identity transform
        no_transform = src.transform.is_identity
        if no_transform and src.gcps[0]:
            raise InputError(f"{path}: georeferenced by ground control points only (no "
                             "geotransform); warp it first (`rio warp` or `gdalwarp`)")
        if src.crs is None or no_transform:
            missing = " and ".join(name for name, absent in (
                ("no CRS", src.crs is None), ("no geotransform", no_transform)) if absent)
            hints = []
            if src.crs is None:
                hints.append("assign a CRS, e.g. `rio edit-info --crs EPSG:32636 FILE`")
            if no_transform:
                hints.append("give the pixel grid's position, e.g. `gdal_edit.py -a_ullr "
                             "ULX ULY LRX LRY FILE` or `rio edit-info --transform`")
            raise InputError(f"{path}: {missing}; {'; '.join(hints)}")
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
        date, date_source = acquisition_date(tags, path.name)
        orbit = None
        for key in ORBIT_TAGS:
            try:
                orbit = int(float(tags[key]))
                break
            except (KeyError, ValueError):
                continue
        size_bytes, mtime_ns = path.size_and_mtime()
        nodata = None if src.nodata is None else float(src.nodata)
        descriptions = tuple(d or None for d in src.descriptions)
        product = recognise_product(str(path), tags, descriptions, nodata, dtype.name)
        if date is None and product.group is not None:
            # Planetary Computer's iw-vv.rtc.tiff: the date is in the product's folder name
            date = date_from_name(str(path.parent))
            date_source = "name" if date is not None else date_source
        return SourceFile(
            path=str(path),
            side=side,
            grid=Grid.of(src.crs, src.transform, src.width, src.height),
            count=src.count,
            dtype=dtype.name,
            nodata=nodata,
            descriptions=descriptions,
            date=date,
            date_source=date_source,
            size_bytes=size_bytes,
            mtime_ns=mtime_ns,
            product=product,
            orbit=orbit,
        )


def _check_nodata_fits(value: float, dtype: np.dtype, path: Location) -> None:
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


def user_dates(
    dates: Sequence[str] | None, files: Sequence[Location], what: str
) -> list[Any]:
    """One date per file from `--pre-dates`/`--post-dates` (None each when not given)."""
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
        groups = _product_groups(files)
    acquisitions = []
    for group in groups:
        names = _file_band_names(group)
        if all(f.product.polarisation and f.product.group for f in group):
            names = tuple(f.product.polarisation for f in group)
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


def _product_groups(files: Sequence[SourceFile]) -> list[list[SourceFile]]:
    """Each file alone, except the per-polarisation files of one RTC product (one
    `Product.group`), which are one acquisition, bands in VV, VH, HH, HV order."""
    groups: list[list[SourceFile]] = []
    by_key: dict[str, list[SourceFile]] = {}
    for f in files:
        key = f.product.group
        if key is None or f.product.polarisation is None:
            groups.append([f])
        elif key in by_key:
            repeated = [g for g in by_key[key]
                        if g.product.polarisation == f.product.polarisation]
            if repeated:
                raise InputError(f"{f.path}: polarisation {f.product.polarisation} of "
                                 f"{key} is given twice (also as {repeated[0].path})")
            by_key[key].append(f)
        else:
            by_key[key] = [f]
            groups.append(by_key[key])
    for group in groups:
        group.sort(key=lambda f: polarisation_order(f.product.polarisation))
    return groups


def check_polarisations(acquisitions: Sequence[Acquisition]) -> None:
    """InputError naming a date whose RTC product lacks a polarisation the others have (a
    `_VH.tif` missing beside its `_VV.tif`)."""
    grouped = [a for a in acquisitions if a.files[0].product.group is not None
               and a.files[0].product.polarisation is not None]
    if not grouped:
        return
    every = sorted({p for a in grouped for p in a.band_names}, key=polarisation_order)
    for acq in grouped:
        missing = [p for p in every if p not in acq.band_names]
        if missing:
            when = "undated" if acq.date is None else str(acq.date)[:10]
            raise InputError(
                f"{acq.files[0].path}: the {acq.side}-event date {when} has only "
                f"polarisation(s) {', '.join(acq.band_names)}, other dates have "
                f"{', '.join(every)}; give its {', '.join(missing)} file(s) "
                f"(..._{missing[0]}.tif beside it) or leave the date out"
            )


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


def sha256_of(path: str, confine_to: Roots | None = None) -> str:
    """The SHA-256 of a source file (local or s3://), read in 8 MiB blocks; a local file
    opened confined to `confine_to` when given (`storage.confined`)."""
    digest = hashlib.sha256()
    location = as_location(path)
    if confine_to is not None and not location.is_remote:
        with open_confined(path, confine_to) as fd, os.fdopen(os.dup(fd), "rb") as f:
            while block := f.read(_HASH_BLOCK):
                digest.update(block)
        return digest.hexdigest()
    with location.open_binary() as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()
