"""storage.window_read: a window decoded straight from the shards equals zarr's read of it."""

from __future__ import annotations

import numcodecs.blosc
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.storage.arrays import Compression
from ruinmap.cluster.storage.location import as_location
from ruinmap.cluster.storage.window_read import (
    ShardLayout,
    _blosc_getitem,
    _blosc_rows,
    read_window,
)
from ruinmap.errors import StoreError
from tests.support.rasters import write_geotiff

SHAPE = (3, 2, 150, 170)  # neither side a multiple of the chunk or the shard: edge chunks


def _make_array(folder, compression: str, chunk: int, shard: int, shape=SHAPE) -> zarr.Array:
    """A store's `pre`-like array: NaN fill, a nodata corner (chunks zarr does not store) and
    the last date's last shard row never written (shard files absent)."""
    rng = np.random.default_rng(7)
    data = rng.gamma(4.0, 0.05, shape).astype(np.float32)
    data[rng.random(shape) < 0.02] = np.nan
    data[:, :, : shape[2] // 3, : shape[3] // 3] = np.nan
    array = zarr.create_array(
        store=str(folder / "store.zarr"), name="pre", shape=shape, dtype=np.float32,
        chunks=(1, 1, chunk, chunk), shards=(1, shape[1], shard, shard),
        compressors=Compression.parse(compression).codecs(), fill_value=np.nan)
    last = (shape[2] - 1) // shard * shard
    array[:-1] = data[:-1]
    array[-1, :, :last] = data[-1, :, :last]
    return array


@pytest.mark.parametrize(("compression", "chunk", "shard"), [
    ("blosc-zstd:1", 16, 64), ("blosc-lz4:5", 16, 32), ("zstd:1", 16, 64), ("none", 16, 64),
    ("blosc-zstd:1", 128, 256),  # 64 KiB chunks: several blosc blocks each
])
def test_read_window_equals_zarr_on_any_window(tmp_path, compression, chunk, shard):
    array = _make_array(tmp_path, compression, chunk, shard)
    store = as_location(tmp_path / "store.zarr")
    assert ShardLayout.of(array) is not None  # the fast path, not zarr's

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(0, SHAPE[2] - 1), st.integers(0, SHAPE[3] - 1),
           st.integers(1, SHAPE[2]), st.integers(1, SHAPE[3]), st.integers(0, SHAPE[0]))
    def check(r0: int, c0: int, height: int, width: int, first: int) -> None:
        window = (r0, c0, min(r0 + height, SHAPE[2]), min(c0 + width, SHAPE[3]))
        # `first`: the dates from there on, as a monitored job's append reads them
        got = read_window(store, "pre", window, token=compression, first=first)
        want = np.asarray(array[first:, :, window[0]:window[2], window[1]:window[3]])
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)

    check()


def test_read_window_reads_a_padded_tile_window_like_zarr(tmp_path):
    """The windows a tile reads: its tile plus a halo reaching a few rows into the chunks
    around it (the rows-only decode above and below)."""
    shape = (2, 1, 512, 512)
    array = _make_array(tmp_path, "blosc-zstd:1", 128, 256, shape)
    store = as_location(tmp_path / "store.zarr")
    for r0, c0 in [(0, 0), (0, 256), (256, 0), (256, 256)]:
        window = (max(r0 - 17, 0), max(c0 - 17, 0), min(r0 + 273, 512), min(c0 + 273, 512))
        np.testing.assert_array_equal(
            read_window(store, "pre", window),
            np.asarray(array[:, :, window[0]:window[2], window[1]:window[3]]))


def test_read_window_of_an_unsharded_array_goes_through_zarr(tmp_path):
    data = np.arange(2 * 1 * 40 * 30, dtype=np.float32).reshape(2, 1, 40, 30)
    zarr.create_array(store=str(tmp_path / "s.zarr"), name="pre", data=data,
                      chunks=(1, 1, 16, 16))
    array = zarr.open_array(str(tmp_path / "s.zarr"), path="pre", mode="r")
    assert ShardLayout.of(array) is None
    got = read_window(as_location(tmp_path / "s.zarr"), "pre", (3, 5, 33, 29))
    np.testing.assert_array_equal(got, data[:, :, 3:33, 5:29])


def test_read_window_names_a_shard_whose_index_is_damaged(tmp_path):
    _make_array(tmp_path, "blosc-zstd:1", 16, 64)
    shard = tmp_path / "store.zarr" / "pre" / "c" / "0" / "0" / "1" / "1"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the index, before its checksum
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=r"c/0/0/1/1: the shard's index is damaged"):
        read_window(as_location(tmp_path / "store.zarr"), "pre", (60, 60, 70, 70),
                    token="damaged")


def test_blosc_getitem_is_found_in_numcodecs():
    """Without it every chunk of the halo is decoded whole (still correct, 2x slower)."""
    assert _blosc_getitem() is not None


@pytest.mark.parametrize("typesize", [1, 4])
@given(start=st.integers(0, 4095), count=st.integers(1, 4096))
@settings(max_examples=40, deadline=None)
def test_blosc_rows_equal_the_whole_decode_sliced(typesize, start, count):
    count = min(count, 4096 - start)
    values = np.random.default_rng(start).gamma(4.0, 0.05, (64, 64)).astype(np.float32)
    encoded = numcodecs.blosc.compress(values.tobytes(), b"zstd", 1, numcodecs.blosc.SHUFFLE,
                                       typesize, 2048)
    rows = np.frombuffer(_blosc_rows(encoded, start, count, 4), np.float32)
    np.testing.assert_array_equal(rows, values.ravel()[start:start + count])


def test_an_ingested_store_is_read_on_the_fast_path(tmp_path, dask_client):
    data = np.random.default_rng(3).gamma(4.0, 0.05, (2, 100, 120)).astype(np.float32)
    pre = write_geotiff(tmp_path / "pre_2020-01-01.tif", data, descriptions=["VV", "VH"])
    post = write_geotiff(tmp_path / "post_2020-02-01.tif", data + 1, descriptions=["VV", "VH"])
    out = tmp_path / "store.zarr"
    ingest([pre], [post], out, IngestOptions(chunk=32, shard=64), client=dask_client)
    for side in ("pre", "post"):
        array = zarr.open_array(str(out), path=side, mode="r")
        assert ShardLayout.of(array) is not None
        np.testing.assert_array_equal(read_window(as_location(out), side, (13, 29, 97, 120)),
                                      np.asarray(array[:, :, 13:97, 29:120]))
