"""A small STAC API for tests only, served on 127.0.0.1 by uvicorn in a thread.

No STAC API implementation on PyPI runs in-process without an external backend (stac-fastapi
needs PostgreSQL/pgstac or Elasticsearch/OpenSearch; its in-memory backends are test fixtures
of that project), so this follows the STAC API - Item Search spec (v1.0.0) for what ruinmap
uses: the landing page with `conformsTo` and a `search` link, `GET` and `POST /search` with
`bbox`, `datetime` (instants and `start/end` intervals, `..` open), `collections`, `ids`,
`limit` and paging through a `next` link (`token`), and the Query extension's
`eq`/`neq`/`lt`/`lte`/`gt`/`gte`/`in` operators. It also serves the assets over HTTP with
range requests (so GDAL's /vsicurl/ reads them as it reads a cloud bucket):
`/assets/<path>` freely, `/signed/<path>` only with `?token=<app.state.valid_token>`
("valid"; 403 otherwise, as an expired signature answers).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

from tests.support.processes import free_port

CONFORMS_TO = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
]


def _instant(text: str) -> dt.datetime:
    stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _in_interval(item: Mapping[str, Any], interval: str | None) -> bool:
    if not interval:
        return True
    when = _instant(item["properties"]["datetime"])
    if "/" not in interval:
        return when == _instant(interval)
    start, end = interval.split("/")
    if start not in ("", "..") and when < _instant(start):
        return False
    return not (end not in ("", "..") and when > _instant(end))


def _bbox_of(item: Mapping[str, Any]) -> Sequence[float]:
    return item["bbox"]


def _intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


_OPS = {
    "eq": lambda v, x: v == x, "neq": lambda v, x: v != x, "lt": lambda v, x: v < x,
    "lte": lambda v, x: v <= x, "gt": lambda v, x: v > x, "gte": lambda v, x: v >= x,
    "in": lambda v, x: v in x,
}


def _matches(item: Mapping[str, Any], query: Mapping[str, Any] | None) -> bool:
    for prop, tests in (query or {}).items():
        value = item["properties"].get(prop)
        for op, operand in tests.items():
            if op not in _OPS:
                raise HTTPException(400, f"query operator {op!r} is not supported")
            if value is None or not _OPS[op](value, operand):
                return False
    return True


def make_app(items: Sequence[Mapping[str, Any]], asset_root: Path) -> FastAPI:
    """The app: `items` (STAC Item dicts, their collection in `collection`) and the files
    under `asset_root` served at /assets/ and /signed/."""
    app = FastAPI()
    app.state.requests = []  # (method, path) of every request, for the tests to check
    app.state.valid_token = "valid"  # a test changes it to expire every signature given

    @app.middleware("http")
    async def _record(request: Request, call_next: Any) -> Any:
        app.state.requests.append((request.method, request.url.path))
        return await call_next(request)

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @app.get("/")
    def landing(request: Request) -> dict[str, Any]:
        root = base(request)
        return {
            "type": "Catalog", "id": "ruinmap-test", "stac_version": "1.0.0",
            "description": "STAC API for ruinmap's tests", "conformsTo": CONFORMS_TO,
            "links": [
                {"rel": "self", "href": root + "/", "type": "application/json"},
                {"rel": "root", "href": root + "/", "type": "application/json"},
                {"rel": "conformance", "href": root + "/conformance"},
                {"rel": "search", "href": root + "/search", "type": "application/geo+json",
                 "method": "GET"},
                {"rel": "search", "href": root + "/search", "type": "application/geo+json",
                 "method": "POST"},
            ],
        }

    @app.get("/conformance")
    def conformance() -> dict[str, Any]:
        return {"conformsTo": CONFORMS_TO}

    def search(request: Request, params: Mapping[str, Any]) -> JSONResponse:
        bbox = params.get("bbox")
        if isinstance(bbox, str):
            bbox = [float(v) for v in bbox.split(",")]
        collections = params.get("collections")
        if isinstance(collections, str):
            collections = collections.split(",")
        ids = params.get("ids")
        if isinstance(ids, str):
            ids = ids.split(",")
        limit = int(params.get("limit") or 10)
        token = int(params.get("token") or 0)
        found = [
            it for it in items
            if (not collections or it.get("collection") in collections)
            and (not ids or it["id"] in ids)
            and (bbox is None or _intersects(_bbox_of(it), bbox))
            and _in_interval(it, params.get("datetime"))
            and _matches(it, params.get("query"))
        ]
        page = found[token:token + limit]
        links = []
        if token + limit < len(found):
            if request.method == "POST":
                body = {**params, "token": token + limit}
                links.append({"rel": "next", "href": base(request) + "/search", "method": "POST",
                              "body": body, "merge": False, "type": "application/geo+json"})
            else:
                query = dict(request.query_params) | {"token": str(token + limit)}
                text = "&".join(f"{k}={v}" for k, v in query.items())
                links.append({"rel": "next", "href": f"{base(request)}/search?{text}",
                              "method": "GET", "type": "application/geo+json"})
        return JSONResponse({"type": "FeatureCollection", "features": list(page),
                             "links": links, "numberMatched": len(found),
                             "numberReturned": len(page)},
                            media_type="application/geo+json")

    @app.get("/search")
    def get_search(request: Request) -> JSONResponse:
        return search(request, dict(request.query_params))

    @app.post("/search")
    async def post_search(request: Request) -> JSONResponse:
        return search(request, await request.json())

    def _file(path: str) -> Path:
        target = (asset_root / path).resolve()
        if not target.is_relative_to(asset_root.resolve()) or not target.is_file():
            raise HTTPException(404, "no such asset")
        return target

    @app.get("/assets/{path:path}")
    def asset(path: str) -> FileResponse:
        return FileResponse(_file(path))

    @app.get("/signed/{path:path}")
    def signed(path: str, token: str = "") -> FileResponse:
        if token != app.state.valid_token:
            raise HTTPException(403, "signature expired")
        return FileResponse(_file(path))

    return app


@contextmanager
def serve(app: FastAPI, deadline_s: float = 20.0) -> Iterator[str]:
    """Run `app` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True, name="stac-api")
    thread.start()
    deadline = time.monotonic() + deadline_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the test STAC API did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
