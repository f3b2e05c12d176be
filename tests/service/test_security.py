"""Each security rule of the job service, and malformed requests: 4xx OGC exceptions only."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from ruinmap.cluster.service.config import hash_token, load_config
from ruinmap.synthetic import City
from tests.support.service import AUTH, TOKEN, TOKEN_2, Service, submit, wait_final

pytestmark = pytest.mark.slow


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status and body["detail"]
    return dict(body)


# -- tokens


def test_submission_without_a_token_is_401(service: Service, city_spec: dict[str, Any]) -> None:
    response = submit(service, city_spec, token=None)
    _problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_submission_with_a_wrong_token_is_401(service: Service,
                                              city_spec: dict[str, Any]) -> None:
    _problem(submit(service, city_spec, token="not-a-token"), 401)
    _problem(submit(service, city_spec, token=hash_token(TOKEN)), 401)  # the hash is no token


def test_a_token_configured_as_its_hash_is_accepted(service: Service,
                                                    city_spec: dict[str, Any]) -> None:
    response = submit(service, {**city_spec, "output": {"dir": "hashed-token"}}, token=TOKEN_2)
    assert response.status_code == 201, response.text
    with service.http(TOKEN_2) as http:
        assert http.delete(f"/jobs/{response.json()['jobID']}").status_code == 200


def test_dismissal_needs_a_token(service: Service, finished_job: dict[str, Any]) -> None:
    job = finished_job["jobID"]
    _problem(httpx.delete(f"{service.url}/jobs/{job}"), 401)
    _problem(httpx.delete(f"{service.url}/jobs/{job}", headers={"Authorization": "Bearer x"}),
             401)
    assert httpx.get(f"{service.url}/jobs/{job}").json()["status"] == "successful"


def test_tokens_are_kept_only_as_hashes(tmp_path: Path) -> None:
    config = tmp_path / "service.toml"
    config.write_text(f'[auth]\ntokens = ["plain-secret", "{hash_token("other")}"]\n')
    loaded = load_config(config)
    assert loaded.token_hashes == (hash_token("plain-secret"), hash_token("other"))
    assert "plain-secret" not in repr(loaded)
    assert loaded.token_allowed("plain-secret") and loaded.token_allowed("other")
    assert not loaded.token_allowed(hash_token("other"))


def test_environment_overrides_the_config_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "service.toml"
    config.write_text('[jobs]\nmax_running = 3\n[paths]\noutput_root = "out"\n')
    monkeypatch.setenv("RUINMAP_SERVICE_JOBS_MAX_RUNNING", "7")
    monkeypatch.setenv("RUINMAP_SERVICE_AUTH_TOKENS", "a,b")
    monkeypatch.setenv("RUINMAP_SERVICE_PATHS_DATA_ROOTS", f"/data{os.pathsep}/more")
    loaded = load_config(config)
    assert loaded.max_running == 7 and len(loaded.token_hashes) == 2
    assert loaded.data_roots == (Path("/data"), Path("/more"))
    assert loaded.output_root == tmp_path / "out"
    assert load_config(None).max_running == 7


# -- read endpoints


@pytest.mark.parametrize("path", ["/", "/processes", "/jobs", "/jobs/abc", "/ui/"])
def test_reads_need_a_token_when_configured(private_service: Service, path: str) -> None:
    if path == "/ui/":  # the page itself is static and asks for a token; its data needs one
        assert httpx.get(private_service.url + path).status_code == 200
        _problem(httpx.get(private_service.url + "/jobs"), 401)
        return
    _problem(httpx.get(private_service.url + path), 401)
    assert httpx.get(private_service.url + path, headers=AUTH).status_code in (200, 404)


def test_reads_are_public_by_default(service: Service) -> None:
    assert httpx.get(f"{service.url}/jobs").status_code == 200


# -- paths


def _path_case(city_spec: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(city_spec))
    if where == "districts":
        spec["districts"]["path"] = value
    elif where == "pre":
        spec["inputs"]["pre"] = value
    elif where == "output":
        spec["output"] = {"dir": value}
    elif where == "store":
        spec["inputs"] = {"store": value}
    elif where == "labels":
        spec["validation"] = {"labels": value}
    elif where == "mask":
        spec["mask"] = {"source": value, "classes": [50]}
    return spec


@pytest.mark.parametrize(("where", "value", "status"), [
    ("districts", "../secret/districts.geojson", 400),
    ("pre", ["city/pre/../../../etc/*.tif"], 400),
    ("output", "../escape", 400),
    ("districts", "file:///etc/passwd", 400),
    ("pre", ["s3://bucket/pre/*.tif"], 400),
    ("districts", "https://example.org/districts.geojson", 400),
    ("districts", "~/districts.geojson", 400),
    ("districts", "/etc/passwd", 403),
    ("pre", ["/etc/*.conf"], 403),
    ("output", "/tmp/elsewhere", 403),
    ("store", "/etc", 403),
    ("labels", "../secret/labels.gpkg", 400),
    ("labels", "/etc/passwd", 403),
    ("labels", "/etc/*.conf", 403),
    ("mask", "../secret/worldcover.tif", 400),
    ("mask", "/etc/passwd", 403),
])  # fmt: skip
def test_paths_outside_the_roots_are_refused(
    service: Service, city_spec: dict[str, Any], where: str, value: Any, status: int
) -> None:
    _problem(submit(service, _path_case(city_spec, where, value)), status)


def test_symlinks_pointing_out_of_the_data_root_are_refused(
    service: Service, city_spec: dict[str, Any], service_city: City, data_root: Path,
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside.geojson"
    outside.write_bytes(service_city.districts_path.read_bytes())
    link = data_root / "link-out.geojson"
    link.symlink_to(outside)
    try:
        body = _problem(submit(service, _path_case(city_spec, "districts", link.name)), 403)
        assert "outside" in body["detail"]
    finally:
        link.unlink()


def test_symlinked_output_folder_leading_out_is_refused(
    service: Service, city_spec: dict[str, Any], tmp_path: Path
) -> None:
    link = service.output_root / "sneaky"
    link.symlink_to(tmp_path, target_is_directory=True)
    try:
        _problem(submit(service, _path_case(city_spec, "output", "sneaky/out")), 403)
    finally:
        link.unlink()


def test_an_output_folder_in_use_is_refused(service: Service, city_spec: dict[str, Any]) -> None:
    first = submit(service, {**city_spec, "output": {"dir": "busy"}})
    assert first.status_code == 201
    second = submit(service, {**city_spec, "output": {"dir": "busy"}})
    _problem(second, 409)
    with service.http() as http:
        http.delete(f"/jobs/{first.json()['jobID']}")


# -- malformed requests


def _post(service: Service, content: bytes, content_type: str = "application/json"
          ) -> httpx.Response:
    return httpx.post(f"{service.url}/processes/damage-map/execution", content=content,
                      headers={**AUTH, "Content-Type": content_type})


@pytest.mark.parametrize("content", [
    b"{not json", b"", b"\xff\xfe\x00", b"[1, 2, 3]", b"\"inputs\"", b"null",
    b"{\"inputs\": 5}", b"{\"inputs\": {}, \"extra\": 1}", b"{\"outputs\": {}}",
    b"[" * 5000 + b"]" * 5000,
])  # fmt: skip
def test_malformed_bodies_are_400(service: Service, content: bytes) -> None:
    _problem(_post(service, content), 400)


@pytest.mark.parametrize("change", [
    {"method": "magic"},
    {"method": 7},
    {"districts": "districts.geojson"},
    {"districts": {"path": 12, "id": "district_id"}},
    {"grid": {"cell_size": "big"}},
    {"grid": {"cell_size": -5}},
    {"unknown_table": {}},
    {"method_params": {"no_such_param": 1}},
    {"inputs": {"pre": ["city/pre/*.tif"]}},
    {"inputs": {"pre": ["nothing/*.tif"], "post": ["nothing/*.tif"]}},
    {"output": {"dir": 5}},
    {"output": {"dir": "x", "color": "red"}},
    {"output": {"dir": "a" * 5000}},
    {"output": {"dir": "b" * 300}},
    {"districts": {"path": "bad\ud800name.geojson", "id": "district_id"}},
    {"districts": {"path": "nul\u0000.geojson", "id": "district_id"}},
    {"districts": {"path": "city/pre", "id": "district_id"}},
    {"districts": {"path": "city/truth_landcover.tif", "id": "district_id"}},
])  # fmt: skip
def test_bad_job_specs_are_400_naming_the_key(
    service: Service, city_spec: dict[str, Any], change: dict[str, Any]
) -> None:
    # sent as ASCII JSON, so a lone surrogate travels as its \ud800 escape
    content = json.dumps({"inputs": {**city_spec, **change}}, ensure_ascii=True).encode()
    body = _problem(_post(service, content), 400)
    key = next(iter(change))
    assert key in body["detail"] or "path" in body["detail"], body["detail"]


def test_oversize_body_is_413(service: Service, city_spec: dict[str, Any]) -> None:
    big = json.dumps({"inputs": {**city_spec, "padding": "x" * 2_000_000}}).encode()
    _problem(_post(service, big), 413)

    def chunks() -> Any:  # no Content-Length: the limit applies while streaming
        for _ in range(40):
            yield b" " * 65536

    response = httpx.post(f"{service.url}/processes/damage-map/execution", content=chunks(),
                          headers={**AUTH, "Content-Type": "application/json"})
    _problem(response, 413)


def test_non_json_content_type_is_415(service: Service) -> None:
    _problem(_post(service, b"inputs=1", "application/x-www-form-urlencoded"), 415)


def test_bad_query_parameters_are_400(service: Service) -> None:
    _problem(httpx.get(f"{service.url}/jobs", params={"limit": "many"}), 400)
    _problem(httpx.get(f"{service.url}/jobs", params={"limit": 0}), 400)
    _problem(httpx.get(f"{service.url}/jobs", params={"status": "sleeping"}), 400)


def test_unknown_routes_and_methods_are_ogc_errors(service: Service) -> None:
    _problem(httpx.get(f"{service.url}/nowhere"), 404)
    _problem(httpx.put(f"{service.url}/jobs", headers=AUTH), 405)
    _problem(httpx.get(f"{service.url}/jobs/abc/results/score_tif"), 404)
    _problem(httpx.get(f"{service.url}/ui/..%2Fapp.py"), 404)


def test_unknown_output_of_a_finished_job_is_404(service: Service,
                                                 finished_job: dict[str, Any]) -> None:
    job = finished_job["jobID"]
    _problem(httpx.get(f"{service.url}/jobs/{job}/results/etc_passwd"), 404)
    _problem(httpx.get(f"{service.url}/jobs/{job}/results/..%2F..%2Fjobs.sqlite"), 404)


def test_token_header_is_not_needed_for_reads_but_does_not_hurt(service: Service) -> None:
    assert httpx.get(f"{service.url}/jobs", headers={"Authorization": f"Bearer {TOKEN}"}
                     ).status_code == 200


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_jobs_reading_a_finished_store_never_change_it_nor_let_it_be_dismissed(
    service: Service, city_spec: dict[str, Any], finished_job: dict[str, Any]
) -> None:
    store = Path(finished_job["ruinmap"]["output_dir"]) / "store.zarr"
    before = _tree_digest(store)
    on_store = {**city_spec, "inputs": {"store": "undisturbed/store.zarr"}}
    readers = []
    for n, cell in enumerate((170.0, 230.0)):  # two jobs at once on one store
        response = submit(service, {**on_store, "grid": {"cell_size": cell},
                                    "output": {"dir": f"on-store-{n}"}})
        assert response.status_code == 201, response.text
        readers.append(response.json()["jobID"])
    with service.http() as http:
        body = _problem(http.delete(f"/jobs/{finished_job['jobID']}"), 409)
    assert all(job in body["detail"] for job in readers), body
    for job in readers:
        assert wait_final(service, job)["status"] == "successful"
    assert _tree_digest(store) == before  # not one byte of the first job's store changed
    assert httpx.get(f"{service.url}/jobs/{finished_job['jobID']}").json()["status"] == \
        "successful"
    with service.http() as http:
        for job in readers:
            assert http.delete(f"/jobs/{job}").status_code == 200


def test_a_job_may_not_read_the_store_of_a_job_that_has_not_succeeded(
        service: Service, city_spec: dict[str, Any]) -> None:
    first = submit(service, {**city_spec, "output": {"dir": "store-maker"}})
    assert first.status_code == 201, first.text
    reader = submit(service, {**city_spec, "inputs": {"store": "store-maker/store.zarr"},
                              "output": {"dir": "early-reader"}})
    body = _problem(reader, 409)
    assert first.json()["jobID"] in body["detail"] and "succeeded" in body["detail"]
    with service.http() as http:
        assert http.delete(f"/jobs/{first.json()['jobID']}").status_code == 200


def test_a_job_may_not_take_or_nest_in_another_jobs_folder(
        service: Service, city_spec: dict[str, Any], finished_job: dict[str, Any]) -> None:
    owner = finished_job["ruinmap"]["output_dir"]
    other = {**city_spec, "grid": {"cell_size": 170.0}}
    for folder, words in ((owner, "holds the results of job"),
                          (f"{owner}/inner", "lies inside the folder"),
                          (f"{owner}/store.zarr/x", "lies inside the folder")):
        body = _problem(submit(service, {**other, "output": {"dir": folder}}), 409)
        assert words in body["detail"], body
    assert httpx.get(f"{service.url}/jobs/{finished_job['jobID']}").json()["status"] \
        == "successful"


def test_dismissing_a_job_keeps_a_folder_of_files_it_did_not_make(
        service: Service, city_spec: dict[str, Any]) -> None:
    folder = service.output_root / "someone-elses"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("field notes")
    response = submit(service, {**city_spec, "output": {"dir": "someone-elses"}})
    assert response.status_code == 201, response.text
    info = wait_final(service, response.json()["jobID"])
    assert info["status"] == "failed" and "not made by ruinmap" in info["message"], info
    with service.http() as http:
        assert http.delete(f"/jobs/{response.json()['jobID']}").status_code == 200
    assert (folder / "notes.txt").read_text() == "field notes"  # the refused folder is kept
