"""Ingest of real imagery from ../shared/data (skipped when a data set is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from ruinmap.cluster.ingest import IngestOptions, ingest, plan_inputs
from ruinmap.cluster.storage.store import open_store, read_store_attrs, side_array
from ruinmap.errors import InputError


@pytest.fixture
def joplin(shared_data):
    root = shared_data / "joplin-tornado"
    pre, post = root / "pre" / "tile_337-9136.tif", root / "post" / "tile_31500-5137.tif"
    if not (pre.exists() and post.exists()):
        pytest.skip(f"real data absent: {root}")
    return root, pre, post


@pytest.fixture
def bercy(shared_data):
    root = shared_data / "oscd-bercy"
    if not (root / "imgs_1").is_dir() or not (root / "imgs_2").is_dir():
        pytest.skip(f"real data absent: {root}")
    return root


def test_joplin_utm_pre_and_lonlat_post_share_the_pre_grid(tmp_path, dask_client, joplin):
    _, pre, post = joplin
    out = tmp_path / "joplin.zarr"
    ingest([pre], [post], out, IngestOptions(chunk=256, shard=512), client=dask_client)
    ds = open_store(out)
    assert ds.rio.crs.to_epsg() == 26915
    assert ds.rio.resolution() == (0.6, -0.6)
    grid = read_store_attrs(out)["grid"]
    with rasterio.open(pre) as src:
        # the common area is whole pre pixels: pre passes through bit for bit
        col = round((grid["transform"][2] - src.transform.c) / 0.6)
        row = round((src.transform.f - grid["transform"][5]) / 0.6)
        window = ((row, row + grid["height"]), (col, col + grid["width"]))
        np.testing.assert_array_equal(
            side_array(ds, "pre").values[0], src.read(window=window).astype(np.float32)
        )
    assert 500 < grid["height"] < 620 and 800 < grid["width"] < 1000  # ~360 m x 550 m

    # window-by-window warping agrees with warping the whole (small) post image at once
    whole = np.full((3, grid["height"], grid["width"]), np.nan, np.float32)
    with rasterio.open(post) as src:
        reproject(
            src.read().astype(np.float32),
            whole,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=ds.rio.transform(),
            dst_crs=ds.rio.crs,
            resampling=Resampling.bilinear,
            dst_nodata=np.nan,
        )
    got = side_array(ds, "post").values[0]
    both = np.isfinite(got) & np.isfinite(whole)
    assert both.mean() > 0.95
    diff = np.abs(got[both] - whole[both])
    assert np.median(diff) < 0.5 and np.percentile(diff, 99.9) < 8.0


def test_joplin_post_tile_that_misses_the_pre_tile_is_refused_with_full_bounds(joplin):
    root, pre, _ = joplin
    far_post = root / "post" / "tile_31500-6161.tif"
    if not far_post.exists():
        pytest.skip(f"real data absent: {far_post}")
    # every digit of both extents (no %g rounding), and what makes tiles one mosaic
    with pytest.raises(
        InputError, match=r"tile_31500-6161\.tif: its footprint \(\d+\.\d{3,}, \d+\.\d{3,}, "
                          r".* does not overlap the common footprint \(\d+\.\d{3,}, .*tiles of "
                          r"one date are mosaicked only when they have the same date"
    ):
        plan_inputs([pre], [far_post], IngestOptions(chunk=256, shard=512))


def test_oscd_single_band_files_stack_into_one_acquisition_per_date(tmp_path, dask_client, bercy):
    out = tmp_path / "bercy.zarr"
    ingest(
        [str(bercy / "imgs_1" / "*.tif")],
        [str(bercy / "imgs_2" / "*.tif")],
        out,
        IngestOptions(chunk=128, shard=256, stack_bands=True),
        client=dask_client,
    )
    ds = open_store(out)
    assert list(ds.band.values) == ["B02", "B03", "B04", "B08"]
    assert str(ds.pre_time.values[0])[:10] == "2016-11-30"
    assert str(ds.post_time.values[0])[:10] == "2017-08-29"
    assert ds.rio.crs.to_epsg() == 4326
    for side, folder in (("pre", "imgs_1"), ("post", "imgs_2")):
        stack = side_array(ds, side).values[0]
        for b, band in enumerate(("B02", "B03", "B04", "B08")):
            [path] = (bercy / folder).glob(f"*_{band}.tif")
            with rasterio.open(path) as src:
                np.testing.assert_array_equal(stack[b], src.read(1).astype(np.float32))
