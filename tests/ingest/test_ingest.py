"""Ingest of real GeoTIFFs into a ruinmap store, on the session's real LocalCluster."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from ruinmap.cli import main
from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.storage.store import (
    is_complete,
    open_store,
    read_store_attrs,
    side_array,
    update_store_attrs,
    validate_store,
)
from ruinmap.errors import StoreError
from tests.support.rasters import write_geotiff

H, W = 200, 300
SMALL = IngestOptions(chunk=64, shard=128)


def _random(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return rng.random(shape, dtype=np.float64).astype(dtype) * 100
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def _pair(tmp_path: Path, dtype: str = "float32", bands: int = 2, dates: int = 2):
    """Pre and post stacks on one UTM grid, dates in names: (pre paths, post paths, data)."""
    rng = np.random.default_rng(7)
    data: dict[str, list[np.ndarray]] = {"pre": [], "post": []}
    paths: dict[str, list[Path]] = {"pre": [], "post": []}
    for side, month in (("pre", 1), ("post", 6)):
        for d in range(dates):
            array = _random(rng, dtype, (bands, H, W))
            name = f"{side}/S1_2020-{month + d:02d}-15.tif"
            paths[side].append(
                write_geotiff(tmp_path / name, array, descriptions=["VV", "VH", "X", "Y"][:bands])
            )
            data[side].append(array)
    return paths["pre"], paths["post"], data


@pytest.fixture(scope="module")
def float32_store(tmp_path_factory, dask_client) -> tuple[list[Path], list[Path], Path]:
    """One float32 pair ingested with SMALL, for the tests that only read the store:
    (pre paths, post paths, store)."""
    folder = tmp_path_factory.mktemp("float32_store")
    pre, post, _ = _pair(folder)
    out = folder / "store.zarr"
    ingest(pre, post, out, SMALL, client=dask_client)
    return pre, post, out


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32"])
def test_aligned_inputs_pass_through_pixel_equal(tmp_path, dask_client, dtype):
    pre, post, data = _pair(tmp_path, dtype)
    out = tmp_path / "store.zarr"
    # random int16 named VV/VH has both signs, neither power nor dB: say it is power (kept)
    options = IngestOptions(chunk=SMALL.chunk, shard=SMALL.shard, scale="power")
    report = ingest(pre, post, out, options, client=dask_client)
    assert report.units_written == report.units_total == 2 * 2 * 2 * 3
    ds = open_store(out)
    for side in ("pre", "post"):
        stored = side_array(ds, side).values
        assert stored.dtype == np.float32
        for t, source in enumerate(data[side]):
            np.testing.assert_array_equal(stored[t], source.astype(np.float32))


def test_store_grid_equals_first_pre_grid(float32_store):
    pre, _, out = float32_store
    ds = open_store(out)
    with rasterio.open(pre[0]) as src:
        assert tuple(ds.rio.transform()) == tuple(src.transform)
        assert ds.rio.crs == src.crs
        np.testing.assert_array_equal(ds.x.values, src.transform.c + (np.arange(W) + 0.5) * 10)
        np.testing.assert_array_equal(ds.y.values, src.transform.f - (np.arange(H) + 0.5) * 10)


def test_store_is_readable_with_plain_open_zarr_and_rioxarray(float32_store):
    _, _, out = float32_store
    ds = xr.open_zarr(out)
    assert ds.rio.crs.to_epsg() == 32636
    assert ds["pre"].dims == ("pre_time", "band", "y", "x")
    assert ds["post"].dims == ("post_time", "band", "y", "x")
    assert ds["pre"].attrs["grid_mapping"] == "spatial_ref"
    ref = ds["spatial_ref"].attrs
    assert {"crs_wkt", "spatial_ref", "GeoTransform"} <= set(ref)
    assert ref["GeoTransform"].split() == ["500000.0", "10.0", "0.0", "4000000.0", "0.0", "-10.0"]
    assert list(ds.band.values) == ["VV", "VH"]
    assert ds.pre_time.dtype == np.dtype("datetime64[ns]")


def test_store_uses_sharding_codec_with_configured_sizes(tmp_path, dask_client):
    pre, post, _ = _pair(tmp_path)
    out = tmp_path / "store.zarr"
    ingest(
        pre,
        post,
        out,
        IngestOptions(chunk=32, shard=96, compression="blosc-lz4:5"),
        client=dask_client,
    )
    array = zarr.open_array(out / "pre", mode="r")
    assert array.shards == (1, 2, 96, 96)
    assert array.chunks == (1, 1, 32, 32)
    meta = json.loads((out / "pre" / "zarr.json").read_text())
    sharding = meta["codecs"][0]
    assert sharding["name"] == "sharding_indexed"
    assert [c["name"] for c in sharding["configuration"]["codecs"]] == ["bytes", "blosc"]
    attrs = read_store_attrs(out)
    assert attrs["chunks"] == [1, 1, 32, 32]
    assert attrs["shards"] == [1, 2, 96, 96]
    assert attrs["compression"]["codec"] == "blosc-lz4"


def test_provenance_records_sources_checksums_grid_and_version(float32_store):
    pre, post, out = float32_store
    attrs = validate_store(out)
    assert attrs["format"] == "ruinmap-store" and attrs["format_version"] == 1
    assert attrs["complete"] is True
    assert attrs["ruinmap_version"]
    assert attrs["grid"]["width"] == W and attrs["grid"]["height"] == H
    assert attrs["grid"]["resolution"] == [10.0, 10.0]
    by_path = {s["path"]: s for s in attrs["sources"]}
    assert set(by_path) == {str(p) for p in pre + post}
    for path in pre + post:
        source = by_path[str(path)]
        assert source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert source["size_bytes"] == path.stat().st_size
        assert source["bands"] == ["VV", "VH"]
    assert by_path[str(pre[0])]["time"] == "2020-01-15T00:00:00"
    assert not (out / "_ruinmap_ledger").exists()


def _ramp(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth field of projected coordinates: bilinear resampling reproduces it closely."""
    return (0.01 * (x - 500000.0) + 0.02 * (4000000.0 - y)).astype(np.float32)


