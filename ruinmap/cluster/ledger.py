"""A resumable-work ledger: which units of a job (shards, tiles) are finished.

The ledger is a directory with one small file per finished unit, named by the unit's key.
Any process that can see the directory may record: Dask workers record the unit they have
just written, so a killed client loses nothing that finished.

Ordering guarantee (what makes resuming safe):

- A caller records a unit only AFTER its data is written and, for local files, fsync'd
  (`record` must be the last step of a unit). So a recorded unit's data is whole and durable.
- `record` writes the entry to a unique temporary file in the ledger directory, fsyncs it,
  renames it onto its final name (atomic on POSIX, also on NFS within one directory) and
  fsyncs the directory. A reader therefore sees an entry completely or not at all, and an
  entry survives a crash or power loss once `record` has returned.
- A unit killed anywhere before `record` returns is not in the ledger and is redone in
  full by the next run; a half-written unit is never taken as done.
- Recording twice (a task re-run by Dask after a worker was lost) is harmless: the rename
  replaces an entry with an equivalent one.

Keys are short strings of letters, digits, `.`, `-`, `_` and `/` (a `/` is stored as `+`),
for example `pre/3/0/12/7`. Temporary files start with `.` and are ignored by readers;
`Ledger.clean()` removes the ones a killed process left behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path

from ruinmap.errors import StoreError

_KEY = re.compile(r"^[A-Za-z0-9._/-]+$")


def _file_name(key: str) -> str:
    if not _KEY.match(key) or key.startswith(".") or "+" in key:
        raise StoreError(
            f"ledger key {key!r}: use letters, digits, '.', '-', '_' and '/', not starting with '.'"
        )
    return key.replace("/", "+")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Ledger:
    """Finished units of work, kept durably in `path` (a directory, created on first use).

    Cheap to construct and picklable, so one can be sent to Dask workers with each task.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def __reduce__(self) -> tuple[type[Ledger], tuple[str]]:
        return (Ledger, (str(self.path),))

    def record(self, key: str, info: dict[str, object] | None = None) -> None:
        """Mark `key` finished; call only after the unit's data is written and durable."""
        name = _file_name(key)
        self.path.mkdir(parents=True, exist_ok=True)
        body = {"key": key, "host": socket.gethostname(), "pid": os.getpid(), **(info or {})}
        tmp = self.path / f".{name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, json.dumps(body, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path / name)
        _fsync_dir(self.path)

    def is_done(self, key: str) -> bool:
        """Whether `key` has been recorded."""
        return (self.path / _file_name(key)).is_file()

    def done(self) -> set[str]:
        """Every recorded key (one directory listing)."""
        if not self.path.is_dir():
            return set()
        return {
            entry.name.replace("+", "/")
            for entry in os.scandir(self.path)
            if not entry.name.startswith(".") and entry.is_file()
        }

    def info(self, key: str) -> dict[str, object]:
        """What was recorded with `key` (host, pid and the caller's `info`)."""
        try:
            return dict(json.loads((self.path / _file_name(key)).read_text()))
        except FileNotFoundError:
            raise StoreError(f"{self.path}: {key!r} is not recorded") from None

    def pending(self, keys: Iterable[str]) -> list[str]:
        """The keys of `keys` not yet recorded, in the given order."""
        finished = self.done()
        return [key for key in keys if key not in finished]

    def clean(self) -> int:
        """Remove temporary files left by killed processes; return how many were removed.

        Call only while no process is recording into this ledger.
        """
        if not self.path.is_dir():
            return 0
        stale = [e.path for e in os.scandir(self.path) if e.name.startswith(".")]
        for path in stale:
            os.unlink(path)
        return len(stale)

    def remove(self) -> None:
        """Delete the whole ledger (once its job is complete and marked so elsewhere)."""
        shutil.rmtree(self.path, ignore_errors=True)


class ObjectLedger:
    """A `Ledger` kept in object storage (`s3://.../ledger`), one object per finished unit.

    The same ordering guarantee holds: `record` is one PUT after the unit's data objects are
    written, and a PUT is atomic (an entry is there whole or not at all) and durable once it
    returns. There are no temporary files, so `clean` has nothing to do. Listings are always
    fresh (no cache), since other processes record concurrently.
    """

    def __init__(self, url: str, storage_options: dict[str, object] | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})

    @property
    def path(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectLedger({self.url!r})"

    def __reduce__(self) -> tuple[type[ObjectLedger], tuple[str, dict[str, object]]]:
        return (ObjectLedger, (self.url, self.storage_options))

    def _entry(self, key: str) -> str:
        return f"{self.url}/{_file_name(key)}"

    def record(self, key: str, info: dict[str, object] | None = None) -> None:
        """Mark `key` finished; call only after the unit's data is written."""
        from ruinmap.cluster.objectstore import put_bytes

        body = {"key": key, "host": socket.gethostname(), "pid": os.getpid(), **(info or {})}
        put_bytes(self._entry(key), json.dumps(body, sort_keys=True).encode(),
                  self.storage_options)

    def is_done(self, key: str) -> bool:
        from ruinmap.cluster.objectstore import is_file

        return is_file(self._entry(key), self.storage_options)

    def done(self) -> set[str]:
        from ruinmap.cluster.objectstore import list_names

        try:
            names = list_names(self.url, self.storage_options)
        except FileNotFoundError:
            return set()
        return {n.replace("+", "/") for n in names if "/" not in n and not n.startswith(".")}

    def info(self, key: str) -> dict[str, object]:
        from ruinmap.cluster.objectstore import read_bytes

        try:
            return dict(json.loads(read_bytes(self._entry(key), self.storage_options)))
        except FileNotFoundError:
            raise StoreError(f"{self.url}: {key!r} is not recorded") from None

    def pending(self, keys: Iterable[str]) -> list[str]:
        finished = self.done()
        return [key for key in keys if key not in finished]

    def clean(self) -> int:
        return 0  # a PUT leaves no temporary objects behind

    def remove(self) -> None:
        from ruinmap.cluster.objectstore import remove_prefix

        remove_prefix(self.url, self.storage_options)


def open_ledger(
    location: str | os.PathLike[str], storage_options: dict[str, object] | None = None
) -> Ledger | ObjectLedger:
    """The ledger at a local folder or an s3:// URL."""
    if isinstance(location, str) and location.startswith("s3://"):
        return ObjectLedger(location, storage_options)
    return Ledger(location)
