"""A job's budget (pixels, dates, tasks) checked on the headers before any pixel moves."""

from __future__ import annotations

from pathlib import Path

import pytest
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.budget import JobBudget, check_budget, planned_tasks
from ruinmap.cluster.job.preflight import imagery_header
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec.files import validate_spec_files
from ruinmap.errors import SpecError
from ruinmap.synthetic import City
from tests.support.jobs import SHARD, make_job_spec

_OPTIONS = IngestOptions(chunk=64, shard=SHARD)
_ROOMY = JobBudget(max_pixels=10**12, max_dates=10**6, max_tasks=10**9)


def test_the_planned_tasks_are_the_ingest_shards_and_tiles_a_run_sends(
        job_city: City, job_run: JobResult, tmp_path: Path) -> None:
    spec = make_job_spec(job_city, tmp_path / "out")
    header = imagery_header(validate_spec_files(spec), _OPTIONS)
    dates = sum(header.n_dates.values())
    shards = -(-header.grid.height // SHARD) * -(-header.grid.width // SHARD)
    assert planned_tasks(header) == shards * dates + job_run.tiles_total
    stored = make_job_spec(job_city, tmp_path / "out2", inputs={"store": str(job_run.store)})
    ingested = imagery_header(validate_spec_files(stored), _OPTIONS)
    assert ingested.ingested and planned_tasks(ingested) == job_run.tiles_total


@pytest.mark.parametrize("key", ["max_pixels", "max_dates", "max_tasks"])
@pytest.mark.parametrize("below", [1, 0])  # at the limit passes; one under it fails
def test_each_limit_is_named_when_broken(job_city: City, tmp_path: Path, key: str,
                                         below: int) -> None:
    spec = make_job_spec(job_city, tmp_path / "out")
    header = imagery_header(validate_spec_files(spec), _OPTIONS)
    need = {"max_pixels": header.grid.width * header.grid.height,
            "max_dates": sum(header.n_dates.values()),
            "max_tasks": planned_tasks(header)}[key]
    budget = JobBudget(**{**_ROOMY.__dict__, key: need - below})
    if below == 0:
        check_budget(budget, header)
        return
    with pytest.raises(SpecError, match=rf"{key} = {need - 1:,} in the service's") as err:
        check_budget(budget, header)
    assert f"{need:,}" in str(err.value)


def test_run_job_refuses_a_job_over_its_budget_before_any_work(
        job_city: City, dask_client: Client, tmp_path: Path) -> None:
    spec = make_job_spec(job_city, tmp_path / "out")
    with pytest.raises(SpecError, match="max_dates = 1 in"):
        run_job(spec, client=dask_client, progress=False, ingest_options=_OPTIONS,
                budget=JobBudget(max_pixels=10**12, max_dates=1, max_tasks=10**9))
    assert not (tmp_path / "out").exists()  # nothing written: not even the folder