def test_mixed_crs_and_resolution_are_resampled_onto_the_pre_grid(tmp_path, dask_client):
    # pre: UTM 36N at 10 m; post: lon/lat covering more, and UTM at 25 m
    xs = 500000.0 + (np.arange(W) + 0.5) * 10
    ys = 4000000.0 - (np.arange(H) + 0.5) * 10
    pre_data = _ramp(*np.meshgrid(xs, ys))
    pre = write_geotiff(tmp_path / "pre_20200101.tif", pre_data)
    coarse_t = from_origin(499900.0, 4000100.0, 25.0, 25.0)
    cx = 499900.0 + (np.arange(140) + 0.5) * 25
    cy = 4000100.0 - (np.arange(100) + 0.5) * 25
    post_coarse = write_geotiff(
        tmp_path / "post_20200201.tif", _ramp(*np.meshgrid(cx, cy)), transform=coarse_t
    )
    left, bottom, right, top = transform_bounds(
        "EPSG:32636", "EPSG:4326", 499800, 3997800, 503200, 4000200
    )
    res = 5e-5
    lon = left + (np.arange(int((right - left) / res)) + 0.5) * res
    lat = top - (np.arange(int((top - bottom) / res)) + 0.5) * res
    from pyproj import Transformer

    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32636", always_xy=True)
    gx, gy = to_utm.transform(*np.meshgrid(lon, lat))
    post_geo = write_geotiff(
        tmp_path / "post_20200301.tif",
        _ramp(gx, gy),
        crs="EPSG:4326",
        transform=from_origin(left, top, res, res),
    )
    out = tmp_path / "store.zarr"
    ingest([pre], [post_coarse, post_geo], out, SMALL, client=dask_client)
    ds = open_store(out)
    assert ds.rio.crs.to_epsg() == 32636
    assert (ds.sizes["x"], ds.sizes["y"]) == (W, H)
    np.testing.assert_array_equal(side_array(ds, "pre").values[0, 0], pre_data)
    post = side_array(ds, "post").values
    inner = (slice(3, -3), slice(3, -3))  # bilinear edges see the footprint boundary
    for t in range(2):
        np.testing.assert_allclose(post[t, 0][inner], pre_data[inner], atol=0.05)


