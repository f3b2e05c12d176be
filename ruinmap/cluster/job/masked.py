"""The share of each district that the imagery's layover/shadow masks made nodata
(`masked_fraction` in the district table).

The ingest applies the masks of RTC products (HyP3 `_ls_map.tif`, OPERA `_mask.tif`) as
nodata, so the store cannot tell a masked pixel from one outside the image; this module reads
the mask layers the store's provenance names again, on the job's grid coarsened to at most
`MAX_SIDE_PX` pixels a side (nearest resampling: the layers are classes), and averages over
the dates: masked_fraction = mean over a district's cells of the share of dates masked there.
A date made of several files (VV, VH) has one mask; a job without masks has no column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.geo.rasterize import labels_on_window
from ruinmap.cluster.ingest.products import mask_pixels
from ruinmap.cluster.storage.confined import confined_raster_path, current_roots
from ruinmap.cluster.storage.location import as_location

__all__ = ["MAX_SIDE_PX", "district_masked_fraction"]

#: the coarsened grid's larger side, pixels: a 4 MPx read per mask, whatever the scene
MAX_SIDE_PX = 2048


def _masks_by_date(sources: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], tuple[str, str]]:
    masks: dict[tuple[str, int], tuple[str, str]] = {}
    for source in sources:
        mask = source.get("mask")
        if mask:
            key = (str(source.get("side")), int(source.get("time_index", 0)))
            masks.setdefault(key, (str(mask["path"]), str(mask["kind"])))
    return masks


def district_masked_fraction(sources: Sequence[Mapping[str, Any]], grid: Grid,
                             district_geoms: np.ndarray) -> np.ndarray | None:
    """Per district (in `district_geoms`' order, grid CRS), the mean share of dates whose
    mask layer marks its cells (module docstring); None when no source has a mask layer.
    NaN for a district without a cell on the grid."""
    masks = _masks_by_date(sources)
    if not masks:
        return None
    factor = max(1, math.ceil(max(grid.width, grid.height) / MAX_SIDE_PX))
    coarse = grid.coarsened(factor)
    height = math.ceil(grid.height / factor)
    width = math.ceil(grid.width / factor)
    total = np.zeros((height, width), np.float64)
    roots = current_roots()
    for path, kind in masks.values():
        with confined_raster_path(as_location(path), roots) as name, rasterio.open(name) as src, \
                WarpedVRT(src, crs=coarse.crs, transform=coarse.affine, width=width,
                          height=height, resampling=Resampling.nearest, nodata=np.nan,
                          dtype="float32") as vrt:
            total += mask_pixels(kind, vrt.read(1).astype(np.float64))
    share = total / len(masks)
    n = len(district_geoms)
    labels = labels_on_window(district_geoms, np.arange(1, n + 1), coarse.affine,
                              (height, width))
    cells = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    masked = np.bincount(labels.ravel(), weights=share.ravel(), minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cells > 0, masked / cells, np.nan)
