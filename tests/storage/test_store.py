"""Store helpers: recognising, validating, opening and completing a ruinmap store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.storage.arrays import Compression
from ruinmap.cluster.storage.store import (
    is_complete,
    is_ruinmap_store,
    open_store,
    read_store_attrs,
    remove_store,
    update_store_attrs,
    validate_store,
)
from ruinmap.errors import SpecError, StoreError
from tests.support.rasters import write_geotiff

GDAL_VERSION = tuple(int(v) for v in rasterio.__gdal_version__.split(".")[:2])


@pytest.fixture(scope="module")
def store(tmp_path_factory, dask_client):
    tmp = tmp_path_factory.mktemp("store")
    data = np.arange(2 * 100 * 120, dtype=np.float32).reshape(2, 100, 120)
    pre = write_geotiff(tmp / "pre_2020-01-01.tif", data, descriptions=["VV", "VH"])
    post = write_geotiff(tmp / "post_2020-02-01.tif", data + 1, descriptions=["VV", "VH"])
    out = tmp / "store.zarr"
    ingest([pre], [post], out, IngestOptions(chunk=32, shard=64), client=dask_client)
    return out


@pytest.mark.parametrize(
    ("text", "codec", "level"),
    [
        ("zstd", "zstd", 1),
        ("zstd:5", "zstd", 5),
        ("blosc-lz4", "blosc-lz4", 5),
        ("BLOSC-ZSTD:3", "blosc-zstd", 3),
        ("blosc-zstd", "blosc-zstd", 1),
        ("none", "none", 0),
    ],
)
def test_compression_parses(text, codec, level):
    parsed = Compression.parse(text)
    assert (parsed.codec, parsed.level) == (codec, level)
    assert len(parsed.codecs()) == (0 if codec == "none" else 1)


@pytest.mark.parametrize("text", ["gzip", "zstd:x", "zstd:99", "blosc-lz4:10"])
def test_bad_compression_is_a_spec_error(text):
    with pytest.raises(SpecError, match="--compression"):
        Compression.parse(text)


def test_other_directories_are_not_ruinmap_stores(tmp_path):
    assert not is_ruinmap_store(tmp_path)
    assert not is_ruinmap_store(tmp_path / "missing")
    (tmp_path / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}})
    )
    assert not is_ruinmap_store(tmp_path)
    with pytest.raises(StoreError, match="not a ruinmap store"):
        read_store_attrs(tmp_path)
    with pytest.raises(StoreError, match="not a ruinmap store"):
        remove_store(tmp_path)
    assert (tmp_path / "zarr.json").exists()


def test_a_finished_ingest_is_a_complete_valid_store(store):
    assert is_ruinmap_store(store) and is_complete(store)
    assert validate_store(store)["bands"] == ["VV", "VH"]


def test_an_incomplete_store_opens_only_when_asked(store, tmp_path):
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(store, copy)
    update_store_attrs(copy, complete=False)
    with pytest.raises(StoreError, match="has not finished; re-run `ruinmap ingest`"):
        open_store(copy)
    assert open_store(copy, require_complete=False).sizes["x"] == 120
    # the consolidated metadata follows every attribute change
    assert (
        json.loads((copy / "zarr.json").read_text())["attributes"]["ruinmap"]["complete"] is False
    )


def test_a_store_from_a_newer_format_is_refused(store, tmp_path):
    import shutil

    copy = tmp_path / "newer.zarr"
    shutil.copytree(store, copy)
    update_store_attrs(copy, format_version=99)
    with pytest.raises(StoreError, match="newer than this ruinmap reads"):
        open_store(copy)


def test_a_store_missing_an_array_is_invalid(store, tmp_path):
    import shutil

    copy = tmp_path / "broken.zarr"
    shutil.copytree(store, copy)
    shutil.rmtree(copy / "post")
    with pytest.raises(StoreError, match="array 'post' is missing"):
        validate_store(copy)


@pytest.mark.skipif(
    GDAL_VERSION < (3, 13),
    reason=f"GDAL {rasterio.__gdal_version__} in the rasterio wheel cannot read zarr-python's v3 "
    "arrays ('Unsupported codec: bytes'; sharding_indexed needs GDAL >= 3.13)",
)
def test_gdal_sees_the_crs(store):
    with rasterio.open(f'ZARR:"{store}":/pre') as src:
        assert src.crs.to_epsg() == 32636