def test_nearest_resampling_keeps_class_values(tmp_path, dask_client):
    rng = np.random.default_rng(3)
    pre = write_geotiff(tmp_path / "pre.tif", rng.integers(0, 5, (H, W)).astype(np.uint8))
    post = write_geotiff(
        tmp_path / "post.tif",
        rng.integers(0, 5, (90, 130)).astype(np.uint8),
        transform=from_origin(499950.0, 4000050.0, 25.0, 25.0),
    )
    out = tmp_path / "store.zarr"
    ingest(
        [pre],
        [post],
        out,
        IngestOptions(chunk=64, shard=128, resampling="nearest"),
        client=dask_client,
    )
    values = side_array(open_store(out), "post").values
    assert set(np.unique(values)) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_nodata_value_nan_and_user_nodata_become_nan(tmp_path, dask_client):
    rng = np.random.default_rng(5)
    ints = rng.integers(10, 1000, (1, H, W)).astype(np.uint16)
    ints[0, :10, :] = 0
    ints[0, 20, 20] = 7
    floats = rng.random((1, H, W)).astype(np.float32)
    floats[0, :, :7] = np.nan
    floats[0, 50, 50] = 7.0
    pre = write_geotiff(tmp_path / "pre.tif", ints, nodata=0)
    post = write_geotiff(tmp_path / "post.tif", floats, nodata=np.nan)
    out = tmp_path / "a.zarr"
    ingest([pre], [post], out, SMALL, client=dask_client)
    ds = open_store(out)
    pre_v, post_v = side_array(ds, "pre").values[0, 0], side_array(ds, "post").values[0, 0]
    np.testing.assert_array_equal(np.isnan(pre_v), ints[0] == 0)
    np.testing.assert_array_equal(np.isnan(post_v), np.isnan(floats[0]))
    assert post_v[50, 50] == 7.0

    out_user = tmp_path / "b.zarr"
    ingest(
        [pre], [post], out_user, IngestOptions(chunk=64, shard=128, nodata=7), client=dask_client
    )
    ds = open_store(out_user)
    pre_v, post_v = side_array(ds, "pre").values[0, 0], side_array(ds, "post").values[0, 0]
    assert np.isnan(post_v[50, 50]) and np.isnan(pre_v[20, 20])
    assert (pre_v[:10] == 0).all()  # the files' own nodata is data once overridden
    assert read_store_attrs(out_user)["nodata"] == 7


def test_nodata_is_not_blended_into_resampled_values(tmp_path, dask_client):
    data = np.full((1, 100, 150), 50.0, np.float32)
    data[0, :, :40] = -9999.0
    pre = write_geotiff(tmp_path / "pre.tif", np.ones((1, H, W), np.float32))
    post = write_geotiff(
        tmp_path / "post.tif",
        data,
        nodata=-9999.0,
        transform=from_origin(499990.0, 4000010.0, 20.5, 20.5),
    )
    out = tmp_path / "store.zarr"
    ingest([pre], [post], out, SMALL, client=dask_client)
    values = side_array(open_store(out), "post").values
    finite = values[np.isfinite(values)]
    assert finite.size > 0 and np.all(finite == 50.0)
    assert np.isnan(values[0, 0, :, :60]).all()


def test_dates_from_names_and_tags_order_each_stack(tmp_path, dask_client):
    data = [np.full((1, H, W), v, np.float32) for v in range(6)]
    pre = [
        write_geotiff(tmp_path / "pre_2016-09-21.tif", data[0]),
        write_geotiff(tmp_path / "pre_20160901.tif", data[1]),
        write_geotiff(tmp_path / "pre_x.tif", data[2], tags={"ACQUISITION_DATE": "2016-09-11"}),
    ]
    post = [
        write_geotiff(tmp_path / "post_2016_12_03.tif", data[3]),
        write_geotiff(
            tmp_path / "post_y.tif", data[4], tags={"TIFFTAG_DATETIME": "2016:11:02 10:50:19"}
        ),
        write_geotiff(
            # the acquisition tag wins over the date in the name
            tmp_path / "post_20170101.tif",
            data[5],
            tags={"ACQUISITION_DATE": "2016-11-20"},
        ),
    ]
    out = tmp_path / "store.zarr"
    report = ingest(pre, post, out, SMALL, client=dask_client)
    ds = open_store(out)
    assert [str(t)[:19] for t in ds.pre_time.values] == [
        "2016-09-01T00:00:00",
        "2016-09-11T00:00:00",
        "2016-09-21T00:00:00",
    ]
    assert [str(t)[:19] for t in ds.post_time.values] == [
        "2016-11-02T10:50:19",
        "2016-11-20T00:00:00",
        "2016-12-03T00:00:00",
    ]
    assert list(side_array(ds, "pre").values[:, 0, 0, 0]) == [1.0, 2.0, 0.0]
    assert list(side_array(ds, "post").values[:, 0, 0, 0]) == [4.0, 5.0, 3.0]
    assert report.times["pre"][0] == "2016-09-01T00:00:00"


