"""Fixtures of the pipeline tests.

- `job_city`: one small synthetic city (320 x 320 px, 10 m) for the whole session;
- `job_spec_for`: a function (city, out_dir, **changes) -> the city's job spec with results
  in `out_dir`;
- `job_run`: the pwtt job run once on `dask_client` with 128 px shards (3 x 3 tiles,
  the last row and column 64 px, 100 m grid cells cut by tile edges);
- `job_run_other_tiles`: the same job ingested with 32 px chunks and 96 px shards (4 x 4 tiles);
- `dask_cli_cluster`: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.synthetic import City, make_city
from tests.support.jobs import CITY_SIZE, SHARD, make_job_spec
from tests.support.processes import dask_cli_processes


@pytest.fixture(name="job_spec_for", scope="session")
def job_spec_for_fixture() -> Callable[..., JobSpec]:
    return make_job_spec


@pytest.fixture(scope="session")
def job_city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("pipeline") / "city", size=CITY_SIZE, seed=3)


@pytest.fixture(scope="session")
def job_run(job_city: City, dask_client: Client) -> JobResult:
    out = job_city.out_dir.parent / "run_a"
    spec = make_job_spec(job_city, out)
    return run_job(spec, client=dask_client, progress=False,
                   ingest_options=IngestOptions(chunk=64, shard=SHARD))


@pytest.fixture(scope="session")
def job_run_other_tiles(job_city: City, dask_client: Client) -> JobResult:
    """The same job ingested with 32 px chunks and 96 px shards (4 x 4 tiles cut elsewhere):
    for chunking invariance, and a second store other jobs can read without an ingest."""
    out = job_city.out_dir.parent / "run_chunks"
    return run_job(make_job_spec(job_city, out), client=dask_client, progress=False,
                   ingest_options=IngestOptions(chunk=32, shard=96))


@pytest.fixture(scope="session")
def dask_cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a `dask scheduler` with two `dask worker` processes, all on 127.0.0.1."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "GDAL_CACHEMAX": "64"}
    with dask_cli_processes(tmp_path_factory.mktemp("dask_cli"), env) as (address, _):
        yield address
