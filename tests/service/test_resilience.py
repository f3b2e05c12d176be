"""The job service under failure and load: a worker SIGKILLed mid-job, the service SIGKILLed
mid-job and restarted, a running job dismissed, 30 concurrent submissions."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import rasterio

from tests.support.service import (
    AUTH,
    TILES,
    DaskCluster,
    Service,
    ledger_count,
    submit,
    wait_final,
    wait_for,
)

pytestmark = pytest.mark.slow


def _read_band(path: Path, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as src:
        return np.asarray(src.read(band))


def _assert_same_outputs(a: Path, b: Path) -> None:
    for name in ("score.tif", "damage.tif"):
        assert np.array_equal(_read_band(a / name), _read_band(b / name), equal_nan=True), name
    for band in (1, 2):
        assert np.array_equal(_read_band(a / "grid.tif", band), _read_band(b / "grid.tif", band),
                              equal_nan=True)
    pd.testing.assert_frame_equal(pd.read_csv(a / "districts.csv"),
                                  pd.read_csv(b / "districts.csv"))
    pd.testing.assert_frame_equal(pd.read_parquet(a / "buildings.parquet"),
                                  pd.read_parquet(b / "buildings.parquet"))


def _settled_ledger(output_dir: Path) -> dict[str, int]:
    """The ledger once it stops changing (tasks already on workers may still record)."""
    ledger = output_dir / ".ruinmap-job" / "ledger"
    state: dict[str, dict[str, int]] = {"last": {}}

    def stable() -> dict[str, int] | None:
        now = {p.name: p.stat().st_mtime_ns for p in ledger.iterdir()
               if not p.name.startswith(".")}
        if now == state["last"]:
            return now
        state["last"] = now
        return None

    return dict(wait_for(stable, 60, "the ledger to settle", interval_s=0.75))


def test_worker_killed_mid_job_still_succeeds_with_the_same_outputs(
    service: Service, dask_scheduler: DaskCluster, city_spec: dict[str, Any],
    finished_job: dict[str, Any],
) -> None:
    out = service.output_root / "worker-killed"
    response = submit(service, {**city_spec, "output": {"dir": out.name}})
    assert response.status_code == 201, response.text
    with dask_scheduler.client() as client:
        pids = client.run(os.getpid)
        wait_for(lambda: ledger_count(out) >= 1, 120, "the first tile", interval_s=0.005)
        victim = next(iter(pids.values()))
        os.kill(victim, signal.SIGKILL)
        done_at_kill = ledger_count(out)
        assert done_at_kill < TILES, "the job finished before the kill; nothing was tested"
        info = wait_final(service, response.json()["jobID"])
        assert info["status"] == "successful", info
        assert info["ruinmap"]["tiles_run"] == TILES
        # the nanny brings a fresh worker process back
        client.wait_for_workers(2, timeout=60)
        assert victim not in client.run(os.getpid).values()
    _assert_same_outputs(out, service.output_root / "undisturbed")


def _job_row(db: Path, job_id: str) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return dict(row)


def test_service_killed_mid_job_resumes_after_restart_without_recomputing(
    start_service: Callable[..., Service], tmp_path: Path, city_spec: dict[str, Any],
    finished_job: dict[str, Any], service: Service,
) -> None:
    restarted = start_service(tmp_path / "svc", jobs__max_running=1)
    first = submit(restarted, {**city_spec, "output": {"dir": "first"}})
    queued = submit(restarted, {**city_spec, "output": {"dir": "queued"}})
    assert first.status_code == queued.status_code == 201
    first_id, queued_id = first.json()["jobID"], queued.json()["jobID"]
    out = restarted.output_root / "first"
    wait_for(lambda: ledger_count(out) >= 2, 120, "two finished tiles", interval_s=0.005)
    restarted.kill()
    before = _settled_ledger(out)
    assert 0 < len(before) < TILES, "the kill came after the last tile; nothing to resume"
    db = restarted.folder / "jobs.sqlite"
    assert _job_row(db, first_id)["status"] == "running"
    assert _job_row(db, queued_id)["status"] == "accepted"

    restarted.start()  # same job store, same output root
    info = wait_final(restarted, first_id)
    assert info["status"] == "successful", info
    assert info["ruinmap"]["runs"] == 2
    assert info["ruinmap"]["tiles_run"] == TILES - len(before)  # finished tiles kept
    after = {p.name: p.stat().st_mtime_ns for p in (out / ".ruinmap-job" / "ledger").iterdir()}
    assert all(after[name] == mtime for name, mtime in before.items())
    queued_info = wait_final(restarted, queued_id)
    assert queued_info["status"] == "successful" and queued_info["ruinmap"]["runs"] == 1
    _assert_same_outputs(out, service.output_root / "undisturbed")
    with restarted.http() as http:
        jobs = http.get("/jobs").json()["jobs"]
    assert sorted(j["jobID"] for j in jobs) == sorted([first_id, queued_id])


def test_dismissing_a_running_job_stops_its_tasks_and_removes_its_outputs(
    service: Service, dask_scheduler: DaskCluster, city_spec: dict[str, Any],
) -> None:
    out = service.output_root / "dismissed"
    response = submit(service, {**city_spec, "output": {"dir": out.name}})
    job_id = response.json()["jobID"]
    wait_for(lambda: ledger_count(out) >= 1, 120, "the first tile", interval_s=0.005)
    # the job's tile tasks are keyed ruinmap-tile-<signature>-<row>-<col>
    signature = json.loads((out / ".ruinmap-job" / "job.json").read_text())["signature"]
    prefix = f"ruinmap-tile-{signature}-"
    with httpx.Client(base_url=service.url, headers=AUTH) as http:
        dismissed = http.delete(f"/jobs/{job_id}")
        done_at_dismissal = ledger_count(out)
        assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
        assert done_at_dismissal < TILES, "the job finished before the dismissal"
        wait_for(lambda: not out.exists(), 60, "the outputs to be removed")
        with dask_scheduler.client() as client:
            # no task of the job is left on the scheduler or running on a worker
            on_scheduler = client.run_on_scheduler(
                lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
            assert not [k for k in on_scheduler if k.startswith(prefix)]
            on_workers = client.run(lambda dask_worker: [
                str(k) for k, ts in dask_worker.state.tasks.items()
                if str(k).startswith(prefix) and ts.state in ("executing", "cancelled")])
            assert not any(on_workers.values())
        assert not out.exists()  # nothing wrote it back
        status = http.get(f"/jobs/{job_id}").json()
        assert status["status"] == "dismissed"
        assert http.get(f"/jobs/{job_id}/results").status_code == 410


#: as many as the issue's hostile tester sent at once; each is a whole job on the cluster
N_CONCURRENT = 30


def test_thirty_concurrent_submissions_are_all_accepted_and_finished_once(
    service: Service, tiny_spec: dict[str, Any],
) -> None:
    inputs = tiny_spec

    def post(i: int) -> httpx.Response:
        return submit(service, {**inputs, "output": {"dir": f"many/{i:02d}"}})

    with ThreadPoolExecutor(max_workers=N_CONCURRENT) as pool:
        responses = list(pool.map(post, range(N_CONCURRENT)))
    assert [r.status_code for r in responses] == [201] * N_CONCURRENT, [r.text for r in responses
                                                              if r.status_code != 201][:2]
    ids = [r.json()["jobID"] for r in responses]
    assert len(set(ids)) == N_CONCURRENT
    finals = [wait_final(service, job_id, deadline_s=240) for job_id in ids]
    assert [f["status"] for f in finals] == ["successful"] * N_CONCURRENT
    assert all(f["ruinmap"]["runs"] == 1 and f["ruinmap"]["tiles_run"] == 1 for f in finals)
    with httpx.Client(base_url=service.url) as http:
        listed = http.get("/jobs", params={"limit": 1000}).json()["jobs"]
    listed_ids = [j["jobID"] for j in listed if j["jobID"] in set(ids)]
    assert sorted(listed_ids) == sorted(ids)  # each exactly once
    for i in range(N_CONCURRENT):
        assert (service.output_root / "many" / f"{i:02d}" / "districts.csv").is_file()
