"""Links are built from the configured `server.public_url` (default: relative), never from the
request's Host header, and the client sends its token only to the service's own origin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ruinmap.cluster.service.client import ServiceClient, ServiceError
from tests.support.service import AUTH, TOKEN, Service, submit, wait_final


@pytest.fixture(scope="module")
def relative_service(start_service: Callable[..., Service],
                     tmp_path_factory: pytest.TempPathFactory) -> Service:
    return start_service(tmp_path_factory.mktemp("relative"), **{"server.public_url": ""})


def test_links_are_relative_by_default_whatever_the_host(
        relative_service: Service, city_spec: dict[str, Any], tmp_path: Path) -> None:
    response = submit(relative_service, {**city_spec, "output": {"dir": "links"}})
    job_id = response.json()["jobID"]
    assert response.headers["Location"] == f"/jobs/{job_id}"
    assert wait_final(relative_service, job_id)["status"] == "successful"
    evil = {"Host": "evil.example", **AUTH}
    info = httpx.get(f"{relative_service.url}/jobs/{job_id}", headers=evil).json()
    assert {link["href"] for link in info["links"]} == {f"/jobs/{job_id}",
                                                        f"/jobs/{job_id}/results"}
    results = httpx.get(f"{relative_service.url}/jobs/{job_id}/results", headers=evil).json()
    assert all(link["href"].startswith(f"/jobs/{job_id}/results/") for link in results.values())
    with ServiceClient(relative_service.url, TOKEN) as client:
        written = client.download(job_id, tmp_path)
    assert {p.name for p in written} >= {"score.tif", "districts.csv", "job.json"}


def test_a_configured_origin_wins_over_the_host_header(service: Service,
                                                       finished_job: dict[str, Any]) -> None:
    job_id = finished_job["jobID"]
    info = httpx.get(f"{service.url}/jobs/{job_id}", headers={"Host": "evil.example"}).json()
    assert all(link["href"].startswith(f"{service.url}/") for link in info["links"])


@pytest.mark.parametrize(("href", "ok"), [
    ("/jobs/a/results/score_tif", True),
    ("http://127.0.0.1:8080/jobs/a/results/score_tif", True),
    ("http://evil.example/jobs/a/results/score_tif", False),
    ("http://127.0.0.1:8081/jobs/a", False),
    ("https://127.0.0.1:8080/jobs/a", False),
    ("//evil.example/x", False),
])  # fmt: skip
def test_the_client_follows_links_on_its_own_origin_only(href: str, ok: bool) -> None:
    client = ServiceClient("http://127.0.0.1:8080", TOKEN)
    if ok:
        assert client.same_origin(href, "score_tif").startswith("http://127.0.0.1:8080/")
    else:
        with pytest.raises(ServiceError, match="not following it with your token"):
            client.same_origin(href, "score_tif")
    client.close()
