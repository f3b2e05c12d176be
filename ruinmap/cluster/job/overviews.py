"""Overview levels of a job's `score` layer, so a viewer of the Zarr store can draw it at any
zoom without reading every pixel: `score_overviews/<level>/score` for levels 1, 2, 3 (factors
2, 4, 8), each in a group of its own with `x`, `y` and the GeoZarr attributes of its coarser
grid, so `xr.open_zarr(store, group="score_overviews/2")` opens level 2 as a dataset.

A level's cell is the mean of the valid (non-NaN) score pixels of its factor x factor block,
NaN where there is none (`kernels.grid.block_reduce` "mean"; edge blocks use the pixels they
have), computed from the full-resolution layer for every level, so no level compounds the
rounding of another. The layer is read in windows of whole blocks of the coarsest factor
(and whole chunks of the layer, `outputs.windows`), never whole, and each window's means are
written into the levels at once.

The `score_overviews` group carries a `multiscales` attribute modelled on the Zarr
multiscales convention the GeoZarr draft uses (zarr-conventions/multiscales): its `layout`
lists the full-resolution array and each level with its `derived_from`, its scale and the
resampling method.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import zarr

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.outputs.windows import raster_windows, source_chunk_shape, window_shape
from ruinmap.cluster.storage.arrays import quiet_zarr, write_array
from ruinmap.cluster.storage.cf import coordinate_attrs, fill_value_attr, geozarr_attrs
from ruinmap.cluster.storage.location import Location
from ruinmap.kernels.grid import block_reduce

__all__ = ["OVERVIEWS_GROUP", "OVERVIEW_FACTORS", "write_score_overviews"]

OVERVIEW_FACTORS = (2, 4, 8)
OVERVIEWS_GROUP = "score_overviews"
# bytes of the layer read at once (whole blocks and chunks): bounds the memory at any width
_WINDOW_BYTES = 64 * 2**20


def _shape(score: zarr.Array) -> tuple[int, int]:
    height, width = score.shape
    return int(height), int(width)


def _window_shape(score: zarr.Array, max_bytes: int) -> tuple[int, int]:
    # whole blocks of the coarsest factor and whole chunks of the layer
    factor = max(OVERVIEW_FACTORS)
    return window_shape(_shape(score), 4, max_bytes=max_bytes, multiple=(factor, factor),
                        chunks=source_chunk_shape(score))


def score_overview_windows(score: zarr.Array, max_bytes: int = _WINDOW_BYTES
                           ) -> Iterator[tuple[tuple[int, int], dict[int, np.ndarray]]]:
    """((first row, first column) of the window, {factor: the block means of the window at
    that factor}) for each window of `score` in turn: the windows start on whole blocks of
    every factor, so each level is its windows' means laid side by side."""
    factor = max(OVERVIEW_FACTORS)  # the windows of `_window_shape`
    for row_slice, col_slice in raster_windows(_shape(score), 4, max_bytes=max_bytes,
                                               multiple=(factor, factor),
                                               chunks=source_chunk_shape(score)):
        window = np.asarray(score[row_slice, col_slice], dtype=np.float32)
        yield (row_slice.start, col_slice.start), {
            f: block_reduce(window, f, "mean") for f in OVERVIEW_FACTORS}


def _multiscales() -> dict[str, Any]:
    layout: list[dict[str, Any]] = [{"asset": "../score", "transform": {"scale": [1.0, 1.0]}}]
    for level, factor in enumerate(OVERVIEW_FACTORS, start=1):
        layout.append({"asset": f"{level}/score", "derived_from": "../score",
                       "transform": {"scale": [float(factor), float(factor)],
                                     "translation": [0.0, 0.0]},
                       "resampling_method": "mean"})
    return {"layout": layout, "resampling_method": "mean"}


def write_score_overviews(store: Location, grid: Grid, score_attrs: dict[str, Any], *,
                          window_bytes: int = _WINDOW_BYTES) -> None:
    """(Re)write `score_overviews/` of the job's store from its `score` layer (module doc).

    Each window's means go into the levels as soon as they are made, so this process holds
    one window and its means, never a level (level 1 of a 32768^2 score is 1 GB); a level's
    chunk is the coarsest level's share of a window, so no chunk is written twice.
    """
    with quiet_zarr():
        score = zarr.open_array(store=store.zarr_store(), path="score", mode="r", zarr_format=3)
        window_rows, window_cols = _window_shape(score, window_bytes)
        store.join(OVERVIEWS_GROUP).remove_tree()
        zarr.open_group(store=store.zarr_store(), path=OVERVIEWS_GROUP, mode="w",
                        zarr_format=3, attributes={"multiscales": _multiscales()})
        levels: dict[int, zarr.Array] = {}
        for level, factor in enumerate(OVERVIEW_FACTORS, start=1):
            cells = grid.coarsened(factor)
            base = f"{OVERVIEWS_GROUP}/{level}"
            zarr.open_group(store=store.zarr_store(), path=base, mode="w", zarr_format=3,
                            attributes={"overview_factor": factor, **geozarr_attrs(cells)})
            attrs = {**score_attrs, **geozarr_attrs(cells), "overview_factor": factor,
                     "_FillValue": fill_value_attr(np.nan, np.float32)}
            attrs.pop("grid_mapping", None)  # the level's georeference is its proj:/spatial:
            height, width = cells.shape
            # a window at this level spans a whole number of the coarsest level's shares
            coarsest = max(OVERVIEW_FACTORS)
            chunks = (min(window_rows // coarsest, height), min(window_cols // coarsest, width))
            levels[factor] = zarr.create_array(
                store=store.zarr_store(), name=f"{base}/score", shape=(height, width),
                dtype=np.float32, chunks=chunks,
                fill_value=np.nan, dimension_names=("y", "x"), attributes=attrs,
                overwrite=True)
            write_array(store, f"{base}/x", cells.x_coords(), dimension_names=("x",),
                        attributes=coordinate_attrs(cells, "x"))
            write_array(store, f"{base}/y", cells.y_coords(), dimension_names=("y",),
                        attributes=coordinate_attrs(cells, "y"))
        for (r0, c0), means in score_overview_windows(score, window_bytes):
            for factor, values in means.items():
                row, col = r0 // factor, c0 // factor
                levels[factor][row:row + values.shape[0], col:col + values.shape[1]] = values
