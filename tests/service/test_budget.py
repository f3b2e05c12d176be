"""Bounded requests: out-of-range parameters, a header claiming 10^6 x 10^6 pixels and a job
over the service's per-job budget are refused with 400 at submission, naming what to change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.support.service import Service, submit

pytestmark = pytest.mark.slow


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    return dict(response.json())


@pytest.mark.parametrize(("table", "key", "value"), [
    ("method_params", "radius_m", 1e300),
    ("method_params", "lee_size", 100_001),
    ("method_params", "min_pre", 10**400),
    ("grid", "cell_size", 1e300),
])
def test_out_of_range_parameters_are_400_naming_the_key(
        service: Service, city_spec: dict[str, Any], table: str, key: str, value: Any) -> None:
    spec = {**city_spec, "output": {"dir": f"bound-{key}"}}
    if key == "radius_m":
        spec["method"] = "log-ratio"
    spec[table] = {**spec.get(table, {}), key: value}
    body = _problem(submit(service, spec), 400)
    assert f"{table}.{key}" in body["detail"], body
    assert "internal error" not in body["detail"]


def _huge_geotiff(path: Path, side: int, like: Path) -> Path:
    """A real BigTIFF whose header claims side x side float32 pixels from the top-left corner
    of `like`, on its CRS; no tile is written (SPARSE_OK), so it takes a few hundred kB."""
    with rasterio.open(like) as src:
        crs, (res_x, res_y), (left, _, _, top) = src.crs, src.res, src.bounds
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=2,
                       dtype="float32", crs=crs, nodata=np.nan, tiled=True,
                       blockxsize=8192, blockysize=8192, BIGTIFF="YES", SPARSE_OK=True,
                       compress="deflate",
                       transform=from_origin(left, top, res_x, res_y)) as dst:
        dst.update_tags(ACQUISITION_DATE=f"{path.stem[5:9]}-{path.stem[9:11]}-01")
        dst.descriptions = ("VV", "VH")  # the bands of the city's other files
    return path


def test_a_header_claiming_a_million_squared_pixels_is_400_before_any_task(
        service: Service, city_spec: dict[str, Any], data_root: Path) -> None:
    like = sorted(data_root.glob(city_spec["inputs"]["pre"][0]))[0]
    pre, post = (_huge_geotiff(data_root / f"huge_{day}.tif", 1_000_000, like)
                 for day in ("20230101", "20230301"))
    assert pre.stat().st_size < 2_000_000
    spec = {**city_spec, "inputs": {"pre": [pre.name], "post": [post.name]},
            "output": {"dir": "huge"}}
    body = _problem(submit(service, spec), 400)
    assert "1000000 x 1000000" in body["detail"] or "1,000,000" in body["detail"], body
    assert not (service.output_root / "huge").exists()


@pytest.fixture(scope="module")
def budget_service(start_service: Callable[..., Service],
                   tmp_path_factory: pytest.TempPathFactory) -> Service:
    return start_service(tmp_path_factory.mktemp("budget"), **{"jobs.max_dates": 2})


def test_a_job_over_the_per_job_budget_is_400_naming_the_setting(
        budget_service: Service, city_spec: dict[str, Any]) -> None:
    body = _problem(submit(budget_service, {**city_spec, "output": {"dir": "many-dates"}}), 400)
    assert "max_dates = 2 in the service config's [jobs] table" in body["detail"], body
    assert not (budget_service.output_root / "many-dates").exists()
