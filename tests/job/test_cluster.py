"""`ruinmap run` on a real `dask scheduler` with two `dask worker` processes, and resuming a
run killed mid-way (SIGKILL) without recomputing its finished tiles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client

from ruinmap.cluster.compute.stragglers import wait_for_stragglers
from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.job.spec import JobSpec, dump_toml
from ruinmap.cluster.job.workdir import WORK_DIR
from ruinmap.synthetic import City
from tests.support.processes import BIN

pytestmark = pytest.mark.slow




def _ruinmap(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "ruinmap"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _job_on_store(city: City, folder: Path, shard: int, address: str,
                  job_spec_for: Callable[..., JobSpec]) -> tuple[Path, Path]:
    """A job file reading a store ingested with `shard` px shards (many small tiles)."""
    store = folder / "input.zarr"
    ingest([str(p) for p in city.pre_files], [str(p) for p in city.post_files], store,
           IngestOptions(chunk=shard, shard=shard), scheduler=address, progress=False)
    out = folder / "out"
    data = job_spec_for(city, out).to_json_dict()
    data["inputs"] = {"store": str(store)}
    data["cluster"] = {"address": address}
    data["mask"] = {"source": "none"}  # every pixel scored: the last check counts them all
    job = folder / "job.toml"
    job.write_text(dump_toml(data))
    return job, out


def test_run_on_a_dask_scheduler_and_two_workers(
    job_city: City, dask_cli_cluster: str, tmp_path: Path,
    job_spec_for: Callable[..., JobSpec],
) -> None:
    job, out = _job_on_store(job_city, tmp_path, 128, dask_cli_cluster, job_spec_for)
    proc = _ruinmap("run", str(job), "--scheduler", dask_cli_cluster, "--no-progress")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "Damage by district" in stdout and "9 tile(s) computed" in stdout
    hosts = {json.loads(p.read_text())["pid"] for p in (out / WORK_DIR / "ledger").iterdir()}
    assert len(hosts) == 2  # both workers took tiles
    for name in ("score.tif", "damage.tif", "grid.tif", "districts.parquet", "map.png",
                 "job.json", "buildings.parquet", "districts.csv", "districts.geojson"):
        assert (out / name).is_file(), name


def test_killed_run_resumes_without_recomputing_finished_tiles(
    job_city: City, dask_cli_cluster: str, tmp_path: Path,
    job_spec_for: Callable[..., JobSpec],
) -> None:
    job, out = _job_on_store(job_city, tmp_path, 64, dask_cli_cluster, job_spec_for)
    ledger = out / WORK_DIR / "ledger"
    proc = _ruinmap("run", str(job), "--no-progress")
    deadline = time.monotonic() + 180
    while not (ledger.is_dir() and len(os.listdir(ledger)) >= 3):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no tile finished in time"
        time.sleep(0.005)  # polling a condition with a deadline
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    # tasks already running on the workers may still finish and record themselves
    with Client(dask_cli_cluster) as client:
        wait_for_stragglers(client, "ruinmap-tile-", timeout_s=60, poll_s=0.05)
    before = {p.name: p.stat().st_mtime_ns for p in ledger.iterdir() if not p.name.startswith(".")}
    total = 25  # 320 px in 64 px tiles
    assert 0 < len(before) < total, "the kill came after the last tile; nothing to resume"
    partials = {p.name: p.stat().st_mtime_ns for p in (out / WORK_DIR / "partials").iterdir()}

    rerun = _ruinmap("run", str(job), "--no-progress")
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert f"{total - len(before)} tile(s) computed, {len(before)} done before" in stdout
    after = {p.name: p.stat().st_mtime_ns for p in ledger.iterdir()}
    assert all(after[name] == mtime for name, mtime in before.items())
    for name, mtime in partials.items():
        if name.replace("tile_", "tile+").replace("_", "+").removesuffix(".npz") in before:
            assert (out / WORK_DIR / "partials" / name).stat().st_mtime_ns == mtime
    score = zarr.open_array(store=str(out / "store.zarr"), path="score", mode="r")[...]
    assert np.isfinite(score).mean() > 0.9  # every tile's output is there


def test_demo_command_on_the_cluster_reports_accuracy(
    dask_cli_cluster: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruinmap", "demo", "--size", "256", "--out", str(tmp_path),
         "--scheduler", dask_cli_cluster, "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "building AUC" in proc.stdout and (tmp_path / "out" / "map.png").is_file()
