"""The score's overview levels written window by window: the same block means wherever the
windows fall, and the client never holds a level."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from affine import Affine
from rasterio.crs import CRS

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.job.overviews import OVERVIEW_FACTORS, OVERVIEWS_GROUP, write_score_overviews
from ruinmap.cluster.outputs.windows import raster_windows, window_shape
from ruinmap.cluster.storage.arrays import create_array
from ruinmap.cluster.storage.location import as_location


def _nan_block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    rows, cols = -(-x.shape[0] // factor), -(-x.shape[1] // factor)
    padded = np.full((rows * factor, cols * factor), np.nan)
    padded[: x.shape[0], : x.shape[1]] = x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        return np.nanmean(padded.reshape(rows, factor, cols, factor), axis=(1, 3))


@pytest.mark.parametrize("shape", [(300, 260), (97, 130)])
@pytest.mark.parametrize("window_bytes", [1, 2**26])
def test_overview_levels_are_the_same_block_means_in_any_windows(
        tmp_path: Path, shape: tuple[int, int], window_bytes: int) -> None:
    rng = np.random.default_rng(shape[0])
    score = rng.gamma(2.0, 1.5, shape).astype(np.float32)
    score[rng.random(shape) < 0.3] = np.nan
    score[:40, :50] = np.nan  # whole blocks without a valid pixel
    store = as_location(tmp_path / "store.zarr")
    zarr.open_group(store=store.zarr_store(), mode="w", zarr_format=3)
    create_array(store, "score", shape=shape, dtype=np.float32, chunks=(32, 32),
                 shards=(64, 64), fill_value=np.nan, dimension_names=("y", "x"),
                 attributes={})
    zarr.open_array(store=store.zarr_store(), path="score", mode="r+")[...] = score
    grid = Grid.of(CRS.from_epsg(32636), Affine(10, 0, 600000, 0, -10, 4000000), shape[1], shape[0])
    write_score_overviews(store, grid, {"units": "1"}, window_bytes=window_bytes)
    for level, factor in enumerate(OVERVIEW_FACTORS, start=1):
        written = zarr.open_array(store=store.zarr_store(),
                                  path=f"{OVERVIEWS_GROUP}/{level}/score", mode="r")
        assert written.shape == grid.coarsened(factor).shape
        np.testing.assert_allclose(written[:], _nan_block_mean(score, factor), rtol=1e-6,
                                   equal_nan=True, err_msg=f"factor {factor}")


@pytest.mark.parametrize("shape", [(1000, 700), (37, 5000), (4096, 4096)])
@pytest.mark.parametrize("chunks", [None, (128, 96), (512, 512)])
def test_raster_windows_cover_every_pixel_once_in_whole_chunks(
        shape: tuple[int, int], chunks: tuple[int, int] | None) -> None:
    max_bytes = 256 * 1024
    rows, cols = window_shape(shape, 4, max_bytes=max_bytes, multiple=(8, 8), chunks=chunks)
    unit = (8, 8) if chunks is None else (np.lcm(8, chunks[0]), np.lcm(8, chunks[1]))
    assert rows % unit[0] == 0 and cols % unit[1] == 0
    if rows > unit[0] or cols > unit[1]:  # more than the one unit a window always gets
        assert rows * cols * 4 <= max_bytes
    seen = np.zeros(shape, np.int8)
    for row_slice, col_slice in raster_windows(shape, 4, max_bytes=max_bytes, multiple=(8, 8),
                                               chunks=chunks):
        assert row_slice.start % rows == 0 and col_slice.start % cols == 0
        seen[row_slice, col_slice] += 1
    assert (seen == 1).all()


def test_raster_windows_are_full_width_strips_when_a_row_of_units_fits() -> None:
    windows = list(raster_windows((1000, 700), 4, max_bytes=700 * 4 * 100, chunks=(32, 50)))
    assert all(cols == slice(0, 700) for _, cols in windows)
    assert windows[0][0] == slice(0, 96)
