"""The dispatcher: runs stored jobs on one Dask client, `max_running` at a time.

- One `distributed.Client` to the configured cluster (`connect.open_client`), shared by all
  jobs; each running job is one thread calling `job.run.run_job` with a `JobClient`, a thin
  view of that client that remembers the job's futures.
- Jobs start in the order they were accepted; the rest wait in the queue. The queue is
  rebuilt from the job store when the service starts: jobs that were running start first and
  resume through the job's tile ledger (finished tiles are not recomputed), then the
  accepted ones.
- Progress is the share of the job's tiles finished (`run_job(on_progress=...)`), 5-95 %
  while tiles run; 100 % once the products are written.
- Dismissal marks the job dismissed in the store first, then cancels its futures and stops it
  at its next submission or finished tile, waits until none of its tasks is still executing
  on a worker (a running Python task cannot be interrupted) and removes its output folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from concurrent.futures import CancelledError
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from distributed import Client, Future

from ruinmap.cluster.compute.connect import open_client
from ruinmap.cluster.compute.stragglers import stop_tasks
from ruinmap.cluster.job.outdir import OUTPUT_MARKER
from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec import parse_spec
from ruinmap.cluster.service.config import ServiceConfig
from ruinmap.cluster.service.jobstore import JobRecord, JobStore
from ruinmap.cluster.service.paths import PathPolicy
from ruinmap.cluster.service.submission import check_spec_paths
from ruinmap.errors import RuinmapError

log = logging.getLogger(__name__)

__all__ = ["JobClient", "JobDismissed", "JobRunner"]

#: a dismissed job's running tasks get this long to return before their workers restart
_STOP_GRACE_S = 5.0
_STOP_DEADLINE_S = 300.0


class JobDismissed(Exception):
    """Raised inside a job's thread to stop it once it has been dismissed."""


