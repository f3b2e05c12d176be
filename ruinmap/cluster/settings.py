"""ruinmap's settings, kept in Dask's own configuration under the `ruinmap` key.

The defaults ship as `ruinmap.yaml` beside this module and are registered with
`dask.config.update_defaults`, as Dask's sub-projects (dask-jobqueue, dask-kubernetes) do, so a
user overrides them the way they already configure Dask: a YAML file in ~/.config/dask/ or
$DASK_CONFIG, or `DASK_RUINMAP__...` environment variables (`DASK_RUINMAP__CLUSTER__ADDRESS=
slurm`). Batch-system settings stay in their own sections (`jobqueue.slurm`, `jobqueue.pbs`).

Where work runs is decided once, by `resolve_address`: an explicit `--scheduler`, else the
job's `[cluster] address`, else `ruinmap.cluster.address`, else "local".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import dask.config
import yaml

from ruinmap.errors import ClusterError

CONFIG_FILE = Path(__file__).with_name("ruinmap.yaml")

# Environment of every worker process ruinmap starts (local workers, batch jobs): one worker
# process per core, so every library gets one thread. GDAL's block cache defaults to 5% of the
# machine's memory in every process; a worker reads each source block once, so a small cache
# costs nothing and keeps a worker's memory flat whatever the image size. zarr's codec thread
# pool would otherwise start cores + 4 threads in every worker.
WORKER_ENV = {
    "GDAL_CACHEMAX": "64",
    "ZARR_THREADING__MAX_WORKERS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def _load_defaults() -> dict[str, Any]:
    with open(CONFIG_FILE, encoding="utf-8") as f:
        return dict(yaml.safe_load(f))


DEFAULTS = _load_defaults()
dask.config.update_defaults(DEFAULTS)


def setting(key: str) -> Any:
    """The value in effect of `ruinmap.<key>` (e.g. "cluster.address")."""
    return dask.config.get(f"ruinmap.{key}", None)


def settings() -> dict[str, Any]:
    """Every ruinmap setting in effect (defaults merged with the user's config)."""
    return dict(dask.config.get("ruinmap"))


def resolve_address(explicit: str | None = None, spec_address: str | None = None) -> str:
    """Where work runs: `explicit` (--scheduler), else the job's `[cluster] address`, else the
    Dask config `ruinmap.cluster.address`, else "local". Empty strings count as unset."""
    for candidate in (explicit, spec_address, setting("cluster.address")):
        if candidate is not None and str(candidate).strip():
            return str(candidate).strip()
    return "local"


def env_name(key: str) -> str:
    """The environment variable that sets `ruinmap.<key>`."""
    return "DASK_RUINMAP__" + key.upper().replace(".", "__").replace("-", "_")


def int_setting(key: str, *, minimum: int = 0) -> int:
    """An integer setting, or ClusterError naming the key and the bad value."""
    value = setting(key)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = minimum - 1
    if number < minimum or isinstance(value, bool) or (isinstance(value, float)
                                                      and value != number):
        raise ClusterError(
            f"Dask config ruinmap.{key} = {value!r}: expected an integer >= {minimum}; set it "
            f"in ~/.config/dask/ruinmap.yaml or {env_name(key)}"
        )
    return number
