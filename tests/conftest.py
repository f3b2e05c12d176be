"""Shared fixtures: real GeoTIFFs in tmp dirs and one real local Dask cluster per session.

- `write_geotiff(path, data, ...)`: write a (bands, rows, cols) or (rows, cols) array as a
  GeoTIFF with rasterio and return its path (a plain function, also a fixture);
- `local_cluster` / `dask_client`: one LocalCluster for the whole session, 2 worker processes
  with 1 thread each, listening on 127.0.0.1, no dashboard. Tests share it, so they must not
  close it or change its workers.
- `shared_data`: the path of ../shared/data (tests skip cleanly when a data set is absent).

Under `pytest -n 2 --dist loadgroup` (`make test`) each file is one xdist group, except that the
files using a session fixture of a folder's conftest form one group per folder (below).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from tests.support.rasters import SHARED_DATA, write_geotiff


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for `--dist loadgroup`: one per file, so a file's module fixtures are made once
    (as `--dist loadfile`), but one per folder for the files that use a session fixture of
    that folder's conftest (`tests/job`'s `job_run`, `tests/outputs`' `products_run`,
    `tests/validation`'s `city_run`, `tests/service`'s scheduler and services): each of those
    is then built by one test process instead of by every process that runs such a file."""
    if config.getoption("dist", "no") != "loadgroup":
        return
    group_of_file = {item.nodeid.split("::")[0]: item.nodeid.split("::")[0] for item in items}
    for item in items:
        folder = _folder_with_session_fixture(item)
        if folder is not None:
            group_of_file[item.nodeid.split("::")[0]] = folder
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group_of_file[item.nodeid.split("::")[0]]))
    # folder groups first: xdist hands out groups in this order, and a long one handed out
    # last would leave the other process idle at the end
    is_file_group = {file: group == file for file, group in group_of_file.items()}
    items.sort(key=lambda item: is_file_group[item.nodeid.split("::")[0]])


def _folder_with_session_fixture(item: pytest.Item) -> str | None:
    """The folder (node id, e.g. "tests/job") whose conftest defines a session fixture the
    item uses; None when it uses only this file's, plugins' or tests/conftest.py's."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for definitions in info.name2fixturedefs.values():
        for definition in definitions:
            base = definition.baseid
            if definition.scope == "session" and base not in ("", "tests") \
                    and not base.endswith(".py"):
                return str(base)
    return None


@pytest.fixture(name="write_geotiff")
def write_geotiff_fixture() -> object:
    return write_geotiff


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": False},
        env={"GDAL_CACHEMAX": "64", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"},
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def dask_client(local_cluster: LocalCluster) -> Iterator[Client]:
    with Client(local_cluster) as client:
        yield client


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


