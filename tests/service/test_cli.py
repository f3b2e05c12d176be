"""The client commands against a real service: submit --wait, jobs, status, results, cancel."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ruinmap.cluster.job.spec import dump_toml
from ruinmap.cluster.outputs.stac import validate_catalog
from tests.support.processes import BIN
from tests.support.service import ENV, TOKEN, Service, wait_final

pytestmark = pytest.mark.slow



def _ruinmap(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in ENV.items() if k != "RUINMAP_TOKEN"}
    if token is not None:
        env["RUINMAP_TOKEN"] = token
    return subprocess.run([str(BIN / "ruinmap"), *args], capture_output=True, text=True,
                          env=env, timeout=180)


def _job_file(folder: Path, inputs: dict[str, Any], out: str) -> Path:
    job = folder / f"{out}.toml"
    job.write_text(dump_toml({**inputs, "output": {"dir": out},
                              "cluster": {"address": "tcp://10.0.0.1:8786"}}))
    return job


def test_submit_wait_then_status_jobs_and_results(
    service: Service, tiny_spec: dict[str, Any], tmp_path: Path
) -> None:
    job = _job_file(tmp_path, tiny_spec, "cli-run")
    submitted = _ruinmap("submit", str(job), "--url", service.url, "--wait", "--json",
                         token=TOKEN)
    assert submitted.returncode == 0, submitted.stderr
    info = json.loads(submitted.stdout)
    assert info["status"] == "successful" and info["progress"] == 100
    job_id = info["jobID"]

    status = _ruinmap("status", job_id, "--url", service.url)
    assert status.returncode == 0 and job_id in status.stdout and "successful" in status.stdout
    listed = _ruinmap("jobs", "--url", service.url)
    assert listed.returncode == 0 and job_id in listed.stdout

    out = tmp_path / "downloaded"
    results = _ruinmap("results", job_id, "--out", str(out), "--url", service.url)
    assert results.returncode == 0, results.stderr
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    made = service.output_root / "cli-run"
    assert {"score.tif", "damage.tif", "damage.tif.aux.xml", "damage.qml", "grid.tif",
            "grid.qml", "districts.csv", "districts.geojson", "districts.parquet",
            "districts.gpkg", "districts_hxl.csv", "map.png", "districts.png",
            "score_hist.png", "job.json", "stac/collection.json"} <= names
    assert any(n.startswith("stac/") and n != "stac/collection.json" for n in names)
    for name in names:  # byte for byte what the service wrote, where it wrote it
        assert (out / name).read_bytes() == (made / name).read_bytes()
    validate_catalog(out / "stac" / "collection.json")  # its relative links still resolve


def test_submit_without_wait_prints_the_id_and_cancel_dismisses(
    service: Service, tiny_spec: dict[str, Any], tmp_path: Path
) -> None:
    job = _job_file(tmp_path, tiny_spec, "cli-cancel")
    submitted = _ruinmap("submit", str(job), "--url", service.url, "--token", TOKEN)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    cancelled = _ruinmap("cancel", job_id, "--url", service.url, token=TOKEN)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "dismissed" in cancelled.stdout
    assert wait_final(service, job_id)["status"] == "dismissed"


def test_client_errors_are_clear(service: Service, tiny_spec: dict[str, Any],
                                 tmp_path: Path) -> None:
    job = _job_file(tmp_path, tiny_spec, "cli-errors")
    no_token = _ruinmap("submit", str(job), "--url", service.url)
    assert no_token.returncode == 1
    assert "401" in no_token.stderr and "--token or set RUINMAP_TOKEN" in no_token.stderr

    bad = _job_file(tmp_path, {**tiny_spec, "method": "magic"}, "cli-bad")
    invalid = _ruinmap("submit", str(bad), "--url", service.url, token=TOKEN)
    assert invalid.returncode == 1 and "400" in invalid.stderr and "method" in invalid.stderr

    unknown = _ruinmap("status", "nope", "--url", service.url)
    assert unknown.returncode == 1 and "404" in unknown.stderr

    down = _ruinmap("jobs", "--url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "cannot reach the job service" in down.stderr
