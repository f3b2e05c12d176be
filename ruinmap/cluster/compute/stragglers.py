"""Tasks of an earlier, crashed run (or of a dismissed job) that still execute on the workers.

When a client dies (Ctrl-C, kill -9, a service restart), the scheduler forgets its tasks, but
a task already executing runs on in its worker thread until it returns (Python threads cannot
be stopped). A tile task still running there writes its shards and records itself in the
ledger. If a re-run started the same tile meanwhile, two writers would replace the same shard
file: one's unlink could land after the other's write. So a run first waits until no task of
its own job (its keys share a prefix that includes the job's signature) executes anywhere.
The job service stops the tasks of a job it dismissed before it removes the job's files
(`stop_tasks`): it waits a few seconds for them to return, then restarts the workers still
running one (a task's thread cannot be stopped, its process can; the nanny starts a fresh one,
and the scheduler sends the other tasks that were on it elsewhere: every ruinmap task writes
whole files of its own, so running one again is safe).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from distributed import Client

from ruinmap.errors import ClusterError

log = logging.getLogger(__name__)

# worker task states in which the task's function runs, or may still start
_WORKER_LIVE = frozenset({"executing", "long-running", "cancelled", "resumed", "ready",
                          "constrained", "waiting"})
# scheduler task states of a task that may still be sent to a worker (a dead client is noticed
# a moment after its connection drops; until then its tasks live on)
_SCHEDULER_LIVE = frozenset({"waiting", "queued", "processing", "no-worker"})


def _live_on_workers(client: Client, prefix: str | None, keys: Collection[str]
                     ) -> dict[str, list[str]]:
    """{worker address: keys of our tasks that run, or may still run, there}: those starting
    with `prefix`, or those in `keys`. A worker that is restarting (or gone) answers nothing:
    none of its tasks runs."""
    wanted = frozenset(keys)

    def on_worker(dask_worker: object, prefix: str | None = prefix,
                  wanted: frozenset[str] = wanted) -> list[str]:
        tasks = dask_worker.state.tasks  # type: ignore[attr-defined]
        return [str(key) for key, ts in list(tasks.items())
                if (str(key) in wanted or (prefix is not None and str(key).startswith(prefix)))
                and ts.state in _WORKER_LIVE]

    answers = client.run(on_worker, on_error="return")
    return {address: found for address, found in answers.items() if isinstance(found, list)}


def running_task_keys(
    client: Client, prefix: str | None = None, *, keys: Collection[str] | None = None,
    include_scheduler: bool = True,
) -> list[str]:
    """Keys of our tasks that run, or may still run, on some worker: those starting with
    `prefix`, or those in `keys`. With `include_scheduler`, tasks the scheduler may still send
    to a worker count too (a dead client's tasks, until the scheduler notices it is gone)."""
    wanted = frozenset(keys or ())

    def on_scheduler(dask_scheduler: object, prefix: str | None = prefix,
                     wanted: frozenset[str] = wanted) -> list[str]:
        tasks = dask_scheduler.tasks  # type: ignore[attr-defined]
        return [str(key) for key, ts in list(tasks.items())
                if (str(key) in wanted or (prefix is not None and str(key).startswith(prefix)))
                and ts.state in _SCHEDULER_LIVE]

    found = {key for names in _live_on_workers(client, prefix, wanted).values()
             for key in names}
    if include_scheduler:
        found.update(client.run_on_scheduler(on_scheduler))
    return sorted(found)


def stop_tasks(client: Client, keys: Collection[str], *, grace_s: float = 5.0,
               deadline_s: float = 120.0, poll_s: float = 0.1) -> bool:
    """Make sure none of `keys` (already cancelled) still executes on a worker: wait up to
    `grace_s` for them to return, then restart the workers that still run one, and wait for
    that. Returns True once none runs, False if some still run after `deadline_s` (a worker
    without a nanny cannot be restarted)."""
    start = time.monotonic()
    restarted: set[str] = set()
    while True:
        busy = {address for address, live in _live_on_workers(client, None, keys).items()
                if live}
        if not busy:
            return True
        waited = time.monotonic() - start
        if waited > deadline_s:
            return False
        stuck = sorted(busy - restarted) if waited > grace_s else []
        if stuck:
            log.warning("restarting %d worker(s) still running tasks of a dismissed job "
                        "after %g s: %s", len(stuck), grace_s, ", ".join(stuck))
            client.restart_workers(stuck, raise_for_error=False)
            restarted.update(stuck)
        time.sleep(poll_s)  # polling worker state, with a deadline


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
