"""The resumable-work ledger: which units of a job (shards, tiles) are finished.

The ledger is a directory with one small file per finished unit, named by the unit's key.
Any process that can see the directory may record: Dask workers record the unit they have
just written, so a killed client loses nothing that finished.

Ordering guarantee (what makes resuming safe):

- A caller records a unit only AFTER its data is written and, for local files, fsync'd
  (`record` must be the last step of a unit). So a recorded unit's data is whole and durable.
- `record` writes the entry durably (`Location.write_durably`): locally to a temporary file
  in the ledger directory, fsync'd, renamed onto its final name (atomic on POSIX, also on NFS
  within one directory) and the directory fsync'd; in object storage one PUT, which is
  atomic and durable once it returns. A reader therefore sees an entry completely or not at
  all, and an entry survives a crash or power loss once `record` has returned.
- A unit killed anywhere before `record` returns is not in the ledger and is redone in
  full by the next run; a half-written unit is never taken as done.
- Recording twice (a task re-run by Dask after a worker was lost) is harmless: the rename
  replaces an entry with an equivalent one.
- An entry carries the checksums of the unit's files; a re-run verifies them
  (`storage.checksums.verified_units`) and forgets a unit whose files or entry are not whole
  or not its own, so corruption after the fact is redone, never used.

Keys are short strings of letters, digits, `.`, `-`, `_` and `/` (a `/` is stored as `+`),
for example `pre/3/0/12/7`. Temporary files start with `.` and are ignored by readers;
`Ledger.clean()` removes the ones a killed process left behind (object storage has none).
Listings are always fresh (no cache), since other processes record concurrently.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterable, Mapping

from ruinmap.cluster.storage.location import Location, as_location
from ruinmap.errors import StoreError

__all__ = ["Ledger"]

_KEY = re.compile(r"^[A-Za-z0-9._/-]+$")


def _file_name(key: str) -> str:
    if not _KEY.match(key) or key.startswith(".") or "+" in key:
        raise StoreError(
            f"ledger key {key!r}: use letters, digits, '.', '-', '_' and '/', not starting with '.'"
        )
    return key.replace("/", "+")


class Ledger:
    """Finished units of work, kept durably at `path` (a local directory, created on first
    use, or an s3:// prefix).

    Cheap to construct and picklable, so one can be sent to Dask workers with each task.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path: Location = as_location(path)

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def __reduce__(self) -> tuple[type[Ledger], tuple[Location]]:
        return (Ledger, (self.path,))

    def record(self, key: str, info: dict[str, object] | None = None, *,
               checksums: Mapping[str, str | None] | None = None) -> None:
        """Mark `key` finished; call only after the unit's data is written and durable.

        `checksums`: {role: sha256 hex, or None for a file deliberately not written} of the
        unit's files, which a re-run verifies before trusting the unit (`storage.checksums`).
        """
        body: dict[str, object] = {"key": key, "host": socket.gethostname(),
                                   "pid": os.getpid(), **(info or {})}
        if checksums is not None:
            body["checksums"] = dict(checksums)
        self.entry_location(key).write_durably(json.dumps(body, sort_keys=True).encode())

    def entry_location(self, key: str) -> Location:
        """The file holding `key`'s entry."""
        return self.path.join(_file_name(key))

    def forget(self, key: str) -> None:
        """Remove `key`'s entry (its unit turned out not to be whole): it is pending again."""
        self.entry_location(key).remove()

    def is_done(self, key: str) -> bool:
        """Whether `key` has been recorded."""
        return self.path.join(_file_name(key)).is_file()

    def done(self) -> set[str]:
        """Every recorded key (one listing)."""
        return {
            name.replace("+", "/")
            for name in self.path.list_names()
            if "/" not in name and not name.startswith(".")
        }

    def info(self, key: str) -> dict[str, object]:
        """What was recorded with `key` (host, pid and the caller's `info`)."""
        try:
            return dict(json.loads(self.path.join(_file_name(key)).read_bytes()))
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
        stale = [name for name in self.path.list_names()
                 if "/" not in name and name.startswith(".")]
        for name in stale:
            self.path.join(name).remove()
        return len(stale)

    def remove(self) -> None:
        """Delete the whole ledger (once its job is complete and marked so elsewhere)."""
        self.path.remove_tree()
