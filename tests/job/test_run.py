"""The damage-mapping job against independent whole-array NumPy computations on its own store.

Everything the job computes tile by tile (score, classes, per-district and per-building
statistics, the damage grid) is recomputed here on the whole image at once: the score with the
method on the whole stacks, labels by rasterizing every polygon onto the full grid with the
same pixel-centre rule, statistics with np.bincount. The job has footprints, so its default
built-up mask is the footprints buffered by 10 m: recomputed here by testing every pixel centre
of the whole grid against the buffered footprints.
"""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import zarr
from affine import Affine
from distributed import Client
from rasterio import features

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.geo.vectors import to_raster_crs
from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.partials import score_edges
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import load_spec, parse_spec
from ruinmap.cluster.methods import ScoreContext, compute_score
from ruinmap.cluster.outputs import cog_problems
from ruinmap.cluster.storage.store import read_store_attrs
from ruinmap.kernels import classify
from ruinmap.synthetic import City, write_job_spec

SHARD = 128  # as the `job_run` fixture ingests


def _store_arrays(result: JobResult) -> tuple[np.ndarray, np.ndarray, Grid]:
    store = str(result.store)
    score = zarr.open_array(store=store, path="score", mode="r")[...]
    damage = zarr.open_array(store=store, path="damage", mode="r")[...]
    return score, damage, Grid.from_attrs(read_store_attrs(store)["grid"])


def _whole_labels(frame_geoms: np.ndarray, grid: Grid) -> np.ndarray:
    shapes = [(g, i + 1) for i, g in enumerate(frame_geoms) if g is not None and not g.is_empty]
    return features.rasterize(shapes, out_shape=grid.shape, transform=Affine(*grid.transform),
                              fill=0, all_touched=False, dtype="int32")


def _whole_mask(result: JobResult, grid: Grid, buffer_m: float = 10.0) -> np.ndarray:
    """The built-up mask on the whole grid: pixel centres inside a footprint buffered by
    `buffer_m` (every footprint, scored or not; the grid is in metres)."""
    assert result.spec.buildings is not None
    frame = to_raster_crs(gpd.read_file(result.spec.buildings.path), grid.crs_wkt, "buildings")
    geoms = shapely.buffer(shapely.make_valid(frame.geometry.to_numpy()), buffer_m, quad_segs=4)
    ys, xs = np.meshgrid(grid.y_coords(), grid.x_coords(), indexing="ij")
    pixel, _ = shapely.STRtree(geoms).query(shapely.points(xs.ravel(), ys.ravel()),
                                            predicate="within")
    mask = np.zeros(xs.size, bool)
    mask[pixel] = True
    return mask.reshape(xs.shape)


