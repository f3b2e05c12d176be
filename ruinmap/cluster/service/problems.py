"""Request errors of the job service, each with its HTTP status and OGC exception type.

A `RequestError` becomes an OGC API exception document (`type`, `title`, `status`,
`detail`); it derives from SpecError, so library callers see a bad request as a bad spec.
"""

from __future__ import annotations

from typing import Any

from ruinmap.errors import SpecError

OGC_EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
RUINMAP_EXC = "https://github.com/ruinmap/ruinmap/errors/"

__all__ = ["OGC_EXC", "RUINMAP_EXC", "RequestError", "exception_body"]


class RequestError(SpecError):
    """A request the service refuses: `status` (4xx), `type` (a URI) and `title`."""

    def __init__(self, status: int, title: str, detail: str, type_: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_ or f"{RUINMAP_EXC}{title.lower().replace(' ', '-')}"


def exception_body(
    status: int, title: str, detail: str, type_: str, **extra: Any
) -> dict[str, Any]:
    """The OGC API exception document (RFC 7807 problem details)."""
    return {"type": type_, "title": title, "status": status, "detail": detail, **extra}
