"""Opening input files confined to data roots, at the moment they are read.

A path checked once and opened later by name can be swapped in between (a file replaced by a
symlink to an outside file, or a folder on the way by a link elsewhere). So the check is made
where the file is opened, on the open file itself:

1. `os.path.realpath(path)` must lie inside a root;
2. it is opened with `O_NOFOLLOW` (a final component swapped for a link since step 1 fails)
   and `O_NONBLOCK` (a FIFO planted in a root cannot hang the reader);
3. the open file must be a regular file, and the kernel's name for it
   (`/proc/self/fd/N`, the path of what was really opened) must lie inside a root too, which
   catches a folder component swapped for a link between steps 1 and 2;
4. its first bytes must not be a VRT (GDAL or OGR), which names other files to read;
5. GDAL / pyarrow read that same open file through `/proc/self/fd/N`, never the name again.

Without `/proc` (not Linux) step 3's name check is replaced by one after the read: the open
file and the resolved path must still be the same inode (`st_dev`, `st_ino`).

`roots=None` (the command line) and remote paths (`s3://`, `/vsi...`) pass through unchanged.

Reads deep inside a job (the orbit tags of a raster, the checksums of the polygon files for
job.json, the labels of `[validation]`) take their roots from `current_roots()`, which
`run_job` sets for its thread (`confinement(IngestOptions.confine_to)`); the worker tasks get
theirs explicitly, since they run in other processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import IO, Any

from ruinmap.errors import ConfinementError

__all__ = ["CONTAINER_HEADS", "Roots", "check_folder_inside", "confined_raster_path",
           "confined_vector_path", "confinement", "current_roots", "is_inside",
           "open_confined", "open_input", "references_files"]

#: real paths (symlinks resolved) of the folders files may be read from
Roots = tuple[str, ...]

#: the first bytes of files that name other files GDAL / OGR would open
CONTAINER_HEADS = (b"<VRTDataset", b"<OGRVRTDataSource", b"<GDAL_WMS", b"<WFS_GetCapabilities")

# files GDAL's Shapefile driver reads beside the .shp, by name
_SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg", ".qix")
_REMOTE_PREFIXES = ("/vsi",)
_PROC_FD = "/proc/self/fd"
_HEAD_BYTES = 4096


def references_files(head: bytes) -> bool:
    """Whether a file starting with `head` is a VRT (GDAL or OGR) or another XML container
    that makes GDAL open other files or URLs by name."""
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<?xml"):
        head = head[head.find(b"?>") + 2:].lstrip() if b"?>" in head else head
    return head.startswith(CONTAINER_HEADS)


def is_inside(real: str, roots: Sequence[str]) -> bool:
    """Whether the real path `real` is one of `roots` or lies below one."""
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _is_remote(path: str) -> bool:
    return "://" in path or path.startswith(_REMOTE_PREFIXES)


def _roots_text(roots: Sequence[str]) -> str:
    return ", ".join(roots) or "none configured"


def _kernel_name(fd: int) -> str | None:
    """What the kernel says `fd` is open on, or None where there is no /proc."""
    try:
        return os.readlink(f"{_PROC_FD}/{fd}")
    except OSError:
        return None


@contextlib.contextmanager
def open_confined(path: str | os.PathLike[str], roots: Sequence[str]) -> Iterator[int]:
    """An O_RDONLY file descriptor on `path`, checked inside `roots` (steps 1-4 of the module
    docstring); closed on exit, where, without /proc, the inode is compared once more.

    Raises ConfinementError naming the path, its real path and the roots.
    """
    text = os.fspath(path)
    roots = [os.path.realpath(root) for root in roots]  # a root may itself be a link
    advice = "give a file inside the service's data roots (links must not point outside)"
    try:
        resolved = os.path.realpath(text)
    except OSError as exc:  # a link on the way replaced while it was being resolved
        raise ConfinementError(f"{text}: cannot be resolved ({exc.strerror}; it changed "
                               f"while being resolved); {advice}") from None
    if not is_inside(resolved, roots):
        raise ConfinementError(f"{text}: resolves to {resolved}, outside the data roots "
                               f"({_roots_text(roots)}); {advice}")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(resolved, flags)
    except OSError as exc:
        raise ConfinementError(f"{text}: cannot be opened as {resolved} ({exc.strerror}; it "
                               f"changed while being opened, or is unreadable); {advice}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfinementError(f"{text}: {resolved} is not a regular file; give the "
                                   "file itself (no folders, devices or pipes)")
        opened = _kernel_name(fd)
        if opened is not None and not is_inside(opened, roots):
            raise ConfinementError(f"{text}: was opened as {opened}, outside the data roots "
                                   f"({_roots_text(roots)}): a folder on its path was "
                                   f"swapped for a link; {advice}")
        if references_files(os.pread(fd, _HEAD_BYTES, 0)):
            raise ConfinementError(f"{text}: is a VRT, which reads other files by their "
                                   "names; give the files themselves")
        yield fd
        if opened is None:
            now = os.stat(resolved, follow_symlinks=False)
            was = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (was.st_dev, was.st_ino):
                raise ConfinementError(f"{text}: {resolved} was replaced while it was read; "
                                       f"{advice}")
    finally:
        os.close(fd)


def _fd_path(fd: int, path: str) -> str:
    """The name through which GDAL reads exactly the open file `fd` (without /proc, the real
    path of `path`, compared with `fd` once more when `open_confined` closes it)."""
    return f"{_PROC_FD}/{fd}" if _kernel_name(fd) is not None else os.path.realpath(path)


@contextlib.contextmanager
def confined_raster_path(path: str | os.PathLike[str],
                         roots: Sequence[str] | None) -> Iterator[str]:
    """A name for rasterio that reads the checked open file of `path` (`/proc/self/fd/N`);
    `path` itself when `roots` is None or the path is remote. Raises ConfinementError."""
    text = os.fspath(path)
    if roots is None or _is_remote(text):
        yield text
        return
    with open_confined(text, roots) as fd:
        yield _fd_path(fd, text)


def _sidecars(path: str) -> list[str]:
    """The files beside a Shapefile that GDAL would read (as they are named on disk)."""
    stem = os.path.splitext(path)[0]
    found = []
    for suffix in _SHAPEFILE_SIDECARS:
        for candidate in (stem + suffix, stem + suffix.upper()):
            if os.path.lexists(candidate):
                found.append(candidate)
                break
    return found


@contextlib.contextmanager
def confined_vector_path(path: str | os.PathLike[str],
                         roots: Sequence[str] | None) -> Iterator[str]:
    """A name for GDAL / pyarrow that reads the checked open file of `path`, and for a
    Shapefile its sidecars (`.shx`, `.dbf`, `.prj`, `.cpg`, `.qix`), each checked the same way.

    The name is a link in a private temporary folder, with the file's own name (drivers and
    `read_vector` choose by suffix), to `/proc/self/fd/N`. `path` itself when `roots` is None
    or the path is remote. Raises ConfinementError.
    """
    text = os.fspath(path)
    if roots is None or _is_remote(text):
        yield text
        return
    files = [text] + (_sidecars(text) if text.lower().endswith(".shp") else [])
    with contextlib.ExitStack() as stack:
        fds = [stack.enter_context(open_confined(name, roots)) for name in files]
        folder = tempfile.mkdtemp(prefix="ruinmap-confined-")
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        for name, fd in zip(files, fds, strict=True):
            os.symlink(_fd_path(fd, name),
                       os.path.join(folder, Path(name).name))
        yield os.path.join(folder, Path(text).name)


_CURRENT: ContextVar[Roots | None] = ContextVar("ruinmap_confine_to", default=None)


@contextlib.contextmanager
def confinement(roots: Sequence[str] | None) -> Iterator[None]:
    """Within the block, in this thread, `current_roots()` is `roots` (None: unconfined)."""
    token = _CURRENT.set(None if roots is None else tuple(roots))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_roots() -> Roots | None:
    """The roots set by the innermost `confinement` of this thread, or None."""
    return _CURRENT.get()


@contextlib.contextmanager
def open_input(path: str | os.PathLike[str], mode: str = "rb",
               **options: Any) -> Iterator[IO[Any]]:
    """`open(path, mode, **options)` for reading, confined to `current_roots()` when set
    (the checked open file itself is read). Raises ConfinementError."""
    roots = current_roots()
    text = os.fspath(path)
    if roots is None or _is_remote(text):
        with open(text, mode, **options) as handle:
            yield handle
        return
    with open_confined(text, roots) as fd, open(os.dup(fd), mode, **options) as handle:
        yield handle  # a duplicate: open_confined closes its own descriptor


def check_folder_inside(folder: str | os.PathLike[str], roots: Sequence[str] | None) -> None:
    """ConfinementError unless `folder` (a folder dataset, e.g. a File Geodatabase) and every
    entry in it resolve inside `roots`. Checked just before GDAL opens it by name: a folder
    dataset cannot be read through one open file, so this narrows the window but cannot
    close it."""
    if roots is None:
        return
    real_roots = [os.path.realpath(root) for root in roots]
    entries = [os.fspath(folder), *(os.path.join(base, name)
                                    for base, dirs, files in os.walk(folder)
                                    for name in (*dirs, *files))]
    for entry in entries:
        resolved = os.path.realpath(entry)
        if not is_inside(resolved, real_roots):
            raise ConfinementError(f"{entry}: resolves to {resolved}, outside the data roots "
                                   f"({_roots_text(real_roots)}); give a folder whose files "
                                   "all lie inside them")
