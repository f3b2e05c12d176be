"""Real GeoTIFFs for tests, written with rasterio (`write_geotiff`),
and the path of the shared real data."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.transform import from_origin

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


DEFAULT_TRANSFORM = from_origin(500000.0, 4000000.0, 10.0, 10.0)


def write_geotiff(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32636",
    transform: Affine = DEFAULT_TRANSFORM,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    block: int | None = 64,
    compress: str | None = None,
) -> Path:
    """Write `data` ((bands,) rows, cols) as a GeoTIFF; tiled in `block` px squares unless None."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(data)
    if array.ndim == 2:
        array = array[np.newaxis]
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": array.shape[2],
        "height": array.shape[1],
        "count": array.shape[0],
        "dtype": array.dtype,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    if block is not None and array.shape[1] >= block and array.shape[2] >= block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    if compress is not None:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        if descriptions is not None:
            dst.descriptions = tuple(descriptions)
        if tags:
            dst.update_tags(**tags)
    return path
