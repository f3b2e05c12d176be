"""A job whose imagery is a STAC API search (`[inputs.stac]`): Sentinel-2 L2A-shaped items
over OSCD Bercy served on 127.0.0.1 (tests/support/stac_items.py), scored by nd-change and
cva, the SCL clouds of the pre date nodata in the job's store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec import parse_spec
from ruinmap.cluster.storage.arrays import open_array
from ruinmap.cluster.storage.location import LocalPath
from ruinmap.cluster.storage.store import open_store, read_store_attrs, side_array
from tests.support.stac_items import S2, s2_api_server


def _quadrants(path: Path) -> Path:
    """Four districts over the Bercy crop (lon 2.3593..2.4012, lat 48.8207..48.8666)."""
    west, south, east, north = 2.3600, 48.8210, 2.4005, 48.8660
    mid_x, mid_y = (west + east) / 2, (south + north) / 2
    features = []
    boxes = [(west, south, mid_x, mid_y), (mid_x, south, east, mid_y),
             (west, mid_y, mid_x, north), (mid_x, mid_y, east, north)]
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        features.append({"type": "Feature", "properties": {"id": k + 1},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.mark.parametrize(("method", "params"), [
    ("nd-change", {"preset": "ndvi"}),
    ("cva", {"bands": ["B04", "B08", "B11"]}),
])
def test_stac_api_sentinel2_job_scores_every_district(tmp_path, dask_client: Client,
                                                      shared_data, method, params):
    bercy = shared_data / "oscd-bercy"
    if not (bercy / "imgs_1").is_dir():
        pytest.skip(f"real data absent: {bercy}")
    with s2_api_server(bercy, tmp_path / "assets") as api:
        spec = parse_spec({
            "method": method,
            "inputs": {"stac": {
                "url": api["url"], "collections": [S2], "assets": ["B04", "B08", "B11"],
                "mask": "SCL", "pre_datetime": "2016-11-01/2016-12-31",
                "post_datetime": "2017-08-01/2017-09-30"}},
            "districts": {"path": str(_quadrants(tmp_path / "districts.geojson")), "id": "id"},
            "grid": {"cell_size": 200},
            "output": {"dir": str(tmp_path / "out")},
            "method_params": params,
        }, tmp_path)
        result = run_job(spec, client=dask_client, progress=False,
                         ingest_options=IngestOptions(chunk=64, shard=128))
    assert result.districts["mean_score"].notna().all()
    store = tmp_path / "out" / "store.zarr"
    pre = side_array(open_store(store), "pre").values[0]
    assert 0.01 < np.isnan(pre[0]).mean() < 0.2  # the SCL clouds, shadows and cirrus
    items = {s.get("stac_item") for s in read_store_attrs(store)["sources"]}
    assert items == {f"{S2}/S2_pre", f"{S2}/S2_post"}


def test_a_stac_item_that_arrives_later_is_appended(tmp_path, dask_client: Client,
                                                    shared_data) -> None:
    """Monitoring over a STAC search: the same spec run again after a new post-event item
    appears in the API appends its date to the store (its old dates untouched) and the
    results equal a run over both post items at once."""
    bercy = shared_data / "oscd-bercy"
    if not (bercy / "imgs_1").is_dir():
        pytest.skip(f"real data absent: {bercy}")
    districts = _quadrants(tmp_path / "districts.geojson")
    options = IngestOptions(chunk=64, shard=128)

    def spec(api: dict, out: Path):
        return parse_spec({
            "method": "nd-change",
            "inputs": {"stac": {
                "url": api["url"], "collections": [S2], "assets": ["B04", "B08"],
                "pre_datetime": "2016-11-01/2016-12-31",
                "post_datetime": "2017-08-01/2017-12-31"}},
            "districts": {"path": str(districts), "id": "id"},
            "grid": {"cell_size": 200},
            "output": {"dir": str(out)},
            "method_params": {"preset": "ndvi"},
        }, tmp_path)

    with s2_api_server(bercy, tmp_path / "assets") as api:
        monitored = tmp_path / "monitored"
        run_job(spec(api, monitored), client=dask_client, progress=False,
                ingest_options=options)
        post = monitored / "store.zarr" / "post"
        before = {p: p.stat().st_mtime_ns for p in post.rglob("*")
                  if p.is_file() and p.name != "zarr.json"}
        # a later acquisition of the same scene arrives: its item, then the same spec again
        shutil.copytree(api["root"] / "post", api["root"] / "post_later")
        later = json.loads(json.dumps(api["items"][1]).replace("/assets/post/",
                                                               "/assets/post_later/"))
        later["id"] = "S2_post_later"
        later["properties"]["datetime"] = "2017-10-13T10:50:19Z"
        api["items"].append(later)
        try:
            appended = run_job(spec(api, monitored), client=dask_client, progress=False,
                               ingest_options=options)
            whole = run_job(spec(api, tmp_path / "whole"), client=dask_client,
                            progress=False, ingest_options=options)
        finally:
            api["items"].remove(later)
    attrs = read_store_attrs(monitored / "store.zarr")
    assert {s.get("stac_item") for s in attrs["sources"] if s["side"] == "post"} == {
        f"{S2}/S2_post", f"{S2}/S2_post_later"}
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the old date untouched
    runs = json.loads((monitored / "job.json").read_text())["runs"]
    assert [r["appended"] for r in runs] == [False, True]
    assert runs[1]["added_post_dates"][0][:10] == "2017-10-13"
    for name in ("score", "damage"):
        got, want = (np.asarray(open_array(LocalPath(out / "store.zarr"), name, "r",
                                           str(out))[...])
                     for out in (monitored, tmp_path / "whole"))
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert np.isfinite(got).any()
    np.testing.assert_array_equal(appended.districts["mean_score"].to_numpy(),
                                  whole.districts["mean_score"].to_numpy())
