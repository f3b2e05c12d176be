"""Planning an ingest from the inputs' headers alone: the files, their acquisitions, the band
names and the common grid (`plan_inputs`), before anything is written.

Two guards run here, so `ruinmap ingest` and `ruinmap run` refuse alike: one file given twice
(`same_inputs`: the same path, or another name of it, a symlink or a hard link), and a grid
larger than the Dask config `ruinmap.limits.max-pixels` (`check_grid_size`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.geo.target import target_grid
from ruinmap.cluster.ingest.mosaic import check_mosaic_resolutions, footprint_grid, merge_tiles
from ruinmap.cluster.ingest.options import IngestOptions
from ruinmap.cluster.ingest.sources import (
    Acquisition,
    SourceFile,
    build_acquisitions,
    common_bands,
    inspect_source,
    user_dates,
)
from ruinmap.cluster.ingest.warp import RESAMPLING_METHODS
from ruinmap.cluster.settings import env_name, int_setting
from ruinmap.cluster.storage.globs import expand_inputs
from ruinmap.cluster.storage.location import Location, as_location, gdal_env
from ruinmap.cluster.storage.store import SIDES
from ruinmap.errors import InputError, SpecError

__all__ = ["MAX_PIXELS_KEY", "InputPlan", "check_grid_size", "expand_side", "plan_inputs",
           "same_inputs"]

#: The Dask config key (`ruinmap.yaml`) of the largest grid an ingest plans, in pixels
MAX_PIXELS_KEY = "limits.max-pixels"

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


def plan_inputs(pre: Patterns, post: Patterns, options: IngestOptions) -> InputPlan:
    """Inspect the inputs and decide acquisitions, band names and the target grid.

    Reads headers only; raises InputError/SpecError for every bad input, before anything
    is written. s3:// inputs are read through GDAL's /vsis3/ (`storage.s3.gdal_options`).
    """
    with gdal_env([*_as_list(pre), *_as_list(post)]):
        return _plan_inputs(pre, post, options)


def _plan_inputs(pre: Patterns, post: Patterns, options: IngestOptions) -> InputPlan:
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
        paths = expand_side(patterns, f"--{side}")
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
    bands = common_bands(every, options.bands)
    reference = first_given["pre"].grid  # the first --pre file, whatever its date
    return InputPlan(acquisitions, bands, plan_grid(reference, every, options))


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
