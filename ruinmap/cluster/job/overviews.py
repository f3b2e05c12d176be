"""Overview levels of a job's `score` layer, so a viewer of the Zarr store can draw it at any
zoom without reading every pixel: `score_overviews/<level>/score` for levels 1, 2, 3 (factors
2, 4, 8), each in a group of its own with `x`, `y` and the GeoZarr attributes of its coarser
grid, so `xr.open_zarr(store, group="score_overviews/2")` opens level 2 as a dataset.

A level's cell is the mean of the valid (non-NaN) score pixels of its factor x factor block,
NaN where there is none (`kernels.grid.block_reduce` "mean"; edge blocks use the pixels they
have), computed from the full-resolution layer for every level, so no level compounds the
rounding of another. The layer is read in row strips of whole blocks of the coarsest factor
(and whole shards of the layer), never whole.

The `score_overviews` group carries a `multiscales` attribute modelled on the Zarr
multiscales convention the GeoZarr draft uses (zarr-conventions/multiscales): its `layout`
lists the full-resolution array and each level with its `derived_from`, its scale and the
resampling method.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import zarr

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.storage.arrays import quiet_zarr, write_array
from ruinmap.cluster.storage.cf import coordinate_attrs, fill_value_attr, geozarr_attrs
from ruinmap.cluster.storage.location import Location
from ruinmap.kernels.grid import block_reduce

__all__ = ["OVERVIEWS_GROUP", "OVERVIEW_FACTORS", "write_score_overviews"]

OVERVIEW_FACTORS = (2, 4, 8)
OVERVIEWS_GROUP = "score_overviews"
# rows of the layer read at once (rounded to whole blocks and shards): bounds the memory
_STRIP_BYTES = 64 * 2**20
# columns of a level's chunk: a viewer reading a small area reads little
_LEVEL_CHUNK_COLS = 1024


def _strip_rows(score: zarr.Array) -> int:
    height, width = score.shape
    shard_rows = int((score.shards or score.chunks)[0])
    step = math.lcm(max(OVERVIEW_FACTORS), shard_rows)
    budget = max(_STRIP_BYTES // max(width * 4, 1), 1)
    return min(max(step, budget // step * step), -(-height // step) * step)


def score_overview_strips(score: zarr.Array) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
    """(first row of the strip, {factor: the block means of the strip at that factor}) for
    each row strip of `score` in turn: the strips start on whole blocks of every factor, so
    the levels are the strips' means stacked."""
    height = score.shape[0]
    rows = _strip_rows(score)
    for r0 in range(0, height, rows):
        strip = np.asarray(score[r0:min(r0 + rows, height), :], dtype=np.float32)
        yield r0, {factor: block_reduce(strip, factor, "mean") for factor in OVERVIEW_FACTORS}


def _multiscales() -> dict[str, Any]:
    layout: list[dict[str, Any]] = [{"asset": "../score", "transform": {"scale": [1.0, 1.0]}}]
    for level, factor in enumerate(OVERVIEW_FACTORS, start=1):
        layout.append({"asset": f"{level}/score", "derived_from": "../score",
                       "transform": {"scale": [float(factor), float(factor)],
                                     "translation": [0.0, 0.0]},
                       "resampling_method": "mean"})
    return {"layout": layout, "resampling_method": "mean"}


def write_score_overviews(store: Location, grid: Grid, score_attrs: dict[str, Any]) -> None:
    """(Re)write `score_overviews/` of the job's store from its `score` layer (module doc).

    Each strip's means go into the levels as soon as they are made, so this process holds one
    strip and its means, never a level (level 1 of a 32768^2 score is 1 GB); a level's chunk
    is a whole number of strips' rows, so no chunk is written twice.
    """
    with quiet_zarr():
        score = zarr.open_array(store=store.zarr_store(), path="score", mode="r", zarr_format=3)
        strip_rows = _strip_rows(score)
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
            # every strip's rows divide by the coarsest factor: chunk rows of that many
            # level rows are whole strips' worth at every level
            chunk_rows = min(strip_rows // max(OVERVIEW_FACTORS), height)
            levels[factor] = zarr.create_array(
                store=store.zarr_store(), name=f"{base}/score", shape=(height, width),
                dtype=np.float32, chunks=(chunk_rows, min(width, _LEVEL_CHUNK_COLS)),
                fill_value=np.nan, dimension_names=("y", "x"), attributes=attrs,
                overwrite=True)
            write_array(store, f"{base}/x", cells.x_coords(), dimension_names=("x",),
                        attributes=coordinate_attrs(cells, "x"))
            write_array(store, f"{base}/y", cells.y_coords(), dimension_names=("y",),
                        attributes=coordinate_attrs(cells, "y"))
        for r0, means in score_overview_strips(score):
            for factor, values in means.items():
                row = r0 // factor
                levels[factor][row:row + values.shape[0], :] = values
