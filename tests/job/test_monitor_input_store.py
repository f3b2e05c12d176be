"""Monitoring a store the user ingests (`ruinmap ingest`, named in `inputs.store`): ingesting
again with a later post-event file grows the store by that date's shards only
(`ingest.append.ingest_or_append`), and the job over it then appends, equal to a job over a
store ingested with every date at once.

The dated synthetic city of `test_monitor` (128 px, 2 x 2 tiles, 6 pre and 6 post dates).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions, ingest_or_append
from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec import JobSpec, parse_spec
from ruinmap.cluster.storage.store import read_store_attrs
from ruinmap.synthetic import City, make_city
from tests.job.test_monitor import assert_same_results
from tests.support.jobs import make_job_spec

OPTIONS = IngestOptions(chunk=32, shard=64)  # 2 x 2 tiles of 64 px


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("monitor_store") / "city", size=128, n_pre=6,
                     n_post=6, seed=5, destroyed_fraction=0.2, dated_destruction=True)


def _ingest(city: City, store: Path, n_post: int, client: Client) -> list[str]:
    report = ingest_or_append(city.pre_files, city.post_files[:n_post], store, OPTIONS,
                              client=client, progress=False)
    return report.notes


def _spec(city: City, store: Path, out: Path) -> JobSpec:
    data = make_job_spec(city, out).to_json_dict()
    data["inputs"] = {"store": str(store)}
    data["method_params"] = {**data["method_params"], "dating": True}
    return parse_spec(data, out.parent)


def _shard_times(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns
            for side in ("pre", "post") for p in (store / side).rglob("*")
            if p.is_file() and p.name != "zarr.json"}


def test_a_user_store_grown_by_ingest_is_appended_by_its_job(
        city: City, tmp_path: Path, dask_client: Client,
        caplog: pytest.LogCaptureFixture) -> None:
    store, out = tmp_path / "store.zarr", tmp_path / "out"
    _ingest(city, store, 5, dask_client)
    run_job(_spec(city, store, out), client=dask_client, progress=False)
    before = _shard_times(store)

    # `ruinmap ingest` again, the sixth post file given: the store grows by it
    done = subprocess.run(
        [sys.executable, "-m", "ruinmap", "ingest", "--pre", *map(str, city.pre_files),
         "--post", *map(str, city.post_files), "--out", str(store), "--chunk", "32",
         "--shard", "64", "--scheduler", dask_client.scheduler.address, "--no-progress"],
        capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "appended 1 post-event date(s)" in done.stdout, done.stdout
    assert "post 6 date(s)" in done.stdout, done.stdout
    after = _shard_times(store)
    assert {k: after[k] for k in before} == before  # no old shard rewritten
    assert len(after) == len(before) + 4  # one date: 2 x 2 shards
    assert len([s for s in read_store_attrs(store)["sources"] if s["side"] == "post"]) == 6

    # the job over the grown store appends, continuing from its kept moments
    with caplog.at_level(logging.INFO, logger="ruinmap"):
        result = run_job(_spec(city, store, out), client=dask_client, progress=False)
    assert "continuing every tile from its kept moments of 5 post dates" in caplog.text
    assert result.tiles_run == 4

    # equal to the same job over a store of every date at once
    whole_store, whole_out = tmp_path / "whole.zarr", tmp_path / "whole"
    _ingest(city, whole_store, 6, dask_client)
    run_job(_spec(city, whole_store, whole_out), client=dask_client, progress=False)
    assert_same_results(out, whole_out)


def test_ingest_again_with_the_same_files_changes_nothing(
        city: City, tmp_path: Path, dask_client: Client) -> None:
    store = tmp_path / "store.zarr"
    _ingest(city, store, 6, dask_client)
    before = _shard_times(store)
    notes = _ingest(city, store, 6, dask_client)
    assert any("store already complete; nothing to do" in n for n in notes), notes
    assert _shard_times(store) == before
