"""RTC products in the shapes the real ones come in (HyP3 per-polarisation files in power,
amplitude and dB with their layover/shadow maps, OPERA RTC-S1 with its mask, Planetary
Computer COGs with nodata -32768, a Google Earth Engine dB export with an `angle` band), all
made from the synthetic city: each must score as the linear-power original does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.synthetic import City
from tests.support.jobs import SHARD, make_job_spec
from tests.support.rtc import write_products

SMALL = IngestOptions(chunk=64, shard=SHARD)


def _score(result: JobResult) -> np.ndarray:
    with xr.open_zarr(result.store, consolidated=False) as ds:
        return np.asarray(ds["score"].values)


@pytest.mark.parametrize(("kind", "scale"), [
    ("hyp3", "p"), ("hyp3", "a"), ("hyp3", "d"), ("opera", "p"), ("pc", "p"), ("gee", "d"),
])
def test_product_scores_as_the_power_original(job_city: City, job_run: JobResult,
                                              dask_client: Client, tmp_path: Path, kind: str,
                                              scale: str) -> None:
    pre, post = write_products(job_city, tmp_path / "images", kind, scale)
    spec = make_job_spec(job_city, tmp_path / "out",
                         inputs={"pre": [pre], "post": [post]})
    result = run_job(spec, client=dask_client, progress=False, ingest_options=SMALL)
    expected = _score(job_run)
    got = _score(result)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4, equal_nan=True)
    report = json.loads((tmp_path / "out" / "job.json").read_text())
    images = [r for r in report["inputs"] if r.get("side") in ("pre", "post")]
    assert {r["scale"]["scale"] for r in images} == {
        {"p": "power", "a": "amplitude", "d": "db"}[scale]}
    assert all(r["scale"]["evidence"] for r in images)
