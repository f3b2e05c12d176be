"""Reads outside the data roots are impossible: a symlink deep under a `**` glob, VRTs that
name outside files, a file swapped for a link to an outside file after the submission, and
one swapped after every check, just before a worker reads it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pytest
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions, plan_inputs
from ruinmap.synthetic import City
from tests.support import swaps
from tests.support.service import DaskCluster, Service, submit, wait_final


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json())


def test_a_symlink_two_levels_down_a_recursive_glob_is_refused(
        service: Service, city_spec: dict[str, Any], service_city: City, data_root: Path,
        tmp_path: Path) -> None:
    outside = tmp_path / "outside.tif"
    outside.write_bytes(service_city.post_files[0].read_bytes())
    deep = data_root / "deep" / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "link.tif").symlink_to(outside)
    spec = {**city_spec, "inputs": {**city_spec["inputs"], "post": ["deep/**/*.tif"]},
            "output": {"dir": "deep-glob"}}
    body = _problem(submit(service, spec), 403)
    assert "outside the service's data roots" in body["detail"]


@pytest.mark.parametrize(("where", "text"), [
    ("pre", '<VRTDataset rasterXSize="4" rasterYSize="4"><VRTRasterBand dataType="Float32" '
            'band="1"><SimpleSource><SourceFilename relativeToVRT="0">/etc/secret.tif'
            '</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>'),
    ("districts", '<?xml version="1.0"?>\n<OGRVRTDataSource><OGRVRTLayer name="d">'
                  '<SrcDataSource>/etc/secret.geojson</SrcDataSource></OGRVRTLayer>'
                  '</OGRVRTDataSource>'),
])  # fmt: skip
def test_vrts_naming_other_files_are_refused(service: Service, city_spec: dict[str, Any],
                                             data_root: Path, where: str, text: str) -> None:
    vrt = data_root / f"sneaky-{where}.vrt"
    vrt.write_text(text)
    spec = {**city_spec, "output": {"dir": f"vrt-{where}"}}
    if where == "pre":
        spec["inputs"] = {**city_spec["inputs"], "pre": [vrt.name]}
    else:
        spec["districts"] = {**city_spec["districts"], "path": vrt.name}
    body = _problem(submit(service, spec), 403)
    assert "is a VRT" in body["detail"]


@pytest.fixture(scope="module")
def one_at_a_time(start_service: Callable[..., Service],
                  tmp_path_factory: pytest.TempPathFactory) -> Service:
    return start_service(tmp_path_factory.mktemp("serial"), **{"jobs.max_running": 1})


def test_a_file_swapped_for_an_outside_link_after_submission_is_refused(
        one_at_a_time: Service, city_spec: dict[str, Any], service_city: City,
        data_root: Path, tmp_path: Path) -> None:
    districts = data_root / "swap-districts.geojson"
    districts.write_bytes(service_city.districts_path.read_bytes())
    first = submit(one_at_a_time, {**city_spec, "output": {"dir": "first"}}).json()["jobID"]
    swapped = {**city_spec, "districts": {**city_spec["districts"], "path": districts.name},
               "output": {"dir": "second"}}
    second = submit(one_at_a_time, swapped)
    assert second.status_code == 201, second.text  # checked and queued behind the first
    outside = tmp_path / "outside.geojson"
    outside.write_bytes(districts.read_bytes())
    districts.unlink()
    districts.symlink_to(outside)
    assert wait_final(one_at_a_time, first)["status"] == "successful"
    info = wait_final(one_at_a_time, second.json()["jobID"])
    assert info["status"] == "failed"
    assert "outside the service's data roots" in info["message"]


def test_a_raster_swapped_for_an_outside_link_as_the_worker_opens_it_fails_the_job(
        service: Service, dask_scheduler: DaskCluster, city_spec: dict[str, Any],
        service_city: City, data_root: Path, tmp_path: Path) -> None:
    victim = data_root / "swap-raster" / service_city.post_files[0].name
    victim.parent.mkdir()
    victim.write_bytes(service_city.post_files[0].read_bytes())
    outside = tmp_path / "outside.tif"  # a valid raster on the same grid, other pixels
    outside.write_bytes(service_city.pre_files[0].read_bytes())
    post = [str(victim)] + [str(p) for p in service_city.post_files[1:]]
    order = plan_inputs(list(service_city.pre_files), post, IngestOptions())
    t = [a.files[0].path for a in order.acquisitions["post"]].index(str(victim))
    spec = {**city_spec, "inputs": {**city_spec["inputs"], "post": post},
            "output": {"dir": "swapped-at-read"}}
    with Client(dask_scheduler.address, timeout="20s") as client:
        # after the submission's and the runner's checks and the client's header read
        # sent by value: the workers need not import the tests
        cloudpickle.register_pickle_by_value(swaps)
        try:
            client.register_plugin(swaps.SwapBeforeTask(f"ingest-post/{t}/", str(victim),
                                                        str(outside)), name="swap-at-read")
            response = submit(service, spec)
            assert response.status_code == 201, response.text
            info = wait_final(service, response.json()["jobID"])
        finally:
            client.unregister_worker_plugin("swap-at-read")
            cloudpickle.unregister_pickle_by_value(swaps)
    assert victim.is_symlink()  # the swap happened
    assert info["status"] == "failed", info
    assert str(victim) in info["message"] and "outside the data roots" in info["message"]
    with service.http() as http:  # nothing was served
        assert http.get(f"/jobs/{info['jobID']}/results/score_tif").status_code == 404
