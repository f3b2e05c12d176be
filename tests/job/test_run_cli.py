"""`ruinmap run` as a user meets it: the advice of its errors is an option it takes, and a
Ctrl-C stops it cleanly (one line, status 130) and the re-run resumes to the same results."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec import JobSpec, dump_toml, parse_spec
from ruinmap.cluster.job.workdir import WORK_DIR
from ruinmap.synthetic import City
from tests.support.processes import BIN

pytestmark = pytest.mark.slow


def _ruinmap(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ruinmap"), *args], capture_output=True, text=True,
                          timeout=timeout_s)


def _job_file(path: Path, data: dict[str, object]) -> Path:
    path.write_text(dump_toml(data))
    return path


def test_changed_imagery_error_advises_an_option_ruinmap_run_takes(
    job_city: City, tmp_path: Path, dask_client: Client, job_spec_for: Callable[..., JobSpec],
) -> None:
    address = dask_client.scheduler.address
    data = job_spec_for(job_city, tmp_path / "out").to_json_dict()
    first = _ruinmap("run", str(_job_file(tmp_path / "a.toml", data)), "--scheduler", address,
                     "--no-progress")
    assert first.returncode == 0, first.stderr
    data["inputs"]["post"] = [str(p) for p in job_city.post_files[:-1]]  # other imagery
    job = _job_file(tmp_path / "b.toml", data)
    changed = _ruinmap("run", str(job), "--scheduler", address, "--no-progress")
    assert changed.returncode == 1
    assert "made from other inputs or settings" in changed.stderr
    assert "pass --overwrite to replace it (`ruinmap ingest` or `ruinmap run`)" in changed.stderr
    again = _ruinmap("run", str(job), "--scheduler", address, "--no-progress", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert "1 tile(s) computed" in again.stdout


def test_overwrite_refuses_a_job_reading_its_own_store(
    job_city: City, tmp_path: Path, job_spec_for: Callable[..., JobSpec],
) -> None:
    data = job_spec_for(job_city, tmp_path / "out").to_json_dict()
    data["inputs"] = {"store": str(tmp_path / "given.zarr")}
    result = _ruinmap("run", str(_job_file(tmp_path / "j.toml", data)), "--overwrite")
    assert result.returncode == 1
    assert "--overwrite: the job reads the store" in result.stderr


def _tables_and_score(out: Path) -> tuple[pd.DataFrame, np.ndarray]:
    with rasterio.open(out / "score.tif") as src:
        score = src.read(1)
    return pd.read_csv(out / "districts.csv"), score


def test_ctrl_c_stops_the_run_in_seconds_with_one_line_and_the_rerun_resumes(
    job_city: City, tmp_path: Path, dask_client: Client, job_spec_for: Callable[..., JobSpec],
) -> None:
    # 32 px shards: 100 tiles, so the run is still in its tiles when the signal comes
    store = tmp_path / "input.zarr"
    ingest([str(p) for p in job_city.pre_files], [str(p) for p in job_city.post_files], store,
           IngestOptions(chunk=32, shard=32), client=dask_client, progress=False)
    data = job_spec_for(job_city, tmp_path / "out").to_json_dict()
    data["inputs"] = {"store": str(store)}
    reference_dir = tmp_path / "reference"  # undisturbed, in this process
    run_job(parse_spec({**data, "output": {"dir": str(reference_dir)}}, tmp_path),
            client=dask_client, progress=False)
    expected = _tables_and_score(reference_dir)

    job = _job_file(tmp_path / "job.toml", data)
    out = tmp_path / "out"
    ledger = out / WORK_DIR / "ledger"
    # a new session: the signal goes to the whole process group, as a terminal's Ctrl-C does
    proc = subprocess.Popen([str(BIN / "ruinmap"), "run", str(job), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while not (ledger.is_dir() and len(os.listdir(ledger)) >= 2):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no tile finished in time"
        time.sleep(0.01)  # polling a condition with a deadline
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert took < 20, f"took {took:.1f} s to stop"
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines()
             if not line.startswith(("Dask dashboard:", "built-up mask:"))]
    assert lines == ["ruinmap run: interrupted; re-run the same command to resume"], stderr
    done = len([p for p in ledger.iterdir() if not p.name.startswith(".")])
    assert 0 < done < 100, "the signal came after the last tile; nothing to resume"

    rerun = _ruinmap("run", str(job), "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done} done before" in rerun.stdout
    tables, score = _tables_and_score(out)
    pd.testing.assert_frame_equal(tables, expected[0])
    np.testing.assert_array_equal(score, expected[1])
