"""`[inputs.stac]` in the job spec: parsed, checked, and its default area the districts'."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ruinmap.cluster.job.spec import parse_spec
from ruinmap.cluster.job.spec.files import validate_spec_files
from ruinmap.errors import SpecError

STAC = {"url": "http://127.0.0.1:9/stac", "collections": ["sentinel-1-rtc"],
        "pre_datetime": "2023-01-01/2023-02-05", "post_datetime": "2023-02-07/2023-03-15"}


def _spec(tmp_path: Path, inputs: dict[str, Any]) -> Any:
    districts = tmp_path / "districts.geojson"
    districts.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": 1}, "geometry": {"type": "Polygon",
         "coordinates": [[[36.1, 36.15], [36.3, 36.15], [36.3, 36.25], [36.1, 36.25],
                          [36.1, 36.15]]]}}]}))
    return parse_spec({"method": "pwtt", "inputs": inputs,
                       "districts": {"path": str(districts), "id": "id"},
                       "output": {"dir": str(tmp_path / "out")}}, tmp_path)


def test_stac_bbox_defaults_to_the_districts_extent_in_degrees(tmp_path):
    files = validate_spec_files(_spec(tmp_path, {"stac": STAC}))
    assert files.stac is not None and files.stac.is_api
    assert files.stac.bbox == pytest.approx((36.1, 36.15, 36.3, 36.25))
    assert files.stac.assets == ("vv", "vh") and files.stac.mask_classes == (3, 8, 9, 10)
    assert files.pre == () and files.post == ()


def test_stac_catalog_path_resolves_against_the_job_folder_and_round_trips(tmp_path):
    spec = _spec(tmp_path, {"stac": {**{k: v for k, v in STAC.items() if k != "url"},
                                     "catalog": "stac/catalog.json", "bbox": [1, 2, 3, 4],
                                     "assets": ["B04", "B08", "B11"], "mask": "SCL"}})
    assert spec.inputs.stac.catalog == str(tmp_path / "stac" / "catalog.json")
    assert parse_spec(tomllib.loads(spec.to_toml()), "/") == spec


@pytest.mark.parametrize(("inputs", "message"), [
    ({"stac": {**STAC, "catalog": "c.json"}}, "either url .* or catalog"),
    ({"stac": {k: v for k, v in STAC.items() if k != "url"}}, "either url .* or catalog"),
    ({"stac": STAC, "pre": ["a.tif"], "post": ["b.tif"]}, "stac .* alone"),
    ({"stac": {**STAC, "url": "ftp://x"}}, "not an http"),
    ({"stac": {**STAC, "bbox": [3, 2, 1, 4]}}, "west, south, east, north"),
    ({"stac": {**STAC, "assets": []}}, "distinct asset"),
    ({"stac": {k: v for k, v in STAC.items() if k != "post_datetime"}}, "post_datetime"),
])
def test_bad_stac_tables_are_spec_errors_naming_the_key(tmp_path, inputs, message):
    with pytest.raises(SpecError, match=message):
        _spec(tmp_path, inputs)
