"""deploy/compose.yaml parsed and checked: scheduler, two workers, the service, one volume."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
import yaml

from tests.support.repo import DEPLOY, REPO

COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())  # YAML merge keys (<<) resolved
    assert isinstance(data, dict)
    return data


def _words(command: Any) -> list[str]:
    return command.split() if isinstance(command, str) else list(command)


def test_compose_has_a_scheduler_two_workers_and_the_service(compose):
    services = compose["services"]
    assert set(services) == {"scheduler", "worker-1", "worker-2", "service"}
    scheduler = services["scheduler"]
    assert _words(scheduler["entrypoint"]) + _words(scheduler["command"])[:1] == ["dask",
                                                                                  "scheduler"]
    port = _words(scheduler["command"])[_words(scheduler["command"]).index("--port") + 1]
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        words = _words(worker["entrypoint"]) + _words(worker["command"])
        assert words[:2] == ["dask", "worker"]
        assert f"tcp://scheduler:{port}" in words
        assert "scheduler" in worker["depends_on"]


def test_every_container_runs_the_one_image(compose):
    images = {s["image"] for s in compose["services"].values()}
    assert len(images) == 1
    for service in compose["services"].values():
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]
                ).resolve() == (DEPLOY / "docker" / "Dockerfile").resolve()


def test_the_service_serves_its_config_against_the_compose_scheduler(compose):
    service = compose["services"]["service"]
    words = _words(service["command"])
    assert words[0] == "serve" and "entrypoint" not in service  # the image's: ruinmap
    assert words[words.index("--host") + 1] == "0.0.0.0"
    config_target = words[words.index("--config") + 1]
    [config] = [c for c in service["configs"] if c["target"] == config_target]
    source = COMPOSE.parent / compose["configs"][config["source"]]["file"]
    settings = tomllib.loads(source.read_text())
    assert settings["cluster"]["address"] == "tcp://scheduler:8786"
    assert set(settings) == {"auth", "paths", "store", "cluster", "jobs"}
    assert settings["store"]["db"].startswith("/data/")
    for root in (*settings["paths"]["data_roots"], settings["paths"]["output_root"]):
        assert root.startswith("/data/")
    port = words[words.index("--port") + 1]
    assert any(p.endswith(f":{port}") for p in service["ports"])


def test_every_container_shares_the_data_volume(compose):
    assert set(compose["volumes"]) == {"data"}
    for name in ("worker-1", "worker-2", "service"):
        assert "data:/data" in compose["services"][name]["volumes"], name


def test_published_ports_listen_on_loopback_only(compose):
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


def test_the_compose_build_context_holds_the_project(compose):
    context = (COMPOSE.parent / compose["services"]["scheduler"]["build"]["context"]).resolve()
    assert context == REPO and (context / "pyproject.toml").is_file()
