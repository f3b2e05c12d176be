"""Object storage: `s3://` URLs beside local paths, for inputs, the Zarr store and outputs.

A *location* is either a local path (`pathlib.Path`) or an `s3://bucket/key` URL (`str`).
Everything here takes either; local paths keep their plain-file behaviour, so callers change
only where a local-only operation (rename, fsync, os.walk) has no object-store twin.

- Credentials come from the usual AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  AWS_SESSION_TOKEN, AWS_PROFILE, instance roles), on the client and on every worker.
- The endpoint of an S3-compatible store (MinIO, Ceph, ...) is the Dask config
  `ruinmap.storage.endpoint-url`, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL. The client
  resolves it once and ships it with the tasks (`storage_options()`, `gdal_options()`), so
  workers use the same endpoint as the client even where their configuration differs.
- GeoTIFFs on S3 are read by GDAL through /vsis3/ (rasterio opens `s3://` URLs that way);
  `gdal_options()` are the GDAL settings for the endpoint, applied in a `rasterio.Env` on the
  client and inside every worker task.
- A PUT replaces an object whole (S3 has no partial objects and no rename), which is what
  makes single-object writes here atomic: a reader sees the old object or the new one.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruinmap.cluster.config import setting
from ruinmap.errors import InputError

URL_SCHEMES = ("s3://",)

Location = Path | str


def is_url(location: str | os.PathLike[str] | None) -> bool:
    """Whether `location` is an object-store URL (s3://...), not a local path."""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def as_location(text: str | os.PathLike[str]) -> Location:
    """A URL as given (without a trailing slash), or a local path made absolute (`~` expanded).

    Raises InputError for a URL scheme ruinmap cannot use.
    """
    if isinstance(text, str) and "://" in text:
        if not is_url(text):
            raise InputError(
                f"{text}: only local paths and s3:// URLs are supported "
                "(for https:// inputs, download them first or use a GDAL VRT)"
            )
        bucket, _ = split_url(text)
        if not bucket:
            raise InputError(f"{text}: no bucket in the URL; use s3://bucket/key")
        return text.rstrip("/")
    return Path(text).expanduser().absolute()


def split_url(url: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URL."""
    parts = urlsplit(url)
    return parts.netloc, parts.path.lstrip("/")


def join(base: Location, *parts: str) -> Location:
    """`base` / parts, for a path or a URL."""
    if is_url(base):
        return posixpath.join(str(base).rstrip("/"), *parts)
    return Path(base).joinpath(*parts)


def name_of(location: Location) -> str:
    """The last component of a path or URL (the file name)."""
    return posixpath.basename(str(location).rstrip("/")) if is_url(location) else Path(
        location).name


def endpoint_url() -> str | None:
    """The S3 endpoint URL: config `ruinmap.storage.endpoint-url`, else AWS_ENDPOINT_URL_S3,
    else AWS_ENDPOINT_URL, else None (AWS itself)."""
    value = setting("storage.endpoint-url")
    for candidate in (value, os.environ.get("AWS_ENDPOINT_URL_S3"),
                      os.environ.get("AWS_ENDPOINT_URL")):
        if candidate:
            return str(candidate).rstrip("/")
    return None


def storage_options() -> dict[str, Any]:
    """fsspec/s3fs options of this process (the endpoint; credentials stay in the env)."""
    endpoint = endpoint_url()
    return {"endpoint_url": endpoint} if endpoint else {}


def gdal_options() -> dict[str, str]:
    """GDAL configuration options for reading s3:// GeoTIFFs through /vsis3/.

    For a custom endpoint: AWS_S3_ENDPOINT (host:port), AWS_HTTPS=NO for an http:// endpoint,
    and AWS_VIRTUAL_HOSTING=FALSE (path-style requests, which MinIO and friends need). Plus
    GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR (no listing of the "folder" for side-car files)
    and the config's `ruinmap.storage.gdal` options.
    """
    options = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    endpoint = endpoint_url()
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
        options["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
        options["AWS_VIRTUAL_HOSTING"] = "FALSE"
    extra = setting("storage.gdal") or {}
    options.update({str(k): str(v) for k, v in dict(extra).items()})
    return options


def filesystem(options: dict[str, Any] | None = None) -> Any:
    """The s3fs filesystem (fsspec caches instances per options)."""
    import fsspec

    return fsspec.filesystem("s3", **(storage_options() if options is None else options))


def _key(url: str) -> str:
    bucket, key = split_url(url)
    return f"{bucket}/{key}".rstrip("/")


def _url(key: str) -> str:
    return f"s3://{key}"


def glob(pattern: str, options: dict[str, Any] | None = None) -> list[str]:
    """The objects (not prefixes) matching an s3:// glob, sorted; one URL when it has no magic."""
    fs = filesystem(options)
    fs.invalidate_cache()
    if not any(c in pattern for c in "*?["):
        return [pattern] if fs.isfile(_key(pattern)) else []
    return sorted(_url(k) for k in fs.glob(_key(pattern)) if fs.isfile(k))


def is_prefix(url: str, options: dict[str, Any] | None = None) -> bool:
    """Whether `url` names a "folder" (a prefix holding objects), not an object."""
    fs = filesystem(options)
    return bool(fs.isdir(_key(url)))


def bucket_exists(url: str, options: dict[str, Any] | None = None) -> bool:
    bucket, _ = split_url(url)
    return bool(filesystem(options).exists(bucket))


def stat(location: Location, options: dict[str, Any] | None = None) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of a file or object."""
    if not is_url(location):
        info = Path(location).stat()
        return info.st_size, info.st_mtime_ns
    fs = filesystem(options)
    info = fs.info(_key(str(location)))
    modified = info.get("LastModified")
    mtime_ns = int(modified.timestamp() * 1e9) if modified is not None else 0
    return int(info["size"]), mtime_ns


@contextmanager
def open_binary(location: Location, options: dict[str, Any] | None = None) -> Iterator[Any]:
    """A binary reader of a file or object."""
    if is_url(location):
        with filesystem(options).open(_key(str(location)), "rb") as f:
            yield f
    else:
        with open(location, "rb") as f:
            yield f


def read_bytes(location: Location, options: dict[str, Any] | None = None) -> bytes:
    """The content of a file or object; FileNotFoundError when it does not exist."""
    if is_url(location):
        return bytes(filesystem(options).cat_file(_key(str(location))))
    return Path(location).read_bytes()


def put_bytes(url: str, data: bytes, options: dict[str, Any] | None = None) -> None:
    """Write an object in one PUT (atomic: readers see the old object or this one)."""
    filesystem(options).pipe_file(_key(url), data)


def put_file(local: Path, url: str, options: dict[str, Any] | None = None) -> None:
    """Upload a local file as one object (atomic like `put_bytes`; multipart uploads appear
    only when completed)."""
    filesystem(options).put_file(str(local), _key(url))


def exists(location: Location, options: dict[str, Any] | None = None) -> bool:
    if is_url(location):
        fs = filesystem(options)
        fs.invalidate_cache()
        return bool(fs.exists(_key(str(location))))
    return Path(location).exists()


def is_file(location: Location, options: dict[str, Any] | None = None) -> bool:
    if is_url(location):
        fs = filesystem(options)
        fs.invalidate_cache()
        return bool(fs.isfile(_key(str(location))))
    return Path(location).is_file()


def remove(url: str, options: dict[str, Any] | None = None) -> None:
    """Delete one object; nothing when it does not exist."""
    fs = filesystem(options)
    try:
        fs.rm_file(_key(url))
    except FileNotFoundError:
        pass


def remove_prefix(url: str, options: dict[str, Any] | None = None) -> None:
    """Delete every object under `url` (a "folder")."""
    fs = filesystem(options)
    fs.invalidate_cache()
    keys = fs.find(_key(url))
    if keys:
        fs.rm(keys)
    fs.invalidate_cache()


def list_names(url: str, options: dict[str, Any] | None = None) -> list[str]:
    """Relative keys of every object under `url` (fresh: no listing cache)."""
    fs = filesystem(options)
    fs.invalidate_cache()
    base = _key(url) + "/"
    return sorted(k[len(base):] for k in fs.find(base) if k.startswith(base))


def total_bytes(location: Location, options: dict[str, Any] | None = None) -> int:
    """Bytes of every file/object under a folder or prefix."""
    if is_url(location):
        fs = filesystem(options)
        fs.invalidate_cache()
        try:
            return int(fs.du(_key(str(location)), total=True))
        except FileNotFoundError:
            return 0
    total = 0
    for dirpath, _, files in os.walk(location):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def zarr_store(location: Location, options: dict[str, Any] | None = None) -> Any:
    """What zarr opens: the local path as text, or an FsspecStore for a URL."""
    if not is_url(location):
        return str(location)
    from zarr.storage import FsspecStore

    opts = storage_options() if options is None else options
    return FsspecStore.from_url(str(location), storage_options=dict(opts), read_only=False)


def upload_tree(local: Path, url: str, *, last: str | None = None,
                options: dict[str, Any] | None = None) -> None:
    """Upload every file under `local` below `url`; the relative key `last` goes last (a
    reader that looks for it sees the tree only once the rest is there)."""
    files = sorted(p for p in local.rglob("*") if p.is_file())
    ordered = [p for p in files if p.relative_to(local).as_posix() != last]
    ordered += [p for p in files if p.relative_to(local).as_posix() == last]
    for path in ordered:
        put_file(path, str(join(url, path.relative_to(local).as_posix())), options)


@contextmanager
def local_staging(prefix: str = "ruinmap-") -> Iterator[Path]:
    """A local temporary folder for files on their way to object storage."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)
