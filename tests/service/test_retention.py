"""`jobs.retention_days`: ended jobs are forgotten, with their folders, that long after they
end; active jobs never are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ruinmap.cluster.service.config import load_config
from ruinmap.cluster.service.jobstore import JobStore
from ruinmap.errors import SpecError
from tests.support.service import Service, submit, wait_final, wait_for


def test_ended_jobs_are_removed_after_the_retention(start_service: Callable[..., Service],
                                                    city_spec: dict[str, Any],
                                                    tmp_path: Path) -> None:
    # 2e-5 days = 1.7 s: the job must first finish, then disappear with its folder
    service = start_service(tmp_path / "svc", **{"jobs.retention_days": 2e-5})
    job_id = submit(service, {**city_spec, "output": {"dir": "short-lived"}}).json()["jobID"]
    assert wait_final(service, job_id)["status"] == "successful"
    folder = service.output_root / "short-lived"
    assert (folder / "job.json").is_file()
    wait_for(lambda: httpx.get(f"{service.url}/jobs/{job_id}").status_code == 404, 60,
             "the job's removal")
    assert not folder.exists()


def test_active_jobs_are_never_deleted(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create("damage-map", {}, tmp_path / "a")
    assert not store.delete(job.id)
    assert store.ended_before("9999-01-01T00:00:00.000Z") == []
    store.mark_running(job.id)
    store.mark_failed(job.id, "x")
    assert [j.id for j in store.ended_before("9999-01-01T00:00:00.000Z")] == [job.id]
    assert store.delete(job.id) and store.get(job.id) is None


@pytest.mark.parametrize("days", ["-1", "1e9"])
def test_retention_must_be_a_sane_number_of_days(tmp_path: Path, days: str) -> None:
    config = tmp_path / "service.toml"
    config.write_text(f"[jobs]\nretention_days = {days}\n")
    with pytest.raises(SpecError, match="retention_days"):
        load_config(config)
