"""Planning an ingest from the inputs' headers alone: the files, their acquisitions, the band
names and the common grid (`plan_inputs`), before anything is written.

Two guards run here, so `ruinmap ingest` and `ruinmap run` refuse alike: one file given twice
(`same_inputs`: the same path, or another name of it, a symlink or a hard link), and a grid
larger than the Dask config `ruinmap.limits.max-pixels` (`check_grid_size`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import rasterio

from ruinmap.cluster.geo.grid import Grid, pixel_offset
from ruinmap.cluster.geo.target import target_grid
from ruinmap.cluster.ingest.mosaic import check_mosaic_resolutions, footprint_grid, merge_tiles
from ruinmap.cluster.ingest.options import IngestOptions
from ruinmap.cluster.ingest.products import (
    POLARISATIONS,
    MaskLayer,
    is_ancillary_layer,
    mask_pixels,
    refuse_safe,
)
from ruinmap.cluster.ingest.scale import (
    SAMPLE_SIDE,
    FileSample,
    check_scale,
    decide_scale,
    sample_file,
)
from ruinmap.cluster.ingest.sources import (
    Acquisition,
    SourceFile,
    build_acquisitions,
    check_polarisations,
    common_bands,
    inspect_source,
    user_dates,
)
from ruinmap.cluster.ingest.warp import RESAMPLING_METHODS, SourceRead
from ruinmap.cluster.settings import env_name, int_setting
from ruinmap.cluster.storage.confined import confined_raster_path
from ruinmap.cluster.storage.globs import expand_inputs
from ruinmap.cluster.storage.location import Location, as_location, gdal_env
from ruinmap.cluster.storage.store import SIDES
from ruinmap.errors import InputError, SpecError

__all__ = ["LARGE_NODATA_SHARE", "MAX_PIXELS_KEY", "InputPlan", "check_grid_size",
           "converted_bands", "expand_side", "file_band_names", "plan_inputs", "same_inputs",
           "source_read"]

log = logging.getLogger(__name__)

#: The Dask config key (`ruinmap.yaml`) of the largest grid an ingest plans, in pixels
MAX_PIXELS_KEY = "limits.max-pixels"
#: a file whose decimated read is nodata (its nodata value, NaN or its mask) on more than this
#: share of pixels is reported with a warning
LARGE_NODATA_SHARE = 0.3

Patterns = Sequence[str | os.PathLike[str]] | str | os.PathLike[str]


@dataclass(frozen=True)
class InputPlan:
    """The inputs of an ingest as inspected: acquisitions per side (by date), the band names
    they share and the grid they are put on."""

    acquisitions: dict[str, list[Acquisition]]
    bands: tuple[str, ...]
    grid: Grid

    @property
    def files(self) -> list[SourceFile]:
        """Every source file once, in side and date order."""
        every = (f for side in SIDES for a in self.acquisitions[side] for f in a.files)
        return list({f.path: f for f in every}.values())


def _as_list(patterns: Patterns) -> list[str | os.PathLike[str]]:
    return [patterns] if isinstance(patterns, str | os.PathLike) else list(patterns)


def expand_side(patterns: Patterns, what: str) -> list[Location]:
    """Files named by `patterns` (paths or globs, local or s3://), in the given order, each once.

    Raises InputError naming the first pattern that matches no file, and why.
    """
    if not _as_list(patterns):
        raise InputError(f"{what}: no files given")
    for pattern in _as_list(patterns):
        refuse_safe(os.fspath(pattern))  # a .SAFE folder is not even a file
    files, expansions = expand_inputs(patterns)
    for found in expansions:
        if found.reason is None:
            continue
        if found.reason.startswith("unlistable: "):
            raise InputError(
                f"{what} {found.pattern!r}: cannot be listed "
                f"({found.reason.removeprefix('unlistable: ')}); check the bucket, the key or "
                "glob, and the AWS credentials"
            )
        if found.is_remote:
            hint = (
                f"it is a folder; give a glob such as '{found.folder_hint()}'"
                if found.reason == "folder"
                else "check the bucket, the key or glob, and the AWS credentials"
            )
            raise InputError(f"{what} {found.pattern!r}: no objects match; {hint}")
        hint = (
            f"it is a folder; give a glob such as {found.folder_hint()!r}"
            if found.reason == "folder"
            else "check the path or glob (quote it)"
        )
        raise InputError(f"{what} {found.pattern!r}: no files match; {hint}")
    return list(files)


def _identity(location: Location) -> object:
    """What makes two names one file: (device, inode) locally, the URL in object storage."""
    if location.is_remote:
        return str(location)
    try:
        info = os.stat(location)
    except OSError:
        return str(location)
    return (info.st_dev, info.st_ino)


def same_inputs(sides: Sequence[tuple[str, Sequence[Location]]]
                ) -> list[tuple[str, Location, str, Location]]:
    """Every file named twice among `sides` ((side, files) pairs), as (side, first name, side,
    second name): the same path, or two names of one file (symlink, hard link)."""
    seen: dict[object, tuple[str, Location]] = {}
    repeated = []
    for side, files in sides:
        for location in files:
            key = _identity(location)
            if key in seen:
                repeated.append((*seen[key], side, location))
            else:
                seen[key] = (side, location)
    return repeated


def _without_ancillary(paths: list[Location], what: str, report: bool) -> list[Location]:
    """`paths` less the layers of RTC products beside their backscatter (a HyP3 folder's
    `_ls_map.tif`, `_area.tif`...: a glob `*.tif` catches them), each skipped with a line."""
    kept = [p for p in paths if not is_ancillary_layer(str(p))]
    for p in paths:
        if report and is_ancillary_layer(str(p)):
            log.info("%s: a layer of its RTC product (mask, area, DEM...), not backscatter; "
                     "not ingested as a date", p)
    if not kept:
        raise InputError(f"{what}: every file is a layer of an RTC product (mask, area, "
                         f"DEM...), e.g. {paths[0]}; give the backscatter files (..._VV.tif)")
    return kept


def check_grid_size(grid: Grid) -> None:
    """SpecError when `grid` has more pixels than the Dask config `ruinmap.limits.max-pixels`.

    A header claiming 10^6 x 10^6 pixels would otherwise be planned as hundreds of thousands
    of shard tasks before any of them fails.
    """
    limit = int_setting(MAX_PIXELS_KEY, minimum=1)
    pixels = grid.width * grid.height
    if pixels > limit:
        raise SpecError(
            f"the imagery's grid is {grid.width} x {grid.height} px ({pixels:,} pixels a date), "
            f"more than the limit of {limit:,} (Dask config ruinmap.{MAX_PIXELS_KEY}); check "
            f"the files' headers and --resolution/--bbox, or raise the limit with "
            f"{env_name(MAX_PIXELS_KEY)}={pixels} or in ~/.config/dask/ruinmap.yaml"
        )


def plan_inputs(pre: Patterns, post: Patterns, options: IngestOptions, *,
                report: bool = True) -> InputPlan:
    """Inspect the inputs and decide acquisitions, band names and the target grid.

    Reads headers, and a decimated sample of each SAR file (its scale, its nodata share:
    `ingest.scale`); raises InputError/SpecError for every bad input, before anything is
    written. `report`: log the scale decisions, the product layers skipped and large nodata
    shares. s3:// inputs are read through GDAL's /vsis3/ (`storage.s3.gdal_options`).
    """
    with gdal_env([*_as_list(pre), *_as_list(post)]):
        return _plan_inputs(pre, post, options, report)


def _plan_inputs(pre: Patterns, post: Patterns, options: IngestOptions,
                 report: bool) -> InputPlan:
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
        paths = _without_ancillary(expand_side(patterns, f"--{side}"), f"--{side}", report)
        given_dates = user_dates(dates, paths, f"--{side}-dates")
        files = []
        for path, user_date in zip(paths, given_dates, strict=True):
            info = inspect_source(path, side, options.nodata, options.confine_to)
            if user_date is not None:
                info = replace(info, date=user_date, date_source="user")
            files.append(info)
        first_given[side] = files[0]
        acquisitions[side] = merge_tiles(
            build_acquisitions(files, side, stack_bands=options.stack_bands))
    repeated = same_inputs([(side, [as_location(f.path) for a in acquisitions[side]
                                     for f in a.files]) for side in SIDES])
    if repeated:
        side_a, first, side_b, second = repeated[0]
        also = "" if str(first) == str(second) else f" (as {first})"
        raise InputError(f"{second}: given as --{side_b} and already as --{side_a}{also}; "
                         "each date is one file, given once")
    every = acquisitions["pre"] + acquisitions["post"]
    check_polarisations(every)
    bands = common_bands(every, options.bands)
    scale = check_scale(options.scale, "--scale / inputs.scale")
    reference = first_given["pre"].grid  # the first --pre file, whatever its date
    # the grid first: its size limit refuses a huge header before any pixel is sampled
    grid = plan_grid(reference, every, options)
    acquisitions = {side: [_with_scales(acq, bands, scale, options) for acq in
                           acquisitions[side]] for side in SIDES}
    if report:
        _log_scales([f for side in SIDES for acq in acquisitions[side] for f in acq.files],
                    options)
    return InputPlan(acquisitions, bands, grid)


def footprints_of(acquisitions: Sequence[Acquisition]) -> list[tuple[str, Grid]]:
    """(label, grid) of every file, a mosaic's tiles as one footprint (their union)."""
    footprints = []
    for acq in acquisitions:
        if not acq.members:
            footprints += [(f.path, f.grid) for f in acq.files]
            continue
        labels = [m.label for m in acq.members]
        # a member's first band stands for it (a 20 m band of a 10 m item can reach a pixel
        # further than the item's 10 m bands)
        what = "tiles of one date, mosaicked" if len(labels) > 1 else "one item"
        footprints.append((f"{' + '.join(labels)} ({what})",
                           footprint_grid([m.files[0].grid for m in acq.members])))
    return footprints


def plan_grid(reference: Grid, every: Sequence[Acquisition], options: IngestOptions) -> Grid:
    """The target grid of `every` acquisition (`geo.target.target_grid`), checked in size."""
    for acq in every:
        check_mosaic_resolutions(acq, options.resolution is not None)
    footprints = footprints_of(every)
    grid = target_grid(
        reference,
        footprints,
        crs=options.crs,
        resolution=options.resolution,
        bbox=options.bbox,
        bbox_crs=options.bbox_crs,
    )
    check_grid_size(grid)
    return grid


def file_band_names(acq: Acquisition, bands: Sequence[str]
                    ) -> list[tuple[SourceFile, tuple[str, ...]]]:
    """Each file of `acq` with the store's names of its bands."""
    # a mosaic's members each hold every band (`Acquisition.band_parts`)
    return [(f, tuple(bands[first:first + f.count])) for f, first, _ in acq.band_parts()]


def converted_bands(names: Sequence[str]) -> tuple[bool, ...]:
    """Which bands a scale conversion applies to: all but angles (a GEE export's `angle`)."""
    return tuple(name.lower() != "angle" for name in names)


@functools.lru_cache(maxsize=256)
def _cached_sample(path: str, bands: tuple[int, ...], nodata: float | None,
                   confine_to: tuple[str, ...] | None, size: int, mtime_ns: int) -> FileSample:
    # keyed by size and mtime: `ruinmap run` plans the inputs twice (checks, then ingest)
    return sample_file(path, bands, nodata, confine_to)


@functools.lru_cache(maxsize=256)
def _masked_share(mask: MaskLayer, confine_to: tuple[str, ...] | None) -> float:
    """The share of a mask layer's pixels (decimated read) that it masks."""
    with confined_raster_path(as_location(mask.path), confine_to) as name, \
            rasterio.open(name) as src:
        step = max(1, int(np.ceil(max(src.width, src.height) / SAMPLE_SIDE)))
        values = src.read(1, out_shape=(max(1, src.height // step), max(1, src.width // step)),
                          out_dtype=np.float64, resampling=rasterio.enums.Resampling.nearest)
    return float(mask_pixels(mask.kind, values).mean())


def _log_scales(files: Sequence[SourceFile], options: IngestOptions) -> None:
    """One line per product kind and scale decided from metadata or the spec, one per file
    decided from its values (with the evidence), and a warning per file with a large nodata
    or masked share."""
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for f in files:
        if f.scale is None:
            continue
        if f.scale.by != "values":
            key = (f.product.kind, f.scale.scale, f.scale.by, f.scale.evidence)
            groups.setdefault(key, []).append(f.path)
        elif f.product.is_sar or f.scale.scale != "as-is":
            log.info("%s: %s read as %s, decided from its values: %s", f.path, f.product.kind,
                     f.scale.scale, f.scale.evidence)
    for (kind, scale, by, evidence), paths in groups.items():
        log.info("%d %s file(s) read as %s (decided by %s: %s), e.g. %s", len(paths), kind,
                 scale, by, evidence, paths[0])
    for f in files:
        parts = []
        if (f.nodata_fraction or 0.0) > LARGE_NODATA_SHARE:
            nodata = f.nodata if options.nodata is None else options.nodata
            parts.append(f"{f.nodata_fraction:.0%} nodata (its nodata value {nodata!r} or NaN)")
        if f.product.mask is not None and (f.masked_fraction or 0.0) > LARGE_NODATA_SHARE:
            parts.append(f"{f.masked_fraction:.0%} masked by {f.product.mask.path}")
        if parts:
            log.warning("%s: %s of a decimated read; such pixels get no score (zero is data "
                        "unless the file's nodata value says otherwise)", f.path,
                        " and ".join(parts))


def _with_scales(acq: Acquisition, bands: Sequence[str], requested: str,
                 options: IngestOptions) -> Acquisition:
    """`acq` with every file's scale decided, and its nodata and masked shares (decimated
    reads)."""
    files = []
    for f, names in file_band_names(acq, bands):
        is_sar = f.product.is_sar or any(n.upper() in POLARISATIONS for n in names)
        indexes = tuple(i + 1 for i, c in enumerate(converted_bands(names)) if c)
        sample = None
        if indexes:
            nodata = options.nodata if options.nodata is not None else f.nodata
            if nodata is not None and math.isnan(nodata):
                # NaN is nodata anyway (`sample_file`), and NaN != NaN would make every
                # header's NaN a new cache key: the second plan sampled every file again
                nodata = None
            sample = _cached_sample(f.path, indexes, nodata, options.confine_to, f.size_bytes,
                                    f.mtime_ns)
        decision = decide_scale(f.path, requested, f.product.scale, f.product.scale_evidence,
                                sample, is_sar=is_sar)
        masked, mask_source = None, None
        if f.product.mask is not None:
            masked = _masked_share(f.product.mask, options.confine_to)
            mask_source = inspect_source(as_location(f.product.mask.path), acq.side, None,
                                         options.confine_to)
        nodata_share = None if sample is None else sample.nodata_fraction
        files.append(replace(f, scale=decision, nodata_fraction=nodata_share,
                             masked_fraction=masked, mask_source=mask_source))
    # a mosaic's members read the same files, with their scales
    decided = {f.path: f for f in files}
    members = tuple(replace(m, files=tuple(decided[f.path] for f in m.files))
                    for m in acq.members)
    return replace(acq, files=tuple(files), members=members)


def source_read(f: SourceFile, names: Sequence[str], grid: Grid) -> SourceRead:
    """How a worker reads `f` onto `grid`: its scale converted, its mask layer applied (an
    ingest shard task, and a tile reading a date in place, `ingest.inplace`)."""
    mask = None
    if f.mask_source is not None:
        m = f.mask_source
        mask = SourceRead(m.path, m.count, m.dtype, m.nodata, m.grid, pixel_offset(m.grid, grid))
    return SourceRead(
        f.read_path or f.path, f.count, f.dtype, f.nodata, f.grid, pixel_offset(f.grid, grid),
        scale="power" if f.scale is None else f.scale.scale,
        converted=converted_bands(names),
        mask_kind=None if f.product.mask is None else f.product.mask.kind, mask=mask,
    )
