"""The HTTP side of the job service: OGC API - Processes - Part 1: Core (1.0) on FastAPI.

Endpoints (JSON unless said otherwise):

- `GET /` landing page, `GET /conformance`, `GET /api` (the OpenAPI 3.1 document, see
  `openapi`: every status each operation answers, the bearer scheme);
- `GET /processes`, `GET /processes/damage-map` (inputs and outputs);
- `POST /processes/damage-map/execution` (token): asynchronous execution, 201 + `Location`;
- `GET /jobs`, `GET /jobs/{jobId}` (status info), `GET /jobs/{jobId}/results` (links),
  `GET /jobs/{jobId}/results/{outputId}` (the file, with its media type),
  `DELETE /jobs/{jobId}` (token): dismiss;
- `GET /ui/` the results page (see `page.py`).

Every error is an OGC exception document (`type`, `title`, `status`, `detail`) with a 4xx
status for anything a client did; a 500 means a bug here.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ruinmap import __version__
from ruinmap.cluster.service.access import Access
from ruinmap.cluster.service.config import ServiceConfig
from ruinmap.cluster.service.jobstore import JobRecord, JobStatus, JobStore
from ruinmap.cluster.service.openapi import service_openapi
from ruinmap.cluster.service.paths import PathPolicy
from ruinmap.cluster.service.problems import OGC_EXC, RequestError, exception_body
from ruinmap.cluster.service.process import JSON, REL, DamageMapProcess
from ruinmap.cluster.service.runner import JobRunner
from ruinmap.cluster.service.submission import OUTPUTS, RESULT_RELS

log = logging.getLogger(__name__)

__all__ = ["create_app"]

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
]


class BodyTooLarge(Exception):
    """The request body exceeds `server.max_body_bytes`."""


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes, by Content-Length or as they stream."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                too_big = False
            if too_big:
                await _send_problem(send, 413, "Payload too large",
                                    f"the request body has {int(declared)} bytes; the limit is "
                                    f"{self.limit} (server.max_body_bytes)")
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge
            return message

        await self.app(scope, limited, send)


async def _send_problem(send: Send, status: int, title: str, detail: str) -> None:
    body = json.dumps(exception_body(status, title, detail,
                                     f"{OGC_EXC}{title.lower().replace(' ', '-')}")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _problem(status: int, title: str, detail: str, type_: str | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    kind = type_ or f"{OGC_EXC}{title.lower().replace(' ', '-')}"
    return JSONResponse(exception_body(status, title, detail, kind), status_code=status,
                        media_type="application/problem+json", headers=headers)


def status_info(record: JobRecord, base: str) -> dict[str, Any]:
    """The OGC statusInfo of a job, plus a `ruinmap` member with tile counts."""
    links = [{"href": f"{base}/jobs/{record.id}", "rel": "self", "type": JSON,
              "title": "job status"}]
    if record.status == "successful":
        links.append({"href": f"{base}/jobs/{record.id}/results", "rel": f"{REL}results",
                      "type": JSON, "title": "job results"})
    info: dict[str, Any] = {
        "processID": record.process_id, "type": "process", "jobID": record.id,
        "status": record.status, "message": record.message, "created": record.created,
        "started": record.started, "finished": record.finished, "updated": record.updated,
        "progress": record.progress, "links": links,
        "ruinmap": {"tiles_total": record.tiles_total, "tiles_run": record.tiles_run,
                    "runs": record.runs, "output_dir": record.output_dir.name},
    }
    return {k: v for k, v in info.items() if v is not None}


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of `request`'s path takes (HEAD with GET)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET", "type": "http"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
    if not methods:  # any path prefix trick: at least what the router said
        return ["GET"]
    return sorted(methods)


def create_app(config: ServiceConfig, *, start_runner: bool = True) -> FastAPI:
    """The service app for `config`; its lifespan opens the job store and starts the runner."""
    policy = PathPolicy.of(config.data_roots, config.output_root)
    config.output_root.mkdir(parents=True, exist_ok=True)
    store = JobStore(config.db)
    runner = JobRunner(config, store)
    damage_map = DamageMapProcess(policy, store, runner)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_runner:
            runner.start()
        try:
            yield
        finally:
            if start_runner:
                runner.stop()
            store.close()

    app = FastAPI(
        title="ruinmap job service", version=__version__, openapi_url="/api", docs_url=None,
        redoc_url=None, lifespan=lifespan,
        description="OGC API - Processes - Part 1: Core (1.0) for ruinmap's damage-map process",
    )  # fmt: skip
    app.state.config = config
    app.state.store = store
    app.state.runner = runner
    app.state.policy = policy
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)

    # -- errors

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _problem(exc.status, exc.title, exc.detail, exc.type, headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _problem(413, "Payload too large", f"the request body is over "
                        f"{config.max_body_bytes} bytes (server.max_body_bytes)")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors())
        return _problem(400, "Invalid parameter value", problems,
                        f"{OGC_EXC}invalid-parameter-value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed"}
        title = titles.get(exc.status_code, "Request error")
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:  # Starlette names the first matching route's methods only
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(app, request))}
        return _problem(exc.status_code, title, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return _problem(500, "Internal error", f"{type(exc).__name__}: {exc}")

    def _base(request: Request) -> str:
        # links start at the configured origin (or are relative): an untrusted Host header
        # must never decide where a client follows a link with its token
        return config.public_url

    access = Access(config)
    require_token, require_read = access.require_token, access.require_read
    app.state.require_read = require_read

    def job_or_404(job_id: str) -> JobRecord:
        record = store.get(job_id)
        if record is None:
            raise RequestError(404, "No such job", f"there is no job '{job_id}'",
                               f"{OGC_EXC}no-such-job")
        return record

    app.state.job_or_404 = job_or_404

    # -- OGC core

    @app.get("/", summary="Landing page")
    def landing(request: Request) -> dict[str, Any]:
        require_read(request)
        base = _base(request)
        return {
            "title": "ruinmap job service",
            "description": "Damage mapping from satellite imagery on a Dask cluster "
                           "(OGC API - Processes)",
            "links": [
                {"href": f"{base}/", "rel": "self", "type": JSON, "title": "this document"},
                {"href": f"{base}/api", "rel": "service-desc",
                 "type": "application/vnd.oai.openapi+json;version=3.1",
                 "title": "the API definition"},
                {"href": f"{base}/ui/", "rel": "service-doc", "type": "text/html",
                 "title": "results page"},
                {"href": f"{base}/conformance", "rel": f"{REL}conformance", "type": JSON,
                 "title": "conformance classes"},
                {"href": f"{base}/processes", "rel": f"{REL}processes", "type": JSON,
                 "title": "processes"},
                {"href": f"{base}/jobs", "rel": f"{REL}job-list", "type": JSON,
                 "title": "jobs"},
            ],
        }

    @app.get("/conformance", summary="Conformance classes")
    def conformance(request: Request) -> dict[str, Any]:
        require_read(request)
        return {"conformsTo": CONFORMANCE}

    @app.get("/processes", summary="Processes")
    def processes(request: Request) -> dict[str, Any]:
        require_read(request)
        base = _base(request)
        return {"processes": [damage_map.summary(base)],
                "links": [{"href": f"{base}/processes", "rel": "self", "type": JSON}]}

    @app.get("/processes/{process_id}", summary="Process description")
    def process(process_id: str, request: Request) -> dict[str, Any]:
        require_read(request)
        damage_map.check_id(process_id)
        return damage_map.description(_base(request))

    @app.post("/processes/{process_id}/execution", status_code=201, summary="Execute",
              openapi_extra={"requestBody": damage_map.request_body()})
    async def execute(process_id: str, request: Request) -> Response:
        who = require_token(request)
        damage_map.check_id(process_id)
        record = await damage_map.execute(request.headers.get("content-type", JSON),
                                          await request.body(), who.name)
        base = _base(request)
        headers = {"Location": f"{base}/jobs/{record.id}"}
        if "respond-async" in request.headers.get("prefer", ""):
            headers["Preference-Applied"] = "respond-async"
        return JSONResponse(status_info(record, base), status_code=201, headers=headers)

    @app.get("/jobs", summary="Jobs")
    def jobs(
        request: Request,
        limit: int = Query(100, ge=1, le=10_000),
        offset: int = Query(0, ge=0),
        status: list[JobStatus] | None = Query(None),  # noqa: B008 - FastAPI's style
    ) -> dict[str, Any]:
        require_read(request)
        wanted: list[str] = list(status or [])
        base = _base(request)
        records = store.list(statuses=wanted, limit=limit, offset=offset)
        links = [{"href": str(request.url), "rel": "self", "type": JSON}]
        if len(records) == limit:
            links.append({"href": f"{base}/jobs?limit={limit}&offset={offset + limit}"
                          + "".join(f"&status={s}" for s in wanted),
                          "rel": "next", "type": JSON})
        return {"jobs": [status_info(r, base) for r in records], "links": links,
                "numberTotal": store.count(statuses=wanted)}

    @app.get("/jobs/{job_id}", summary="Job status")
    def job_status(job_id: str, request: Request) -> dict[str, Any]:
        require_read(request)
        return status_info(job_or_404(job_id), _base(request))

    def _finished(job_id: str) -> JobRecord:
        record = job_or_404(job_id)
        if record.status == "successful":
            return record
        if record.status in ("accepted", "running"):
            raise RequestError(404, "Result not ready", f"job {job_id} is {record.status}; "
                               "poll /jobs/{jobId} until it is successful",
                               f"{OGC_EXC}result-not-ready")
        if record.status == "failed":
            raise RequestError(404, "Job failed", f"job {job_id} failed: {record.message}",
                               f"{OGC_EXC}job-results-failed")
        raise RequestError(410, "Job dismissed", f"job {job_id} was dismissed and its "
                           "results removed", f"{OGC_EXC}no-such-job")

    @app.get("/jobs/{job_id}/results", summary="Job results")
    def job_results(job_id: str, request: Request) -> dict[str, Any]:
        require_read(request)
        record = _finished(job_id)
        base = _base(request)
        return {
            name: {"href": f"{base}/jobs/{job_id}/results/{name}", "type": OUTPUTS[name][1],
                   # its path in the job's folder: a download keeps stac/'s relative hrefs
                   "title": record.files[name], "rel": RESULT_RELS.get(name, "enclosure")}
            for name in record.files if name in OUTPUTS
        }

    @app.get("/jobs/{job_id}/results/{output_id}", summary="One output file")
    def job_output(job_id: str, output_id: str, request: Request) -> FileResponse:
        require_read(request)
        record = _finished(job_id)
        path = output_file(record, output_id)
        return FileResponse(path, media_type=OUTPUTS[output_id][1], filename=path.name)

    def output_file(record: JobRecord, output_id: str) -> Path:
        if output_id not in record.files or output_id not in OUTPUTS:
            raise RequestError(404, "No such output", f"job {record.id} has no output "
                               f"'{output_id}'; it has {', '.join(record.files)}",
                               f"{OGC_EXC}no-such-output")
        path = policy.check_output(record.output_dir / record.files[output_id],
                                   f"output {output_id}")
        if not path.is_file():
            raise RequestError(410, "Output gone", f"{path.name} of job {record.id} is no "
                               "longer on disk")
        return path

    app.state.output_file = output_file

    @app.delete("/jobs/{job_id}", summary="Dismiss a job")
    def dismiss(job_id: str, request: Request) -> dict[str, Any]:
        who = require_token(request)
        owned = job_or_404(job_id)
        if owned.submitter and owned.submitter != who.name and not who.admin:
            raise RequestError(403, "Forbidden", f"job {job_id} was submitted with the token "
                               f"'{owned.submitter}'; only that token or an admin token "
                               "(auth.tokens: admin = true) may dismiss it")
        readers = [job.id for job in runner.store.readers_of(owned.output_dir)
                   if job.id != job_id]
        if readers:  # its store is their imagery: removing it would fail them
            raise RequestError(409, "Conflict", f"job {job_id}'s store is read by active "
                               f"job{'s' if len(readers) > 1 else ''} {', '.join(readers)} "
                               "(inputs.store); dismiss them first or wait for them")
        record = runner.dismiss(job_id)
        if record is None:  # removed by jobs.retention_days meanwhile
            job_or_404(job_id)
        assert record is not None
        return status_info(record, _base(request))

    from ruinmap.cluster.service.page import add_page_routes

    add_page_routes(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = service_openapi(app, token_reads=not config.public_read)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

