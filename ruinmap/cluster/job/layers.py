"""The job's layers inside its own store (`output.dir/store.zarr`): `score` and `damage` (y, x),
written tile by tile, and the damage grid (`grid_damaged_fraction`, `grid_mean_score`),
written once merged. When the imagery comes from `inputs.store` (which a job only reads), the
job's store holds the layers alone, with `x`, `y` and `spatial_ref`.

`score` and `damage` have the store's grid and the job's tiles as shards, so every tile task
writes whole shards of its own. The grid layers carry cell-centre coordinates and a
`grid_spatial_ref` holding the cells' GeoTransform.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.storage.arrays import consolidate, create_array, write_array
from ruinmap.cluster.storage.location import Location

__all__ = ["OUTPUT_ARRAYS", "create_output_arrays", "output_arrays_exist", "write_grid_layers"]

#: name -> (dtype, fill value) of the per-pixel layers
OUTPUT_ARRAYS = {"score": (np.float32, np.nan), "damage": (np.uint8, 255)}


def output_arrays_exist(store: Location) -> bool:
    return all(store.join(name, "zarr.json").is_file() for name in OUTPUT_ARRAYS)


def _write_grid_reference(store: Location, grid: Grid) -> None:
    """`x`, `y` and `spatial_ref` for a store that holds the layers only (a job reading the
    imagery from `inputs.store`), so that xarray and GDAL georeference its layers."""
    reference = {"crs_wkt": grid.crs_wkt, "spatial_ref": grid.crs_wkt,
                 "GeoTransform": grid.gdal_geotransform()}
    write_array(store, "x", grid.x_coords(), dimension_names=("x",), attributes={})
    write_array(store, "y", grid.y_coords(), dimension_names=("y",), attributes={})
    write_array(store, "spatial_ref", np.array(0, np.int64), dimension_names=(),
                attributes=reference)


def create_output_arrays(store: Location, grid: Grid, chunk: int, tile_px: int) -> None:
    """(Re)create the empty `score` and `damage` arrays: dims (y, x), one shard per tile."""
    if not store.join("spatial_ref", "zarr.json").is_file():
        _write_grid_reference(store, grid)
    for name, (dtype, fill) in OUTPUT_ARRAYS.items():
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
                   "coordinates": "grid_spatial_ref"}
    arrays: dict[str, tuple[np.ndarray, tuple[str, ...], dict[str, Any]]] = {
        "grid_x": (cells.x_coords(), ("grid_x",), {}),
        "grid_y": (cells.y_coords(), ("grid_y",), {}),
        "grid_spatial_ref": (np.array(0, np.int64), (), reference),
        "grid_damaged_fraction": (fraction, ("grid_y", "grid_x"), layer_attrs),
        "grid_mean_score": (mean, ("grid_y", "grid_x"), layer_attrs),
    }
    for name, (data, dims, attrs) in arrays.items():
        write_array(store, name, data, dimension_names=dims, attributes=attrs)
    consolidate(store)
