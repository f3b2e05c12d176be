"""Tasks of an earlier, crashed run that still execute on the workers.

When a client dies (Ctrl-C, kill -9, a service restart), the scheduler forgets its tasks, but
a task already executing runs on in its worker thread until it returns (Python threads cannot
be stopped). A tile task still running there writes its shards and records itself in the
ledger. If a re-run started the same tile meanwhile, two writers would replace the same shard
file: one's unlink could land after the other's write. So a run first waits until no task of
its own job (its keys share a prefix that includes the job's signature) executes anywhere.
"""

from __future__ import annotations

import logging
import time

from distributed import Client

from ruinmap.errors import ClusterError

log = logging.getLogger(__name__)

# worker task states in which the task's function runs, or may still start
_WORKER_LIVE = frozenset({"executing", "long-running", "cancelled", "resumed", "ready",
                          "constrained", "waiting"})
# scheduler task states of a task that may still be sent to a worker (a dead client is noticed
# a moment after its connection drops; until then its tasks live on)
_SCHEDULER_LIVE = frozenset({"waiting", "queued", "processing", "no-worker"})


def running_task_keys(client: Client, prefix: str) -> list[str]:
    """Keys starting with `prefix` of tasks that run, or may still run, on some worker."""

    def on_worker(dask_worker: object, prefix: str = prefix) -> list[str]:
        tasks = dask_worker.state.tasks  # type: ignore[attr-defined]
        return [str(key) for key, ts in list(tasks.items())
                if str(key).startswith(prefix) and ts.state in _WORKER_LIVE]

    def on_scheduler(dask_scheduler: object, prefix: str = prefix) -> list[str]:
        tasks = dask_scheduler.tasks  # type: ignore[attr-defined]
        return [str(key) for key, ts in list(tasks.items())
                if str(key).startswith(prefix) and ts.state in _SCHEDULER_LIVE]

    keys = {key for keys in client.run(on_worker).values() for key in keys}
    keys.update(client.run_on_scheduler(on_scheduler))
    return sorted(keys)


def wait_for_stragglers(
    client: Client, prefix: str, *, timeout_s: float = 900.0, poll_s: float = 1.0
) -> int:
    """Wait until no task with keys starting with `prefix` runs, or may still run, anywhere.

    Returns how many were running at first. Raises ClusterError after `timeout_s`.
    """
    keys = running_task_keys(client, prefix)
    first = len(keys)
    if keys:
        log.info("waiting for %d task(s) of an earlier run still running on the workers", first)
    deadline = time.monotonic() + timeout_s
    while keys:
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{len(keys)} task(s) of an earlier run of this job still run on the workers "
                f"after {timeout_s:g} s (e.g. {keys[0]}); wait for them or restart the workers, "
                "then run the job again"
            )
        time.sleep(poll_s)
        keys = running_task_keys(client, prefix)
    return first
