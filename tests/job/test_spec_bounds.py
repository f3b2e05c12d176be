"""Every numeric parameter of the job spec has a documented upper bound: a value past it
(1e300, 10**400, a 100001 px Lee window) is a SpecError naming the key, never an overflow
or a task that does not end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ruinmap.cluster.job.spec import load_spec, parse_spec
from ruinmap.errors import SpecError

BASE: dict[str, Any] = {
    "method": "pwtt",
    "inputs": {"pre": ["pre/*.tif"], "post": ["post/*.tif"]},
    "districts": {"path": "districts.geojson", "id": "district_id"},
    "output": {"dir": "out"},
}

HUGE = 10**400  # JSON allows it; TOML's integers stop at 64 bits

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("pwtt", "grid", {"cell_size": 1e300}, r"grid\.cell_size: .*less than or equal to 100000"),
    ("pwtt", "grid", {"cell_size": 100_001}, r"grid\.cell_size: .*less than or equal"),
    ("pwtt", "method_params", {"min_pre": HUGE}, r"method_params\.min_pre: .*1000"),
    ("pwtt", "method_params", {"min_post": 1001}, r"method_params\.min_post: .*1000"),
    ("pwtt", "method_params", {"lee_size": 100_001}, r"method_params\.lee_size: .*101"),
    ("pwtt", "method_params", {"lee_enl": 1e300}, r"method_params\.lee_enl: .*1000"),
    ("pwtt", "method_params", {"focal_median_m": 1e300},
     r"method_params\.focal_median_m: .*1000"),
    ("pwtt", "method_params", {"radii_m": [50, 1e300, 150]},
     r"method_params\.radii_m: radii must be positive metres up to 10000"),
    ("pwtt", "method_params", {"weights": [1e300, 0.25, 0.25, 0.25]},
     r"method_params\.weights: weights must be >= 0"),
    ("pwtt", "method_params", {"threshold": 1e300},
     r"method_params\.threshold: must lie within \+-1e\+06"),
    ("pwtt", "method_params", {"class_thresholds": [1, 2, 3, 1e300]},
     r"method_params\.class_thresholds: must lie within"),
    ("pwtt", "method_params", {"orbits": {"*.tif": HUGE}},
     r"method_params\.orbits: orbit of '\*\.tif' must be an integer from 1 to 10000"),
    ("pwtt", "method_params", {"min_building_m2": 1e300},
     r"method_params\.min_building_m2: .*less than or equal to 1000000"),
    ("log-ratio", "method_params", {"radius_m": 1e300}, r"method_params\.radius_m: .*10000"),
    ("log-ratio", "method_params", {"min_pre": HUGE}, r"method_params\.min_pre: .*1000"),
    ("nd-change", "method_params", {"radius_m": 10_001}, r"method_params\.radius_m: .*10000"),
    ("nd-change", "method_params", {"min_post": HUGE}, r"method_params\.min_post: .*1000"),
    ("cva", "method_params", {"radius_m": 1e300}, r"method_params\.radius_m: .*10000"),
    ("cva", "method_params", {"min_pre": 10**6}, r"method_params\.min_pre: .*1000"),
    ("pwtt", "validation", {"labels": "l.gpkg", "seed": HUGE}, r"validation\.seed: "),
]


@pytest.mark.parametrize(("method", "table", "values", "message"), CASES,
                         ids=[f"{m}-{next(iter(v))}-{i}" for i, (m, _, v, _) in enumerate(CASES)])
def test_parameter_past_its_bound_is_a_spec_error(
    tmp_path: Path, method: str, table: str, values: dict[str, Any], message: str
) -> None:
    data = {**BASE, "method": method, table: values}
    job = tmp_path / "job.json"
    job.write_text(json.dumps(data))  # through the file, as `ruinmap run job.json` reads it
    with pytest.raises(SpecError, match=message):
        load_spec(job)


@pytest.mark.parametrize(("table", "values"), [
    ("grid", {"cell_size": 100_000}),
    ("method_params", {"lee_size": 101, "min_pre": 1000, "focal_median_m": 1000,
                       "radii_m": [10_000], "weights": [0.5, 0.5]}),
])
def test_values_at_their_bounds_are_accepted(tmp_path: Path, table: str,
                                             values: dict[str, Any]) -> None:
    spec = parse_spec({**BASE, table: values}, tmp_path)
    model = spec.grid if table == "grid" else spec.method_params
    assert all(getattr(model, k) == (tuple(v) if isinstance(v, list) else v)
               for k, v in values.items())


def test_districts_crs_must_be_a_crs(tmp_path: Path) -> None:
    data = {**BASE, "districts": {**BASE["districts"], "crs": "EPSG:99999999"}}
    with pytest.raises(SpecError, match=r"districts\.crs: 'EPSG:99999999' is not a CRS"):
        parse_spec(data, tmp_path)
    data["districts"]["crs"] = "EPSG:32637"
    assert parse_spec(data, tmp_path).districts.crs == "EPSG:32637"
