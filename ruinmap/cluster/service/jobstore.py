"""The job store: one SQLite file (WAL), one row per job.

Every state change is one transaction committed (and, with `synchronous=FULL`, fsync'd)
before the caller reports it, so a status a client has seen survives a crash of the service.
Transitions are guarded in SQL (`... WHERE status = 'running'`), so a job dismissed while it
finishes is never reported successful afterwards.

Statuses follow OGC API - Processes: accepted (queued), running, successful, failed,
dismissed. `seq` orders the queue: jobs start in the order they were accepted.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from ruinmap.errors import StoreError

__all__ = ["ACTIVE", "STATUSES", "JobRecord", "JobStatus", "JobStore", "appends_post_dates",
           "utc_now"]

JobStatus = Literal["accepted", "running", "successful", "failed", "dismissed"]
STATUSES: tuple[str, ...] = get_args(JobStatus)
ACTIVE = ("accepted", "running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    process_id TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    updated TEXT NOT NULL,
    spec TEXT NOT NULL,
    output_dir TEXT NOT NULL,
    files TEXT NOT NULL DEFAULT '{}',
    tiles_total INTEGER,
    tiles_run INTEGER,
    runs INTEGER NOT NULL DEFAULT 0,
    submitter TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""
#: columns added since the first job stores: (name, declaration), added where missing
_ADDED_COLUMNS = (("submitter", "TEXT NOT NULL DEFAULT ''"),)


def utc_now() -> str:
    """The current time as RFC 3339 UTC with milliseconds, e.g. 2026-11-29T11:40:00.123Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class JobRecord:
    """One job as stored. `files` maps output ids to paths relative to `output_dir`."""

    seq: int
    id: str
    process_id: str
    status: str
    progress: int
    message: str
    created: str
    started: str | None
    finished: str | None
    updated: str
    spec: dict[str, Any]
    output_dir: Path
    files: dict[str, str]
    tiles_total: int | None
    tiles_run: int | None
    runs: int
    submitter: str = ""  # the name of the token that submitted it ("": before names)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        seq=row["seq"], id=row["id"], process_id=row["process_id"], status=row["status"],
        progress=row["progress"], message=row["message"], created=row["created"],
        started=row["started"], finished=row["finished"], updated=row["updated"],
        spec=json.loads(row["spec"]), output_dir=Path(row["output_dir"]),
        files=json.loads(row["files"]), tiles_total=row["tiles_total"],
        tiles_run=row["tiles_run"], runs=row["runs"], submitter=row["submitter"],
    )  # fmt: skip


