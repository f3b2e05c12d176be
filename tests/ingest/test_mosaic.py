"""Tiles of one date (and orbit) are one acquisition, mosaicked shard by shard (first valid
pixel in the order given): real GeoTIFFs, the real Joplin tiles, the session's LocalCluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from ruinmap.cluster.ingest import IngestOptions, ingest, plan_inputs
from ruinmap.cluster.storage.store import open_store, read_store_attrs, side_array
from ruinmap.errors import InputError
from tests.support.rasters import write_geotiff

SMALL = IngestOptions(chunk=32, shard=64)


def _tile(folder: Path, name: str, data: np.ndarray, x0: float, *, date: str | None = None,
          orbit: int | None = None, res: float = 10.0, nodata: float | None = None) -> Path:
    tags = {}
    if date is not None:
        tags["ACQUISITION_DATE"] = date
    if orbit is not None:
        tags["RELATIVE_ORBIT"] = str(orbit)
    return write_geotiff(folder / name, data, transform=from_origin(x0, 4000000.0, res, res),
                         tags=tags, nodata=nodata, block=None)


def _scene(tmp_path: Path, rng: np.random.Generator) -> tuple[list[Path], list[Path], dict]:
    """Pre: two tiles of 2020-01-10 side by side, overlapping by 20 columns of which the
    first tile has nodata in 10; post: one image over both."""
    left = rng.random((1, 100, 120), dtype=np.float32) * 100
    right = rng.random((1, 100, 120), dtype=np.float32) * 100
    left[:, :, 110:] = -9999  # a swath edge: the second tile fills it
    pre = [
        _tile(tmp_path / "pre", "a.tif", left, 500000.0, date="2020-01-10", nodata=-9999),
        _tile(tmp_path / "pre", "b.tif", right, 500000.0 + 100 * 10, date="2020-01-10",
              nodata=-9999),
    ]
    post_data = rng.random((1, 100, 220), dtype=np.float32)
    post = [_tile(tmp_path / "post", "p.tif", post_data, 500000.0, date="2020-02-10")]
    return pre, post, {"left": left, "right": right}


def test_tiles_of_one_date_are_one_acquisition_first_valid_pixel_in_order(tmp_path, dask_client):
    rng = np.random.default_rng(3)
    pre, post, data = _scene(tmp_path, rng)
    plan = plan_inputs(pre, post, SMALL)
    assert len(plan.acquisitions["pre"]) == 1 and len(plan.acquisitions["pre"][0].members) == 2
    assert (plan.grid.width, plan.grid.height) == (220, 100)  # the union, not one tile
    out = tmp_path / "s.zarr"
    ingest(pre, post, out, SMALL, client=dask_client, inputs=plan)
    got = side_array(open_store(out), "pre").values[0, 0]
    left, right = data["left"][0], data["right"][0]
    np.testing.assert_array_equal(got[:, :100], left[:, :100])  # only the first tile
    np.testing.assert_array_equal(got[:, 100:110], left[:, 100:110])  # both: the first wins
    np.testing.assert_array_equal(got[:, 110:120], right[:, 10:20])  # first is nodata there
    np.testing.assert_array_equal(got[:, 120:], right[:, 20:])
    sources = [s for s in read_store_attrs(out)["sources"] if s["side"] == "pre"]
    assert [(Path(s["path"]).name, s["time_index"], s["mosaic_member"]) for s in sources] == [
        ("a.tif", 0, 0), ("b.tif", 0, 1)]
    assert all(s["sha256"] for s in sources)


def test_reversed_order_gives_the_other_tile_priority(tmp_path, dask_client):
    rng = np.random.default_rng(4)
    pre, post, data = _scene(tmp_path, rng)
    out = tmp_path / "r.zarr"
    ingest(pre[::-1], post, out, SMALL, client=dask_client)
    got = side_array(open_store(out), "pre").values[0, 0]
    np.testing.assert_array_equal(got[:, 100:120], data["right"][0][:, :20])


@pytest.mark.parametrize(("dates", "orbits", "n_dates"), [
    (("2020-01-10", "2020-01-22"), (None, None), 2),  # two dates: refused (no common area)
    (("2020-01-10", "2020-01-10"), (87, 160), 2),  # two orbits of one day
    (("2020-01-10", "2020-01-10"), (87, 87), 1),  # one date, one orbit: a mosaic
    ((None, None), (None, None), 1),  # undated tiles side by side: a mosaic
])
def test_only_tiles_of_one_date_and_orbit_are_mosaicked(tmp_path, dates, orbits, n_dates):
    rng = np.random.default_rng(5)
    a, b = (rng.random((1, 50, 60), dtype=np.float32) for _ in range(2))
    pre = [_tile(tmp_path / "pre", "a.tif", a, 500000.0, date=dates[0], orbit=orbits[0]),
           _tile(tmp_path / "pre", "b.tif", b, 500600.0, date=dates[1], orbit=orbits[1])]
    post = [_tile(tmp_path / "post", "p.tif", rng.random((1, 50, 120), dtype=np.float32),
                  500000.0, date="2020-03-01")]
    if n_dates == 2:
        with pytest.raises(InputError, match=r"b\.tif: its footprint \(500600\.0, 3999500\.0, "
                                             r"501200\.0, 4000000\.0\) does not overlap .*"
                                             r"mosaicked only when they have the same date"):
            plan_inputs(pre, post, SMALL)
    else:
        assert len(plan_inputs(pre, post, SMALL).acquisitions["pre"]) == n_dates


def test_images_of_one_day_over_the_same_area_stay_two_dates(tmp_path):
    rng = np.random.default_rng(6)
    pre = [_tile(tmp_path / "pre", f"{n}.tif", rng.random((1, 40, 40), dtype=np.float32),
                 500000.0 + shift, date="2020-01-10") for n, shift in (("a", 0), ("b", 50))]
    post = [_tile(tmp_path / "post", "p.tif", rng.random((1, 40, 40), dtype=np.float32),
                  500000.0, date="2020-03-01")]
    assert len(plan_inputs(pre, post, SMALL).acquisitions["pre"]) == 2


def test_tiles_of_one_date_at_two_pixel_sizes_need_a_resolution(tmp_path):
    rng = np.random.default_rng(8)
    pre = [_tile(tmp_path / "pre", "a.tif", rng.random((1, 40, 40), dtype=np.float32),
                 500000.0, date="2020-01-10"),
           _tile(tmp_path / "pre", "b.tif", rng.random((1, 20, 20), dtype=np.float32),
                 500400.0, date="2020-01-10", res=20.0)]
    post = [_tile(tmp_path / "post", "p.tif", rng.random((1, 40, 80), dtype=np.float32),
                  500000.0, date="2020-03-01")]
    with pytest.raises(InputError, match=r"b\.tif: pixel size \(20\.0, 20\.0\) differs from "
                                         r"\(10\.0, 10\.0\) of .*a\.tif.*give the target grid"):
        plan_inputs(pre, post, SMALL)
    fixed = IngestOptions(chunk=32, shard=64, resolution=(10.0, 10.0))
    assert len(plan_inputs(pre, post, fixed).acquisitions["pre"][0].members) == 2


@pytest.fixture
def joplin_tiles(shared_data):
    root = shared_data / "joplin-tornado"
    pre = sorted((root / "pre").glob("*.tif"))
    post = sorted((root / "post").glob("*.tif"))
    if len(pre) != 2 or len(post) != 2:
        pytest.skip(f"real data absent: {root}")
    return pre, post


def test_joplin_pre_and_post_tile_pairs_ingest_as_one_date_each(tmp_path, dask_client,
                                                                 joplin_tiles):
    pre, post = joplin_tiles
    out = tmp_path / "joplin.zarr"
    ingest(pre, post, out, IngestOptions(chunk=256, shard=512), client=dask_client)
    ds = open_store(out)
    assert ds.sizes["pre_time"] == 1 and ds.sizes["post_time"] == 1
    attrs = read_store_attrs(out)
    assert sorted(Path(s["path"]).name for s in attrs["sources"]) == sorted(
        p.name for p in pre + post)
    assert {s["time_index"] for s in attrs["sources"]} == {0}
    grid = attrs["grid"]
    stored = side_array(ds, "pre").values[0]
    # every pre pixel inside a tile is that tile's own pixel (same grid: no resampling); the
    # first tile (file-name order) wins where they overlap
    for k, path in enumerate(pre):
        with rasterio.open(path) as src:
            col = round((src.transform.c - grid["transform"][2]) / 0.6)
            row = round((grid["transform"][5] - src.transform.f) / 0.6)
            r0, c0 = max(row, 0), max(col, 0)
            r1 = min(row + src.height, grid["height"])
            c1 = min(col + src.width, grid["width"])
            if r1 <= r0 or c1 <= c0:
                continue
            tile = src.read(window=((r0 - row, r1 - row), (c0 - col, c1 - col)))
            mine = stored[:, r0:r1, c0:c1]
            if k == 0:
                np.testing.assert_array_equal(mine, tile.astype(np.float32))
            else:
                own = np.isfinite(mine).all(axis=0)
                assert own.mean() > 0.5
    # the common area spans both pre tiles (~1.2 km north-south together), not one
    assert grid["height"] * 0.6 > 700
