"""Connect to a Dask cluster from one address setting.

`open_client(address)` is a context manager yielding a `distributed.Client`:

- `"local"` (default): an embedded LocalCluster on 127.0.0.1, one worker process per core,
  one thread each, each worker's memory limit its share of the machine's memory (Dask config
  `ruinmap.local.*` changes these);
- `"tcp://host:port"` (also `tls://`, `ucx://`): an existing scheduler; ClusterError when it
  cannot be reached within `timeout_s` (default `ruinmap.cluster.connect-timeout`);
- `"slurm"`, `"pbs"`, `"kubernetes"`: a cluster started through dask-jobqueue or the Dask
  operator (`profiles`).

An address of None means the Dask config `ruinmap.cluster.address` ("local" by default); see
`ruinmap.cluster.settings.resolve_address` for the full precedence.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import dask
from distributed import Client, LocalCluster

from ruinmap.cluster.compute import profiles
from ruinmap.cluster.compute.interrupt import sigint_ignored
from ruinmap.cluster.settings import WORKER_ENV, resolve_address, setting
from ruinmap.errors import ClusterError

__all__ = ["PROFILES", "WORKER_ENV", "client_for", "dashboard_link", "default_worker_count",
           "open_client"]

log = logging.getLogger(__name__)
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
    threads_per_worker: int | None = None,
    memory_limit: str | int | float | None = None,
    dashboard: bool | None = None,
    timeout_s: float = 60.0,
) -> Iterator[Client]:
    # arguments left out come from the Dask config (ruinmap.local.*)
    n_workers = n_workers or setting("local.n-workers") or default_worker_count()
    threads_per_worker = threads_per_worker or setting("local.threads-per-worker") or 1
    if memory_limit is None:
        memory_limit = setting("local.memory-limit")
        memory_limit = "auto" if memory_limit is None else memory_limit
    if dashboard is None:  # environment variables arrive as text: "false" means False
        dashboard = str(setting("local.dashboard")).lower() not in ("false", "0", "no", "off")
    serve_dashboard = dashboard and has_dashboard()
    if dashboard and not serve_dashboard:
        log.info("no Dask dashboard: it needs bokeh (pip install 'bokeh>=3.1')")
    environ = {
        k: v
        for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
        if k not in _DROPPED_ENV
    }
    try:
        # workers inherit an ignored SIGINT: a Ctrl-C reaches the client, which closes them
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
                sigint_ignored():
            cluster = LocalCluster(
                n_workers=int(n_workers),
                threads_per_worker=int(threads_per_worker),
                processes=True,
                host="127.0.0.1",
                # a free port, so clusters never fight over 8787; without bokeh it serves only
                # the health and metrics routes
                dashboard_address="127.0.0.1:0",
                scheduler_kwargs={"dashboard": serve_dashboard},
                memory_limit=memory_limit,
                # a task's exception reaches the client with its traceback anyway: the
                # workers' own "Compute Failed" logs only repeat it, on top of a clear error
                silence_logs=logging.CRITICAL,
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
def _remote(address: str, *, timeout_s: float | None = None, **_: Any) -> Iterator[Client]:
    timeout_s = float(timeout_s or setting("cluster.connect-timeout") or 10.0)
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
    "slurm": profiles.slurm,
    "pbs": profiles.pbs,
    "kubernetes": profiles.kubernetes,
}


def dashboard_link(client: Client, timeout_s: float = 2.0) -> str | None:
    """The dashboard URL of the client's scheduler, or None when it serves none.

    A scheduler started without the dashboard (or without bokeh) still serves its health
    routes under the "dashboard" service name, and its link answers 404: the link is
    returned only when it answers (within `timeout_s`) from here.
    """
    try:
        info = client.scheduler_info()
    except Exception:
        return None
    if "dashboard" not in info.get("services", {}):
        return None
    link = str(client.dashboard_link)
    try:
        with urllib.request.urlopen(link, timeout=timeout_s) as answer:
            return link if answer.status == 200 else None
    except (OSError, ValueError):  # HTTPError (404) is an OSError; ValueError: not a URL
        return None


@contextlib.contextmanager
def open_client(address: str | None = None, **options: Any) -> Iterator[Client]:
    """A Client for `address` (a profile name or "tcp://host:port"; None: the Dask config
    `ruinmap.cluster.address`), closed (with any cluster it started) on exit.

    `options` go to the profile: for "local" `n_workers`, `threads_per_worker`,
    `memory_limit`, `dashboard` (bool), `timeout_s`; for a scheduler address `timeout_s`;
    slurm, pbs and kubernetes take everything from the Dask config.
    Logs the dashboard link when there is one.
    """
    address = resolve_address(address) if address is None else address.strip()
    if address in PROFILES:
        manager = PROFILES[address](**options)
    elif address.startswith(_REMOTE_SCHEMES):
        manager = _remote(address, **options)
    else:
        known = ", ".join(sorted(PROFILES))
        raise ClusterError(
            f"--scheduler {address!r}: expected one of {known}, or a scheduler address "
            "tcp://host:port"
        )
    with manager as client:
        # a local scheduler without bokeh serves only health routes under the same name
        link = dashboard_link(client) if address not in PROFILES or has_dashboard() else None
        if link:
            log.info("Dask dashboard: %s", link)
        yield client


@contextlib.contextmanager
def client_for(client: Client | None, address: str | None = None) -> Iterator[Client]:
    """`client` itself when given (left open), else `open_client(address)` for the block."""
    if client is not None:
        yield client
    else:
        with open_client(address) as own:
            yield own
