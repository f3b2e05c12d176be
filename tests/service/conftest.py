"""Fixtures of the job-service tests: real processes on 127.0.0.1 only.

- `dask_scheduler`: a `dask scheduler` and two `dask worker` processes (session);
- `service_city`: a 256 x 256 px synthetic city (3 pre, 2 post dates) in a data root; with
  64 px shards a job on it has 16 tiles;
- `start_service(folder, **config)`: `ruinmap serve` in a subprocess on a free port, with a
  service.toml written into `folder` (data root = the city's root, output root and job store
  inside `folder`), connected to `dask_scheduler`; returns a `Service` (url, kill, restart);
- `service`: one such service for the session (tokens TOKEN and TOKEN_2, max_running 4);
- `private_service`: one more for the session whose reads need a token (public_read off);
- `city_spec`: the city's job spec as the JSON `inputs` of an execute request;
- `tiny_city` / `tiny_spec`: a 64 x 64 px city (one tile) and its inputs without buildings;
- `finished_job`: that job run once through `service`, undisturbed (status info).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ruinmap.synthetic import City, make_city
from tests.support.processes import dask_cli_processes, free_port
from tests.support.service import (
    CITY_SIZE,
    ENV,
    DaskCluster,
    Service,
    spec_inputs,
    submit,
    wait_final,
    write_config,
)


@pytest.fixture(scope="session")
def dask_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with dask_cli_processes(tmp_path_factory.mktemp("dask"), ENV) as (address, scheduler_file):
        yield DaskCluster(address, scheduler_file)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def service_city(data_root: Path) -> City:
    return make_city(data_root / "city", size=CITY_SIZE, seed=5, n_pre=3, n_post=2)




@pytest.fixture(scope="session")
def tiny_city(data_root: Path) -> City:
    """A 64 x 64 px city: a one-tile job, for many or quick submissions."""
    return make_city(data_root / "tiny", size=64, seed=9, n_pre=3, n_post=2, n_districts=3)


@pytest.fixture(scope="session")
def tiny_spec(tiny_city: City, data_root: Path) -> dict[str, Any]:
    """The tiny city's job inputs, without building footprints (fewer products to write)."""
    inputs = spec_inputs(tiny_city, data_root)
    inputs.pop("buildings", None)
    return inputs


@pytest.fixture(scope="session")
def city_spec(service_city: City, data_root: Path) -> dict[str, Any]:
    return spec_inputs(service_city, data_root)






@pytest.fixture(scope="session")
def start_service(dask_scheduler: DaskCluster, data_root: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(folder: Path, **settings: Any) -> Service:
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        settings = {"server.public_url": f"http://127.0.0.1:{port}", **settings}
        service = Service(folder, write_config(folder, data_root, **settings),
                          dask_scheduler.address, port=port)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def service(start_service: Callable[..., Service],
            tmp_path_factory: pytest.TempPathFactory) -> Service:
    return start_service(tmp_path_factory.mktemp("service"))








@pytest.fixture(scope="session")
def private_service(start_service: Callable[..., Service],
                    tmp_path_factory: pytest.TempPathFactory) -> Service:
    """A second service whose reads need a token too (`auth.public_read = false`)."""
    return start_service(tmp_path_factory.mktemp("private"), auth__public_read=False)


@pytest.fixture(scope="session")
def finished_job(service: Service, city_spec: dict[str, Any]) -> dict[str, Any]:
    response = submit(service, {**city_spec, "output": {"dir": "undisturbed"}})
    assert response.status_code == 201, response.text
    info = wait_final(service, response.json()["jobID"])
    assert info["status"] == "successful", info
    return info
