"""Connect to a Dask cluster from one address setting.

`open_client(address)` is a context manager yielding a `distributed.Client`:

- `"local"` (default): an embedded LocalCluster on 127.0.0.1, one worker process per core,
  one thread each, each worker's memory limit its share of the machine's memory;
- `"tcp://host:port"` (also `tls://`, `ucx://`): an existing scheduler; ClusterError when it
  cannot be reached within `timeout_s`.

Other profiles (slurm, pbs, kubernetes) register a factory in `PROFILES` under their name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import dask
from distributed import Client, LocalCluster

from ruinmap.errors import ClusterError

log = logging.getLogger(__name__)

# Environment of every local worker process (one per core, so every library gets one thread).
# GDAL's block cache defaults to 5% of the machine's memory in every process; a worker reads
# each source block once, so a small cache costs nothing and keeps a worker's memory flat
# whatever the image size. zarr's codec thread pool would otherwise start cores + 4 threads
# in every worker.
WORKER_ENV = {
    "GDAL_CACHEMAX": "64",
    "ZARR_THREADING__MAX_WORKERS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}
# distributed sets MALLOC_TRIM_THRESHOLD_ in every worker by default. Setting it turns off
# glibc's dynamic mmap threshold, so each MiB-sized chunk buffer becomes a fresh mmap and
# page-faults on first touch: ingest wrote shards ~1.5-2x slower with it (2-core VM, 4096^2).
_DROPPED_ENV = ("MALLOC_TRIM_THRESHOLD_",)
_REMOTE_SCHEMES = ("tcp://", "tls://", "ucx://", "inproc://")


def default_worker_count() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def has_dashboard() -> bool:
    """Whether the Dask dashboard can be served (it needs bokeh)."""
    return importlib.util.find_spec("bokeh") is not None


@contextlib.contextmanager
def _local(
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int | float = "auto",
    dashboard: bool = True,
    timeout_s: float = 60.0,
) -> Iterator[Client]:
    serve_dashboard = dashboard and has_dashboard()
    if dashboard and not serve_dashboard:
        log.info("no Dask dashboard: it needs bokeh (pip install 'bokeh>=3.1')")
    environ = {
        k: v
        for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
        if k not in _DROPPED_ENV
    }
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(
                n_workers=n_workers or default_worker_count(),
                threads_per_worker=threads_per_worker,
                processes=True,
                host="127.0.0.1",
                # a free port, so clusters never fight over 8787; without bokeh it serves only
                # the health and metrics routes
                dashboard_address="127.0.0.1:0",
                scheduler_kwargs={"dashboard": serve_dashboard},
                memory_limit=memory_limit,
                silence_logs=logging.ERROR,
                env=dict(WORKER_ENV),
            )
    except Exception as exc:
        raise ClusterError(f"could not start the local Dask cluster: {exc}") from exc
    try:
        with Client(cluster, timeout=timeout_s) as client:
            yield client
    finally:
        cluster.close()


@contextlib.contextmanager
def _remote(address: str, *, timeout_s: float = 10.0, **_: Any) -> Iterator[Client]:
    try:
        client = Client(address, timeout=timeout_s)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s ({exc}); "
            "check it is running (`dask scheduler`) and the address, or leave out --scheduler "
            "to use a local cluster"
        ) from None
    with client:
        yield client


PROFILES: dict[str, Callable[..., contextlib.AbstractContextManager[Client]]] = {
    "local": _local,
}


def dashboard_link(client: Client) -> str | None:
    """The dashboard URL of the client's scheduler, or None when it serves none."""
    try:
        info = client.scheduler_info()
    except Exception:
        return None
    if "dashboard" not in info.get("services", {}):
        return None
    return str(client.dashboard_link)


@contextlib.contextmanager
def open_client(address: str = "local", **options: Any) -> Iterator[Client]:
    """A Client for `address` ("local" or "tcp://host:port"), closed (with its cluster) on exit.

    `options` go to the profile: for "local" `n_workers`, `threads_per_worker`,
    `memory_limit`, `dashboard` (bool), `timeout_s`; for a scheduler address `timeout_s`.
    Logs the dashboard link when there is one.
    """
    address = address.strip()
    if address in PROFILES:
        manager = PROFILES[address](**options)
    elif address.startswith(_REMOTE_SCHEMES):
        manager = _remote(address, **options)
    else:
        known = ", ".join(sorted(PROFILES))
        raise ClusterError(
            f"--scheduler {address!r}: expected {known} or a scheduler address tcp://host:port"
        )
    with manager as client:
        # a local scheduler without bokeh serves only health routes under the same name
        link = dashboard_link(client) if address not in PROFILES or has_dashboard() else None
        if link:
            log.info("Dask dashboard: %s", link)
        yield client
