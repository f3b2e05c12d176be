"""A small client of the job service (what `ruinmap submit/jobs/status/results/cancel` use).

Errors come back as `ServiceError` with the service's own explanation (its OGC exception
`detail`), plus what to do for the common ones (no token, wrong token, unreachable service).
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from ruinmap.errors import RuinmapError, SpecError

__all__ = ["ServiceClient", "ServiceError", "read_job_file"]

DEFAULT_URL = "http://127.0.0.1:8080"
FINAL = ("successful", "failed", "dismissed")


class ServiceError(RuinmapError):
    """The job service refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def read_job_file(path: str | Path) -> dict[str, Any]:
    """A job file (TOML or JSON) as the `inputs` of an execute request.

    Paths stay as written: the service resolves relative ones against its first data root.
    The `cluster` table is left out: the service runs jobs on its own cluster.
    """
    import json

    file = Path(path)
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise SpecError(f"{file}: cannot read the job file ({exc.strerror})") from None
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else tomllib.loads(
            text.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpecError(f"{file}: not a valid job file: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{file}: the job must be a table (JSON object)")
    data.pop("cluster", None)
    return data


class ServiceClient:
    """Calls to one service at `url`, with an optional bearer `token`."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None,
                 timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach the job service at {self.url} ({exc}); check "
                               "--url and that `ruinmap serve` is running") from None
        if response.is_success:
            return response
        detail = response.text
        try:
            body = response.json()
            detail = body.get("detail") or body.get("title") or detail
        except ValueError:
            pass
        hint = ""
        if response.status_code == 401:
            hint = " (give --token or set RUINMAP_TOKEN to one of the service's tokens)"
        raise ServiceError(f"{method} {path}: {response.status_code} {detail}{hint}",
                           response.status_code)

    def submit(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Execute `damage-map` asynchronously; the new job's status info."""
        response = self._request("POST", "/processes/damage-map/execution",
                                 json={"inputs": dict(spec)},
                                 headers={"Prefer": "respond-async"})
        return dict(response.json())

    def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self._request("GET", "/jobs", params={"limit": limit}).json()["jobs"])

    def status(self, job_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/jobs/{job_id}").json())

    def results(self, job_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/jobs/{job_id}/results").json())

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._request("DELETE", f"/jobs/{job_id}").json())

    def wait(self, job_id: str, *, poll_s: float = 0.5, timeout_s: float | None = None,
             on_status: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the job is successful, failed or dismissed; its last status info."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            info = self.status(job_id)
            if on_status is not None:
                on_status(info)
            if info["status"] in FINAL:
                return info
            if end is not None and time.monotonic() > end:
                raise ServiceError(f"job {job_id} still {info['status']} after {timeout_s:g} s")
            time.sleep(poll_s)  # polling interval

    def same_origin(self, href: str, what: str) -> str:
        """`href` (relative, or absolute on this client's origin) as a URL to fetch; a link
        to any other origin is refused, so the bearer token never leaves the service."""
        base = httpx.URL(self.url + "/")
        url = base.join(href)
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            raise ServiceError(f"{what}: the service linked to {href}, which is not on "
                               f"{self.url}; not following it with your token")
        return str(url)

    def download(self, job_id: str, out_dir: str | Path) -> list[Path]:
        """Every output of a successful job into `out_dir`; the paths written."""
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, link in self.results(job_id).items():
            target = folder / _relative_path(str(link.get("title") or name))
            target.parent.mkdir(parents=True, exist_ok=True)
            file_name = target.name
            partial = target.with_name(f".{file_name}.part")
            href = self.same_origin(str(link["href"]), name)
            try:
                with self._http.stream("GET", href) as response:
                    if not response.is_success:
                        raise ServiceError(f"{name}: {response.status_code} from the service",
                                           response.status_code)
                    with partial.open("wb") as fh:
                        for block in response.iter_bytes():
                            fh.write(block)
            except httpx.HTTPError as exc:
                partial.unlink(missing_ok=True)
                raise ServiceError(f"{name}: download failed ({exc})") from None
            os.replace(partial, target)
            written.append(target)
        return written


def _relative_path(title: str) -> Path:
    """The output's path in the job's folder (stac/<item>/<item>.json keeps the catalog's
    relative links whole); only its name when it would leave the download folder."""
    path = Path(title)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return Path(path.name or "output")
    return path
