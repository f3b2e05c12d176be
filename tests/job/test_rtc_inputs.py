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
    # the products (COGs, map...) once, for job.json; the score is in the job's store
    with_products = (kind, scale) == ("hyp3", "d")
    result = run_job(spec, client=dask_client, progress=False, ingest_options=SMALL,
                     write_products=with_products)
    expected = _score(job_run)
    got = _score(result)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4, equal_nan=True)
    assert not result.warnings
    if kind in ("hyp3", "opera"):  # their mask layers mark nothing here
        assert (result.districts["masked_fraction"] == 0).all()
    else:
        assert "masked_fraction" not in result.districts
    if with_products:
        report = json.loads((tmp_path / "out" / "job.json").read_text())
        images = [r for r in report["inputs"] if r.get("side") in ("pre", "post")]
        assert {r["scale"]["scale"] for r in images} == {"db"}
        assert all("scale letter 'd'" in r["scale"]["evidence"] for r in images)
        assert {r["product"] for r in images} == {"hyp3-rtc"}


def test_a_district_mostly_without_score_is_warned_of_naming_causes(
        job_city: City, dask_client: Client, tmp_path: Path) -> None:
    # shadow over the left half of every date: the districts there lose their score
    def shadow(shape: tuple[int, int]) -> np.ndarray:
        flags = np.ones(shape, np.uint8)
        flags[:, : shape[1] // 2] = 1 + 16
        return flags

    pre, post = write_products(job_city, tmp_path / "images", "hyp3", "p", mask=shadow)
    spec = make_job_spec(job_city, tmp_path / "out", inputs={"pre": [pre], "post": [post]})
    result = run_job(spec, client=dask_client, progress=False, ingest_options=SMALL,
                     write_products=False)
    [warning] = result.warnings
    assert "valid score on less than 50%" in warning
    assert "layover/shadow masks" in warning
    # the left half of the grid is shadow on every date: districts there are masked whole,
    # those on the right not at all
    masked = result.districts["masked_fraction"].to_numpy()
    assert ((masked >= 0) & (masked <= 1)).all()
    assert masked.max() > 0.9 and masked.min() < 0.1
