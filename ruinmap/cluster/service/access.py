"""Who may do what on the job service: a bearer token for anything that changes state, and
for reading too unless `server.public_read`."""

from __future__ import annotations

from fastapi import Request

from ruinmap.cluster.service.config import ServiceConfig, Token
from ruinmap.cluster.service.problems import RequestError

__all__ = ["Access"]


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class Access:
    """The service's checks of a request's token (RequestError 401 when it fails)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config

    def require_token(self, request: Request) -> Token:
        """The configured token the request carries; RequestError 401 without one."""
        token = bearer_token(request)
        if token is None:
            raise RequestError(401, "Unauthorized", "this request needs a bearer token "
                               "(Authorization: Bearer <token>); `ruinmap submit` takes "
                               "--token or RUINMAP_TOKEN")
        known = self.config.token_named(token)
        if known is None:
            raise RequestError(401, "Unauthorized", "the bearer token is not one of the "
                               "service's tokens")
        return known

    def require_read(self, request: Request) -> None:
        if not self.config.public_read:
            self.require_token(request)
