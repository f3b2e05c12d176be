"""Object storage settings: the S3 endpoint, the fsspec options and the GDAL /vsis3/ options.

- Credentials come from the usual AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  AWS_SESSION_TOKEN, AWS_PROFILE, instance roles), on the client and on every worker.
- The endpoint of an S3-compatible store (MinIO, Ceph, ...) is the Dask config
  `ruinmap.storage.endpoint-url`, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL. The client
  resolves it once: an `ObjectURL` made on the client carries `storage_options()` to the
  workers it is sent to, and tasks that read s3:// GeoTIFFs carry `gdal_options()`, so workers
  use the same endpoint as the client even where their configuration differs.
- GeoTIFFs on S3 are read by GDAL through /vsis3/ (rasterio opens `s3://` URLs that way);
  `gdal_options()` are the GDAL settings for the endpoint, applied in a `rasterio.Env` on the
  client and inside every worker task.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from ruinmap.cluster.settings import setting

__all__ = ["endpoint_url", "filesystem", "gdal_options", "split_url", "storage_options"]


def split_url(url: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URL."""
    parts = urlsplit(url)
    return parts.netloc, parts.path.lstrip("/")


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
