"""The common grid of an ingest: one CRS, one resolution, one pixel grid over the common area.

By default the first pre-event image's CRS and pixel grid over the intersection of every
input's footprint; `target_grid` also takes a CRS, a resolution and a bounding box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform, transform_bounds

from ruinmap.cluster.geo.grid import PIXEL_TOLERANCE, Bounds, Grid, crs_from_wkt, same_crs
from ruinmap.errors import InputError, SpecError

__all__ = ["target_grid"]


def _fmt_bounds(bounds: Bounds) -> str:
    # every digit: rounded bounds can make two extents that miss each other look the same
    return "(" + ", ".join(repr(float(v)) for v in bounds) + ")"


def _intersect(a: Bounds, b: Bounds) -> Bounds | None:
    left, bottom = max(a[0], b[0]), max(a[1], b[1])
    right, top = min(a[2], b[2]), min(a[3], b[3])
    if left >= right or bottom >= top:
        return None
    return left, bottom, right, top


def _snap(
    bounds: Bounds, anchor: tuple[float, float], res: tuple[float, float], outward: bool
) -> tuple[int, int, int, int]:
    """Column and row range (c0, r0, c1, r1) of the anchored grid covering `bounds`.

    Inward keeps only whole pixels inside (an intersection of footprints: no edge pixel half
    outside some image); outward covers every pixel the bounds touch (a user's bounding box).
    """
    left, bottom, right, top = bounds
    cols = ((left - anchor[0]) / res[0], (right - anchor[0]) / res[0])
    rows = ((anchor[1] - top) / res[1], (anchor[1] - bottom) / res[1])
    if outward:
        return (
            math.floor(cols[0] + PIXEL_TOLERANCE),
            math.floor(rows[0] + PIXEL_TOLERANCE),
            math.ceil(cols[1] - PIXEL_TOLERANCE),
            math.ceil(rows[1] - PIXEL_TOLERANCE),
        )
    return (
        math.ceil(cols[0] - PIXEL_TOLERANCE),
        math.ceil(rows[0] - PIXEL_TOLERANCE),
        math.floor(cols[1] + PIXEL_TOLERANCE),
        math.floor(rows[1] + PIXEL_TOLERANCE),
    )


def target_grid(
    reference: Grid,
    footprints: Sequence[tuple[str, Grid]],
    *,
    crs: str | None = None,
    resolution: tuple[float, float] | None = None,
    bbox: Bounds | None = None,
    bbox_crs: str | None = None,
) -> Grid:
    """The common grid of an ingest.

    CRS: `crs`, else the reference's. Resolution: `resolution`, else the reference's pixel size
    (converted to the target CRS when that differs). Pixel grid: the reference's own pixel
    edges when neither CRS nor resolution is overridden (so the reference passes through bit
    for bit), else multiples of the resolution from the CRS origin. Extent: `bbox` (in
    `bbox_crs`, default the target CRS) covered outward, else the intersection of every
    footprint in `footprints` (label, grid), whole pixels only.

    Raises InputError naming the file whose footprint leaves the common area empty.
    """
    target_wkt = reference.crs_wkt if crs is None else _parse_crs(crs, "--crs").to_wkt()
    keeps_crs = same_crs(target_wkt, reference.crs_wkt)
    if resolution is not None:
        res = _positive_resolution(resolution)
    elif keeps_crs and reference.is_north_up:
        res = reference.resolution
    else:
        left, bottom, right, top = reference.bounds
        default, _, _ = calculate_default_transform(
            reference.crs,
            crs_from_wkt(target_wkt),
            reference.width,
            reference.height,
            left,
            bottom,
            right,
            top,
        )
        res = (abs(default.a), abs(default.e))
    if crs is None and resolution is None and reference.is_north_up:
        anchor = (reference.transform[2], reference.transform[5])
    else:
        anchor = (0.0, 0.0)

    if bbox is not None:
        box_wkt = target_wkt if bbox_crs is None else _parse_crs(bbox_crs, "--bbox-crs").to_wkt()
        if not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
            raise SpecError(f"--bbox {bbox}: expected minx, miny, maxx, maxy with min < max")
        area = (
            bbox
            if same_crs(box_wkt, target_wkt)
            else transform_bounds(
                crs_from_wkt(box_wkt), crs_from_wkt(target_wkt), *bbox, densify_pts=21
            )
        )
        for label, grid in footprints:
            if _intersect(area, grid.footprint(target_wkt)) is None:
                raise InputError(
                    f"{label}: its footprint {_fmt_bounds(grid.footprint(target_wkt))} does "
                    f"not overlap --bbox {_fmt_bounds(area)} (target CRS); drop the file or "
                    "widen the box"
                )
        outward = True
    else:
        running: Bounds | None = None
        seen: list[str] = []
        for label, grid in footprints:
            fp = grid.footprint(target_wkt)
            nxt = fp if running is None else _intersect(running, fp)
            if nxt is None:
                assert running is not None
                raise InputError(
                    f"{label}: its footprint {_fmt_bounds(fp)} does not overlap the common "
                    f"footprint {_fmt_bounds(running)} of {', '.join(seen)} (bounds in the "
                    "target CRS); pre- and post-event images must cover a common area, "
                    "and tiles of one date are mosaicked only when they have the same date "
                    "(tags, names, --pre-dates/--post-dates) and orbit and overlap by less "
                    "than half"
                )
            running = nxt
            seen.append(label)
        assert running is not None, "at least one footprint"
        area = running
        outward = False

    c0, r0, c1, r1 = _snap(area, anchor, res, outward)
    if c1 <= c0 or r1 <= r0:
        raise InputError(
            f"the common area {_fmt_bounds(area)} is smaller than one {res[0]!r} x {res[1]!r} "
            "pixel of the target grid; the images barely overlap or the resolution is too coarse"
        )
    transform = Affine(res[0], 0.0, anchor[0] + c0 * res[0], 0.0, -res[1], anchor[1] - r0 * res[1])
    return Grid.of(target_wkt, transform, c1 - c0, r1 - r0)

def _parse_crs(text: str, what: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except Exception as exc:
        raise SpecError(f"{what} {text!r}: not a CRS ({exc}); use e.g. EPSG:32636 or WKT") from None


def _positive_resolution(resolution: tuple[float, float]) -> tuple[float, float]:
    xres, yres = (float(v) for v in resolution)
    if not (xres > 0 and yres > 0 and math.isfinite(xres) and math.isfinite(yres)):
        raise SpecError(f"--resolution {resolution}: must be positive and finite")
    return xres, yres
