"""Shared fixtures: real GeoTIFFs in tmp dirs and one real local Dask cluster per session.

- `write_geotiff(path, data, ...)`: write a (bands, rows, cols) or (rows, cols) array as a
  GeoTIFF with rasterio and return its path (a plain function, also a fixture);
- `local_cluster` / `dask_client`: one LocalCluster for the whole session, 2 worker processes
  with 1 thread each, listening on 127.0.0.1, no dashboard. Tests share it, so they must not
  close it or change its workers.
- `shared_data`: the path of ../shared/data (tests skip cleanly when a data set is absent).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from distributed import Client, LocalCluster
from rasterio.transform import from_origin

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_TRANSFORM = from_origin(500000.0, 4000000.0, 10.0, 10.0)


def write_geotiff(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32636",
    transform: Affine = DEFAULT_TRANSFORM,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    tags: Mapping[str, str] | None = None,
    block: int | None = 64,
    compress: str | None = None,
) -> Path:
    """Write `data` ((bands,) rows, cols) as a GeoTIFF; tiled in `block` px squares unless None."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(data)
    if array.ndim == 2:
        array = array[np.newaxis]
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": array.shape[2],
        "height": array.shape[1],
        "count": array.shape[0],
        "dtype": array.dtype,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    if block is not None and array.shape[1] >= block and array.shape[2] >= block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    if compress is not None:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        if descriptions is not None:
            dst.descriptions = tuple(descriptions)
        if tags:
            dst.update_tags(**tags)
    return path


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


@contextlib.contextmanager
def dask_cli_processes(folder: Path, env: Mapping[str, str], n_workers: int = 2
                       ) -> Iterator[tuple[str, Path]]:
    """A real `dask scheduler` and `n_workers` `dask worker` processes on 127.0.0.1 (one
    thread, 2 GiB each); yields (scheduler address, scheduler file) and stops them all."""
    scheduler_file = folder / "scheduler.json"
    dask = str(Path(sys.executable).parent / "dask")

    def start(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([dask, *args], env=dict(env), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    procs = [start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--scheduler-file", str(scheduler_file))]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, "the dask scheduler did not start in 60 s"
            time.sleep(0.05)  # polling, with a deadline
        procs += [start("worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                        "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1",
                        "--memory-limit", "2GiB") for _ in range(n_workers)]
        with Client(scheduler_file=str(scheduler_file), timeout=30) as client:
            client.wait_for_workers(n_workers, timeout=90)
            address = client.scheduler.address
        yield address, scheduler_file
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
