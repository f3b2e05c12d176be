"""Ingest from s3:// GeoTIFFs into an s3:// Zarr store, and resume one killed mid-way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from ruinmap.cluster.ingest import ingest
from ruinmap.cluster.storage import s3
from ruinmap.cluster.storage.location import as_location
from ruinmap.cluster.storage.store import LEDGER_DIR, is_complete, open_store, side_array
from ruinmap.errors import InputError, StoreError
from tests.support.s3 import kill_when_recorded

pytestmark = pytest.mark.slow


def _upload_stack(client: Any, bucket: str, folder: Path, size: int, dates: int,
                  seed: int = 0) -> dict[str, list[Path]]:
    from tests.support.rasters import (
        write_geotiff,  # tests/conftest.py (pytest puts tests/ on sys.path)
    )

    """`dates` pre and post GeoTIFFs (2 bands, float32) written locally and uploaded."""
    rng = np.random.default_rng(seed)
    local: dict[str, list[Path]] = {"pre": [], "post": []}
    for side, month in (("pre", 1), ("post", 6)):
        for i in range(dates):
            data = rng.gamma(4.0, 0.05, (2, size, size)).astype(np.float32)
            data[:, :7, :5] = np.nan
            path = write_geotiff(folder / side / f"{side}_2023-{month:02d}-{i + 1:02d}.tif",
                                 data, nodata=float("nan"), descriptions=("VV", "VH"))
            client.upload_file(str(path), bucket, f"scenes/{side}/{path.name}")
            local[side].append(path)
    return local


def _assert_store_holds(store: str, local: dict[str, list[Path]]) -> None:
    ds = open_store(store)
    try:
        for side, paths in local.items():
            # read here, not on the session's test cluster, whose workers have no S3 credentials
            stack = side_array(ds, side).compute(scheduler="threads").values
            assert stack.shape[0] == len(paths)
            for t, path in enumerate(paths):
                with rasterio.open(path) as src:
                    np.testing.assert_array_equal(stack[t], src.read())
        assert list(ds["band"].values) == ["VV", "VH"]
    finally:
        ds.close()


def _ingest_args(bucket: str, store: str, shard: int) -> list[str]:
    return ["ingest", "--pre", f"s3://{bucket}/scenes/pre/*.tif",
            "--post", f"s3://{bucket}/scenes/post/*.tif", "--out", store,
            "--chunk", "32", "--shard", str(shard), "--no-progress"]


def test_ingest_reads_s3_geotiffs_and_writes_an_s3_store(s3_client, bucket, tmp_path, run_cli):
    local = _upload_stack(s3_client, bucket, tmp_path, size=96, dates=2)
    store = f"s3://{bucket}/stores/city.zarr"
    done = run_cli(*_ingest_args(bucket, store, 64))
    assert f"{store}: pre 2 date(s), post 2 date(s), bands VV,VH" in done.stdout
    assert is_complete(store)
    _assert_store_holds(store, local)
    assert not as_location(f"{store}/{LEDGER_DIR}").list_names()  # removed once complete
    again = run_cli(*_ingest_args(bucket, store, 64))
    assert "store already complete; nothing to do" in again.stdout


def _shard_versions(client: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for kind in ("Versions", "DeleteMarkers"):
            for entry in page.get(kind, []):
                found.setdefault(entry["Key"], []).append({"kind": kind, **entry})
    return found


def test_a_killed_s3_ingest_resumes_without_redoing_recorded_shards(
    s3_client, bucket, tmp_path, s3_env, run_cli
):
    local = _upload_stack(s3_client, bucket, tmp_path, size=128, dates=2, seed=1)
    store = f"s3://{bucket}/stores/killed.zarr"
    ledger = f"{store}/{LEDGER_DIR}"
    recorded = kill_when_recorded(_ingest_args(bucket, store, 32), s3_env, ledger, 4)
    units = 2 * 2 * (128 // 32) ** 2
    assert 4 <= len(recorded) < units
    assert not is_complete(store)

    done = run_cli(*_ingest_args(bucket, store, 32))
    match = re.search(r"wrote (\d+) shard\(s\), skipped (\d+) done before", done.stdout)
    assert match, done.stdout
    assert int(match[2]) == len(recorded)
    assert int(match[1]) == units - len(recorded)
    assert "resumed an unfinished store" in done.stdout
    assert is_complete(store)
    _assert_store_holds(store, local)

    # a recorded shard was written once, by the killed run, and never touched again
    versions = _shard_versions(s3_client, bucket, "stores/killed.zarr/")
    for name in recorded:
        side, t, iy, ix = name.split("+")
        key = f"stores/killed.zarr/{side}/c/{t}/0/{iy}/{ix}"
        assert [v["kind"] for v in versions[key]] == ["Versions"], key


def test_ingest_names_a_missing_bucket_and_an_empty_glob(s3_server, bucket):
    with pytest.raises(InputError, match=rf"s3://{bucket}/nothing/\*\.tif.*no objects match"):
        ingest([f"s3://{bucket}/nothing/*.tif"], [f"s3://{bucket}/nothing/*.tif"],
               f"s3://{bucket}/out.zarr")


def test_ingest_refuses_an_s3_prefix_holding_other_objects(s3_client, bucket, tmp_path):
    _upload_stack(s3_client, bucket, tmp_path, size=32, dates=1)
    s3_client.put_object(Bucket=bucket, Key="taken.zarr/notes.txt", Body=b"mine")
    with pytest.raises(StoreError, match="holds objects and is not a ruinmap store"):
        ingest([f"s3://{bucket}/scenes/pre/*.tif"], [f"s3://{bucket}/scenes/post/*.tif"],
               f"s3://{bucket}/taken.zarr")
    with pytest.raises(StoreError, match="the bucket does not exist"):
        ingest([f"s3://{bucket}/scenes/pre/*.tif"], [f"s3://{bucket}/scenes/post/*.tif"],
               "s3://ruinmap-no-such-bucket/out.zarr")


def test_gdal_options_follow_the_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    options = s3.gdal_options()
    assert options["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
    assert options["AWS_HTTPS"] == "NO" and options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://minio.example.org")
    assert s3.gdal_options()["AWS_HTTPS"] == "YES"
    import dask

    with dask.config.set({"ruinmap.storage.endpoint-url": "http://ceph.local:7480"}):
        assert s3.storage_options() == {"endpoint_url": "http://ceph.local:7480"}
        assert s3.gdal_options()["AWS_S3_ENDPOINT"] == "ceph.local:7480"
