"""Dates read in place (`ingest.inplace`): which files qualify, "never" refusing the others,
in-place reads equal to the copied store byte for byte (dB, nodata, layover masks), changed
files refused, and the decision compared on resume like any other setting."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.ingest.inplace import (
    InPlaceDates,
    check_in_place_unchanged,
    plan_in_place,
    read_dates_window,
)
from ruinmap.cluster.ingest.plan import plan_inputs
from ruinmap.cluster.storage.arrays import open_array
from ruinmap.cluster.storage.location import as_location
from ruinmap.cluster.storage.store import StoreInfo, read_store_attrs
from ruinmap.errors import InputError, SpecError, StoreError
from ruinmap.synthetic import City, make_city
from tests.support.rtc import write_products

SMALL = IngestOptions(chunk=32, shard=64)


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("inplace") / "city", size=96, seed=7)


def _rewrite(src: Path, dst: Path, *, block: int | None, factor: int = 1) -> Path:
    """`src` written again at `dst`: tiled in `block` px squares (None: strips), `factor`
    times coarser (averaged), with its tags and band names."""
    with rasterio.open(src) as s:
        data, profile = s.read(), s.profile.copy()
        tags, names = s.tags(), s.descriptions
    if factor > 1:
        bands, rows, cols = data.shape
        data = data.reshape(bands, rows // factor, factor, cols // factor, factor).mean((2, 4))
        profile.update(width=data.shape[2], height=data.shape[1],
                       transform=profile["transform"] @ profile["transform"].scale(factor))
    for key in ("tiled", "blockxsize", "blockysize", "interleave"):
        profile.pop(key, None)
    if block is not None:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as d:
        d.write(data.astype(profile["dtype"]))
        d.update_tags(**tags)
        d.descriptions = names
    return dst


def _tiled_copy(files: tuple[Path, ...], folder: Path) -> list[str]:
    return [str(_rewrite(f, folder / f.name, block=32)) for f in files]


def test_auto_reads_tiled_files_on_the_grid_in_place_and_copies_the_rest(
        city: City, tmp_path: Path) -> None:
    pre = _tiled_copy(city.pre_files, tmp_path / "pre")
    post = _tiled_copy(city.post_files, tmp_path / "post")
    striped = _rewrite(city.post_files[0], Path(post[0]), block=None)
    coarse = _rewrite(city.post_files[1], Path(post[1]), block=32, factor=2)
    plan = plan_inputs(pre, post, IngestOptions(), report=False)
    in_place = plan_in_place(plan, "auto")
    assert sorted(in_place.dates["pre"]) == list(range(len(pre)))
    copied = {str(f.path) for t, acq in enumerate(plan.acquisitions["post"])
              if not in_place.is_in_place("post", t) for f in acq.files}
    assert copied == {str(striped), str(coarse)}
    assert not plan_in_place(plan, "always")
    with pytest.raises(InputError, match="never") as info:
        plan_in_place(plan, "never")
    assert str(striped) in str(info.value) or str(coarse) in str(info.value)
    with pytest.raises(SpecError, match="sometimes"):
        plan_in_place(plan, "sometimes")


def test_never_names_a_file_that_must_be_warped(city: City, tmp_path: Path) -> None:
    pre = _tiled_copy(city.pre_files, tmp_path / "pre")
    post = _tiled_copy(city.post_files, tmp_path / "post")
    coarse = _rewrite(city.post_files[0], Path(post[0]), block=32, factor=2)
    plan = plan_inputs(pre, post, IngestOptions(), report=False)
    with pytest.raises(InputError, match=r"must be warped") as info:
        plan_in_place(plan, "never")
    assert str(info.value).startswith(str(coarse))


def _layover(shape: tuple[int, int]) -> np.ndarray:
    flags = np.ones(shape, np.uint8)
    flags[10:20, 30:75] = 1 + 4  # tested, layover (across a shard edge)
    flags[60:70, :] = 1 + 16  # tested, shadow
    return flags


@pytest.fixture(scope="module")
def rtc_stores(city: City, tmp_path_factory: pytest.TempPathFactory,
               dask_client: Client) -> tuple[Path, Path]:
    """HyP3 dB products with layover/shadow maps, tiled, ingested copied and in place."""
    folder = tmp_path_factory.mktemp("rtc")
    write_products(city, folder / "striped", "hyp3", "d", mask=_layover)
    for path in sorted((folder / "striped").rglob("*.tif")):
        _rewrite(path, folder / "tiled" / path.relative_to(folder / "striped"), block=32)
    pre, post = str(folder / "tiled/pre/*.tif"), str(folder / "tiled/post/*.tif")
    copied, in_place = folder / "copied.zarr", folder / "in_place.zarr"
    ingest(pre, post, copied, SMALL, client=dask_client, progress=False)
    report = ingest(pre, post, in_place, IngestOptions(chunk=32, shard=64, ingest="never"),
                    client=dask_client, progress=False)
    assert report.units_written == 0
    assert report.dates_in_place == len(city.pre_files) + len(city.post_files)
    return copied, in_place


@pytest.mark.parametrize("window", [(0, 0, 96, 96), (5, 17, 71, 90), (60, 0, 96, 33)])
def test_in_place_reads_equal_the_copied_store_byte_for_byte(
        rtc_stores: tuple[Path, Path], window: tuple[int, int, int, int]) -> None:
    copied, in_place = (StoreInfo.read(p) for p in rtc_stores)
    dates = InPlaceDates.from_store_attrs(in_place.attrs)
    r0, c0, r1, c1 = window
    for side in ("pre", "post"):
        expected = open_array(copied.location, side)[:, :, r0:r1, c0:c1]
        got = read_dates_window(in_place.location, side, in_place.n_times[side], dates,
                                in_place.grid, window, in_place.attrs.get("nodata"))
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.isnan(expected).any() and np.isfinite(expected).any()  # masks, and data
        assert got.tobytes() == expected.tobytes()


def test_the_store_records_which_dates_are_read_in_place(
        rtc_stores: tuple[Path, Path]) -> None:
    copied, in_place = (read_store_attrs(p) for p in rtc_stores)
    assert "in_place" not in copied
    assert not any(s.get("read_in_place") for s in copied["sources"])
    backscatter = [s for s in in_place["sources"] if s["bands"]]
    assert backscatter and all(s["read_in_place"] for s in backscatter)
    assert all(s["sha256"] for s in backscatter)  # provenance as for copied files
    # nothing of an in-place date was written: its shards are absent, read as NaN
    assert not (rtc_stores[1] / "pre" / "c").exists()


def test_a_changed_in_place_file_is_refused_and_a_touched_one_is_not(
        city: City, tmp_path: Path, dask_client: Client) -> None:
    pre = _tiled_copy(city.pre_files, tmp_path / "pre")
    post = _tiled_copy(city.post_files, tmp_path / "post")
    out = tmp_path / "store.zarr"
    ingest(pre, post, out, IngestOptions(chunk=32, shard=64, ingest="never"),
           client=dask_client, progress=False)
    store = StoreInfo.read(out)
    check_in_place_unchanged(store.location, store.attrs)
    later = os.stat(post[0]).st_mtime_ns + 10**9
    os.utime(post[0], ns=(later, later))  # touched: the same contents
    check_in_place_unchanged(store.location, store.attrs)
    with rasterio.open(post[0], "r+") as dst:  # one pixel changed, the size the same
        values = dst.read(1)
        values[3, 3] = 0.123 if values[3, 3] != np.float32(0.123) else 0.5
        dst.write(values, 1)
    with pytest.raises(StoreError, match=r"modified since.*--overwrite") as info:
        check_in_place_unchanged(store.location, store.attrs)
    assert str(info.value).startswith(post[0])
    with open(post[0], "ab") as f:  # and a tile refuses a file whose size changed
        f.write(b"\0" * 16)
    with pytest.raises(StoreError, match="size changed"):
        read_dates_window(as_location(out), "post", store.n_times["post"],
                          InPlaceDates.from_store_attrs(store.attrs), store.grid,
                          (0, 0, 8, 8), None)


def test_a_complete_in_place_store_is_left_alone_and_another_mode_is_refused(
        city: City, tmp_path: Path, dask_client: Client) -> None:
    pre = _tiled_copy(city.pre_files, tmp_path / "pre")
    post = _tiled_copy(city.post_files, tmp_path / "post")
    out = tmp_path / "store.zarr"
    never = IngestOptions(chunk=32, shard=64, ingest="never")
    ingest(pre, post, out, never, client=dask_client, progress=False)
    # auto decides the same for these files: the same store, nothing to do
    auto = ingest(pre, post, out, IngestOptions(chunk=32, shard=64, ingest="auto"),
                  client=dask_client, progress=False)
    assert auto.was_noop
    with pytest.raises(StoreError, match=r"differs in: in_place.*--overwrite"):
        ingest(pre, post, out, SMALL, client=dask_client, progress=False)
