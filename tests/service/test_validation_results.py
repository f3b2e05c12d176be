"""A job with a [validation] table through the service: labels under the data root are read,
their files are results like any other, and the district counts carry calibrated intervals."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import numpy as np
import pandas as pd

from ruinmap.synthetic import City
from tests.support.service import Service, submit, wait_final


def test_validation_outputs_are_served(service: Service, city_spec: dict[str, Any],
                                       service_city: City, data_root: Path) -> None:
    truth = gpd.read_parquet(service_city.truth_buildings_path)
    labels = data_root / "truth_labels.gpkg"
    gpd.GeoDataFrame({"subtype": np.where(truth["destroyed"], "destroyed", "no-damage")},
                     geometry=truth.geometry.to_numpy(), crs=truth.crs).to_file(labels)
    spec = {**city_spec, "output": {"dir": "validated"},
            "validation": {"labels": str(labels.relative_to(data_root))}}
    job_id = submit(service, spec).json()["jobID"]
    assert wait_final(service, job_id)["status"] == "successful"
    results = httpx.get(f"{service.url}/jobs/{job_id}/results").json()
    assert {"validation_json", "validation_csv", "validation_png"} <= set(results)
    report = json.loads(httpx.get(results["validation_json"]["href"]).text)
    assert 0.5 < report["accuracy"]["buildings"]["auc"] <= 1.0
    districts = pd.read_csv(io.StringIO(httpx.get(results["districts_csv"]["href"]).text))
    assert (districts["buildings_damaged_interval"] == "calibrated").all()
    png = httpx.get(results["validation_png"]["href"])
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
