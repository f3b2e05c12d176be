"""The damage grid on H3 cells (`grid_h3.gpkg`, `grid_h3.parquet`): the hexagonal grid
PWTT's country runs report on, beside the square `grid.tif`.

A pixel belongs to the H3 cell (https://h3geo.org, the `h3` library's `latlng_to_cell`) that
holds its centre in WGS 84. Per cell: `n_valid` pixels with a score, `n_damaged` of them with
score > threshold, `damaged_fraction` = n_damaged / n_valid, `mean_score` (mean over valid
pixels), `valid_km2` and `damaged_km2` (the ground areas of those pixels, `geo.units.
pixel_area_m2`: on a lon/lat grid each row's pixel area, which shrinks with cos(latitude));
with footprints, `buildings` (footprints whose centroid is in the cell) and
`buildings_damaged` (of those, `damaged` true). Cells without a valid pixel are left out.

The score is read one block at a time (`block` px square, default 1024) and each block's
pixels are reduced to per-cell sums before the next is read, so memory is one block plus one
row per cell, whatever the scene's size. Cost: one `latlng_to_cell` call per valid pixel,
about 2.6 us on the 2-core VM (a 4096^2 scene: ~45 s), which is why the grid is optional.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import geopandas as gpd
import h3
import h3.api.basic_int as h3_int
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from pyproj import CRS, Transformer

from ruinmap.cluster.geo.units import pixel_area_m2
from ruinmap.cluster.storage.durable import atomic_path
from ruinmap.errors import InputError

__all__ = ["GRID_H3_GPKG", "GRID_H3_PARQUET", "h3_grid", "write_h3_grid"]

GRID_H3_GPKG = "grid_h3.gpkg"
GRID_H3_PARQUET = "grid_h3.parquet"
_SUMS = ("n_valid", "n_damaged", "score_sum", "valid_m2", "damaged_m2")


class _Raster(Protocol):
    shape: tuple[int, ...]

    def __getitem__(self, key: Any) -> Any: ...


def _blocks(shape: tuple[int, ...], block: int) -> Iterator[tuple[int, int, int, int]]:
    for r0 in range(0, shape[0], block):
        for c0 in range(0, shape[1], block):
            yield r0, min(r0 + block, shape[0]), c0, min(c0 + block, shape[1])


def _block_sums(score: np.ndarray, r0: int, c0: int, transform: Affine,
                to_wgs84: Transformer, resolution: int, threshold: float,
                row_m2: np.ndarray) -> pd.DataFrame:
    """Per-cell sums of one block; `row_m2`: the pixel area of each of the block's rows."""
    rows, cols = np.nonzero(np.isfinite(score))
    area = row_m2[rows]
    values = score[rows, cols].astype(np.float64)
    x = transform.c + transform.a * (c0 + cols + 0.5) + transform.b * (r0 + rows + 0.5)
    y = transform.f + transform.d * (c0 + cols + 0.5) + transform.e * (r0 + rows + 0.5)
    lng, lat = to_wgs84.transform(x, y)
    cells = np.fromiter((h3_int.latlng_to_cell(a, b, resolution)
                         for a, b in zip(lat.tolist(), lng.tolist(), strict=True)),
                        dtype=np.uint64, count=len(values))
    unique, inverse = np.unique(cells, return_inverse=True)
    return pd.DataFrame({
        "cell": unique,
        "n_valid": np.bincount(inverse, minlength=len(unique)),
        "n_damaged": np.bincount(inverse, weights=values > threshold, minlength=len(unique)),
        "score_sum": np.bincount(inverse, weights=values, minlength=len(unique)),
        "valid_m2": np.bincount(inverse, weights=area, minlength=len(unique)),
        "damaged_m2": np.bincount(inverse, weights=area * (values > threshold),
                                  minlength=len(unique)),
    })


def h3_grid(score: _Raster, transform: Affine, crs_wkt: str, resolution: int,
            threshold: float, *, buildings: gpd.GeoDataFrame | None = None,
            block: int = 1024) -> gpd.GeoDataFrame:
    """Per-H3-cell damage of the (y, x) `score` raster (NaN = nodata), module doc; EPSG:4326,
    one row per cell, sorted by cell id."""
    if not 0 <= resolution <= 15:
        raise InputError(f"grid.h3_resolution: {resolution} is not an H3 resolution; use 0-15")
    crs = CRS.from_wkt(crs_wkt)
    to_wgs84 = Transformer.from_crs(crs, 4326, always_xy=True)
    sums = pd.DataFrame({"cell": np.array([], np.uint64), **{k: [] for k in _SUMS}})
    for r0, r1, c0, c1 in _blocks(tuple(score.shape), block):
        part = _block_sums(np.asarray(score[r0:r1, c0:c1]), r0, c0, transform, to_wgs84,
                           resolution, threshold,
                           pixel_area_m2(crs_wkt, tuple(transform), np.arange(r0, r1)))
        # fold in at once: the running table has one row per cell seen so far
        sums = pd.concat([sums, part]).groupby("cell", as_index=False).sum()
    table = pd.DataFrame({
        "h3_cell": [h3_int.int_to_str(int(c)) for c in sums["cell"]],
        "h3_resolution": resolution,
        "n_valid": sums["n_valid"].astype(np.int64),
        "n_damaged": sums["n_damaged"].astype(np.int64),
        "damaged_fraction": sums["n_damaged"] / sums["n_valid"],
        "mean_score": sums["score_sum"] / sums["n_valid"],
        "valid_km2": sums["valid_m2"] / 1e6,
        "damaged_km2": sums["damaged_m2"] / 1e6,
    })
    if buildings is not None:
        table = _with_buildings(table, buildings, resolution)
    geometry = [shapely.Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)])
                for c in table["h3_cell"]]
    return gpd.GeoDataFrame(table, geometry=geometry, crs=4326)


def _with_buildings(table: pd.DataFrame, buildings: gpd.GeoDataFrame,
                    resolution: int) -> pd.DataFrame:
    # centroids in the footprints' own (projected) CRS, then to lon/lat
    centres = buildings.geometry.centroid.to_crs(4326)
    keep = ~centres.is_empty & centres.notna()
    cells = [h3.latlng_to_cell(p.y, p.x, resolution) for p in centres[keep]]
    damaged = buildings.loc[keep, "damaged"].fillna(False).astype(bool).to_numpy()
    counts = pd.DataFrame({"h3_cell": cells, "buildings": 1, "buildings_damaged": damaged})
    counts = counts.groupby("h3_cell", as_index=False).sum()
    merged = table.merge(counts, on="h3_cell", how="left")
    merged[["buildings", "buildings_damaged"]] = (
        merged[["buildings", "buildings_damaged"]].fillna(0).astype(np.int64))
    return merged


def write_h3_grid(grid: gpd.GeoDataFrame, out_dir: Path) -> dict[str, Path]:
    """Write grid_h3.gpkg (layer `grid_h3`) and grid_h3.parquet (GeoParquet) into `out_dir`."""
    paths = {"grid_h3_gpkg": out_dir / GRID_H3_GPKG, "grid_h3_parquet": out_dir / GRID_H3_PARQUET}
    with atomic_path(paths["grid_h3_gpkg"]) as tmp:
        grid.to_file(tmp, driver="GPKG", layer="grid_h3", engine="pyogrio")
    with atomic_path(paths["grid_h3_parquet"]) as tmp:
        grid.to_parquet(tmp, index=False, compression="zstd")
    return paths
