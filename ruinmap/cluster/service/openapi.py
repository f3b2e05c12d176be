"""The OpenAPI document served at `/api`, made true of the service.

FastAPI's generated document is the start; on top of it:
- every status code an operation answers is documented, with the OGC exception body
  (`application/problem+json`), and FastAPI's 422 (never sent: invalid parameters are 400)
  is gone;
- the bearer token is a security scheme, required by `execute` and `dismiss` (and by every
  read when `server.public_read` is false);
- schemas nested in the request body keep their definitions in `components/schemas` (the
  job spec's pydantic schema carried its own `$defs`, referenced from a place where they did
  not resolve);
- the files of `GET /jobs/{jobId}/results/{outputId}` have their media types.

The document is OpenAPI 3.1 (JSON Schema 2020-12, as pydantic writes it); the service does
not claim the OGC `oas30` conformance class.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ruinmap.cluster.service.submission import OUTPUTS

__all__ = ["service_openapi"]

PROBLEM = "application/problem+json"
SECURITY = "bearerToken"

_EXCEPTION_SCHEMA: dict[str, Any] = {
    "title": "OGC exception",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}

_MEANING = {
    "400": "the request is invalid (parameter, body or path text)",
    "401": "a bearer token is needed, or the one given is not known",
    "403": "a path in the request lies outside the service's roots, or the token may not "
           "dismiss this job (another token submitted it)",
    "404": "no such process, job, output, or the result is not ready",
    "409": "the job conflicts with another job (an output folder that is not its own, a "
           "store that is not finished, or a store an active job reads), or its map is asked "
           "for before it has finished",
    "410": "the job was dismissed, or its file is gone",
    "413": "the request body is over server.max_body_bytes",
    "415": "the request body is not JSON",
}

#: (method, path) -> error statuses it answers, besides the token errors
_ERRORS: dict[tuple[str, str], tuple[str, ...]] = {
    ("get", "/"): (),
    ("get", "/conformance"): (),
    ("get", "/processes"): (),
    ("get", "/processes/{process_id}"): ("404",),
    ("post", "/processes/{process_id}/execution"): ("400", "403", "404", "409", "413", "415"),
    ("get", "/jobs"): ("400",),
    ("get", "/jobs/{job_id}"): ("404",),
    ("get", "/jobs/{job_id}/results"): ("404", "410"),
    ("get", "/jobs/{job_id}/results/{output_id}"): ("404", "410"),
    ("delete", "/jobs/{job_id}"): ("403", "404", "409"),
    ("get", "/jobs/{job_id}/map-data"): ("404", "410"),
    ("get", "/jobs/{job_id}/grid.png"): ("404", "410"),
    ("get", "/jobs/{job_id}/tiles/{layer}/{z}/{x}/{y}.png"): ("404", "409", "410"),
    ("get", "/jobs/{job_id}/buildings.geojson"): ("400", "404", "409", "410"),
}
_WRITES = {("post", "/processes/{process_id}/execution"), ("delete", "/jobs/{job_id}")}


def _problem_response(status: str) -> dict[str, Any]:
    return {"description": _MEANING[status],
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Exception"}}}}


def _hoist_defs(node: Any, schemas: dict[str, Any]) -> Any:
    """Move nested `$defs` into components/schemas and point their `$ref`s there."""
    if isinstance(node, dict):
        for name, schema in node.pop("$defs", {}).items():
            schemas[name] = _hoist_defs(schema, schemas)
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                value = "#/components/schemas/" + value.removeprefix("#/$defs/")
            out[key] = _hoist_defs(value, schemas)
        return out
    if isinstance(node, list):
        return [_hoist_defs(v, schemas) for v in node]
    return node


def _operations(doc: dict[str, Any]) -> Iterable[tuple[str, str, dict[str, Any]]]:
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            yield method, path, operation


def service_openapi(app: FastAPI, *, token_reads: bool) -> dict[str, Any]:
    """The document of `app` (module doc); `token_reads`: reads need the token too."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    doc["paths"] = _hoist_defs(doc.get("paths", {}), schemas)
    schemas["Exception"] = copy.deepcopy(_EXCEPTION_SCHEMA)
    components["securitySchemes"] = {SECURITY: {
        "type": "http", "scheme": "bearer",
        "description": "a token of the service's [auth] tokens"}}
    for method, path, operation in _operations(doc):
        responses = operation.setdefault("responses", {})
        responses.pop("422", None)
        statuses = list(_ERRORS.get((method, path), ()))
        needs_token = (method, path) in _WRITES or token_reads
        if needs_token:
            operation["security"] = [{SECURITY: []}]
            statuses.append("401")
        has_parameters = bool(operation.get("parameters"))
        if has_parameters and "400" not in statuses:
            statuses.append("400")  # a parameter that does not parse
        for status in sorted(set(statuses)):
            responses[status] = _problem_response(status)
    _document_files(doc)
    _document_created(doc)
    return doc


def _document_files(doc: dict[str, Any]) -> None:
    operation = doc["paths"].get("/jobs/{job_id}/results/{output_id}", {}).get("get")
    if operation is None:
        return
    types = sorted({media for _, media, _ in OUTPUTS.values()})
    operation["responses"]["200"] = {
        "description": "the file, with its media type (see the results' links)",
        "content": {media: {"schema": {"type": "string", "format": "binary"}}
                    for media in types},
    }
    for parameter in operation.get("parameters", []):
        if parameter.get("name") == "output_id":
            parameter["schema"] = {"type": "string", "title": "Output Id"}


def _document_created(doc: dict[str, Any]) -> None:
    operation = doc["paths"].get("/processes/{process_id}/execution", {}).get("post")
    if operation is None:
        return
    responses = operation["responses"]
    responses.pop("200", None)
    responses["201"] = {
        "description": "the job is accepted: its status info, and its URL in Location",
        "headers": {"Location": {"schema": {"type": "string"},
                                 "description": "the job's status URL"}},
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
