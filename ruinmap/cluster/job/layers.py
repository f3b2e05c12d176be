"""The job's layers inside its own store (`output.dir/store.zarr`): `score` and `damage` (y, x),
written tile by tile, and the damage grid (`grid_damaged_fraction`, `grid_mean_score`),
written once merged. When the imagery comes from `inputs.store` (which a job only reads), the
job's store holds the layers alone, with `x`, `y` and `spatial_ref`.

A method's extra per-pixel layers (pwtt: `p_value`, float32 with NaN fill; `n_pre`, `n_post`,
uint16 counts whose fill 0 is a count, no date, not nodata; `Scorer.extra_layers`) are made,
sharded and described like `score`.

`score` and `damage` have the store's grid and the job's tiles as shards, so every tile task
writes whole shards of its own. The grid layers carry cell-centre coordinates and a
`grid_spatial_ref` holding the cells' GeoTransform.

Once the tiles are merged, `describe_layers` gives every layer its CF and GeoZarr attributes
(`storage.cf`: units, long_name, `_FillValue`, the damage classes' `flag_values` and
`flag_meanings`, `proj:`/`spatial:`), so `xr.open_zarr(store)` masks nodata (`damage` 255,
`score` NaN), and writes the score's overview levels (`job.overviews`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.job.overviews import write_score_overviews
from ruinmap.cluster.methods import ExtraLayer
from ruinmap.cluster.storage.arrays import consolidate, create_array, quiet_zarr, write_array
from ruinmap.cluster.storage.cf import (
    coordinate_attrs,
    damage_attrs,
    fill_value_attr,
    geozarr_attrs,
    score_attrs,
)
from ruinmap.cluster.storage.location import Location

__all__ = ["OUTPUT_ARRAYS", "create_output_arrays", "describe_layers", "extra_layer_attrs",
           "output_arrays_exist", "write_grid_layers"]

#: name -> (dtype, fill value) of the per-pixel layers
OUTPUT_ARRAYS = {"score": (np.float32, np.nan), "damage": (np.uint8, 255)}


def output_arrays_exist(store: Location, extra: Sequence[ExtraLayer] = ()) -> bool:
    names = [*OUTPUT_ARRAYS, *(layer.name for layer in extra)]
    return all(store.join(name, "zarr.json").is_file() for name in names)


def _write_grid_reference(store: Location, grid: Grid) -> None:
    """`x`, `y` and `spatial_ref` for a store that holds the layers only (a job reading the
    imagery from `inputs.store`), so that xarray and GDAL georeference its layers."""
    reference = {"crs_wkt": grid.crs_wkt, "spatial_ref": grid.crs_wkt,
                 "GeoTransform": grid.gdal_geotransform()}
    write_array(store, "x", grid.x_coords(), dimension_names=("x",),
                attributes=coordinate_attrs(grid, "x"))
    write_array(store, "y", grid.y_coords(), dimension_names=("y",),
                attributes=coordinate_attrs(grid, "y"))
    write_array(store, "spatial_ref", np.array(0, np.int64), dimension_names=(),
                attributes=reference)


def create_output_arrays(store: Location, grid: Grid, chunk: int, tile_px: int,
                         extra: Sequence[ExtraLayer] = ()) -> None:
    """(Re)create the empty `score`, `damage` and `extra` arrays: dims (y, x), one shard per
    tile."""
    if not store.join("spatial_ref", "zarr.json").is_file():
        _write_grid_reference(store, grid)
    arrays = {**OUTPUT_ARRAYS, **{layer.name: (layer.dtype, layer.fill_value)
                                  for layer in extra}}
    for name, (dtype, fill) in arrays.items():
        create_array(
            store, name, shape=grid.shape, dtype=dtype, chunks=(chunk, chunk),
            shards=(tile_px, tile_px), fill_value=fill, dimension_names=("y", "x"),
            attributes={"grid_mapping": "spatial_ref"},
        )  # fmt: skip
    consolidate(store)


def write_grid_layers(store: Location, grid: Grid, cell_px: int, fraction: np.ndarray,
                      mean: np.ndarray) -> None:
    """The damage grid as arrays grid_damaged_fraction and grid_mean_score (grid_y, grid_x).

    Written with zarr directly: xarray's append mode would replace the root attributes.
    """
    cells = grid.coarsened(cell_px)
    reference = {"crs_wkt": grid.crs_wkt, "spatial_ref": grid.crs_wkt,
                 "GeoTransform": cells.gdal_geotransform()}
    layer_attrs = {"grid_mapping": "grid_spatial_ref", "cell_px": cell_px,
                   "coordinates": "grid_spatial_ref",
                   "_FillValue": fill_value_attr(np.nan, np.float32),
                   **geozarr_attrs(cells, ("grid_y", "grid_x"))}
    arrays: dict[str, tuple[np.ndarray, tuple[str, ...], dict[str, Any]]] = {
        "grid_x": (cells.x_coords(), ("grid_x",), coordinate_attrs(cells, "x", is_main=False)),
        "grid_y": (cells.y_coords(), ("grid_y",), coordinate_attrs(cells, "y", is_main=False)),
        "grid_spatial_ref": (np.array(0, np.int64), (), reference),
        "grid_damaged_fraction": (fraction, ("grid_y", "grid_x"), {
            **layer_attrs, "units": "1",
            "long_name": "fraction of the cell's valid pixels classed damaged"}),
        "grid_mean_score": (mean, ("grid_y", "grid_x"), {
            **layer_attrs, "units": "1", "long_name": "mean damage score of the cell"}),
    }
    for name, (data, dims, attrs) in arrays.items():
        write_array(store, name, data, dimension_names=dims, attributes=attrs)
    consolidate(store)


def extra_layer_attrs(layer: ExtraLayer, method: str, grid: Grid) -> dict[str, Any]:
    """CF and GeoZarr attributes of a method's extra layer (float32, NaN = nodata; a count
    has no `_FillValue`: its 0 is a count, so xarray keeps it)."""
    attrs = {**score_attrs(method, grid), "units": layer.units,
             "long_name": f"{layer.long_name} ({method})"}
    if layer.is_count:
        del attrs["_FillValue"]
    return attrs


def describe_layers(store: Location, grid: Grid, method: str,
                    class_names: Sequence[str], extra: Sequence[ExtraLayer] = ()) -> None:
    """Give `score`, `damage` and the `extra` layers their CF and GeoZarr attributes and
    write the score's overviews (module doc); run once every tile is written."""
    described = {"score": score_attrs(method, grid), "damage": damage_attrs(class_names, grid),
                 **{layer.name: extra_layer_attrs(layer, method, grid) for layer in extra}}
    with quiet_zarr():
        for name, attrs in described.items():
            array = zarr.open_array(store=store.zarr_store(), path=name, mode="r+",
                                    zarr_format=3)
            array.attrs.update({**attrs, **({"overviews": "score_overviews"}
                                            if name == "score" else {})})
    write_score_overviews(store, grid, described["score"])
    consolidate(store)
