"""The `damage-map` process of the job service, one self-contained object (the way pygeoapi's
processes are): its OGC description, the schema of its execute request, and `execute`, which
checks a request, records the job and queues it.

The HTTP layer (`app`) only routes to it; everything the process knows about its inputs (the
job spec's tables), its outputs (`submission.OUTPUTS`) and where files may be read and written
(`PathPolicy`) is here or in `submission`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from ruinmap import __version__
from ruinmap.cluster.job.spec import (
    BuildingsSpec,
    DistrictsSpec,
    GridSpec,
    InputsSpec,
    JobSpec,
    MaskSpec,
    OutputSpec,
)
from ruinmap.cluster.methods import Method, MethodParams
from ruinmap.cluster.service.jobstore import JobRecord, JobStore
from ruinmap.cluster.service.paths import PathPolicy
from ruinmap.cluster.service.problems import OGC_EXC, RequestError
from ruinmap.cluster.service.runner import JobRunner
from ruinmap.cluster.service.submission import OUTPUTS, PROCESS_ID, check_execute_request
from ruinmap.errors import StoreError

__all__ = ["JSON", "REL", "DamageMapProcess"]

REL = "http://www.opengis.net/def/rel/ogc/1.0/"
JSON = "application/json"

# the job spec's tables as the process's inputs: (annotation, title, minOccurs)
_INPUT_TABLES: dict[str, tuple[Any, str, int]] = {
    "method": (Method, "Damage-mapping method", 1),
    "inputs": (InputsSpec, "Imagery: pre and post globs under the data roots, or an "
               "ingested store under the output root", 1),
    "districts": (DistrictsSpec, "District polygons (path under a data root)", 1),
    "buildings": (BuildingsSpec, "Optional building footprints", 0),
    "mask": (MaskSpec, "Optional built-up mask: buildings, none or a raster path under a data "
             "root (default: the footprints when given)", 0),
    "grid": (GridSpec, "The regular damage grid", 0),
    "output": (OutputSpec, "Output folder relative to the output root (default: the "
               "job id)", 0),
    "method_params": (MethodParams, "The method's parameters", 0),
}


def _schema(annotation: Any) -> dict[str, Any]:
    return TypeAdapter(annotation).json_schema(mode="validation")


class DamageMapProcess:
    """`damage-map`: the job spec of `ruinmap run` as JSON in, the job's files out."""

    id = PROCESS_ID

    def __init__(self, policy: PathPolicy, store: JobStore, runner: JobRunner) -> None:
        self.policy, self.store, self.runner = policy, store, runner

    def summary(self, base: str) -> dict[str, Any]:
        """The OGC process summary (the `/processes` list entry)."""
        return {
            "id": self.id,
            "title": "Damage map",
            "description": "Map damage from pre- and post-event imagery (`ruinmap run`): per-"
                           "district tables, per-building scores, a damage grid and maps. The "
                           "inputs are the job spec of `ruinmap run` as JSON.",
            "version": __version__,
            "jobControlOptions": ["async-execute"],
            "outputTransmission": ["reference"],
            "links": [
                {"href": f"{base}/processes/{self.id}", "rel": "self", "type": JSON,
                 "title": "process description"},
                {"href": f"{base}/processes/{self.id}/execution", "rel": f"{REL}execute",
                 "type": JSON, "title": "execute"},
            ],
        }

    def description(self, base: str) -> dict[str, Any]:
        """The OGC process description: the job spec's tables as inputs, the files as outputs."""
        inputs = {
            name: {"title": title, "description": title, "schema": _schema(annotation),
                   "minOccurs": min_occurs, "maxOccurs": 1}
            for name, (annotation, title, min_occurs) in _INPUT_TABLES.items()
        }
        outputs = {
            name: {"title": title, "description": f"{file}: {title}",
                   "schema": {"type": "string", "contentEncoding": "binary",
                              "contentMediaType": media}}
            for name, (file, media, title) in OUTPUTS.items()
        }
        return {**self.summary(base), "inputs": inputs, "outputs": outputs}

    @staticmethod
    def request_body() -> dict[str, Any]:
        """The OpenAPI request body of the execute endpoint."""
        return {
            "required": True,
            "content": {JSON: {"schema": {
                "type": "object", "required": ["inputs"], "additionalProperties": False,
                "properties": {
                    "inputs": JobSpec.model_json_schema(),
                    "outputs": {"type": "object"},
                    "response": {"type": "string", "enum": ["document", "raw"]},
                },
            }}},
        }  # fmt: skip

    def check_id(self, process_id: str) -> None:
        """RequestError 404 unless `process_id` is this process."""
        if process_id != self.id:
            raise RequestError(404, "No such process", f"there is no process "
                               f"'{process_id}'; the only one is '{self.id}'",
                               f"{OGC_EXC}no-such-process")

    async def execute(self, content_type: str, raw: bytes, submitter: str = "") -> JobRecord:
        """Check an execute request (its media type and JSON body), record the job and queue
        it; RequestError (4xx) for anything wrong with the request."""
        media = content_type.split(";")[0].strip().lower() or JSON
        if media not in (JSON, "application/*", "*/*") and not media.endswith("+json"):
            raise RequestError(415, "Unsupported media type",
                               f"the body must be JSON (Content-Type: {JSON}), not {media}")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise RequestError(400, "Invalid JSON", f"the body is not valid JSON: {exc}") \
                from None
        # checking the spec reads the vector files' schemas: off the event loop
        record = await run_in_threadpool(self._accept, body, submitter)
        self.runner.enqueue(record.id)
        return record

    def _store_readable(self, store: Path) -> None:
        try:
            self.store.check_store_readable(store)
        except StoreError as exc:
            raise RequestError(409, "Conflict", str(exc)) from None

    def _accept(self, body: Any, submitter: str) -> JobRecord:
        job_id = uuid.uuid4().hex
        submission = check_execute_request(body, self.policy, job_id, self.runner.config,
                                           store_check=self._store_readable)
        try:
            return self.store.create(self.id, submission.spec.to_json_dict(),
                                     submission.output_dir, job_id, submitter)
        except StoreError as exc:
            raise RequestError(409, "Conflict", str(exc)) from None
