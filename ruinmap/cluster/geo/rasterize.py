"""Rasterizing polygons onto one window of a grid, with the pixel-centre rule.

A label image holds 0 where no polygon is and k where polygon k is (a pixel belongs to a
polygon when its centre lies inside; rasterio `all_touched=False`); where polygons overlap,
the later one wins. It is always made for one tile's window transform, never for the whole
image.

Overlapping districts (a whole city and its quarters) must each count every pixel they hold,
so `overlap_layers` splits them, once per job, into layers of polygons whose interiors do not
meet: one label image per layer then gives every pixel to every district containing it.
Polygons that only touch along an edge stay in one layer (as before: no pixel centre is
inside both, except one exactly on the shared edge, which the later polygon takes).
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from rasterio import features

__all__ = ["footprint_labels", "labels_on_window", "overlap_layers"]


def overlap_layers(geometries: np.ndarray) -> np.ndarray:
    """Layer (0-based, int64) of each polygon such that no two polygons of one layer have
    interiors that meet: greedy colouring of the overlap graph in file order, each polygon
    taking the lowest layer none of its earlier overlapping neighbours holds.

    Polygons without overlaps are all in layer 0, so a job with none has one layer. A whole
    city with its quarters has two (the city in 0, the quarters in 1).
    """
    n = len(geometries)
    layer = np.zeros(n, np.int64)
    if n < 2:
        return layer
    usable = ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))
    kept = geometries.copy()
    kept[~usable] = None  # the tree skips missing geometries
    left, right = shapely.STRtree(kept).query(kept, predicate="intersects")
    pair = (left < right) & usable[left] & usable[right]
    left, right = left[pair], right[pair]
    # polygons whose interiors meet: intersecting but not only touching at their boundaries
    meet = ~shapely.touches(geometries[left], geometries[right])
    left, right = left[meet], right[meet]
    if len(left) == 0:
        return layer
    order = np.argsort(right, kind="stable")
    left, right = left[order], right[order]
    starts = np.searchsorted(right, np.arange(n + 1))
    for k in range(n):
        taken = set(layer[left[starts[k] : starts[k + 1]]].tolist())
        free = 0
        while free in taken:
            free += 1
        layer[k] = free
    return layer


def labels_on_window(
    geometries: np.ndarray, labels: np.ndarray, transform: Affine, shape: tuple[int, int]
) -> np.ndarray:
    """Rasterize `geometries` (shapely, raster CRS) burning `labels` (>= 1) onto a window.

    int32 (rows, cols); 0 where no polygon's pixel-centre rule claims the pixel.
    """
    rows, cols = shape
    out = np.zeros((rows, cols), np.int32)
    if rows == 0 or cols == 0 or len(geometries) == 0:
        return out
    keep = ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))
    shapes = list(zip(geometries[keep], labels[keep].astype(np.int64).tolist(), strict=True))
    if not shapes:
        return out
    return features.rasterize(
        shapes, out_shape=(rows, cols), transform=transform, fill=0, all_touched=False,
        dtype="int32",
    )


def footprint_labels(
    geometries: np.ndarray, transform: Affine, shape: tuple[int, int]
) -> np.ndarray:
    """Label image (int32) of many small polygons on a north-up window: pixel (i, j) gets k + 1
    when polygon k contains its centre (the highest k where polygons overlap), else 0.

    The same pixel-centre rule as `labels_on_window`, vectorised for tens of thousands of
    building footprints: each polygon tests only the pixel centres inside its bounding box
    with `shapely.contains_xy`, so the cost is that of the footprints' own pixels (GDAL's
    rasterizer, through rasterio, converts every shape in Python first: ~40x slower here).
    A centre exactly on an edge belongs to no polygon.
    """
    rows, cols = shape
    out = np.zeros((rows, cols), np.int32)
    a, b, c, d, e, f = tuple(transform)[:6]
    if rows == 0 or cols == 0 or len(geometries) == 0:
        return out
    if b != 0 or d != 0 or a <= 0 or e >= 0:  # rotated grids: the general rasterizer
        return labels_on_window(geometries, np.arange(1, len(geometries) + 1), transform, shape)
    bounds = shapely.bounds(geometries)
    with np.errstate(invalid="ignore"):  # missing or empty polygons have NaN bounds
        j0 = np.clip(np.ceil((bounds[:, 0] - c) / a - 0.5), 0, cols)
        j1 = np.clip(np.floor((bounds[:, 2] - c) / a - 0.5), -1, cols - 1)
        i0 = np.clip(np.ceil((bounds[:, 3] - f) / e - 0.5), 0, rows)
        i1 = np.clip(np.floor((bounds[:, 1] - f) / e - 0.5), -1, rows - 1)
    nj = np.nan_to_num(j1 - j0 + 1, nan=0).clip(min=0).astype(np.int64)
    ni = np.nan_to_num(i1 - i0 + 1, nan=0).clip(min=0).astype(np.int64)
    counts = ni * nj
    total = int(counts.sum())
    if total == 0:
        return out
    owner = np.repeat(np.arange(len(geometries)), counts)
    offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    width = nj[owner]
    jj = j0[owner].astype(np.int64) + offset % width
    ii = i0[owner].astype(np.int64) + offset // width
    inside = shapely.contains_xy(geometries[owner], c + (jj + 0.5) * a, f + (ii + 0.5) * e)
    np.maximum.at(out, (ii[inside], jj[inside]), (owner[inside] + 1).astype(np.int32))
    return out
