"""Monitoring (`job.monitor`, `ingest.append`): `run_job` on the same spec after a new
post-event date arrived appends it.

On a dated synthetic city (128 px, 2 x 2 tiles, 6 pre and 6 post dates): a job over the first
5 post dates, then the same spec with the 6th, equals one run over all 6 (every layer of the
store, the dating state, damage_date.tif and the buildings' date columns); the old dates'
shards of the store are not rewritten, the tiles read neither the pre dates nor the old post
dates (they continue from the score's kept moments and their dating state over the new date
only) and job.json lists both runs. A dating state shard damaged between the runs is found by its
checksum and its tile dated over the whole series again, with the same result; so are damaged
kept moments of the score, whose tiles then fold the whole series again. The tiles' built-up
masks and footprint labels are kept too (`job.tile_inputs`): read back on an append, made
again when damaged or when the footprint file changed, always equal to what a fresh job makes.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions, ingest, plan_inputs
from ruinmap.cluster.ingest.append import appended_post_dates
from ruinmap.cluster.ingest.layout import StoreLayout
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import JobSpec, parse_spec
from ruinmap.cluster.job.tile_inputs import TILE_INPUTS, TILE_INPUTS_LEDGER
from ruinmap.cluster.job.workdir import STORE_NAME, WORK_DIR
from ruinmap.cluster.storage.arrays import Compression, open_array
from ruinmap.cluster.storage.location import LocalPath
from ruinmap.cluster.storage.store import read_store_attrs
from ruinmap.errors import StoreError
from ruinmap.synthetic import City, make_city
from tests.support.jobs import make_job_spec

OPTIONS = IngestOptions(chunk=32, shard=64)  # 2 x 2 tiles of 64 px
LAYERS = ("score", "damage", "damage_date_index", "damage_date_earliest_index",
          "damage_date_status", "dating_state")
BUILDING_COLUMNS = ["damage_date", "damage_date_earliest", "damage_date_status", "mean_score"]


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("monitor") / "city", size=128, n_pre=6,
                     n_post=6, seed=5, destroyed_fraction=0.2, dated_destruction=True)


def _spec(city: City, out: Path, n_post: int, **params: Any) -> JobSpec:
    data = make_job_spec(city, out).to_json_dict()
    data["inputs"] = {**data["inputs"], "post": [str(p) for p in city.post_files[:n_post]]}
    data["method_params"] = {**data["method_params"], "dating": True, **params}
    return parse_spec(data, out.parent)


def _run(spec: JobSpec, client: Client) -> JobResult:
    return run_job(spec, client=client, progress=False, ingest_options=OPTIONS)


@pytest.fixture(scope="module")
def whole(city: City, dask_client: Client) -> Path:
    """A job over all 6 post dates at once."""
    out = city.out_dir.parent / "whole"
    _run(_spec(city, out, 6), dask_client)
    return out


@pytest.fixture(scope="module")
def first_five(city: City, dask_client: Client) -> Path:
    """A finished job over the first 5 post dates, never changed (tests copy it)."""
    out = city.out_dir.parent / "first_five"
    _run(_spec(city, out, 5), dask_client)
    return out


def _copy(source: Path, to: Path) -> Path:
    shutil.copytree(source, to, symlinks=True)
    return to


def _flip_a_byte(shard: Path, part: int) -> None:
    """Damage `shard` in place: flip the byte 1/`part` of the way in."""
    data = bytearray(shard.read_bytes())
    data[len(data) // part] ^= 0xFF
    shard.write_bytes(bytes(data))


def _post_shards(out: Path) -> dict[str, int]:
    folder = out / STORE_NAME / "post"
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file() and p.name != "zarr.json"}


def _layers(out: Path) -> dict[str, np.ndarray]:
    store = LocalPath(out / STORE_NAME)
    return {name: np.asarray(open_array(store, name, "r", str(out))[...]) for name in LAYERS}


def _tile_inputs(out: Path) -> dict[str, int]:
    """{file name: mtime} of the kept tile inputs (`job.tile_inputs`)."""
    return {p.name: p.stat().st_mtime_ns for p in (out / WORK_DIR / TILE_INPUTS).iterdir()}


def _kept_inputs(out: Path) -> dict[str, tuple[str, bytes]]:
    """{ledger key: (inputs digest, file bytes)} of the kept tile inputs."""
    work = out / WORK_DIR
    kept = {}
    for entry in (work / TILE_INPUTS_LEDGER).iterdir():
        body = json.loads(entry.read_text())
        role, tile = body["key"].split("-", 1)
        _, iy, ix = tile.split("/")
        data = (work / TILE_INPUTS / f"{role}_{iy}_{ix}.bin").read_bytes()
        kept[body["key"]] = (body["inputs"], data)
    return kept


def assert_same_results(out: Path, expected: Path) -> None:
    got, want = _layers(out), _layers(expected)
    for name in LAYERS:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    with rasterio.open(out / "damage_date.tif") as a, \
            rasterio.open(expected / "damage_date.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "buildings.parquet")[BUILDING_COLUMNS],
        pd.read_parquet(expected / "buildings.parquet")[BUILDING_COLUMNS])
    pd.testing.assert_frame_equal(pd.read_csv(out / "districts_timeseries.csv"),
                                  pd.read_csv(expected / "districts_timeseries.csv"))


def test_appending_a_date_equals_the_whole_series_run(
        city: City, first_five: Path, whole: Path, dask_client: Client,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = _copy(first_five, tmp_path / "monitored")
    old_shards = _post_shards(out)
    store_id = read_store_attrs(out / STORE_NAME)["store_id"]
    # the tiles continue from their kept moments and dating state: they never read the pre
    # dates again, so zeroing those in the store changes nothing
    pre = open_array(LocalPath(out / STORE_NAME), "pre", "r+", "test")
    pre[...] = 0.0
    kept_inputs = _tile_inputs(out)
    with caplog.at_level(logging.INFO, logger="ruinmap"):
        result = _run(_spec(city, out, 6), dask_client)
    assert not [r for r in caplog.records if "dating state" in r.getMessage()]
    # the date-independent inputs are read back, not made again: the same files, untouched
    assert any("4 of 4 tiles read their kept built-up mask" in r.getMessage()
               for r in caplog.records)
    assert _tile_inputs(out) == kept_inputs
    assert sum(name.startswith("mask_") for name in kept_inputs) == 4
    assert any("from its kept moments of 5 post dates" in r.getMessage()
               for r in caplog.records)
    assert result.tiles_run == result.tiles_total == 4  # the score uses every post date
    assert_same_results(out, whole)
    moments = [json.loads(p.read_text()) for p in (out / WORK_DIR / "moments-ledger").iterdir()]
    assert sorted((e["key"].split("-")[0], e.get("held")) for e in moments) == [
        *[("post0", 5)] * 4, *[("post1", 6)] * 4, *[("pre", None)] * 4]

    # only the new date was ingested: the old shards are the same files, untouched
    new_shards = _post_shards(out)
    assert {k: new_shards[k] for k in old_shards} == old_shards
    assert {k.split("/")[1] for k in set(new_shards) - set(old_shards)} == {"5"}
    attrs = read_store_attrs(out / STORE_NAME)
    assert attrs["store_id"] == store_id and attrs["complete"]
    assert sorted({s["time_index"] for s in attrs["sources"] if s["side"] == "post"}) == list(
        range(6))

    # every tile's state now holds the 6 dates
    ledger = out / WORK_DIR / "dating-ledger"
    entries = [json.loads(p.read_text()) for p in ledger.iterdir()]
    assert len(entries) == 4 and {e["dated"] for e in entries} == {6}

    runs = json.loads((out / "job.json").read_text())["runs"]
    assert [r["run"] for r in runs] == [1, 2]
    assert [len(r["added_post_dates"]) for r in runs] == [5, 1]
    assert runs[1]["added_post_dates"][0][:10] == city.post_dates[5].isoformat()
    assert [r["appended"] for r in runs] == [False, True]
    assert runs[1]["post_dates"] == 6 and runs[1]["time"] >= runs[0]["time"]

    # the same spec again: nothing to do, and no new run recorded
    again = _run(_spec(city, out, 6), dask_client)
    assert again.tiles_run == 0
    assert len(json.loads((out / "job.json").read_text())["runs"]) == 2


def test_a_damaged_dating_state_is_dated_again(
        city: City, first_five: Path, whole: Path, dask_client: Client,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = _copy(first_five, tmp_path / "damaged")
    _flip_a_byte(out / STORE_NAME / "dating_state" / "c" / "0" / "1" / "0", 2)
    with caplog.at_level(logging.WARNING, logger="ruinmap"):
        _run(_spec(city, out, 6), dask_client)
    warned = [r.getMessage() for r in caplog.records if "dating state" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "tile/1/0" in warned[0] and "does not match its checksum" in warned[0]
    assert_same_results(out, whole)


def test_damaged_kept_moments_are_folded_again(
        city: City, first_five: Path, whole: Path, dask_client: Client,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = _copy(first_five, tmp_path / "moments")
    _flip_a_byte(out / STORE_NAME / "pwtt_moments_post_0" / "c" / "0" / "0" / "1", 3)
    with caplog.at_level(logging.INFO, logger="ruinmap"):
        _run(_spec(city, out, 6), dask_client)
    messages = [r.getMessage() for r in caplog.records]
    assert any("tile/0/1: its kept moments (pwtt_moments_post_0) are missing or changed" in m
               for m in messages), messages
    assert not any("from its kept moments" in m for m in messages)
    assert_same_results(out, whole)


def test_a_damaged_kept_mask_is_made_again_with_the_same_result(
        city: City, first_five: Path, whole: Path, dask_client: Client,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = _copy(first_five, tmp_path / "mask")
    damaged = out / WORK_DIR / TILE_INPUTS / "mask_1_0.bin"
    _flip_a_byte(damaged, 2)
    with caplog.at_level(logging.INFO, logger="ruinmap"):
        _run(_spec(city, out, 6), dask_client)
    assert any("3 of 4 tiles read their kept built-up mask" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert_same_results(out, whole)
    # made again bitwise as the first run made it, and recorded whole
    assert _kept_inputs(out) == _kept_inputs(first_five)


def test_a_changed_footprint_file_makes_the_kept_masks_again(
        city: City, first_five: Path, dask_client: Client, tmp_path: Path) -> None:
    moved = gpd.read_file(city.buildings_path)
    moved.loc[0, "geometry"] = moved.geometry.iloc[0].buffer(12.0)  # one footprint grows
    footprints = tmp_path / "buildings.gpkg"
    moved.to_file(footprints)

    def spec(out: Path) -> JobSpec:
        data = _spec(city, out, 5).to_json_dict()
        data["buildings"] = {**data["buildings"], "path": str(footprints)}
        return parse_spec(data, out.parent)

    out = _copy(first_five, tmp_path / "footprints")
    before = _kept_inputs(out)
    _run(spec(out), dask_client)
    fresh = tmp_path / "fresh"
    _run(spec(fresh), dask_client)
    after = _kept_inputs(out)
    # the kept inputs are exactly those a job on the new footprints makes; some had to change
    assert after == _kept_inputs(fresh)
    assert any(after[key][0] != before[key][0] for key in after if key.startswith("mask-"))
    for name in ("score", "damage"):
        np.testing.assert_array_equal(_layers(out)[name], _layers(fresh)[name])


def test_a_damaged_state_of_a_finished_job_reruns_its_tile(
        city: City, first_five: Path, dask_client: Client, tmp_path: Path) -> None:
    out = _copy(first_five, tmp_path / "rerun")
    (out / STORE_NAME / "dating_state" / "c" / "0" / "0" / "1").write_bytes(b"garbage")
    result = _run(_spec(city, out, 5), dask_client)
    assert result.tiles_run == 1
    assert_same_results(out, first_five)


def test_a_date_before_the_last_is_not_appended(city: City, tmp_path: Path,
                                                dask_client: Client) -> None:
    post = [str(p) for p in city.post_files]
    out = tmp_path / "store.zarr"
    ingest([str(p) for p in city.pre_files], post[:2] + post[3:5], out, OPTIONS,
           client=dask_client, progress=False)
    inputs = plan_inputs([str(p) for p in city.pre_files], post[:5], OPTIONS, report=False)
    layout = StoreLayout(inputs, OPTIONS.chunk, 64, Compression.parse(OPTIONS.compression),
                         OPTIONS)
    with pytest.raises(StoreError, match="later than its last date"):
        appended_post_dates(read_store_attrs(out), layout)
