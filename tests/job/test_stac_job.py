"""A job whose imagery is a STAC API search (`[inputs.stac]`): Sentinel-2 L2A-shaped items
over OSCD Bercy served on 127.0.0.1 (tests/support/stac_items.py), scored by nd-change and
cva, the SCL clouds of the pre date nodata in the job's store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec import parse_spec
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
