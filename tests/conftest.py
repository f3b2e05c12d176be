"""Shared fixtures: real GeoTIFFs in tmp dirs and one real local Dask cluster per session.

- `write_geotiff(path, data, ...)`: write a (bands, rows, cols) or (rows, cols) array as a
  GeoTIFF with rasterio and return its path (a plain function, also a fixture);
- `local_cluster` / `dask_client`: one LocalCluster for the whole session, 2 worker processes
  with 1 thread each, listening on 127.0.0.1, no dashboard. Tests share it, so they must not
  close it or change its workers.
- `shared_data`: the path of ../shared/data (tests skip cleanly when a data set is absent).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from tests.support.rasters import SHARED_DATA, write_geotiff


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


