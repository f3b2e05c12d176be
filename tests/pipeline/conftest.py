"""Fixtures of the pipeline tests.

- `pipeline_city`: one small synthetic city (320 x 320 px, 10 m) for the whole session;
- `job_spec_for`: a function (city, out_dir, **changes) -> the city's job spec with results
  in `out_dir`;
- `pipeline_run`: the pwtt job run once on `dask_client` with 128 px shards (3 x 3 tiles,
  the last row and column 64 px, 100 m grid cells cut by tile edges);
- `dask_cli_cluster`: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import dask_cli_processes
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.pipeline import JobResult, run_job
from ruinmap.cluster.spec import JobSpec, load_spec, parse_spec
from ruinmap.cluster.synthetic import City, make_city, write_job_spec

CITY_SIZE = 320
SHARD = 128
BIN = Path(sys.executable).parent


def _job_spec_for(city: City, out_dir: Path, **changes: Any) -> JobSpec:
    """The city's pwtt job with results in `out_dir`; `changes` replace top-level tables."""
    base = load_spec(write_job_spec(city, out_dir.parent, name=f"{out_dir.name}.toml"))
    data = base.to_json_dict()
    data["output"] = {"dir": str(out_dir)}
    data.update(changes)
    return parse_spec(data, out_dir.parent)


@pytest.fixture(name="job_spec_for", scope="session")
def job_spec_for_fixture() -> Callable[..., JobSpec]:
    return _job_spec_for


@pytest.fixture(scope="session")
def pipeline_city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("pipeline") / "city", size=CITY_SIZE, seed=3)


@pytest.fixture(scope="session")
def pipeline_run(pipeline_city: City, dask_client: Client) -> JobResult:
    out = pipeline_city.out_dir.parent / "run_a"
    spec = _job_spec_for(pipeline_city, out)
    return run_job(spec, client=dask_client, progress=False,
                   ingest_options=IngestOptions(chunk=64, shard=SHARD))


@pytest.fixture(scope="session")
def dask_cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a `dask scheduler` with two `dask worker` processes, all on 127.0.0.1."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "GDAL_CACHEMAX": "64"}
    with dask_cli_processes(tmp_path_factory.mktemp("dask_cli"), env) as (address, _):
        yield address
