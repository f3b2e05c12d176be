"""Monitoring through the job service: a dated job resubmitted into its own output.dir with
a post-event file appended grows its series (`job.monitor`), and its results carry the time
series over every date and the runs that made it; any other change to the spec there is
still refused."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ruinmap.synthetic import City, make_city
from tests.support.service import Service, spec_inputs, submit, wait_final


@pytest.fixture(scope="module")
def dated_city(data_root: Path) -> City:
    """A 64 x 64 px city (one tile), its buildings destroyed on known post dates."""
    return make_city(data_root / "monitored", size=64, seed=9, n_pre=4, n_post=3,
                     n_districts=2, dated_destruction=True, destroyed_fraction=0.3)


def _inputs(city: City, data_root: Path, n_post: int) -> dict[str, Any]:
    inputs = spec_inputs(city, data_root)
    # the files themselves (the spec's own is one glob), relative to the data root
    inputs["inputs"]["post"] = [os.path.relpath(p, data_root)
                                for p in city.post_files[:n_post]]
    inputs["method_params"] = {**inputs["method_params"], "dating": True}
    return {**inputs, "output": {"dir": "monitored"}}


def _get(service: Service, path: str) -> Any:
    with service.http() as http:
        response = http.get(path)
        assert response.status_code == 200, response.text
        return response


def _run(service: Service, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    response = submit(service, inputs)
    assert response.status_code == 201, response.text
    job_id = response.json()["jobID"]
    info = wait_final(service, job_id, deadline_s=240)
    assert info["status"] == "successful", info
    return job_id, _get(service, f"/jobs/{job_id}/results").json()


def test_a_job_resubmitted_with_more_dates_appends_them(
        service: Service, dated_city: City, data_root: Path) -> None:
    first, results = _run(service, _inputs(dated_city, data_root, 2))
    assert "districts_timeseries_csv" in results
    csv = _get(service, f"/jobs/{first}/results/districts_timeseries_csv").text
    assert pd.read_csv(io.StringIO(csv))["date"].nunique() == 2

    changed = _inputs(dated_city, data_root, 2)
    changed["method_params"]["dating_z_crit"] = 3.0
    refused = submit(service, changed)
    assert refused.status_code in (400, 409), refused.text
    assert "may not replace them" in refused.text

    second, results = _run(service, _inputs(dated_city, data_root, 3))
    assert {"districts_timeseries_csv", "districts_timeseries_png",
            "damage_date_tif"} <= set(results)
    series = pd.read_csv(io.StringIO(
        _get(service, f"/jobs/{second}/results/districts_timeseries_csv").text))
    assert list(series.loc[series["district_id"] == "all", "date"]) == [
        d.isoformat() for d in dated_city.post_dates]
    runs = _get(service, f"/jobs/{second}/results/job_json").json()["runs"]
    assert [len(r["added_post_dates"]) for r in runs] == [2, 1]
    assert runs[1]["appended"] and runs[1]["added_post_dates"][0][:10] == (
        dated_city.post_dates[2].isoformat())
