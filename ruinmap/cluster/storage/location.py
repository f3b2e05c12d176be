"""Where data lives: a local path or an `s3://bucket/key` URL, one value type with one set of
operations.

`as_location(text)` makes a `Location` once, at the boundary (CLI, job spec, library call):

- `LocalPath`, a `pathlib.Path` (so every library that takes a path takes it), absolute;
- `ObjectURL`, a `str` holding the URL without a trailing slash, carrying the object-store
  options (the endpoint) of the process that made it, so a worker it is sent to talks to the
  same endpoint.

Both answer the same operations (`join`, `name`, `exists`, `is_file`, `read_bytes`,
`write_durably`, `upload_from`, `list_names`, `remove`, `remove_tree`, `size_and_mtime`,
`open_binary`, `total_bytes`, `zarr_store`), so no other module asks which kind it holds.
Writes are whole or nothing either way: locally temp file, fsync, rename and fsync of the
folder (`durable`); in object storage one PUT, which replaces an object whole (S3 has no
partial objects and no rename), so a reader sees the old object or the new one.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path, PosixPath
from typing import Any, BinaryIO

from ruinmap.cluster.storage import s3
from ruinmap.cluster.storage.durable import fsync, write_bytes_atomic
from ruinmap.errors import InputError

__all__ = ["URL_SCHEMES", "LocalPath", "Location", "ObjectURL", "as_location", "gdal_env",
           "is_url", "local_staging"]

URL_SCHEMES = ("s3://",)


def is_url(text: object) -> bool:
    """Whether `text` is an object-store URL (s3://...), not a local path."""
    return isinstance(text, str) and text.startswith(URL_SCHEMES)


class LocalPath(PosixPath):
    """A file or folder on a local (or network-mounted) file system."""

    is_remote = False

    def join(self, *parts: str) -> LocalPath:
        return self.joinpath(*parts)

    def write_durably(self, data: bytes) -> None:
        """Replace the file with `data`: temp file, fsync, rename, fsync the folder."""
        write_bytes_atomic(self, data)

    def upload_from(self, local: Path) -> None:
        """Make `local` (a finished file) this file: renamed into place when it is not it."""
        if Path(local) != self:
            os.replace(local, self)

    def sync(self) -> None:
        """fsync the file (when it exists) and its folder, so a write or a removal is durable."""
        if self.exists():
            fsync(self)
        if self.parent.is_dir():
            fsync(self.parent)

    def ensure_folder(self) -> None:
        self.mkdir(parents=True, exist_ok=True)

    def staging(self) -> AbstractContextManager[LocalPath]:
        """The local folder to write files in before they are in this folder: itself."""
        return nullcontext(self)

    def list_names(self) -> list[str]:
        """Relative paths of every file under this folder (hidden ones too), sorted."""
        if not self.is_dir():
            return []
        names = []
        for dirpath, _, files in os.walk(self):
            rel = os.path.relpath(dirpath, self)
            names += [name if rel == "." else f"{rel}/{name}" for name in files]
        return sorted(names)

    def remove(self) -> None:
        """Delete the file; nothing when it does not exist."""
        self.unlink(missing_ok=True)

    def remove_tree(self) -> None:
        """Delete the folder and everything under it; nothing when it does not exist."""
        shutil.rmtree(self, ignore_errors=True)

    def remove_tree_at_once(self, first: str) -> None:
        """Delete the folder so that it is gone from its name at once (renamed aside first),
        even if the deletion is cut short. (`first` is for object storage, which cannot
        rename.)"""
        trash = self.with_name(f".{self.name}.trash-{uuid.uuid4().hex[:8]}")
        os.rename(self, trash)
        shutil.rmtree(trash)

    def size_and_mtime(self) -> tuple[int, int]:
        """(size in bytes, modification time in ns)."""
        info = self.stat()
        return info.st_size, info.st_mtime_ns

    @contextmanager
    def open_binary(self) -> Iterator[BinaryIO]:
        with open(self, "rb") as f:
            yield f

    def total_bytes(self) -> int:
        """Bytes of every file under this folder."""
        total = 0
        for dirpath, _, files in os.walk(self):
            for name in files:
                try:
                    total += os.stat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
        return total

    def zarr_store(self) -> Any:
        """What zarr opens: the path as text."""
        return str(self)

    @property
    def options(self) -> dict[str, Any]:
        """Object-store options (none for a local path)."""
        return {}


class ObjectURL(str):
    """An object or "folder" (prefix) in an S3-compatible object store, `s3://bucket/key`."""

    is_remote = True
    options: dict[str, Any]

    def __new__(cls, url: str, options: dict[str, Any] | None = None) -> ObjectURL:
        self = super().__new__(cls, url.rstrip("/"))
        self.options = s3.storage_options() if options is None else dict(options)
        return self

    def __reduce__(self) -> tuple[type[ObjectURL], tuple[str, dict[str, Any]]]:
        return (ObjectURL, (str(self), self.options))

    @property
    def bucket(self) -> str:
        return s3.split_url(self)[0]

    @property
    def _key(self) -> str:
        bucket, key = s3.split_url(self)
        return f"{bucket}/{key}".rstrip("/")

    def _fs(self, fresh: bool = False) -> Any:
        fs = s3.filesystem(self.options)
        if fresh:  # other processes write concurrently: never trust a cached listing
            fs.invalidate_cache()
        return fs

    # Deliberately shadows str.join (never used as a separator: a URL is not one), so a
    # Location answers `join` the same way whichever kind it is.
    def join(self, *parts: str) -> ObjectURL:  # type: ignore[override]
        return ObjectURL(posixpath.join(str(self), *parts), self.options)

    @property
    def name(self) -> str:
        return posixpath.basename(str(self))

    @property
    def parent(self) -> ObjectURL:
        return ObjectURL(posixpath.dirname(str(self)), self.options)

    def exists(self) -> bool:
        return bool(self._fs(fresh=True).exists(self._key))

    def is_file(self) -> bool:
        return bool(self._fs(fresh=True).isfile(self._key))

    def is_dir(self) -> bool:
        """Whether this names a "folder" (a prefix holding objects), not an object."""
        return bool(self._fs().isdir(self._key))

    def bucket_exists(self) -> bool:
        return bool(self._fs().exists(self.bucket))

    def read_bytes(self) -> bytes:
        """The object's content; FileNotFoundError when it does not exist."""
        try:
            return bytes(self._fs().cat_file(self._key))
        except FileNotFoundError:
            # s3fs may answer from a listing cached before another process (a worker) wrote
            # the object: only a fresh look says it is absent
            return bytes(self._fs(fresh=True).cat_file(self._key))

    def write_durably(self, data: bytes) -> None:
        """Write the object in one PUT (readers see the old object or this one)."""
        self._fs().pipe_file(self._key, data)

    def upload_from(self, local: Path) -> None:
        """Upload a local file as this object (one PUT; multipart uploads appear only when
        completed)."""
        self._fs().put_file(str(local), self._key)

    def sync(self) -> None:
        """Nothing to do: an object is durable once its PUT returns."""

    def ensure_folder(self) -> None:
        """Nothing to do: prefixes exist while they hold objects."""

    def staging(self) -> AbstractContextManager[LocalPath]:
        """A local temporary folder to write files in before they are uploaded here."""
        return local_staging("ruinmap-products-")

    def list_names(self) -> list[str]:
        """Relative keys of every object under this prefix (fresh: no listing cache)."""
        base = self._key + "/"
        try:
            keys = self._fs(fresh=True).find(base)
        except FileNotFoundError:
            return []
        return sorted(k[len(base):] for k in keys if k.startswith(base))

    def remove(self) -> None:
        """Delete the object; nothing when it does not exist."""
        try:
            self._fs().rm_file(self._key)
        except FileNotFoundError:
            pass

    def remove_tree(self) -> None:
        """Delete every object under this prefix."""
        fs = self._fs(fresh=True)
        keys = fs.find(self._key)
        if keys:
            fs.rm(keys)
        fs.invalidate_cache()

    def remove_tree_at_once(self, first: str) -> None:
        """Delete every object under this prefix, the object `first` (the one readers look
        for) before the rest: there is no rename, so the tree stops being readable at once."""
        self.join(first).remove()
        self.remove_tree()

    def size_and_mtime(self) -> tuple[int, int]:
        """(size in bytes, modification time in ns)."""
        info = self._fs().info(self._key)
        modified = info.get("LastModified")
        mtime_ns = int(modified.timestamp() * 1e9) if modified is not None else 0
        return int(info["size"]), mtime_ns

    @contextmanager
    def open_binary(self) -> Iterator[BinaryIO]:
        with self._fs().open(self._key, "rb") as f:
            yield f

    def total_bytes(self) -> int:
        """Bytes of every object under this prefix."""
        try:
            return int(self._fs(fresh=True).du(self._key, total=True))
        except FileNotFoundError:
            return 0

    def zarr_store(self) -> Any:
        """What zarr opens: an FsspecStore with this URL's options."""
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(str(self), storage_options=dict(self.options),
                                    read_only=False)

    def glob(self) -> list[ObjectURL]:
        """The objects (not prefixes) matching this URL as a glob, sorted; itself when it has
        no wildcard and is an object."""
        fs = self._fs(fresh=True)
        if not any(c in self for c in "*?["):
            return [self] if fs.isfile(self._key) else []
        return sorted(ObjectURL(f"s3://{k}", self.options) for k in fs.glob(self._key)
                      if fs.isfile(k))


Location = LocalPath | ObjectURL


def as_location(text: str | os.PathLike[str]) -> Location:
    """An s3:// URL as given (without a trailing slash), or a local path made absolute (`~`
    expanded). A Location is returned as it is.

    Raises InputError for a URL scheme ruinmap cannot use, or an s3:// URL without a bucket.
    """
    if isinstance(text, LocalPath | ObjectURL):
        return text
    if isinstance(text, str) and "://" in text:
        if not is_url(text):
            raise InputError(
                f"{text}: only local paths and s3:// URLs are supported "
                "(for https:// inputs, download them first or use a GDAL VRT)"
            )
        url = ObjectURL(text)
        if not url.bucket:
            raise InputError(f"{text}: no bucket in the URL; use s3://bucket/key")
        return url
    return LocalPath(Path(text).expanduser().absolute())


def gdal_env(locations: Iterable[object]) -> AbstractContextManager[Any]:
    """The GDAL settings for reading `locations` (Locations or the text of paths and globs): a
    `rasterio.Env` with the object store's /vsis3/ options when any is an s3:// URL, nothing
    to set for local files."""
    if any(is_url(location) for location in locations):
        import rasterio

        return rasterio.Env(**s3.gdal_options())
    return nullcontext()


@contextmanager
def local_staging(prefix: str = "ruinmap-") -> Iterator[LocalPath]:
    """A local temporary folder for files on their way to object storage."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield LocalPath(folder)
