"""pwtt's extra layers through a whole job: `p_value`, `n_pre`, `n_post` in the job's store
(equal to the method on the whole image, so tiles agree), recorded with their checksums in
the ledger, as the bands of `pwtt_layers.tif`, and `mean_n_post` in the district table; and
a job whose orbits have one date a side is refused before any tile runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import zarr
from affine import Affine
from distributed import Client
from rasterio import features

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.geo.vectors import to_raster_crs
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.methods import ScoreContext, compute_layers
from ruinmap.cluster.outputs import cog_problems
from ruinmap.cluster.storage.checksums import CHECKSUMS_KEY
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import as_location
from ruinmap.cluster.storage.store import read_store_attrs
from ruinmap.errors import SpecError
from ruinmap.synthetic import make_city

LAYERS = ("p_value", "n_pre", "n_post")


def _layer(result: JobResult, name: str) -> np.ndarray:
    return zarr.open_array(store=str(result.store), path=name, mode="r")[...]


def test_extra_layers_in_the_store_equal_the_method_on_the_whole_image(
    job_run: JobResult,
) -> None:
    store = str(job_run.store)
    pre = zarr.open_array(store=store, path="pre", mode="r")[...]
    post = zarr.open_array(store=store, path="post", mode="r")[...]
    context = ScoreContext(bands=("VV", "VH"), pre_orbits=(0,) * pre.shape[0],
                           post_orbits=(0,) * post.shape[0], pixel_size_m=10.0)
    whole = compute_layers(pre, post, job_run.spec.method_params, context)
    for name in LAYERS:
        got = _layer(job_run, name)
        np.testing.assert_allclose(got, whole.extra[name], rtol=1e-5, atol=1e-6,
                                   equal_nan=True, err_msg=name)
        attrs = zarr.open_array(store=store, path=name, mode="r").attrs
        assert attrs["long_name"].endswith("(pwtt)") and attrs["units"] == "1"
    p = _layer(job_run, "p_value")
    assert np.nanmin(p) >= 1e-10 and np.nanmax(p) <= 1
    assert set(np.unique(_layer(job_run, "n_post"))) <= set(range(post.shape[0] + 1))


def test_date_counts_are_stored_as_uint16_whose_zero_is_a_count(job_run: JobResult) -> None:
    store = str(job_run.store)
    p_value = zarr.open_array(store=store, path="p_value", mode="r")
    assert p_value.dtype == np.float32 and "_FillValue" in p_value.attrs
    for name in ("n_pre", "n_post"):
        counts = zarr.open_array(store=store, path=name, mode="r")
        assert counts.dtype == np.uint16 and counts.fill_value == 0
        # no _FillValue: xarray keeps a pixel's 0 dates as the count 0, not as nodata
        assert "_FillValue" not in counts.attrs
    no_dates = _layer(job_run, "n_post") == 0
    assert no_dates.any() and np.isnan(_layer(job_run, "p_value")[no_dates]).all()


def test_every_tile_records_the_checksums_of_its_extra_layers(job_run: JobResult) -> None:
    ledger = Ledger(as_location(job_run.store.parent / ".ruinmap-job" / "ledger"))
    entries = [ledger.info(key) for key in ledger.done()]
    assert len(entries) == job_run.tiles_total
    for entry in entries:
        assert set(LAYERS) <= set(entry[CHECKSUMS_KEY])  # type: ignore[index,arg-type]


def test_layers_cog_has_one_named_band_per_layer(job_run: JobResult) -> None:
    path = job_run.store.parent / "pwtt_layers.tif"
    assert cog_problems(path) == []
    with rasterio.open(path) as src:
        assert src.descriptions == LAYERS and src.count == 3
        assert src.dtypes == ("float32",) * 3 and np.isnan(src.nodata)
        for index, name in enumerate(LAYERS, start=1):
            np.testing.assert_array_equal(src.read(index), _layer(job_run, name))


def test_district_table_has_the_mean_n_post_of_valid_pixels(job_run: JobResult) -> None:
    score, n_post = _layer(job_run, "score"), _layer(job_run, "n_post")
    grid = Grid.from_attrs(read_store_attrs(str(job_run.store))["grid"])
    spec = job_run.spec
    frame = to_raster_crs(gpd.read_file(spec.districts.path), grid.crs_wkt, "districts")
    shapes = [(g, i + 1) for i, g in enumerate(shapely.make_valid(frame.geometry.to_numpy()))]
    labels = features.rasterize(shapes, out_shape=grid.shape, transform=Affine(*grid.transform),
                                fill=0, dtype="int32")
    has = np.isfinite(score) & np.isfinite(n_post)
    n = len(frame)
    count = np.bincount(labels[has], minlength=n + 1)[1:]
    total = np.bincount(labels[has], weights=n_post[has], minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(job_run.districts["mean_n_post"], total / count, rtol=1e-9)
    parquet = gpd.read_parquet(job_run.store.parent / "districts.parquet")
    assert "mean_n_post" in parquet


def test_one_date_a_side_is_refused_before_work_and_names_the_z_test(
    tmp_path: Path, dask_client: Client, job_spec_for: Callable[..., JobSpec],
) -> None:
    city = make_city(tmp_path / "city", size=64, n_pre=1, n_post=1, seed=5)
    spec = job_spec_for(city, tmp_path / "out", method_params={
        "polarisations": ["VV", "VH"], "min_pre": 2})
    with pytest.raises(SpecError, match=r"min_pre = 2.*1 pre-event date"):
        run_job(spec, client=dask_client, progress=False)
    assert not (tmp_path / "out" / "score.tif").exists()


def test_one_post_date_is_refused_with_the_z_test_named(
    tmp_path: Path, dask_client: Client, job_spec_for: Callable[..., JobSpec],
) -> None:
    city = make_city(tmp_path / "city", size=64, n_pre=3, n_post=1, seed=5)
    spec = job_spec_for(city, tmp_path / "out", method_params={
        "polarisations": ["VV", "VH"]})
    with pytest.raises(SpecError, match="statistic = 'z'"):
        run_job(spec, client=dask_client, progress=False)


def test_one_post_date_is_scored_by_the_z_test(
    tmp_path: Path, dask_client: Client, job_spec_for: Callable[..., JobSpec],
) -> None:
    city = make_city(tmp_path / "city", size=64, n_pre=3, n_post=1, seed=5)
    spec = job_spec_for(city, tmp_path / "out", method_params={
        "polarisations": ["VV", "VH"], "statistic": "z"},
        mask={"source": "none"})  # every pixel scored, built-up or not
    result = run_job(spec, client=dask_client, progress=False)
    score = zarr.open_array(store=str(result.store), path="score", mode="r")[...]
    assert np.isfinite(score).mean() > 0.9
    assert set(np.unique(_layer(result, "n_post")[np.isfinite(score)])) == {1.0}
