"""A job on an ingested store (`inputs.store`) only reads it: its layers go to its own store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from distributed import Client

from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.synthetic import City
from tests.support.jobs import make_job_spec


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("method", ["pwtt", "log-ratio"])
def test_a_job_on_another_jobs_store_leaves_it_byte_for_byte_unchanged(
        job_city: City, job_run: JobResult, dask_client: Client, tmp_path: Path,
        method: str) -> None:
    source = Path(str(job_run.store))
    before = _tree_digest(source)
    changes = {} if method == "pwtt" else {"method": method, "method_params": {"band": "VV"}}
    spec = make_job_spec(job_city, tmp_path / "reader", inputs={"store": str(source)},
                         **changes)
    result = run_job(spec, client=dask_client, progress=False)

    assert _tree_digest(source) == before  # not one byte of the first job's store changed
    own = tmp_path / "reader" / "store.zarr"
    assert result.files["score_tif"].parent == tmp_path / "reader"
    mine = zarr.open_array(store=str(own), path="score", mode="r")[...]
    theirs = zarr.open_array(store=str(source), path="score", mode="r")[...]
    assert np.isfinite(mine).mean() > 0.1  # the built-up pixels (the default mask): 19 %
    if method == "pwtt":  # the same method and parameters: the same score, pixel for pixel
        np.testing.assert_array_equal(mine, theirs)
    else:
        assert not np.array_equal(mine, theirs, equal_nan=True)
    # the layers-only store is georeferenced like the imagery
    with xr.open_zarr(own, consolidated=False, decode_coords="all") as ds:
        assert ds.rio.crs is not None
        with xr.open_zarr(source, consolidated=False) as src:
            np.testing.assert_array_equal(ds["x"].values, src["x"].values)
            np.testing.assert_array_equal(ds["y"].values, src["y"].values)