def _whole_score(result: JobResult, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(the method's score on the whole stacks with `mask`, NaN outside it; where its
    statistic was valid)."""
    store = str(result.store)
    pre = zarr.open_array(store=store, path="pre", mode="r")[...]
    post = zarr.open_array(store=store, path="post", mode="r")[...]
    context = ScoreContext(bands=("VV", "VH"), pre_orbits=(0,) * pre.shape[0],
                           post_orbits=(0,) * post.shape[0], pixel_size_m=10.0)
    valid = np.empty(pre.shape[2:], bool)
    whole = compute_score(pre, post, result.spec.method_params, context, mask, valid)
    if mask is not None:
        whole[~mask] = np.nan
    return whole, valid


def test_score_equals_method_on_the_whole_image(job_run: JobResult) -> None:
    score, damage, grid = _store_arrays(job_run)
    params = job_run.spec.method_params
    assert job_run.mask is not None and job_run.mask["kind"] == "buildings"
    mask = _whole_mask(job_run, grid)
    whole, _ = _whole_score(job_run, mask)
    np.testing.assert_allclose(score, whole, rtol=1e-5, atol=1e-5, equal_nan=True)
    # only built-up pixels are scored, and nearly all of them
    assert not np.isfinite(score[~mask]).any()
    assert np.isfinite(score[mask]).mean() > 0.9 and 0.1 < mask.mean() < 0.9
    near = np.zeros_like(score, dtype=bool)
    for t in params.class_thresholds:  # a float64-rounding difference may flip a class there
        near |= np.abs(whole - t) < 1e-4
    np.testing.assert_array_equal(damage[~near], classify(whole, params.class_thresholds)[~near])


def test_district_table_equals_whole_array_numpy(job_run: JobResult) -> None:
    score, damage, grid = _store_arrays(job_run)
    spec = job_run.spec
    params = spec.method_params
    frame = to_raster_crs(gpd.read_file(spec.districts.path), grid.crs_wkt, "districts")
    labels = _whole_labels(shapely.make_valid(frame.geometry.to_numpy()), grid)
    n = len(frame)
    mask = _whole_mask(job_run, grid)
    _, observed = _whole_score(job_run, mask)
    # pixel figures count built-up pixels whose statistic was valid; valid area all of
    # those with a valid statistic
    valid = observed & mask
    score = np.where(valid, score, np.nan)
    damage = np.where(valid, damage, 255)
    count = np.bincount(labels[valid], minlength=n + 1)[1:]
    total = np.bincount(labels[valid], weights=score[valid], minlength=n + 1)[1:]
    damaged = np.bincount(labels[score > params.threshold], minlength=n + 1)[1:]
    table = job_run.districts
    assert list(table["district_id"]) == list(frame["district_id"])
    np.testing.assert_allclose(table["valid_km2"].to_numpy(),
                               np.bincount(labels[observed], minlength=n + 1)[1:] * 100 / 1e6,
                               rtol=1e-12)
    np.testing.assert_allclose(table["built_km2"].to_numpy(), count * 100 / 1e6, rtol=1e-12)
    assert (table["built_km2"] < table["valid_km2"]).all()
    np.testing.assert_allclose(table["damaged_km2"].to_numpy(), damaged * 100 / 1e6, rtol=1e-12)
    np.testing.assert_array_equal(table["damaged_built_km2"], table["damaged_km2"])
    np.testing.assert_array_equal(table["damaged_built_fraction"], table["damaged_fraction"])
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(table["mean_score"], total / count, rtol=1e-9)
        np.testing.assert_allclose(table["damaged_fraction"], damaged / count, rtol=1e-12)
    for k in range(1, len(params.class_thresholds) + 1):
        expected = np.bincount(labels[damage == k], minlength=n + 1)[1:] * 100 / 1e6
        np.testing.assert_allclose(table[f"class_{k}_km2"].to_numpy(), expected, rtol=1e-12)
    edges = score_edges(params.class_thresholds)
    bin_width = edges[1] - edges[0]
    for d in range(n):  # p90 from the histogram is within one bin of the exact quantile
        values = score[(labels == d + 1) & valid]
        if values.size:
            exact = np.quantile(values.astype(np.float64), 0.9, method="inverted_cdf")
            assert abs(table["p90_score"].iloc[d] - exact) <= bin_width + 1e-9


def test_building_scores_equal_whole_array_numpy(
    job_run: JobResult, job_city: City
) -> None:
    score, _, grid = _store_arrays(job_run)
    buildings = job_run.buildings
    assert buildings is not None
    params = job_run.spec.method_params
    geoms = to_raster_crs(buildings, grid.crs_wkt, "buildings").geometry.to_numpy()
    scored = shapely.area(geoms) >= params.min_building_m2
    # membership by point-in-polygon on every pixel centre of the whole image (the highest
    # index wins where footprints overlap)
    ys, xs = np.meshgrid(grid.y_coords(), grid.x_coords(), indexing="ij")
    kept = np.flatnonzero(scored)
    pixel, which = shapely.STRtree(geoms[kept]).query(shapely.points(xs.ravel(), ys.ravel()),
                                                      predicate="within")
    labels = np.zeros(xs.size, np.int64)
    np.maximum.at(labels, pixel, kept[which] + 1)
    labels = labels.reshape(xs.shape)
    n = len(geoms)
    valid = np.isfinite(score)
    members = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    count = np.bincount(labels[valid], minlength=n + 1)[1:]
    total = np.bincount(labels[valid], weights=score[valid], minlength=n + 1)[1:]
    peak = np.full(n + 1, -np.inf)
    np.maximum.at(peak, labels[valid], score[valid])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    peak = np.where(count > 0, peak[1:], np.nan)
    # footprints holding no pixel centre take the pixel under their centroid
    centre = shapely.centroid(geoms)
    inv = ~Affine(*grid.transform)
    cols, rows = inv @ (shapely.get_x(centre), shapely.get_y(centre))
    rows, cols = np.floor(rows).astype(int), np.floor(cols).astype(int)
    small = scored & (members == 0)
    assert small.any() and (scored & (members > 0)).any()
    mean[small] = score[rows[small], cols[small]]
    peak[small] = score[rows[small], cols[small]]
    mean[~scored] = np.nan
    peak[~scored] = np.nan
    np.testing.assert_allclose(buildings["mean_score"], mean, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(buildings["max_score"], peak, rtol=0, equal_nan=True)
    has = np.isfinite(mean)
    assert (buildings["damaged"].isna().to_numpy() == ~has).all()
    np.testing.assert_array_equal(buildings["damaged"][has].to_numpy(bool),
                                  mean[has] > params.threshold)
    assert list(buildings["building_id"]) == list(job_city.buildings["building_id"])


def test_grid_equals_whole_array_block_reduction(job_run: JobResult) -> None:
    score, _, grid = _store_arrays(job_run)
    mask = _whole_mask(job_run, grid)
    _, observed = _whole_score(job_run, mask)
    score = np.where(observed & mask, score, np.nan)  # built-up pixels with a valid statistic
    threshold = job_run.spec.method_params.threshold
    f = 10  # 100 m cells of 10 m pixels
    rows, cols = -(-grid.height // f), -(-grid.width // f)
    padded = np.full((rows * f, cols * f), np.nan)
    padded[: grid.height, : grid.width] = score
    blocks = padded.reshape(rows, f, cols, f)
    count = np.isfinite(blocks).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(blocks, axis=(1, 3)) / count
        frac = (blocks > threshold).sum(axis=(1, 3)) / count
    np.testing.assert_allclose(job_run.grid_mean, mean, rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(job_run.grid_fraction, frac, rtol=1e-6, equal_nan=True)
    assert SHARD % f != 0  # tiles cut cells, so the merge across tiles is exercised


def test_products_are_written_and_readable(job_run: JobResult) -> None:
    out = job_run.store.parent
    for name in ("score.tif", "damage.tif", "grid.tif"):
        assert cog_problems(out / name) == [], name
    with rasterio.open(out / "grid.tif") as src:
        assert src.count == 2 and src.descriptions == ("damaged_fraction", "mean_score")
    districts = gpd.read_parquet(out / "districts.parquet")
    assert {"district_id", "damaged_fraction", "p90_score", "buildings"} <= set(districts)
    assert len(gpd.read_file(out / "districts.geojson")) == len(districts)
    assert len(pd.read_csv(out / "districts.csv")) == len(districts)
    assert "mean_score" in gpd.read_parquet(out / "buildings.parquet")
    assert (out / "map.png").stat().st_size > 10_000
    report = json.loads((out / "job.json").read_text())
    assert report["spec"]["method"] == "pwtt" and report["timings"]
    assert any(r.get("sha256") for r in report["inputs"])


def test_different_chunkings_give_equal_outputs(
    job_run: JobResult, job_run_other_tiles: JobResult
) -> None:
    other = job_run_other_tiles
    assert other.tiles_total != job_run.tiles_total
    a, _, _ = _store_arrays(job_run)
    b, _, _ = _store_arrays(other)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, equal_nan=True)
    columns = ["valid_km2", "built_km2", "mean_score", "damaged_fraction", "buildings_damaged"]
    pd.testing.assert_frame_equal(job_run.districts[columns], other.districts[columns],
                                  rtol=1e-5)


def test_rerun_of_a_finished_job_computes_and_rewrites_nothing(
    job_run: JobResult, dask_client: Client
) -> None:
    out = job_run.store.parent
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    again = run_job(job_run.spec, client=dask_client, progress=False,
                    ingest_options=IngestOptions(chunk=64, shard=SHARD))
    assert again.tiles_run == 0 and again.tiles_total == job_run.tiles_total
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    assert after == before
    pd.testing.assert_frame_equal(again.districts, job_run.districts)


@pytest.mark.parametrize("method", ["log-ratio", "nd-change", "cva"])
def test_other_methods_run_and_score_destroyed_buildings_higher(
    method: str, job_city: City, job_run: JobResult, dask_client: Client
) -> None:
    # On the session job's ingested store: the ingest does not depend on the method and is
    # held to the GeoTIFFs by `job_run`, so each method runs its tiles, merge and products only.
    folder = job_city.out_dir.parent / f"m_{method}"
    data = load_spec(write_job_spec(job_city, folder, method=method)).to_json_dict()
    data["inputs"] = {"store": str(job_run.store)}
    result = run_job(parse_spec(data, folder), client=dask_client, progress=False)
    assert result.buildings is not None
    truth = job_city.buildings.set_index("building_id")["destroyed"]
    joined = result.buildings.set_index("building_id").join(truth)
    joined = joined[joined["mean_score"].notna()]
    destroyed = joined["destroyed"].to_numpy(bool)
    assert joined["mean_score"][destroyed].median() > joined["mean_score"][~destroyed].median()