class JobClient:
    """The shared Client as one job sees it: every future it creates is remembered, so a
    dismissal can cancel exactly this job's work, and nothing new is sent once dismissed.

    Futures are remembered weakly: holding them would keep finished work (an ingest's shard
    writes) wanted by the scheduler, which then re-runs it when a worker holding its result
    dies, rewriting input shards while tiles read them.
    """

    def __init__(self, client: Client, cancelled: threading.Event) -> None:
        self._client = client
        self.cancelled = cancelled
        self._futures: weakref.WeakSet[Future] = weakref.WeakSet()
        self.keys: set[str] = set()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _sent(self, result: Any) -> Any:
        futures = [f for f in (result if isinstance(result, list | tuple) else [result])
                   if isinstance(f, Future)]
        with self._lock:
            self._futures.update(futures)
            self.keys.update(str(f.key) for f in futures)
        if self.cancelled.is_set():  # dismissed while sending: cancel what just went out
            self._client.cancel(futures, force=True)
            raise JobDismissed
        return result

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise JobDismissed

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._sent(self._client.submit(*args, **kwargs))

    def map(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._sent(self._client.map(*args, **kwargs))

    def scatter(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._sent(self._client.scatter(*args, **kwargs))

    def compute(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return self._sent(self._client.compute(*args, **kwargs))

    def cancel_all(self) -> None:
        """Cancel every future of the job (queued tasks are dropped; running ones finish)."""
        with self._lock:
            futures = list(self._futures)
        if futures:
            with contextlib.suppress(Exception):
                self._client.cancel(futures, force=True)


def _remove_tree(path: Path) -> None:
    """Remove a job's output folder, but only what a job made: an empty folder, or one the
    job claimed (`outdir.OUTPUT_MARKER`, written before anything else); a folder of someone
    else's files, which the job refused to write into, is kept."""
    if path.is_symlink():
        path.unlink()
    elif path.is_dir():
        if (path / OUTPUT_MARKER).is_file() or not any(path.iterdir()):
            shutil.rmtree(path, ignore_errors=True)
        else:
            log.warning("%s was not made by a ruinmap job (no %s): kept", path, OUTPUT_MARKER)


class JobRunner:
    """Runs the jobs of `store` on the cluster of `config` (see the module docstring)."""

    def __init__(self, config: ServiceConfig, store: JobStore) -> None:
        self._policy = PathPolicy.of(config.data_roots, config.output_root)
        self.config = config
        self.store = store
        self._stack = contextlib.ExitStack()
        self._client: Client | None = None
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._running: dict[str, JobClient] = {}
        self._threads: set[threading.Thread] = set()
        self._stopping = False
        self._dispatcher: threading.Thread | None = None

    # -- life cycle

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuinmapError("the job runner is not started")
        return self._client

    def start(self) -> None:
        """Connect to the cluster, queue the unfinished jobs of the store, start dispatching.

        Raises ClusterError when the cluster cannot be reached.
        """
        address = self.config.cluster_address
        self._client = self._stack.enter_context(open_client(address))
        unfinished = self.store.list(statuses=("running", "accepted"), limit=1_000_000,
                                     newest_first=False)
        resumed = [j.id for j in unfinished if j.status == "running"]
        queued = [j.id for j in unfinished if j.status == "accepted"]
        with self._cond:
            self._queue.extend(resumed + queued)
        if resumed or queued:
            log.info("resuming %d running and %d queued job(s)", len(resumed), len(queued))
        self._clean_dismissed()
        self._purge_expired()
        self._dispatcher = threading.Thread(target=self._dispatch, name="ruinmap-dispatcher",
                                            daemon=True)
        self._dispatcher.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop dispatching and disconnect; running jobs stay `running` in the store and
        resume when the service starts again."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            running = list(self._running.values())
        for job in running:
            job.cancelled.set()  # stop sending work; the store keeps them 'running'
            job.cancel_all()
        end = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, end - time.monotonic()))
        self._stack.close()
        self._client = None

    # -- queue

    def enqueue(self, job_id: str) -> None:
        with self._cond:
            self._queue.append(job_id)
            self._cond.notify_all()

    def counts(self) -> tuple[int, int]:
        """(running, queued) jobs in this process."""
        with self._cond:
            return len(self._running), len(self._queue)

    def _purge_every_s(self) -> float | None:
        """How often ended jobs are checked for expiry (None: never, they are kept)."""
        days = self.config.retention_days
        return None if days <= 0 else min(3600.0, days * 86400 / 10)

    def _dispatch(self) -> None:
        every = self._purge_every_s()
        next_purge = time.monotonic() + (every or 0.0)
        while True:
            with self._cond:
                while not self._stopping and (
                    not self._queue or len(self._running) >= self.config.max_running
                ):
                    if every is not None and time.monotonic() >= next_purge:
                        break
                    self._cond.wait(None if every is None
                                    else max(0.01, next_purge - time.monotonic()))
                if self._stopping:
                    return
                if every is not None and time.monotonic() >= next_purge:
                    purge = True
                    next_purge = time.monotonic() + every
                else:
                    purge = False
                if purge or not self._queue or len(self._running) >= self.config.max_running:
                    job_id = None
                else:
                    job_id = self._queue.popleft()
            if purge:
                self._purge_expired()
            if job_id is None:
                continue
            with self._cond:
                job = JobClient(self.client, threading.Event())
                self._running[job_id] = job
                thread = threading.Thread(target=self._run, args=(job_id, job),
                                          name=f"ruinmap-job-{job_id[:8]}", daemon=True)
                self._threads.add(thread)
            thread.start()

    # -- one job

    def _progress(self, job_id: str, job: JobClient, done: int, total: int) -> None:
        if job.cancelled.is_set():
            raise JobDismissed
        percent = 5 + (90 * done) // total if total else 95
        message = f"{done} of {total} tiles done" if done < total else "writing products"
        self.store.set_progress(job_id, percent, message)

    def _run(self, job_id: str, job: JobClient) -> None:
        record: JobRecord | None = None
        try:
            record = self.store.get(job_id)
            if record is None or not self.store.mark_running(job_id):
                return  # dismissed while queued
            self.store.set_progress(job_id, 0, "ingesting imagery" if record.runs == 0
                                    else "resuming")
            spec = parse_spec(record.spec, record.output_dir, source=f"job {job_id}")
            check_spec_paths(spec, self._policy)  # again: a file may have been swapped since
            # every input file is opened confined to the data roots, where it is read
            options = self.config.ingest_options
            result = run_job(
                spec, client=cast(Client, job), progress=False, ingest_options=options,
                on_progress=lambda done, total: self._progress(job_id, job, done, total),
                budget=self.config.budget,
            )  # fmt: skip
            files = {name: os.path.relpath(path, record.output_dir)
                     for name, path in result.files.items()}
            message = (f"{result.tiles_run} of {result.tiles_total} tiles computed"
                       f"{' (resumed)' if result.tiles_run < result.tiles_total else ''}")
            if not self.store.mark_successful(job_id, files, result.tiles_total,
                                              result.tiles_run, message):
                job.cancelled.set()  # dismissed as it finished: clean up below
        except (JobDismissed, CancelledError) as exc:
            if not job.cancelled.is_set():  # cancelled by someone else: a failure
                self.store.mark_failed(job_id, f"the job's tasks were cancelled ({exc!r})")
        except RuinmapError as exc:
            if not self._stopping and not job.cancelled.is_set():
                self.store.mark_failed(job_id, str(exc))
        except Exception as exc:
            if not self._stopping and not job.cancelled.is_set():
                log.exception("job %s failed", job_id)
                self.store.mark_failed(job_id, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            try:
                if job.cancelled.is_set() and not self._stopping and record is not None:
                    job.cancel_all()
                    if self._wait_stopped(job.keys):  # never under a task still writing
                        _remove_tree(record.output_dir)
            finally:
                with self._cond:
                    self._running.pop(job_id, None)
                    self._threads.discard(threading.current_thread())
                    self._cond.notify_all()

    def _wait_stopped(self, keys: set[str]) -> bool:
        """Stop `keys` (their tasks may still write files): wait `_STOP_GRACE_S`, then
        restart the workers still running one (`stragglers.stop_tasks`). True once none
        runs."""
        if not keys:
            return True
        try:
            stopped = stop_tasks(self.client, keys, grace_s=_STOP_GRACE_S,
                                 deadline_s=_STOP_DEADLINE_S)
        except Exception:
            return True  # workers unreachable: nothing of ours can be running there
        if not stopped:
            log.warning("tasks of a dismissed job still run after %g s; its folder is kept "
                        "and removed when the service next starts", _STOP_DEADLINE_S)
        return stopped

    # -- dismissal

    def dismiss(self, job_id: str) -> JobRecord | None:
        """Dismiss a job (any status but dismissed); None if there is no such job.

        The store says dismissed before this returns; a running job's tasks are cancelled and
        its outputs removed in its own thread, a queued or finished job's outputs here.
        """
        record = self.store.get(job_id)
        if record is None or record.status == "dismissed":
            return record
        with self._cond:
            dismissed = self.store.mark_dismissed(job_id, "dismissed on request")
            with contextlib.suppress(ValueError):
                self._queue.remove(job_id)
            job = self._running.get(job_id)
            if job is not None:
                job.cancelled.set()
        if job is not None:
            job.cancel_all()  # its thread waits for the tasks and removes the outputs
        elif dismissed:
            self._remove_outputs(record)
        return self.store.get(job_id)

    def _remove_outputs(self, record: JobRecord) -> None:
        # another, later job may have taken the same folder
        for other in self._jobs_using(record.output_dir):
            if other.id != record.id and other.status != "dismissed":
                return
        _remove_tree(record.output_dir)

    def _jobs_using(self, folder: Path) -> Iterable[JobRecord]:
        return [j for j in self.store.list(limit=1_000_000) if j.output_dir == folder]

    def _purge_expired(self) -> None:
        """Forget jobs that ended more than `jobs.retention_days` ago, with their folders."""
        days = self.config.retention_days
        if days <= 0:
            return
        moment = datetime.now(UTC) - timedelta(days=days)
        cutoff = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        for record in self.store.ended_before(cutoff):
            if self.store.readers_of(record.output_dir):
                continue  # an active job reads its store: forgotten once that one ends
            if record.status != "dismissed":  # a dismissed job's folder is gone already
                self._remove_outputs(record)
            if self.store.delete(record.id):
                log.info("job %s ended before %s: removed (jobs.retention_days = %g)",
                         record.id, cutoff, days)

    def _clean_dismissed(self) -> None:
        """Remove outputs of dismissed jobs the previous service process left behind."""
        for record in self.store.list(statuses=("dismissed",), limit=1_000_000):
            if record.output_dir.exists():
                self._remove_outputs(record)
