"""Fixtures of the validation tests: one small synthetic city, mapped once with pwtt.

- `city`: 320 x 320 px at 10 m near Aleppo (EPSG:32637), seed 5, with its truth files;
- `city_run`: the pwtt job run on `dask_client`; its results folder holds buildings.parquet.
"""

from __future__ import annotations

import pytest
from distributed import Client

from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.synthetic import City, make_city
from tests.support.jobs import CITY_SIZE, make_job_spec


@pytest.fixture(scope="session")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("validation") / "city", size=CITY_SIZE, seed=5)


@pytest.fixture(scope="session")
def city_run(city: City, dask_client: Client) -> JobResult:
    spec = make_job_spec(city, city.out_dir.parent / "run")
    return run_job(spec, client=dask_client, progress=False)
