"""The damage-mapping job with its imagery, store and outputs in S3, and resumed after a kill."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio

from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec import dump_toml, load_spec, parse_spec
from ruinmap.cluster.job.workdir import WORK_DIR
from ruinmap.cluster.storage.location import as_location
from ruinmap.synthetic import City, make_city, write_job_spec
from tests.support.s3 import kill_when_recorded

pytestmark = pytest.mark.slow

PRODUCTS = ("score.tif", "damage.tif", "grid.tif", "districts.parquet", "districts.geojson",
            "districts.csv", "districts.gpkg", "districts_hxl.csv", "buildings.parquet",
            "buildings.gpkg", "map.png", "job.json", "stac/collection.json")


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("s3city") / "city", size=192, n_pre=3, n_post=2,
                     seed=4)


@pytest.fixture(scope="module")
def reference_out(city: City, tmp_path_factory: pytest.TempPathFactory, dask_client: Any) -> Path:
    """The city's job run once on local files into a local folder: what every S3 run must equal
    (the products do not depend on the store's chunking, so one reference serves them all)."""
    folder = tmp_path_factory.mktemp("s3reference")
    spec = load_spec(_job_file(city, folder, output={"dir": str(folder / "out")}))
    run_job(spec, client=dask_client, progress=False)
    return folder / "out"


def _upload_city(client: Any, bucket: str, city: City) -> dict[str, list[str]]:
    urls: dict[str, list[str]] = {"pre": [], "post": []}
    for side, files in (("pre", city.pre_files), ("post", city.post_files)):
        for path in files:
            client.upload_file(str(path), bucket, f"city/{side}/{path.name}")
            urls[side].append(f"s3://{bucket}/city/{side}/{path.name}")
    return urls


def _job_file(city: City, folder: Path, **changes: Any) -> Path:
    """The city's pwtt job with top-level tables replaced, written as TOML in `folder`."""
    data = load_spec(write_job_spec(city, folder, name="base.toml")).to_json_dict()
    data.update(changes)
    path = folder / "job.toml"
    parse_spec(data, folder)
    path.write_text(dump_toml(data))
    return path


def _raster(location: Path | str) -> np.ndarray:
    with rasterio.MemoryFile(as_location(location).read_bytes()) as memory, memory.open() as src:
        return src.read()


def _districts(location: Path | str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(as_location(location).read_bytes()))


def _assert_same_products(s3_out: str, local_out: Path) -> None:
    for name in ("score.tif", "damage.tif"):
        np.testing.assert_array_equal(_raster(f"{s3_out}/{name}"), _raster(local_out / name))
    # the grid and the tables are float sums over tiles, whose order follows the store's
    # sharding, so they agree to rounding when the reference was tiled otherwise
    np.testing.assert_allclose(_raster(f"{s3_out}/grid.tif"), _raster(local_out / "grid.tif"),
                               rtol=1e-6)
    pd.testing.assert_frame_equal(_districts(f"{s3_out}/districts.csv"),
                                  _districts(local_out / "districts.csv"), rtol=1e-6)


def _versions(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
        for kind in ("Versions", "DeleteMarkers"):
            for entry in page.get(kind, []):
                counts[entry["Key"]] = counts.get(entry["Key"], 0) + 1
    return counts


def test_a_job_reads_s3_imagery_and_writes_its_store_and_products_to_s3(
    city, s3_client, bucket, tmp_path, run_cli, reference_out
):
    urls = _upload_city(s3_client, bucket, city)
    out = f"s3://{bucket}/results/city"
    job = _job_file(city, tmp_path, inputs={"pre": [f"s3://{bucket}/city/pre/*.tif"],
                                            "post": [f"s3://{bucket}/city/post/*.tif"]},
                    output={"dir": out})
    done = run_cli("run", str(job), "--no-progress")
    assert f"results in {out}" in done.stdout
    names = set(as_location(out).list_names())
    for product in PRODUCTS:
        assert product in names, product
    assert "store.zarr/zarr.json" in names and "store.zarr/score/zarr.json" in names
    assert any(n.startswith("stac/") and n.endswith("-damage.json") for n in names)  # the item
    report = as_location(f"{out}/job.json").read_bytes().decode()
    assert all(url in report for url in urls["pre"] + urls["post"])

    # the same job on local files gives the same products
    _assert_same_products(out, reference_out)

    # a re-run of the finished job computes nothing and uploads no product again (only the
    # job's own marker of current products is written anew)
    before = _versions(s3_client, bucket, "results/city/")
    again = run_cli("run", str(job), "--no-progress")
    assert re.search(r"0 tile\(s\) computed, 1 done before", again.stdout), again.stdout
    after = _versions(s3_client, bucket, "results/city/")
    marker = f"results/city/{WORK_DIR}/products.json"
    assert after.pop(marker) == before.pop(marker) + 1
    assert after == before


def test_a_killed_s3_job_resumes_without_redoing_finished_tiles(
    city, s3_client, bucket, tmp_path, s3_env, run_cli, reference_out
):
    _upload_city(s3_client, bucket, city)
    store = f"s3://{bucket}/stores/city.zarr"
    run_cli("ingest", "--pre", f"s3://{bucket}/city/pre/*.tif", "--post",
            f"s3://{bucket}/city/post/*.tif", "--out", store, "--chunk", "32", "--shard", "64",
            "--no-progress")
    out = f"s3://{bucket}/results/killed"
    job = _job_file(city, tmp_path, inputs={"store": store}, output={"dir": out})
    ledger = f"{out}/{WORK_DIR}/ledger"
    tiles = (192 // 64) ** 2
    recorded = kill_when_recorded(["run", str(job), "--no-progress"], s3_env, ledger, 2)
    assert 2 <= len(recorded) < tiles
    assert not as_location(f"{out}/job.json").exists()

    done = run_cli("run", str(job), "--no-progress")
    match = re.search(r"(\d+) tile\(s\) computed, (\d+) done before", done.stdout)
    assert match, done.stdout
    assert (int(match[1]), int(match[2])) == (tiles - len(recorded), len(recorded))
    # a tile recorded by the killed run was never computed again: one version of its partial
    versions = _versions(s3_client, bucket, f"results/killed/{WORK_DIR}/partials/")
    for name in recorded:
        _, iy, ix = name.split("+")
        assert versions[f"results/killed/{WORK_DIR}/partials/tile_{iy}_{ix}.npz"] == 1

    # the products equal those of an undisturbed run of the same job on local files
    _assert_same_products(out, reference_out)


def test_corrupted_s3_work_objects_are_logged_and_their_tiles_recomputed(
    city, s3_client, bucket, tmp_path, run_cli, reference_out
):
    _upload_city(s3_client, bucket, city)
    store = f"s3://{bucket}/stores/city.zarr"
    run_cli("ingest", "--pre", f"s3://{bucket}/city/pre/*.tif", "--post",
            f"s3://{bucket}/city/post/*.tif", "--out", store, "--chunk", "32", "--shard", "64",
            "--no-progress")
    out = f"s3://{bucket}/results/corrupt"
    job = _job_file(city, tmp_path, inputs={"store": store}, output={"dir": out})
    run_cli("run", str(job), "--no-progress")

    # a truncated partial of one tile, flipped bytes in another tile's score shard
    partial = f"results/corrupt/{WORK_DIR}/partials/tile_0_1.npz"
    body = s3_client.get_object(Bucket=bucket, Key=partial)["Body"].read()
    s3_client.put_object(Bucket=bucket, Key=partial, Body=body[: len(body) // 2])
    shard = "results/corrupt/store.zarr/score/c/1/2"  # the job's own store holds its layers
    data = bytearray(s3_client.get_object(Bucket=bucket, Key=shard)["Body"].read())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    s3_client.put_object(Bucket=bucket, Key=shard, Body=bytes(data))

    done = run_cli("run", str(job), "--no-progress")
    assert re.search(r"2 tile\(s\) computed", done.stdout), done.stdout
    assert re.search(rf"tile tile/0/1: s3://{bucket}/{partial} does not match its checksum"
                     r".*recomputing it", done.stderr), done.stderr
    assert re.search(rf"tile tile/1/2: s3://{bucket}/{shard} does not match its checksum"
                     r".*recomputing it", done.stderr), done.stderr

    _assert_same_products(out, reference_out)
