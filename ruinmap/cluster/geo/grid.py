"""The raster grid: a small value type (CRS, affine transform, size), like odc-geo's GeoBox.

`Grid` owns the affine arithmetic of the project: sub-grids of a window (`window`), windows
widened by a halo and clipped at the edge (`padded`), the grid of cells of k x k pixels
(`coarsened`), pixel centres (`x_coords`, `y_coords`) and the pixel holding a point
(`pixel_of`). `pixel_offset` says whether one grid sits on another's pixel grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

__all__ = ["PIXEL_TOLERANCE", "Bounds", "Grid", "crs_from_wkt", "pixel_offset", "same_crs"]

Bounds = tuple[float, float, float, float]  # left, bottom, right, top

# Offsets within this fraction of a pixel count as whole pixels: transforms written by other
# tools carry float noise (366642.60000000003), and a real misalignment is far larger.
PIXEL_TOLERANCE = 1e-6
# Densify footprint edges when changing CRS, so curved edges (UTM -> lon/lat) are bounded.
DENSIFY_POINTS = 21


@lru_cache(maxsize=64)
def crs_from_wkt(wkt: str) -> CRS:
    """A rasterio CRS from WKT, cached: parsing is slow and grids are compared often."""
    return CRS.from_wkt(wkt)


@lru_cache(maxsize=256)
def same_crs(wkt_a: str, wkt_b: str) -> bool:
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
        if crs_wkt is None or same_crs(self.crs_wkt, crs_wkt):
            return self.bounds
        return transform_bounds(
            self.crs, crs_from_wkt(crs_wkt), *self.bounds, densify_pts=DENSIFY_POINTS
        )

    def gdal_geotransform(self) -> str:
        """GDAL's GeoTransform string (c a b f d e), as rioxarray writes it."""
        a, b, c, d, e, f = self.transform
        return " ".join(repr(float(v)) for v in (c, a, b, f, d, e))

    def window(self, row0: int, col0: int, height: int, width: int) -> Grid:
        """The sub-grid of `height` x `width` pixels whose top-left pixel is (row0, col0)."""
        t = self.affine @ Affine.translation(col0, row0)
        return Grid.of(self.crs_wkt, t, int(width), int(height))

    def padded(self, row0: int, col0: int, height: int, width: int,
               halo: int) -> tuple[int, int, int, int]:
        """(row0, col0, row1, col1) of a window widened by `halo` pixels on every side and
        clipped at the grid's edges."""
        return (max(0, row0 - halo), max(0, col0 - halo),
                min(self.height, row0 + height + halo), min(self.width, col0 + width + halo))

    def coarsened(self, factor: int) -> Grid:
        """The grid of cells of `factor` x `factor` pixels aligned to this grid's origin; the
        last row and column of cells may reach past this grid's edge."""
        t = self.affine @ Affine.scale(factor)
        return Grid.of(self.crs_wkt, t, -(-self.width // factor), -(-self.height // factor))

    def pixel_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the pixels holding the points (x, y) of a north-up grid (int64;
        outside the grid where the points are)."""
        a, _, c, _, e, f = self.transform
        cols = np.floor((np.asarray(x) - c) / a).astype(np.int64)
        rows = np.floor((np.asarray(y) - f) / e).astype(np.int64)
        return rows, cols

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


def pixel_offset(source: Grid, target: Grid) -> tuple[int, int] | None:
    """(column, row) of the target's origin in the source's pixels when the source is on the
    target's pixel grid (same CRS and pixel size, whole-pixel shift); None otherwise."""
    if not (source.is_north_up and target.is_north_up):
        return None
    if not same_crs(source.crs_wkt, target.crs_wkt):
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