def test_undated_files_keep_the_given_order_with_nat_times(tmp_path, dask_client):
    pre = [
        write_geotiff(tmp_path / f"pre_{n}.tif", np.full((1, H, W), v, np.float32))
        for n, v in (("b", 1), ("a", 2))
    ]
    post = [write_geotiff(tmp_path / "post.tif", np.zeros((1, H, W), np.float32))]
    out = tmp_path / "store.zarr"
    ingest(pre, post, out, SMALL, client=dask_client)
    ds = open_store(out)
    assert np.isnat(ds.pre_time.values).all()
    assert list(side_array(ds, "pre").values[:, 0, 0, 0]) == [1.0, 2.0]


def test_user_bbox_selects_a_pixel_exact_window(tmp_path, dask_client):
    pre, post, data = _pair(tmp_path, dates=1)
    out = tmp_path / "store.zarr"
    bbox = (500100.0, 3998500.0, 501005.0, 3999800.0)  # right edge mid-pixel: covered outward
    ingest(pre, post, out, IngestOptions(chunk=64, shard=128, bbox=bbox), client=dask_client)
    ds = open_store(out)
    assert (ds.sizes["y"], ds.sizes["x"]) == (130, 91)
    np.testing.assert_array_equal(
        side_array(ds, "post").values[0], data["post"][0][:, 20:150, 10:101]
    )


def test_band_names_can_be_given_by_the_user(tmp_path, dask_client):
    pre = write_geotiff(tmp_path / "pre.tif", np.zeros((2, H, W), np.float32))
    post = write_geotiff(tmp_path / "post.tif", np.zeros((2, H, W), np.float32))
    out = tmp_path / "store.zarr"
    ingest(
        [pre],
        [post],
        out,
        IngestOptions(chunk=64, shard=128, bands=("VV", "VH")),
        client=dask_client,
    )
    assert list(open_store(out).band.values) == ["VV", "VH"]


def test_unnamed_bands_are_numbered(tmp_path, dask_client):
    pre = write_geotiff(tmp_path / "pre.tif", np.zeros((3, H, W), np.uint8))
    post = write_geotiff(tmp_path / "post.tif", np.zeros((3, H, W), np.uint8))
    out = tmp_path / "store.zarr"
    ingest([pre], [post], out, SMALL, client=dask_client)
    assert list(open_store(out).band.values) == ["b1", "b2", "b3"]


def test_stack_bands_combines_single_band_files_of_one_date(tmp_path, dask_client):
    rng = np.random.default_rng(11)
    expected = {}
    pre, post = [], []
    for side, stamp, paths in (
        ("imgs_1", "20161130T130757", pre),
        ("imgs_2", "20170829T105019", post),
    ):
        for band in ("B02", "B03", "B04", "B08"):
            array = rng.integers(0, 10000, (1, H, W)).astype(np.uint16)
            paths.append(write_geotiff(tmp_path / side / f"T31UDQ_{stamp}_{band}.tif", array))
            expected[(side, band)] = array[0]
    out = tmp_path / "store.zarr"
    ingest(
        [str(tmp_path / "imgs_1" / "*.tif")],
        [str(tmp_path / "imgs_2" / "*.tif")],
        out,
        IngestOptions(chunk=64, shard=128, stack_bands=True),
        client=dask_client,
    )
    ds = open_store(out)
    assert list(ds.band.values) == ["B02", "B03", "B04", "B08"]
    assert str(ds.pre_time.values[0])[:10] == "2016-11-30"
    for side, name in (("imgs_1", "pre"), ("imgs_2", "post")):
        stack = side_array(ds, name).values
        assert stack.shape[:2] == (1, 4)
        for b, band in enumerate(("B02", "B03", "B04", "B08")):
            np.testing.assert_array_equal(stack[0, b], expected[(side, band)])


