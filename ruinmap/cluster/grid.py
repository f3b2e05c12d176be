"""The common raster grid every acquisition is put on, and reading a source window onto it.

A `Grid` is a small value type (CRS, affine transform, size), like odc-geo's GeoBox. The target
grid of an ingest is, by default, the first pre-event image's CRS and pixel grid over the
intersection of every input's footprint; `target_grid` also takes a CRS, a resolution and a
bounding box. `read_window` reads one window of the target grid from a source file: directly
(bit for bit) when the source is on the grid, else through a GDAL `WarpedVRT`, which reads only
the source blocks the window needs, so no image is ever loaded whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window

from ruinmap.errors import InputError, SpecError

Bounds = tuple[float, float, float, float]  # left, bottom, right, top

# Offsets within this fraction of a pixel count as whole pixels: transforms written by other
# tools carry float noise (366642.60000000003), and a real misalignment is far larger.
PIXEL_TOLERANCE = 1e-6
# Densify footprint edges when changing CRS, so curved edges (UTM -> lon/lat) are bounded.
_DENSIFY_POINTS = 21
# float32 holds every integer of magnitude up to 2**24 exactly.
FLOAT32_EXACT_INT = 2**24
FLOAT32_MAX = float(np.finfo(np.float32).max)

RESAMPLING_METHODS = (
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
    "min",
    "max",
    "med",
    "q1",
    "q3",
    "sum",
    "rms",
)


@lru_cache(maxsize=64)
def crs_from_wkt(wkt: str) -> CRS:
    """A rasterio CRS from WKT, cached: parsing is slow and grids are compared often."""
    return CRS.from_wkt(wkt)


@lru_cache(maxsize=256)
def _same_crs(wkt_a: str, wkt_b: str) -> bool:
    return wkt_a == wkt_b or crs_from_wkt(wkt_a) == crs_from_wkt(wkt_b)


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS (WKT), affine transform (a, b, c, d, e, f), width and height in pixels."""

    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    @classmethod
    def of(cls, crs: CRS | str, transform: Affine, width: int, height: int) -> Grid:
        wkt = crs if isinstance(crs, str) else crs.to_wkt()
        return cls(wkt, tuple(float(v) for v in transform[:6]), int(width), int(height))  # type: ignore[arg-type]

    @property
    def crs(self) -> CRS:
        return crs_from_wkt(self.crs_wkt)

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def is_north_up(self) -> bool:
        a, b, _, d, e, _ = self.transform
        return b == 0 and d == 0 and a > 0 and e < 0

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size (x, y), positive, in CRS units (north-up grids)."""
        return abs(self.transform[0]), abs(self.transform[4])

    @property
    def bounds(self) -> Bounds:
        """(left, bottom, right, top) of the grid's corners, in its CRS."""
        t = self.affine
        xs, ys = zip(*(t @ (c, r) for c in (0, self.width) for r in (0, self.height)), strict=True)
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def x_coords(self) -> np.ndarray:
        """x of every column's pixel centre (float64)."""
        a, _, c = self.transform[:3]
        return c + (np.arange(self.width, dtype=np.float64) + 0.5) * a

    def y_coords(self) -> np.ndarray:
        """y of every row's pixel centre (float64)."""
        _, _, _, _, e, f = self.transform
        return f + (np.arange(self.height, dtype=np.float64) + 0.5) * e

    def footprint(self, crs_wkt: str | None = None) -> Bounds:
        """Bounds of the grid in `crs_wkt` (default its own CRS), densified across CRSs."""
        if crs_wkt is None or _same_crs(self.crs_wkt, crs_wkt):
            return self.bounds
        return transform_bounds(
            self.crs, crs_from_wkt(crs_wkt), *self.bounds, densify_pts=_DENSIFY_POINTS
        )

    def gdal_geotransform(self) -> str:
        """GDAL's GeoTransform string (c a b f d e), as rioxarray writes it."""
        a, b, c, d, e, f = self.transform
        return " ".join(repr(float(v)) for v in (c, a, b, f, d, e))

    def to_attrs(self) -> dict[str, Any]:
        return {
            "crs_wkt": self.crs_wkt,
            "transform": list(self.transform),
            "width": self.width,
            "height": self.height,
            "resolution": list(self.resolution),
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Grid:
        return cls(
            str(attrs["crs_wkt"]),
            tuple(float(v) for v in attrs["transform"]),  # type: ignore[arg-type]
            int(attrs["width"]),
            int(attrs["height"]),
        )


def _fmt_bounds(bounds: Bounds) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


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
    same_crs = _same_crs(target_wkt, reference.crs_wkt)
    if resolution is not None:
        res = _positive_resolution(resolution)
    elif same_crs and reference.is_north_up:
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
            if _same_crs(box_wkt, target_wkt)
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
                    "target CRS); pre- and post-event images must cover a common area"
                )
            running = nxt
            seen.append(label)
        assert running is not None, "at least one footprint"
        area = running
        outward = False

    c0, r0, c1, r1 = _snap(area, anchor, res, outward)
    if c1 <= c0 or r1 <= r0:
        raise InputError(
            f"the common area {_fmt_bounds(area)} is smaller than one {res[0]:g} x {res[1]:g} "
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


def pixel_offset(source: Grid, target: Grid) -> tuple[int, int] | None:
    """(column, row) of the target's origin in the source's pixels when the source is on the
    target's pixel grid (same CRS and pixel size, whole-pixel shift); None otherwise."""
    if not (source.is_north_up and target.is_north_up):
        return None
    if not _same_crs(source.crs_wkt, target.crs_wkt):
        return None
    sa, _, sc, _, se, sf = source.transform
    ta, _, tc, _, te, tf = target.transform
    # the shift must stay whole across the whole grid, not just at the origin
    drift = max(abs(sa - ta) / abs(ta), abs(se - te) / abs(te)) * max(target.shape)
    col, row = (tc - sc) / sa, (tf - sf) / se
    misfit = max(abs(col - round(col)), abs(row - round(row)))
    if drift + misfit > PIXEL_TOLERANCE:
        return None
    return round(col), round(row)


def window_grid(grid: Grid, window: Window) -> Grid:
    """The sub-grid of `grid` covered by `window`."""
    t = grid.affine @ Affine.translation(window.col_off, window.row_off)
    return Grid.of(grid.crs_wkt, t, int(window.width), int(window.height))


@dataclass(frozen=True)
class SourceRead:
    """How to read one source file onto the target grid (picklable, sent with each task)."""

    path: str
    count: int
    dtype: str
    nodata: float | None
    grid: Grid
    offset: tuple[int, int] | None  # pixel_offset(grid, target) when it passes through


def _check_float32_exact(
    values: np.ndarray, valid: np.ndarray | None, source_dtype: np.dtype, what: str
) -> None:
    """Raise InputError when a value would overflow or lose integer precision in float32.

    `values` are the source's values as read (or warped in float64); `source_dtype` decides
    the limit: 2**24 for integers wider than 16 bits, float32's largest for float64.
    """
    kind = source_dtype.kind
    limit: float
    if kind in "iu" and source_dtype.itemsize > 2:
        limit = FLOAT32_EXACT_INT
        problem = "integer overflow: value {} cannot be stored exactly as float32 (|v| > 2**24)"
    elif kind == "f" and source_dtype.itemsize > 4:
        limit = FLOAT32_MAX
        problem = "value {} overflows float32"
    else:
        return
    checked = values if valid is None else values[valid]
    if checked.size == 0:
        return
    with np.errstate(invalid="ignore"):
        peak = np.nanmax(np.abs(checked.astype(np.float64, copy=False)))
    if np.isfinite(peak) and peak > limit:
        raise InputError(
            f"{what}: {problem.format(f'{peak:.17g}')}; rescale the data (e.g. to physical units) "
            "or convert it to float32 first"
        )


def read_window(
    source: SourceRead, target: Grid, window: Window, *, resampling: str, nodata: float | None
) -> np.ndarray:
    """Read `window` of the target grid from `source` as float32 (bands, rows, cols).

    NaN where the source has no data: its nodata value (or `nodata` when given, which
    overrides it), NaN, or outside its footprint. A source on the grid is read directly, bit
    for bit; any other is warped with `resampling` through a WarpedVRT, one window at a time.
    Must run inside a `rasterio.Env`.
    """
    height, width = int(window.height), int(window.width)
    fill = source.nodata if nodata is None else nodata
    what = f"{source.path} (target window rows {window.row_off}:{window.row_off + height}, "
    what += f"cols {window.col_off}:{window.col_off + width})"
    src_dtype = np.dtype(source.dtype)
    exact_in_f32 = src_dtype.itemsize <= 2 or src_dtype == np.float32
    try:
        with rasterio.open(source.path) as src:
            if source.offset is not None:
                col0 = source.offset[0] + int(window.col_off)
                row0 = source.offset[1] + int(window.row_off)
                c_lo, r_lo = max(col0, 0), max(row0, 0)
                c_hi = min(col0 + width, source.grid.width)
                r_hi = min(row0 + height, source.grid.height)
                if c_hi <= c_lo or r_hi <= r_lo:
                    return np.full((source.count, height, width), np.nan, dtype=np.float32)
                inside = Window(c_lo, r_lo, c_hi - c_lo, r_hi - r_lo)
                if exact_in_f32:
                    # GDAL converts while reading: one pass, and every value stays exact
                    block = src.read(window=inside, out_dtype=np.float32)
                    if fill is not None and not np.isnan(fill):
                        block[block == np.float32(np.asarray(fill).astype(src_dtype))] = np.nan
                else:
                    values = src.read(window=inside)
                    valid = None
                    if fill is not None and not np.isnan(fill):
                        valid = values != np.asarray(fill).astype(values.dtype)
                    _check_float32_exact(values, valid, src_dtype, what)
                    block = values.astype(np.float32)
                    if valid is not None:
                        block[~valid] = np.nan
                if block.shape[1:] == (height, width):
                    return block
                out = np.full((source.count, height, width), np.nan, dtype=np.float32)
                out[:, r_lo - row0 : r_hi - row0, c_lo - col0 : c_hi - col0] = block
                return out
            work = np.float32 if exact_in_f32 else np.float64
            with WarpedVRT(
                src,
                crs=target.crs,
                transform=target.affine,
                width=target.width,
                height=target.height,
                resampling=Resampling[resampling],
                src_nodata=fill,
                nodata=np.nan,
                dtype=np.dtype(work).name,
            ) as vrt:
                warped = vrt.read(window=window)
            _check_float32_exact(warped, None, src_dtype, what)
            return warped.astype(np.float32, copy=False)
    except rasterio.errors.RasterioIOError as exc:
        cause = exc.__cause__ or exc
        raise InputError(
            f"{what}: read failed ({cause}); the file may be truncated or corrupt"
        ) from None
