"""Mosaics: several files (or STAC items) of one date and orbit that together make one
acquisition, read shard by shard, never as whole scenes.

Grouping (`merge_tiles`): files of one side with the same calendar day (or both undated) and
the same relative orbit (when known) are tiles of one acquisition when each pair overlaps by
less than half of the smaller footprint (adjacent tiles, bursts or frames sharing an edge or
a seam). Two files covering the same area on the same day stay two acquisitions, as before.

Reading (`read_mosaic`): every member's window is read onto the target grid (directly or
through a WarpedVRT, `warp.read_window`) and the result takes, per pixel and band, the first
valid value in member order: files in the order they were given (file-name order within a
glob), STAC items in the order of their `datetime`, then id. Members whose footprint misses
the window are not opened, and once every pixel is filled the remaining members are not read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from math import ceil
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from ruinmap.cluster.geo.grid import Bounds, Grid
from ruinmap.cluster.ingest.sources import Acquisition, Member, SourceFile
from ruinmap.cluster.ingest.warp import SourceRead, read_source_window, read_window
from ruinmap.cluster.storage.confined import Roots
from ruinmap.errors import InputError

__all__ = ["TILE_OVERLAP_MAX", "Member", "MemberRead", "MosaicRead", "check_mosaic_resolutions",
           "footprint_grid", "merge_tiles", "mosaic_read", "read_mosaic"]

_QUERY = re.compile(r"\?[^\s)]*")  # a URL's query string: where signatures keep their token

#: Two files of one date and orbit are tiles of one mosaic when they overlap by less than
#: this fraction of the smaller footprint's area
TILE_OVERLAP_MAX = 0.5


@dataclass(frozen=True)
class MemberRead:
    """How a worker reads one member (picklable): its band parts, scales and mask."""

    parts: tuple[SourceRead, ...]
    scales: tuple[tuple[float, float], ...]
    mask: SourceRead | None
    mask_classes: tuple[int, ...]
    bounds: Bounds  # its footprint in the target CRS: windows outside it are not read
    label: str = ""  # the STAC item or first file, for errors


@dataclass(frozen=True)
class MosaicRead:
    """One acquisition made of several members, first valid pixel in member order."""

    members: tuple[MemberRead, ...]


def _area(b: Bounds) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _overlap_fraction(a: Grid, b: Grid) -> float:
    """Area shared by two footprints (in `a`'s CRS) over the smaller footprint's area."""
    fa, fb = a.footprint(), b.footprint(a.crs_wkt)
    shared = (max(fa[0], fb[0]), max(fa[1], fb[1]), min(fa[2], fb[2]), min(fa[3], fb[3]))
    smaller = min(_area(fa), _area(fb))
    return _area(shared) / smaller if smaller > 0 else 1.0


def _day(acq: Acquisition) -> Any:
    return None if acq.date is None else np.asarray(acq.date).astype("datetime64[D]").item()


def _members_of(acq: Acquisition) -> tuple[Member, ...]:
    return acq.members if acq.members else (Member(acq.files),)


def _grid_of(acq: Acquisition) -> Grid:
    return footprint_grid([m.files[0].grid for m in _members_of(acq)])


def merge_tiles(acquisitions: Sequence[Acquisition]) -> list[Acquisition]:
    """Acquisitions of one side with tiles of one date and orbit merged into mosaics (module
    docstring), in the order of their first tile."""
    groups: list[list[Acquisition]] = []
    for acq in acquisitions:
        key = (_day(acq), acq.files[0].orbit)
        for group in groups:
            first = group[0]
            if (_day(first), first.files[0].orbit) != key:
                continue
            if all(_overlap_fraction(_grid_of(other), _grid_of(acq)) < TILE_OVERLAP_MAX
                   for other in group):
                group.append(acq)
                break
        else:
            groups.append([acq])
    merged = []
    for group in groups:
        if len(group) == 1:
            merged.append(group[0])
            continue
        members = tuple(m for acq in group for m in _members_of(acq))
        _check_same_bands(group)
        merged.append(replace(group[0], files=tuple(f for m in members for f in m.files),
                              members=members))
    return merged


def _check_same_bands(group: Sequence[Acquisition]) -> None:
    first = group[0]
    for acq in group[1:]:
        if acq.band_names != first.band_names:
            raise InputError(
                f"{acq.files[0].path}: a tile of the same date as {first.files[0].path}, but "
                f"its bands ({', '.join(acq.band_names) or 'unnamed'}) differ from "
                f"({', '.join(first.band_names) or 'unnamed'}); tiles of one date are "
                "mosaicked and need the same bands"
            )


def check_mosaic_resolutions(acq: Acquisition, has_resolution: bool) -> None:
    """InputError when members of one mosaic have different pixel sizes and no target
    resolution is given: which one should the grid take is the user's choice."""
    if has_resolution or not acq.members:
        return
    first = acq.members[0]
    for member in acq.members[1:]:
        a, b = first.files[0].grid, member.files[0].grid
        if a.crs_wkt == b.crs_wkt and not np.allclose(a.resolution, b.resolution, rtol=1e-6):
            raise InputError(
                f"{member.label}: pixel size {b.resolution!r} differs from {a.resolution!r} of "
                f"{first.label}, both of one date (a mosaic); give the target grid's "
                "resolution (--resolution, or grid settings in the job spec)"
            )


def footprint_grid(grids: Sequence[Grid]) -> Grid:
    """A north-up grid in the first grid's CRS and pixel size covering every grid's footprint
    (the footprint of a mosaic, for the common area of an ingest)."""
    first = grids[0]
    if len(grids) == 1:
        return first
    boxes = [g.footprint(first.crs_wkt) for g in grids]
    left, bottom = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, top = max(b[2] for b in boxes), max(b[3] for b in boxes)
    res_x, res_y = first.resolution
    transform = Affine(res_x, 0.0, left, 0.0, -res_y, top)
    return Grid.of(first.crs_wkt, transform, max(1, ceil((right - left) / res_x - 1e-9)),
                   max(1, ceil((top - bottom) / res_y - 1e-9)))


def _window_bounds(target: Grid, window: Window) -> Bounds:
    sub = target.window(int(window.row_off), int(window.col_off), int(window.height),
                        int(window.width))
    return sub.bounds


def _touches(a: Bounds, b: Bounds) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _read_member(member: MemberRead, target: Grid, window: Window, *, resampling: str,
                 nodata: float | None, confine_to: Roots | None) -> np.ndarray:
    parts = []
    for i, part in enumerate(member.parts):
        failed: str | None = None
        try:
            # the part's product mask as nodata, its values in linear power (`warp`)
            block = read_source_window(part, target, window, resampling=resampling,
                                       nodata=nodata, confine_to=confine_to)[0]
        except InputError as exc:
            failed = str(exc)
        if failed is not None:
            # raised outside the except block: the GDAL error it replaces stays out of the
            # chain Dask pickles back to the client. Names the item, never a URL's token.
            text = _QUERY.sub("", failed)
            if member.label and "://" in part.path:
                text = (f"STAC item {member.label}: {text}; if the URL was signed, its "
                        "signature may have expired: re-run to sign again (recorded shards "
                        "are kept)")
            raise InputError(text)
        scale, offset = member.scales[i] if member.scales else (1.0, 0.0)
        if scale != 1.0 or offset != 0.0:
            block = (block * np.float32(scale) + np.float32(offset)).astype(np.float32)
        parts.append(block)
    out = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if member.mask is not None:
        # classes are categories: never interpolate them
        classes = read_window(member.mask, target, window, resampling="nearest", nodata=None,
                              confine_to=confine_to)[0]
        invalid = np.isnan(classes) | np.isin(classes, np.asarray(member.mask_classes,
                                                                     np.float32))
        out[:, invalid] = np.nan
    return out


def read_mosaic(mosaic: MosaicRead, target: Grid, window: Window, *, resampling: str,
                nodata: float | None, confine_to: Roots | None = None) -> np.ndarray:
    """Read `window` of the target grid from a mosaic as float32 (bands, rows, cols): per
    pixel and band the first member's valid value, NaN where no member has one."""
    where = _window_bounds(target, window)
    out: np.ndarray | None = None
    for member in mosaic.members:
        if not _touches(member.bounds, where):
            continue
        block = _read_member(member, target, window, resampling=resampling, nodata=nodata,
                             confine_to=confine_to)
        if out is None:
            out = block
        else:
            empty = np.isnan(out)
            out[empty] = block[empty]
        if not np.isnan(out).any():
            break  # every pixel has its first valid value: later members cannot change it
    if out is None:
        bands = sum(p.count for p in mosaic.members[0].parts)
        out = np.full((bands, int(window.height), int(window.width)), np.nan, np.float32)
    return out


def mosaic_read(acq: Acquisition, target: Grid,
                read_of: Callable[[SourceFile], SourceRead]) -> MosaicRead:
    """The `MosaicRead` of an acquisition with members; `read_of(file)` makes a file's
    SourceRead."""
    members = []
    for member in acq.members:
        parts = tuple(read_of(f) for f in member.files)
        bounds = footprint_grid([f.grid for f in member.files]).footprint(target.crs_wkt)
        members.append(MemberRead(parts, member.scales, None if member.mask is None
                                  else read_of(member.mask), member.mask_classes, bounds,
                                  member.item or ""))
    return MosaicRead(tuple(members))