def appends_post_dates(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the spec `new` is `old` with post-event files added after its own (a
    monitored job resubmitted with more dates, `job.monitor`), and nothing else changed."""
    old_inputs, new_inputs = old.get("inputs") or {}, new.get("inputs") or {}
    old_post, new_post = old_inputs.get("post") or [], new_inputs.get("post") or []
    same_otherwise = ({**old, "inputs": {**old_inputs, "post": None}}
                      == {**new, "inputs": {**new_inputs, "post": None}})
    return (same_otherwise and len(new_post) > len(old_post)
            and list(new_post[:len(old_post)]) == list(old_post))


def _check_folder(output_dir: Path, spec: dict[str, Any], row: sqlite3.Row) -> None:
    """StoreError when `output_dir` would touch the folder of the job in `row`."""
    other = Path(row["output_dir"])
    if other == output_dir:
        if row["status"] in ACTIVE:
            raise StoreError(f"output.dir '{output_dir.name}' is in use by job {row['id']}; "
                             "choose another output.dir or wait for that job")
        old = json.loads(row["spec"])
        if old != spec and not appends_post_dates(old, spec):
            raise StoreError(
                f"output.dir '{output_dir.name}' holds the results of job {row['id']} "
                f"({row['status']}); a different job may not replace them (only the same "
                "spec, or the same with post-event files added after its own, which appends "
                f"them): choose another output.dir, or dismiss job {row['id']} first")
    elif other in output_dir.parents or output_dir in other.parents:
        where = "inside" if other in output_dir.parents else "around"
        raise StoreError(
            f"output.dir '{output_dir.name}' lies {where} the folder '{other.name}' of job "
            f"{row['id']}; each job needs a folder of its own, apart from every other's")


def reads_store(spec: dict[str, Any]) -> Path | None:
    """The real path of the ingested store a job's spec reads (`inputs.store`), if any."""
    store = (spec.get("inputs") or {}).get("store")
    return None if store is None else Path(os.path.realpath(store))


def _check_store(store: Path, row: sqlite3.Row) -> None:
    """StoreError when `store` lies in the folder of the job in `row` and that job has not
    finished it: an unfinished store is still being written (or never will be)."""
    other = Path(row["output_dir"])
    if (store == other or other in store.parents) and row["status"] != "successful":
        raise StoreError(
            f"inputs.store '{store.name}' is in the folder of job {row['id']}, which is "
            f"{row['status']}; a job may read another job's store only once that job has "
            "succeeded: wait for it, or submit this job with the imagery itself")


class JobStore:
    """Thread-safe access to the jobs table in `path` (created with its folder if absent)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # one connection shared by the service's threads, serialised by a lock: SQLite
            # writes are serial anyway, and each call is a short transaction
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed change survives a crash
            self._db.executescript(_SCHEMA)
            have = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
            for name, declaration in _ADDED_COLUMNS:
                if name not in have:  # a store from an older ruinmap
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the job store ({exc}); check the "
                             "path in [store] db and that its folder is writable") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- reading

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    def list(self, *, statuses: Iterable[str] = (), limit: int = 100, offset: int = 0,
             newest_first: bool = True) -> list[JobRecord]:
        wanted = list(statuses)
        where = f"WHERE status IN ({','.join('?' * len(wanted))})" if wanted else ""
        order = "DESC" if newest_first else "ASC"
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs {where} ORDER BY seq {order} LIMIT ? OFFSET ?",
                (*wanted, limit, offset),
            ).fetchall()
        return [_record(row) for row in rows]

    def ended_before(self, moment: str) -> builtins.list[JobRecord]:
        """Jobs that ended (successful, failed, dismissed) before `moment` (RFC 3339 UTC)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE status IN ('successful', 'failed', 'dismissed') "
                "AND COALESCE(finished, updated) < ? ORDER BY seq", (moment,)).fetchall()
        return [_record(r) for r in rows]

    def delete(self, job_id: str) -> bool:
        """Forget an ended job (retention); False when it is active or unknown."""
        with self._transaction() as db:
            gone = db.execute("DELETE FROM jobs WHERE id = ? AND status NOT IN "
                              "('accepted', 'running')", (job_id,))
            return gone.rowcount == 1

    def count(self, *, statuses: Iterable[str] = ()) -> int:
        wanted = list(statuses)
        where = f"WHERE status IN ({','.join('?' * len(wanted))})" if wanted else ""
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM jobs {where}", wanted)
                       .fetchone()[0])

    def active_with_output(self, output_dir: Path) -> JobRecord | None:
        """An accepted or running job writing into `output_dir`, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM jobs WHERE output_dir = ? AND status IN ('accepted', 'running')",
                (str(output_dir),),
            ).fetchone()
        return None if row is None else _record(row)

    # -- changing (each a committed transaction)

    def create(self, process_id: str, spec: dict[str, Any], output_dir: Path,
               job_id: str | None = None, submitter: str = "") -> JobRecord:
        """Store a new accepted job; checked in the same transaction as the insert.

        Each job owns its folder: `output_dir` may not be a folder of another job that is not
        dismissed (unless it is the same job, resubmitted once the first has ended: the same
        spec, or the same with post-event files appended, `appends_post_dates`), nor lie
        inside one or contain one. An ingested store it reads (`spec.inputs.store`, which a
        job only reads) inside another job's folder must be that job's finished store.
        StoreError otherwise."""
        job_id = job_id or uuid.uuid4().hex
        now = utc_now()
        store = reads_store(spec)
        with self._transaction() as db:
            for row in db.execute("SELECT id, status, output_dir, spec FROM jobs "
                                  "WHERE status != 'dismissed'").fetchall():
                _check_folder(output_dir, spec, row)
                if store is not None:
                    _check_store(store, row)
            db.execute(
                "INSERT INTO jobs (id, process_id, status, created, updated, spec, output_dir, "
                "submitter) VALUES (?, ?, 'accepted', ?, ?, ?, ?, ?)",
                (job_id, process_id, now, now, json.dumps(spec), str(output_dir), submitter),
            )
        record = self.get(job_id)
        assert record is not None
        return record

    def check_store_readable(self, store: Path) -> None:
        """StoreError when `store` lies in the folder of a job that has not succeeded (the
        same rule `create` applies, asked before the store's files are looked at)."""
        real = Path(os.path.realpath(store))
        with self._lock:
            rows = self._db.execute("SELECT id, status, output_dir FROM jobs "
                                    "WHERE status != 'dismissed'").fetchall()
        for row in rows:
            _check_store(real, row)

    def readers_of(self, folder: Path) -> builtins.list[JobRecord]:
        """The active jobs that read an ingested store inside `folder` (`inputs.store`)."""
        return [job for job in self.list(statuses=ACTIVE, limit=1_000_000)
                if (store := reads_store(job.spec)) is not None
                and (store == folder or folder in store.parents)]

    def _update(self, job_id: str, allowed_from: tuple[str, ...], **fields: Any) -> bool:
        fields["updated"] = utc_now()
        sets = ", ".join(f"{name} = ?" for name in fields)
        marks = ",".join("?" * len(allowed_from))
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE jobs SET {sets} WHERE id = ? AND status IN ({marks})",
                (*fields.values(), job_id, *allowed_from),
            )
        return cursor.rowcount == 1

    def mark_running(self, job_id: str) -> bool:
        """accepted (or running, when resumed after a restart) -> running."""
        now = utc_now()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'running', started = COALESCE(started, ?), "
                "updated = ?, runs = runs + 1, message = 'started' "
                "WHERE id = ? AND status IN ('accepted', 'running')", (now, now, job_id),
            )
        return cursor.rowcount == 1

    def set_progress(self, job_id: str, progress: int, message: str) -> bool:
        return self._update(job_id, ("running",), progress=max(0, min(100, progress)),
                            message=message)

    def mark_successful(self, job_id: str, files: dict[str, str], tiles_total: int,
                        tiles_run: int, message: str) -> bool:
        return self._update(
            job_id, ("running",), status="successful", progress=100, finished=utc_now(),
            files=json.dumps(files), tiles_total=tiles_total, tiles_run=tiles_run,
            message=message,
        )  # fmt: skip

    def mark_failed(self, job_id: str, message: str) -> bool:
        return self._update(job_id, ACTIVE, status="failed", finished=utc_now(),
                            message=message)

    def mark_dismissed(self, job_id: str, message: str) -> bool:
        return self._update(job_id, ("accepted", "running", "successful", "failed"),
                            status="dismissed", finished=utc_now(), message=message)
