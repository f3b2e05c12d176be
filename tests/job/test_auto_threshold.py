"""A job with `threshold = "otsu"`: the tile pass, the threshold chosen from the merged
histogram, the second pass of classes, and its resumption after a crash, against whole-array
NumPy on the job's own store."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from distributed import Client

from ruinmap.cluster.geo.vectors import to_raster_crs
from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.classes import class_ledger
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import JobSpec, parse_spec
from ruinmap.cluster.job.thresholds import choose_threshold
from ruinmap.cluster.job.workdir import WORK_DIR
from ruinmap.cluster.storage.location import as_location
from ruinmap.kernels import classify
from ruinmap.kernels.thresholds import bin_centers, score_hist_edges
from ruinmap.synthetic import City
from tests.job.test_run import _store_arrays, _whole_labels
from tests.support.jobs import SHARD, make_job_spec

TABLE_COLUMNS = ["valid_km2", "damaged_km2", "damaged_fraction", "class_1_km2", "class_2_km2",
                 "class_3_km2", "class_4_km2", "buildings_damaged"]


def _otsu_spec(city: City, out: Path) -> JobSpec:
    data = make_job_spec(city, out).to_json_dict()
    params = data["method_params"]
    params.pop("class_thresholds")  # derived from the chosen threshold
    params["threshold"] = "otsu"
    return parse_spec(data, out.parent)


def _run(spec: JobSpec, client: Client) -> JobResult:
    return run_job(spec, client=client, progress=False,
                   ingest_options=IngestOptions(chunk=64, shard=SHARD))


@pytest.fixture(scope="module")
def otsu_run(job_city: City, dask_client: Client) -> JobResult:
    return _run(_otsu_spec(job_city, job_city.out_dir.parent / "run_otsu"), dask_client)


def _report(result: JobResult) -> dict:
    return json.loads((Path(result.spec.output.dir) / "job.json").read_text())


def test_threshold_is_otsu_of_the_whole_image_histogram(otsu_run: JobResult) -> None:
    score, _, _ = _store_arrays(otsu_run)
    edges = score_hist_edges()
    values = score[~np.isnan(score)]
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, edges.size - 2)
    counts = np.bincount(index, minlength=edges.size - 1)
    nz = np.flatnonzero(counts)
    lo, hi = nz[0], nz[-1] + 1
    expected = choose_threshold("otsu", counts[lo:hi].astype(np.float64),
                                bin_centers(edges)[lo:hi])
    choice = _report(otsu_run)["threshold_choice"]
    assert choice["rule"] == "otsu" and choice["threshold"] == expected
    assert choice["histogram"]["n_valid"] == values.size
    assert choice["class_thresholds"] == [expected * m for m in (0.5, 1.0, 1.5, 2.0)]


def test_job_json_records_the_applied_parameters_and_the_spec_keeps_the_rule(
    otsu_run: JobResult,
) -> None:
    report = _report(otsu_run)
    choice = report["threshold_choice"]
    assert report["spec"]["method_params"]["threshold"] == "otsu"
    assert report["parameters"]["threshold"] == choice["threshold"]
    assert report["parameters"]["class_thresholds"] == choice["class_thresholds"]


def test_second_pass_classes_equal_classify_with_the_chosen_edges(otsu_run: JobResult) -> None:
    score, damage, _ = _store_arrays(otsu_run)
    edges = tuple(_report(otsu_run)["threshold_choice"]["class_thresholds"])
    # the classes are made from the stored score itself: exact
    np.testing.assert_array_equal(damage, classify(score, edges))
    assert len(np.unique(damage[damage != 255])) >= 2


def test_tables_and_grid_agree_with_the_chosen_threshold(otsu_run: JobResult) -> None:
    score, damage, grid = _store_arrays(otsu_run)
    threshold = _report(otsu_run)["threshold_choice"]["threshold"]
    spec = otsu_run.spec
    frame = to_raster_crs(gpd.read_file(spec.districts.path), grid.crs_wkt, "districts")
    labels = _whole_labels(shapely.make_valid(frame.geometry.to_numpy()), grid)
    n = len(frame)
    table = otsu_run.districts
    damaged = np.bincount(labels[score > threshold], minlength=n + 1)[1:]
    assert damaged.sum() > 0
    np.testing.assert_allclose(table["damaged_km2"].to_numpy(), damaged * 100 / 1e6, rtol=1e-12)
    for k in range(1, 5):
        expected = np.bincount(labels[damage == k], minlength=n + 1)[1:] * 100 / 1e6
        np.testing.assert_allclose(table[f"class_{k}_km2"].to_numpy(), expected, rtol=1e-12)
    # damaged is class >= 2: the threshold is the second class edge
    np.testing.assert_allclose(
        table["damaged_km2"].to_numpy(),
        sum(table[f"class_{k}_km2"].to_numpy() for k in range(2, 5)), rtol=1e-12)
    buildings = otsu_run.buildings
    assert buildings is not None
    has = buildings["mean_score"].notna().to_numpy()
    np.testing.assert_array_equal(buildings["damaged"][has].to_numpy(bool),
                                  buildings["mean_score"][has].to_numpy() > threshold)
    f = 10
    rows, cols = -(-grid.height // f), -(-grid.width // f)
    padded = np.full((rows * f, cols * f), np.nan)
    padded[: grid.height, : grid.width] = score
    blocks = padded.reshape(rows, f, cols, f)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (blocks > threshold).sum(axis=(1, 3)) / np.isfinite(blocks).sum(axis=(1, 3))
    np.testing.assert_allclose(otsu_run.grid_fraction, frac, rtol=1e-6, equal_nan=True)


def test_crashed_second_pass_resumes_only_its_unfinished_tiles(
    otsu_run: JobResult, dask_client: Client,
) -> None:
    out = Path(otsu_run.spec.output.dir)
    ledger = class_ledger(as_location(out / WORK_DIR))
    keys = sorted(ledger.done())
    assert len(keys) == otsu_run.tiles_total
    before = {k: ledger.entry_location(k).read_bytes() for k in keys}
    _, damage_before, _ = _store_arrays(otsu_run)
    # a task that died before recording, and one whose class partial was torn
    ledger.forget(keys[0])
    iy, ix = keys[1].split("/")[-2:]
    (out / WORK_DIR / "partials" / f"classes_{iy}_{ix}.npz").write_bytes(b"torn")
    again = _run(otsu_run.spec, dask_client)
    assert again.tiles_run == 0 and again.classes_run == 2  # no score computed again
    after = {k: ledger.entry_location(k).read_bytes() for k in keys}
    redone = {k for k in keys if after[k] != before[k]}
    assert redone == {keys[0], keys[1]}
    _, damage_after, _ = _store_arrays(again)
    np.testing.assert_array_equal(damage_after, damage_before)
    pd.testing.assert_frame_equal(again.districts[TABLE_COLUMNS],
                                  otsu_run.districts[TABLE_COLUMNS])


def _log_ratio_spec(city: City, out: Path, threshold: float | str,
                    class_thresholds: list[float] | None = None) -> JobSpec:
    """The city's job by `log-ratio` (whose score is not re-masked to its data, so its focal
    mean scores nodata pixels at the swath edges) with no built-up mask."""
    data = make_job_spec(city, out).to_json_dict()
    data["method"] = "log-ratio"
    data["method_params"] = {"threshold": threshold,
                             **({"class_thresholds": class_thresholds}
                                if class_thresholds is not None else {})}
    data["mask"] = {"source": "none"}
    return parse_spec(data, out.parent)


def test_otsu_counts_the_pixels_a_fixed_threshold_counts_where_the_focal_mean_spreads(
    job_city: City, dask_client: Client,
) -> None:
    root = job_city.out_dir.parent
    otsu = _run(_log_ratio_spec(job_city, root / "log_ratio_otsu", "otsu"), dask_client)
    choice = _report(otsu)["threshold_choice"]
    fixed = _run(_log_ratio_spec(job_city, root / "log_ratio_fixed", choice["threshold"],
                                 list(choice["class_thresholds"])), dask_client)
    score, damage, _ = _store_arrays(otsu)
    fixed_score, fixed_damage, _ = _store_arrays(fixed)
    np.testing.assert_array_equal(score, fixed_score)
    # the focal mean scored nodata pixels; neither pass classes them nor counts their area
    spread = np.isfinite(score) & (damage == 255)
    assert spread.sum() > 100
    assert (score[spread] > choice["threshold"]).any()  # so the first count would differ
    np.testing.assert_array_equal(damage, fixed_damage)
    pd.testing.assert_frame_equal(otsu.districts[TABLE_COLUMNS],
                                  fixed.districts[TABLE_COLUMNS])
    np.testing.assert_allclose(otsu.grid_fraction, fixed.grid_fraction, equal_nan=True)
