"""The OGC API - Processes flow with plain HTTP: discover, execute, poll, fetch results."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import rasterio

from tests.support.service import AUTH, TILES, Service, submit, wait_final, wait_for

pytestmark = pytest.mark.slow

CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"


def test_landing_conformance_api_and_process_description(service: Service) -> None:
    landing = httpx.get(f"{service.url}/").json()
    rels = {link["rel"] for link in landing["links"]}
    assert {"self", "service-desc", "http://www.opengis.net/def/rel/ogc/1.0/conformance",
            "http://www.opengis.net/def/rel/ogc/1.0/processes"} <= rels
    conforms = httpx.get(f"{service.url}/conformance").json()["conformsTo"]
    assert f"{CONF}core" in conforms and f"{CONF}dismiss" in conforms
    api = httpx.get(f"{service.url}/api").json()
    assert api["openapi"].startswith("3.") and "/jobs/{job_id}" in api["paths"]
    processes = httpx.get(f"{service.url}/processes").json()["processes"]
    assert [p["id"] for p in processes] == ["damage-map"]
    description = httpx.get(f"{service.url}/processes/damage-map").json()
    assert description["jobControlOptions"] == ["async-execute"]
    assert {"method", "inputs", "districts", "output"} <= set(description["inputs"])
    assert description["outputs"]["score_tif"]["schema"]["contentMediaType"].startswith(
        "image/tiff; application=geotiff")
    missing = httpx.get(f"{service.url}/processes/nope")
    assert missing.status_code == 404 and missing.json()["type"].endswith("no-such-process")


def test_execute_poll_and_fetch_results(service: Service, city_spec: dict[str, Any]) -> None:
    response = httpx.post(f"{service.url}/processes/damage-map/execution",
                          json={"inputs": {**city_spec, "output": {"dir": "flow"}}},
                          headers={**AUTH, "Prefer": "respond-async"})
    assert response.status_code == 201, response.text
    assert response.headers["Preference-Applied"] == "respond-async"
    job_id = response.json()["jobID"]
    assert response.headers["Location"] == f"{service.url}/jobs/{job_id}"
    assert response.json()["status"] in ("accepted", "running")

    seen: list[tuple[str, int]] = []

    def done() -> dict[str, Any] | None:
        info = httpx.get(response.headers["Location"]).json()
        seen.append((info["status"], info["progress"]))
        return info if info["status"] in ("successful", "failed") else None

    info = wait_for(done, 120, "the job", interval_s=0.05)
    assert info["status"] == "successful", info
    assert info["progress"] == 100 and info["created"] <= info["started"] <= info["finished"]
    assert info["ruinmap"]["tiles_total"] == TILES == info["ruinmap"]["tiles_run"]
    progress = [p for s, p in seen if s == "running"]
    assert progress == sorted(progress)  # never goes backwards
    assert any(link["rel"].endswith("/results") for link in info["links"])

    listed = httpx.get(f"{service.url}/jobs").json()
    assert job_id in {j["jobID"] for j in listed["jobs"]}

    results = httpx.get(f"{service.url}/jobs/{job_id}/results").json()
    expected = {"score_tif", "damage_tif", "grid_tif", "districts_parquet", "districts_geojson",
                "districts_csv", "districts_gpkg", "districts_hxl", "buildings_parquet",
                "buildings_gpkg", "map_png", "job_json", "stac_collection", "stac_item",
                "damage_aux_xml", "damage_qml", "grid_qml", "districts_png", "score_hist_png",
                "layers_tif"}
    assert set(results) == expected
    assert results["stac_collection"]["rel"] == "collection"
    assert results["stac_item"]["rel"] == "item"
    types = {}
    for name, link in results.items():
        download = httpx.get(link["href"])
        assert download.status_code == 200, name
        assert download.headers["content-type"].startswith(link["type"])
        types[name] = download.headers["content-type"]
        if name == "score_tif":
            with rasterio.open(io.BytesIO(download.content)) as src:
                score = src.read(1)
            # scored where built-up (the footprints, the default mask)
            assert score.shape == (256, 256) and np.isfinite(score).mean() > 0.1
        if name == "districts_csv":
            table = pd.read_csv(io.StringIO(download.text))
            assert len(table) > 1 and "damaged_fraction" in table
        if name.endswith("_png"):
            assert download.content[:8] == b"\x89PNG\r\n\x1a\n"
        if name == "stac_item":  # the catalog's checksum is the downloaded score.tif's
            item = download.json()
            score_tif = httpx.get(results["score_tif"]["href"]).content
            assert item["assets"]["score_tif"]["file:checksum"] == (
                "1220" + hashlib.sha256(score_tif).hexdigest())
        if name == "damage_aux_xml":  # the class names travel with the download
            assert "<CategoryNames>" in download.text and "severe" in download.text
    assert types["score_tif"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert types["districts_geojson"] == "application/geo+json"
    assert types["districts_parquet"] == "application/vnd.apache.parquet"
    assert types["districts_csv"].startswith("text/csv")
    assert types["job_json"] == "application/json"


def test_status_of_unknown_job_is_404_no_such_job(service: Service) -> None:
    response = httpx.get(f"{service.url}/jobs/0123456789abcdef")
    assert response.status_code == 404
    body = response.json()
    assert body["type"].endswith("no-such-job") and body["status"] == 404 and body["detail"]


def test_results_of_an_unfinished_job_are_not_ready(service: Service,
                                                    city_spec: dict[str, Any]) -> None:
    response = submit(service, {**city_spec, "output": {"dir": "not-ready"}})
    job_id = response.json()["jobID"]
    early = httpx.get(f"{service.url}/jobs/{job_id}/results")  # the job takes seconds
    assert early.status_code == 404 and early.json()["type"].endswith("result-not-ready")
    assert wait_final(service, job_id)["status"] == "successful"
    assert httpx.get(f"{service.url}/jobs/{job_id}/results").status_code == 200
