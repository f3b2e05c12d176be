"""The durable-write recipe, once: a file or folder that readers see whole or not at all.

Everything ruinmap writes to a local file system goes through here (products, ledger entries,
tile partials, markers; shards use `fsync` after zarr writes them): it is
written under a temporary name in its destination's folder (same file system, so the final
rename is atomic on POSIX and on NFS within one directory), made durable with fsync, then
renamed onto its final name with `os.replace`, and the folder is fsync'd so the rename itself
survives a crash. If the writer raises (or is interrupted), the temporary is removed and an
existing file of the same name is left untouched. (In object storage one PUT does the same:
`location.ObjectURL.write_durably`.)

Temporary names start with `.` and contain `.tmp-`, e.g. `.districts.tmp-1a2b3c4d.geojson`:
they keep the destination's extension because GDAL and pyogrio choose a format from it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from ruinmap.errors import DiskFullError, RuinmapError

TEMP_MARK = ".tmp-"


def temp_sibling(dst: str | os.PathLike[str]) -> Path:
    """A fresh, unused temporary name in `dst`'s folder with `dst`'s extension(s)."""
    dst = Path(dst)
    name = dst.name
    # Keep every suffix (".tif", ".tif.aux.xml") so format detection by extension still works.
    stem, dot, suffixes = name.partition(".") if not name.startswith(".") else (name, "", "")
    return dst.with_name(f".{stem}{TEMP_MARK}{uuid.uuid4().hex[:8]}{dot}{suffixes}")


def fsync(path: str | os.PathLike[str]) -> None:
    """fsync a file that someone else (GDAL, pyarrow, matplotlib, zarr) wrote and closed, or a
    directory, so renames, creations and removals inside it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fsync(os.path.join(dirpath, name))
        fsync(dirpath)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` means the disk (or the user's quota) is full."""
    # GDAL reports it in the message only (`_tiffWriteProc: No space left on device`)
    return (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        isinstance(exc, Exception) and "No space left on device" in str(exc))


#: free bytes below which a failed write is taken for a full disk (a few filesystem blocks)
_NEARLY_FULL_BYTES = 64 * 1024


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL_BYTES
    except OSError:
        return False


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def disk_full_error(dst: Path, written_bytes: int, needed_bytes: int | None) -> DiskFullError:
    """The one-line error for a write into `dst` that filled the disk (call once its
    temporary is removed, so the space free is what the user has)."""
    free = shutil.disk_usage(dst.parent).free
    need = (f"it needs {_size(needed_bytes)}" if needed_bytes is not None
            else f"it needs more than the {_size(written_bytes)} written when the disk filled")
    return DiskFullError(f"{dst}: no space left on device ({need}, {_size(free)} free there); "
                         "free some space and re-run: finished work is kept and resumed")


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes / 1e3:.1f} kB"


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike[str], *,
                needed_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `dst`; on success it is renamed to `dst`, on error removed.

    The caller creates a file (or a folder) at the yielded path. On a normal exit it is
    fsync'd (every file, for a folder) and renamed onto `dst`, replacing an existing file
    atomically. A folder replacing an existing folder is swapped in with two renames (the old
    one is moved aside, then deleted), so a reader sees the old or the new folder, except for
    the instant between the renames where it sees neither. The destination's folder is created
    if missing. If the block raises, even KeyboardInterrupt, the temporary is removed, `dst`
    is unchanged and the exception propagates; a full disk becomes a `DiskFullError` naming
    `dst`, the space it needs (`needed_bytes` when the caller knows it) and the space free.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(dst)
    try:
        yield tmp
        if not tmp.exists():
            raise RuinmapError(
                f"{dst}: the writer created nothing at its temporary path {tmp.name}; "
                "nothing was written"
            )
        if tmp.is_dir():
            _fsync_tree(tmp)
            _replace_dir(tmp, dst)
        else:
            fsync(tmp)
            os.replace(tmp, dst)
        fsync(dst.parent)
    except BaseException as exc:
        written = _size_of(tmp)
        # GDAL may report a full disk as a failed read of what it had just written
        full = is_disk_full(exc) or (isinstance(exc, Exception) and _nearly_full(dst.parent))
        _remove(tmp)
        if full:
            raise disk_full_error(dst, written, needed_bytes) from None
        raise


def _replace_dir(tmp: Path, dst: Path) -> None:
    if not dst.exists():
        os.replace(tmp, dst)
        return
    if not dst.is_dir():
        raise RuinmapError(f"{dst}: exists and is not a folder; remove it or choose another name")
    old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(dst, old)
    try:
        os.rename(tmp, dst)
    except BaseException:
        os.rename(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_bytes_atomic(dst: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `dst` atomically (see `atomic_path`); returns `dst` as a Path."""
    dst = Path(dst)
    with atomic_path(dst, needed_bytes=len(data)) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)
    return dst


def write_text_atomic(dst: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to `dst` atomically (see `atomic_path`); returns `dst` as a Path."""
    return write_bytes_atomic(dst, text.encode(encoding))


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Remove temporaries a killed writer left in `folder`; returns how many.

    Call only while nothing writes into `folder`.
    """
    root = Path(folder)
    if not root.is_dir():
        return 0
    stale = [p for p in root.iterdir() if p.name.startswith(".") and TEMP_MARK in p.name]
    stale += [p for p in root.iterdir() if p.name.startswith(".") and ".old-" in p.name]
    for path in stale:
        _remove(path)
    return len(stale)
