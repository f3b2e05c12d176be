"""The OpenAPI document (`/api`) is true of the service: schemathesis generates requests from
it (a bounded number per operation) and sends them to the real `ruinmap serve` on 127.0.0.1,
checking every answer against the document: status codes, media types, headers, bodies.

schemathesis' pytest loader (`from_fixture`) does not run with this pytest, so each
operation's strategy is driven by hypothesis here, and the failures of all operations are
reported together.
"""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.service import AUTH, Service

EXAMPLES = 25


def test_the_service_answers_as_its_document_says(service: Service) -> None:
    schema = schemathesis.openapi.from_url(f"{service.url}/api")
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # all operations' failures, at the end
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_the_document_resolves_and_names_its_security(service: Service) -> None:
    doc = httpx.get(f"{service.url}/api").json()
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    assert doc["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    execute = doc["paths"]["/processes/{process_id}/execution"]["post"]
    assert execute["security"] == [{"bearerToken": []}]
    assert {"201", "400", "401", "403", "404", "413", "415"} <= set(execute["responses"])
    codes = {c for item in doc["paths"].values() for op in item.values()
             for c in op["responses"]}
    assert "422" not in codes
    conformance = httpx.get(f"{service.url}/conformance").json()["conformsTo"]
    assert not any(c.endswith("/oas30") for c in conformance)  # the document is 3.1
    assert doc["openapi"].startswith("3.1")


def test_method_not_allowed_lists_every_method_of_the_path(service: Service) -> None:
    response = httpx.put(f"{service.url}/jobs/0123456789abcdef", headers=AUTH)
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}
