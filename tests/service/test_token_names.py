"""Tokens carry names; a job records the name that submitted it, and only that token or an
admin token may dismiss it. Job stores from before the names open and gain the column."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ruinmap.cluster.service.config import hash_token, load_config
from ruinmap.cluster.service.jobstore import JobStore
from ruinmap.errors import SpecError
from tests.support.service import TOKEN, TOKEN_2, Service, submit


def test_only_the_submitting_token_may_dismiss(service: Service,
                                               city_spec: dict[str, Any]) -> None:
    job_id = submit(service, {**city_spec, "output": {"dir": "owned"}}, token=TOKEN_2)\
        .json()["jobID"]
    with service.http(TOKEN) as other:
        refused = other.delete(f"/jobs/{job_id}")
        assert refused.status_code == 403
        assert "only that token or an admin token" in refused.json()["detail"]
        assert other.get(f"/jobs/{job_id}").json()["status"] != "dismissed"
    with service.http(TOKEN_2) as owner:
        assert owner.delete(f"/jobs/{job_id}").json()["status"] == "dismissed"


@pytest.fixture(scope="module")
def named_service(start_service: Callable[..., Service],
                  tmp_path_factory: pytest.TempPathFactory) -> Service:
    tokens = [{"name": "field-team", "token": TOKEN},
              {"name": "lead", "token": hash_token(TOKEN_2), "admin": True}]
    return start_service(tmp_path_factory.mktemp("named"), **{"auth.tokens": tokens})


def test_an_admin_token_may_dismiss_any_job(named_service: Service,
                                            city_spec: dict[str, Any]) -> None:
    job_id = submit(named_service, {**city_spec, "output": {"dir": "field"}}, token=TOKEN)\
        .json()["jobID"]
    with named_service.http(TOKEN_2) as lead:
        assert lead.delete(f"/jobs/{job_id}").json()["status"] == "dismissed"


def test_token_entries(tmp_path: Path) -> None:
    config = tmp_path / "service.toml"
    config.write_text('[auth]\ntokens = ["plain", {name = "lead", token = "x", admin = true}]\n')
    loaded = load_config(config)
    assert [(t.name, t.admin) for t in loaded.tokens] == [
        (f"token-{hash_token('plain')[7:15]}", False), ("lead", True)]
    assert loaded.token_named("x") == loaded.tokens[1]
    assert loaded.token_named("y") is None
    config.write_text('[auth]\ntokens = [{name = "a", token = "x"}, {name = "a", token = "y"}]\n')
    with pytest.raises(SpecError, match="names \\['a'\\] more than once"):
        load_config(config)
    config.write_text('[auth]\ntokens = [{name = "a", secret = "x"}]\n')
    with pytest.raises(SpecError, match="give name"):
        load_config(config)


def test_a_job_store_from_before_token_names_opens(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite"
    with sqlite3.connect(db) as old:  # the table as the first job stores had it
        old.execute("CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL "
                    "UNIQUE, process_id TEXT NOT NULL, status TEXT NOT NULL, progress INTEGER "
                    "NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '', created TEXT NOT "
                    "NULL, started TEXT, finished TEXT, updated TEXT NOT NULL, spec TEXT NOT "
                    "NULL, output_dir TEXT NOT NULL, files TEXT NOT NULL DEFAULT '{}', "
                    "tiles_total INTEGER, tiles_run INTEGER, runs INTEGER NOT NULL DEFAULT 0)")
        old.execute("INSERT INTO jobs (id, process_id, status, created, updated, spec, "
                    "output_dir) VALUES ('j1', 'damage-map', 'successful', 't', 't', '{}', "
                    "'/x')")
    store = JobStore(db)
    record = store.get("j1")
    assert record is not None and record.submitter == ""
    store.close()