def test_rerun_on_complete_store_is_a_noop(tmp_path, dask_client):
    pre, post, _ = _pair(tmp_path, dates=1)
    out = tmp_path / "store.zarr"
    ingest(pre, post, out, SMALL, client=dask_client)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    report = ingest(pre, post, out, SMALL, client=dask_client)
    assert report.was_noop and report.units_written == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_rerun_after_touching_an_input_is_still_a_noop(tmp_path, dask_client):
    pre, post, _ = _pair(tmp_path, dates=1)
    out = tmp_path / "store.zarr"
    ingest(pre, post, out, SMALL, client=dask_client)
    os.utime(pre[0], ns=(1, 1))  # same bytes, other mtime
    assert ingest(pre, post, out, SMALL, client=dask_client).was_noop


def test_rerun_after_changing_an_input_needs_overwrite(tmp_path, dask_client):
    pre, post, data = _pair(tmp_path, dates=1)
    out = tmp_path / "store.zarr"
    ingest(pre, post, out, SMALL, client=dask_client)
    write_geotiff(pre[0], data["pre"][0] + 1, descriptions=["VV", "VH"])
    with pytest.raises(StoreError, match=r"differs in: sources"):
        ingest(pre, post, out, SMALL, client=dask_client)


def test_unfinished_store_of_changed_inputs_is_refused_without_overwrite(tmp_path, dask_client):
    pre, post, data = _pair(tmp_path, dates=1)
    out = tmp_path / "store.zarr"
    ingest(pre, post, out, SMALL, client=dask_client)
    update_store_attrs(out, complete=False)  # as if the ingest had been killed
    write_geotiff(post[0], data["post"][0] * 2, descriptions=["VV", "VH"])
    with pytest.raises(StoreError, match=r"unfinished ingest of other inputs .*sources"):
        ingest(pre, post, out, SMALL, client=dask_client)
    report = ingest(
        pre, post, out, IngestOptions(chunk=64, shard=128, overwrite=True), client=dask_client
    )
    assert report.units_written == report.units_total and is_complete(out)


def test_overwrite_replaces_a_complete_store(tmp_path, dask_client):
    pre, post, _ = _pair(tmp_path, dates=1)
    out = tmp_path / "store.zarr"
    ingest(pre, post, out, SMALL, client=dask_client)
    first_id = read_store_attrs(out)["store_id"]
    report = ingest(
        pre, post, out, IngestOptions(chunk=64, shard=128, overwrite=True), client=dask_client
    )
    assert not report.was_noop and report.units_written == report.units_total
    assert read_store_attrs(out)["store_id"] != first_id
    assert is_complete(out)


def test_complete_store_of_other_settings_is_refused_without_overwrite(tmp_path, dask_client):
    pre, post, _ = _pair(tmp_path, dates=1)
    out = tmp_path / "store.zarr"
    ingest(pre, post, out, SMALL, client=dask_client)
    with pytest.raises(StoreError, match=r"other inputs or settings.*chunks.*--overwrite"):
        ingest(pre, post, out, IngestOptions(chunk=32, shard=128), client=dask_client)


def test_cli_ingest_on_an_existing_scheduler(tmp_path, dask_client, capsys):
    _, _, data = _pair(tmp_path, dates=1)
    out = tmp_path / "cli.zarr"
    argv = [
        "ingest",
        "--pre",
        str(tmp_path / "pre" / "*.tif"),
        "--post",
        str(tmp_path / "post" / "*.tif"),
        "--out",
        str(out),
        "--chunk",
        "64",
        "--shard",
        "128",
        "--scheduler",
        dask_client.scheduler.address,
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "wrote 12 shard(s)" in printed and "bands VV,VH" in printed
    np.testing.assert_array_equal(side_array(open_store(out), "pre").values[0], data["pre"][0])
    assert main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out
