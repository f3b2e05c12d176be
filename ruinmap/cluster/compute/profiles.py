"""Cluster profiles beyond "local": batch systems (dask-jobqueue) and Kubernetes (dask-kubernetes).

Each profile is a context manager factory yielding a `distributed.Client`, registered by name in
`connect.PROFILES`:

- `slurm`, `pbs`: dask-jobqueue's SLURMCluster / PBSCluster, built from the Dask config
  sections `jobqueue.slurm` / `jobqueue.pbs` (cores, memory, walltime, account, queue,
  job-extra-directives, worker-extra-args such as `--lifetime`); every batch job also exports
  ruinmap's worker environment (one thread per library, small GDAL cache).
- `kubernetes`: dask-kubernetes' operator `KubeCluster` (a DaskCluster resource), image,
  resources and environment from `ruinmap.kubernetes`.

Then, for every profile here: `ruinmap.cluster.workers` workers are requested (or
`cluster.adapt` between `ruinmap.cluster.adapt.minimum` and `.maximum` when the maximum is
above 0), and the client waits up to `ruinmap.cluster.worker-timeout` seconds for
`ruinmap.cluster.wait-for-workers` of them. The cluster is closed (jobs cancelled, the
DaskCluster deleted unless `ruinmap.kubernetes.shutdown-on-close` is false) on exit.

`job_script(kind)` is the batch script dask-jobqueue would submit, and
`kubernetes_cluster_spec()` the DaskCluster resource the kubernetes profile creates, so both
can be checked without a batch system or a cluster.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import shutil
from collections.abc import Iterator
from typing import Any

import dask
from distributed import Client

from ruinmap.cluster.settings import WORKER_ENV, int_setting, setting
from ruinmap.errors import ClusterError

log = logging.getLogger(__name__)

JOBQUEUE_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}
SUBMIT_COMMANDS = {"slurm": "sbatch", "pbs": "qsub"}


def _jobqueue_class(kind: str) -> Any:
    if kind not in JOBQUEUE_CLASSES:
        raise ClusterError(f"profile {kind!r}: batch profiles are {', '.join(JOBQUEUE_CLASSES)}")
    try:
        module = importlib.import_module("dask_jobqueue")
    except ImportError:
        raise ClusterError(
            f"profile {kind!r} needs dask-jobqueue: pip install dask-jobqueue"
        ) from None
    return getattr(module, JOBQUEUE_CLASSES[kind])


def jobqueue_cluster(kind: str, *, dashboard_port: int | None = None) -> Any:
    """A dask-jobqueue cluster of `kind` ("slurm" or "pbs") from the Dask config (no jobs yet).

    Starts its scheduler in this process (dashboard on `dashboard_port`, default the config's).
    Raises ClusterError when the `jobqueue.<kind>` section lacks what dask-jobqueue needs
    (cores and memory).
    """
    cls = _jobqueue_class(kind)
    user_prologue = list(dask.config.get(f"jobqueue.{kind}.job-script-prologue", None) or [])
    prologue = [f"export {name}={value}" for name, value in WORKER_ENV.items()] + user_prologue
    extra: dict[str, Any] = {}
    if dashboard_port is not None:
        options = dict(dask.config.get(f"jobqueue.{kind}.scheduler-options", None) or {})
        extra["scheduler_options"] = {**options, "dashboard_address": f":{dashboard_port}"}
    try:
        return cls(job_script_prologue=prologue, **extra)
    except ValueError as exc:
        raise ClusterError(
            f"profile {kind!r}: {exc}; set at least cores and memory in the jobqueue.{kind} "
            f"section of the Dask config (see deploy/hpc/ruinmap-slurm.yaml), or "
            f"DASK_JOBQUEUE__{kind.upper()}__CORES and DASK_JOBQUEUE__{kind.upper()}__MEMORY"
        ) from None


def job_script(kind: str) -> str:
    """The batch script the `kind` profile would submit for each worker job."""
    cluster = jobqueue_cluster(kind, dashboard_port=0)  # a free port: nobody connects to it
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


def _scale(cluster: Any) -> int:
    """Request workers as configured; return how many to wait for."""
    maximum = int_setting("cluster.adapt.maximum")
    wait = int_setting("cluster.wait-for-workers")
    if maximum > 0:
        minimum = int_setting("cluster.adapt.minimum")
        if minimum > maximum:
            raise ClusterError(
                f"Dask config ruinmap.cluster.adapt: minimum {minimum} is above maximum "
                f"{maximum}"
            )
        cluster.adapt(minimum=minimum, maximum=maximum)
        # an adaptive cluster starts workers only once there is work: wait for the minimum
        return min(wait, minimum)
    workers = int_setting("cluster.workers", minimum=1)
    cluster.scale(workers)
    return min(wait, workers)


def _client_with_workers(cluster: Any, profile: str, hint: str) -> Client:
    wait = _scale(cluster)
    client = Client(cluster)
    if wait:
        timeout = float(setting("cluster.worker-timeout") or 0) or None
        log.info("waiting for %d %s worker(s) (at most %s s)", wait, profile, timeout)
        try:
            client.wait_for_workers(wait, timeout=timeout)
        except TimeoutError:
            client.close()
            raise ClusterError(
                f"profile {profile!r}: fewer than {wait} worker(s) joined within {timeout:g} s; "
                f"{hint}, or raise ruinmap.cluster.worker-timeout"
            ) from None
    return client


@contextlib.contextmanager
def jobqueue(kind: str, **_: Any) -> Iterator[Client]:
    """A client of a dask-jobqueue cluster of `kind` with workers requested as configured."""
    submit = SUBMIT_COMMANDS[kind]
    if shutil.which(submit) is None:
        raise ClusterError(
            f"profile {kind!r}: `{submit}` is not on PATH; run ruinmap on a login node of the "
            f"{kind.upper()} cluster (or use --scheduler local / tcp://host:port)"
        )
    cluster = jobqueue_cluster(kind)
    try:
        hint = f"check the jobs with `{'squeue' if kind == 'slurm' else 'qstat'}`"
        with _client_with_workers(cluster, kind, hint) as client:
            yield client
    finally:
        cluster.close()


@contextlib.contextmanager
def slurm(**options: Any) -> Iterator[Client]:
    """Workers as SLURM jobs (dask-jobqueue SLURMCluster, config `jobqueue.slurm`)."""
    with jobqueue("slurm", **options) as client:
        yield client


@contextlib.contextmanager
def pbs(**options: Any) -> Iterator[Client]:
    """Workers as PBS jobs (dask-jobqueue PBSCluster, config `jobqueue.pbs`)."""
    with jobqueue("pbs", **options) as client:
        yield client


def kubernetes_cluster_spec() -> dict[str, Any]:
    """The DaskCluster resource the kubernetes profile creates, from `ruinmap.kubernetes`.

    The image's entrypoint is `ruinmap`, so the scheduler and worker containers name their
    program in `command` (which replaces the entrypoint), not in `args`.
    """
    try:
        from dask_kubernetes.operator import make_cluster_spec
    except ImportError:
        raise ClusterError(
            "profile 'kubernetes' needs dask-kubernetes: pip install 'ruinmap[kubernetes]'"
        ) from None
    env = {str(k): str(v) for k, v in (setting("kubernetes.env") or {}).items()}
    env = {**WORKER_ENV, **env}
    spec: dict[str, Any] = make_cluster_spec(
        name=str(setting("kubernetes.name")),
        image=str(setting("kubernetes.image")),
        n_workers=int_setting("cluster.workers", minimum=1),
        resources=copy.deepcopy(setting("kubernetes.resources")) or None,
        env=env,
        idle_timeout=int_setting("kubernetes.idle-timeout"),
    )
    for role in ("scheduler", "worker"):
        for container in spec["spec"][role]["spec"]["containers"]:
            # one copy each, so a YAML dump writes plain mappings rather than anchors
            container["resources"] = copy.deepcopy(container.get("resources"))
            program, *rest = container.pop("args")
            command = program.split("-", 1)  # "dask-scheduler" -> dask scheduler
            container["command"] = [*command, *rest]
    return spec


@contextlib.contextmanager
def kubernetes(**_: Any) -> Iterator[Client]:
    """A DaskCluster created through the Dask operator (dask-kubernetes KubeCluster)."""
    spec = kubernetes_cluster_spec()
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError:  # pragma: no cover - kubernetes_cluster_spec checked the import
        raise ClusterError("profile 'kubernetes' needs dask-kubernetes") from None
    name = spec["metadata"]["name"]
    try:
        cluster = KubeCluster(
            custom_cluster_spec=spec,
            namespace=setting("kubernetes.namespace"),
            shutdown_on_close=bool(setting("kubernetes.shutdown-on-close")),
            quiet=True,
        )
    except Exception as exc:  # kubernetes client errors come in many classes
        raise ClusterError(
            f"profile 'kubernetes': could not create the DaskCluster {name!r} ({exc}); check "
            "access to the cluster (kubeconfig or in-cluster service account) and that the Dask "
            "operator is installed (deploy/README.md)"
        ) from None
    try:
        with _client_with_workers(cluster, "kubernetes", "check `kubectl get pods`") as client:
            yield client
    finally:
        cluster.close()
