"""`validate` end to end on a real pwtt run of a synthetic city, against labels made from the
city's truth in the shapes real producers use: xBD-style polygons with `subtype`, and
UNOSAT-style damage-site points with `Main_Damage_Site_Class` (UNOSAT CDA attribute name;
1 destroyed, 6 no visible damage, EPSG:4326 lon/lat as UNOSAT publishes)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from distributed import Client
from PIL import Image
from scipy.stats import mannwhitneyu

from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.outputs.stac import file_checksum
from ruinmap.cluster.validation.config import ValidationSpec
from ruinmap.cluster.validation.run import validate
from ruinmap.errors import InputError
from ruinmap.synthetic import City
from tests.support.jobs import make_job_spec
from tests.support.processes import BIN


def _auc(scores: np.ndarray, damaged: np.ndarray) -> float:
    """AUC as the Mann-Whitney U of damaged over undamaged scores, normalised."""
    u = mannwhitneyu(scores[damaged], scores[~damaged]).statistic
    return float(u / (damaged.sum() * (~damaged).sum()))


def _truth(city: City) -> gpd.GeoDataFrame:
    return gpd.read_parquet(city.truth_buildings_path)


def _polygon_labels(city: City, path: Path) -> Path:
    truth = _truth(city)
    labels = gpd.GeoDataFrame(
        {"subtype": np.where(truth["destroyed"], "destroyed", "no-damage")},
        geometry=truth.geometry.to_numpy(), crs=truth.crs)
    labels.to_file(path, driver="GPKG", layer="buildings")
    return path


def _point_labels(city: City, path: Path, *, undamaged_every: int = 4) -> Path:
    """Centroids of destroyed buildings (class 1) and of every 4th intact one (class 6)."""
    truth = _truth(city)
    pick = truth["destroyed"].to_numpy() | (np.arange(len(truth)) % undamaged_every == 0)
    chosen = truth[pick]
    points = gpd.GeoDataFrame(
        {"Main_Damage_Site_Class": np.where(chosen["destroyed"], 1, 6)},
        geometry=chosen.geometry.centroid.to_numpy(), crs=truth.crs).to_crs(4326)
    points.to_file(path, driver="GPKG", layer="Damage_Sites")
    return path


def test_polygon_labels_give_the_independent_auc(city: City, city_run: JobResult,
                                                 tmp_path: Path) -> None:
    labels = _polygon_labels(city, tmp_path / "truth.gpkg")
    out = tmp_path / "check"
    done = validate(city_run.spec.output.dir, ValidationSpec(labels=str(labels)), out_dir=out)

    buildings = pd.read_parquet(Path(city_run.spec.output.dir) / "buildings.parquet")
    joined = buildings.merge(_truth(city)[["building_id", "destroyed"]], on="building_id")
    joined = joined[joined["mean_score"].notna()]
    expected = _auc(joined["mean_score"].to_numpy(), joined["destroyed"].to_numpy(bool))
    assert done.auc == pytest.approx(expected, abs=1e-9)
    report = json.loads((out / "validation.json").read_text())
    assert report["join"]["n_scored"] == len(joined)
    assert report["join"]["n_damaged"] == int(joined["destroyed"].sum())
    job = report["accuracy"]["buildings"]["at_thresholds"][0]
    predicted = joined["mean_score"].to_numpy() > city_run.spec.method_params.threshold
    truth = joined["destroyed"].to_numpy(bool)
    assert job["recall"] == pytest.approx((predicted & truth).sum() / truth.sum())
    assert job["precision"] == pytest.approx((predicted & truth).sum() / predicted.sum())
    assert report["accuracy"]["area"]["auc"] is not None
    assert "optimistic" in report["accuracy"]["buildings"]["best_f1"]["label"]
    # per district: labelled and predicted counts, the error between them
    per_district = pd.read_csv(out / "validation.csv")
    by_id = joined.groupby("district_id")["destroyed"].sum()
    got = per_district.set_index("district_id")["labelled_damaged"]
    assert got.loc[by_id.index].tolist() == by_id.astype(int).tolist()
    labelled = per_district[per_district["labelled_units"].notna()]
    assert len(labelled) == joined["district_id"].nunique()
    assert (labelled["count_error"]
            == labelled["predicted_damaged"] - labelled["labelled_damaged"]).all()


def test_outputs_are_written_and_readable(city: City, city_run: JobResult,
                                          tmp_path: Path) -> None:
    labels = _polygon_labels(city, tmp_path / "truth.gpkg")
    out = tmp_path / "check"
    done = validate(city_run.spec.output.dir, ValidationSpec(labels=str(labels)), out_dir=out)
    with Image.open(out / "validation.png") as png:
        assert png.size == (1800, 630)
        assert len(set(png.convert("RGB").getdata())) > 50  # curves drawn, not a blank page
    districts = gpd.read_parquet(out / "districts.parquet")
    assert (districts["buildings_damaged_interval"] == "calibrated").all()
    has = districts["buildings"] > 0
    low, high = districts["buildings_damaged_low"], districts["buildings_damaged_high"]
    assert (low[has] <= districts["buildings_damaged_expected"][has] + 1e-9).all()
    assert (districts["buildings_damaged_expected"][has] <= high[has] + 1e-9).all()
    csv = pd.read_csv(out / "districts.csv")
    assert {"buildings_damaged_low", "buildings_damaged_high",
            "buildings_damaged_level"} <= set(csv.columns)
    assert set(done.files) >= {"validation_json", "validation_csv", "validation_png",
                               "districts_parquet", "districts_geojson", "districts_csv"}
    report = json.loads((out / "validation.json").read_text())
    assert report["count_intervals"]["method"] == "calibrated"
    assert "representative" in report["count_intervals"]["assumptions"]


def test_job_tables_carry_unvalidated_intervals(city_run: JobResult) -> None:
    table = city_run.districts
    assert (table["buildings_damaged_interval"] == "unvalidated").all()
    assert (table["buildings_damaged_level"] == 0.9).all()
    has = table["buildings"] > 0
    assert (table["buildings_damaged_low"][has] <= table["buildings_damaged_high"][has]).all()
    assert (table["buildings_damaged_high"][has] <= table["buildings"][has]).all()
    report = json.loads((Path(city_run.spec.output.dir) / "job.json").read_text())
    assert report["count_intervals"]["method"] == "unvalidated"
    assert "not validated" in report["count_intervals"]["assumptions"]


def test_points_mark_footprints_within_the_buffer(city: City, city_run: JobResult,
                                                  tmp_path: Path) -> None:
    labels = _point_labels(city, tmp_path / "sites.gpkg")
    done = validate(city_run.spec.output.dir, ValidationSpec(labels=str(labels)),
                    out_dir=tmp_path / "check")
    report = done.report
    # every scored destroyed footprint holds its own centroid: it is marked damaged
    buildings = gpd.read_parquet(Path(city_run.spec.output.dir) / "buildings.parquet")
    truth = _truth(city).set_index("building_id")["destroyed"]
    scored = buildings[buildings["mean_score"].notna()]
    assert report["join"]["n_damaged"] >= int(truth.loc[scored["building_id"]].sum())
    assert report["labels"]["n_damaged"] == int(_truth(city)["destroyed"].sum())
    assert done.auc is not None and done.auc > 0.8


def test_without_footprints_the_score_is_read_at_the_points(city: City, city_run: JobResult,
                                                           tmp_path: Path) -> None:
    results = tmp_path / "no_footprints"
    results.mkdir()
    for name in ("job.json", "score.tif", "districts.parquet"):
        shutil.copy(Path(city_run.spec.output.dir) / name, results / name)
    labels = _point_labels(city, tmp_path / "sites.gpkg")
    done = validate(results, ValidationSpec(labels=str(labels)))
    points = gpd.read_file(labels).to_crs(32637)
    with rasterio.open(results / "score.tif") as src:
        values = np.array([v[0] for v in src.sample(shapely.get_coordinates(points.geometry))])
    ok = np.isfinite(values)
    damaged = (points["Main_Damage_Site_Class"] == 1).to_numpy()
    assert done.report["join"]["unit"] == "label points"
    assert done.auc == pytest.approx(_auc(values[ok], damaged[ok]), abs=1e-9)
    assert done.report["accuracy"]["area"] is None  # points have no area
    assert done.districts is None  # no footprints: no district interval to calibrate


def test_labels_elsewhere_are_refused(city: City, city_run: JobResult, tmp_path: Path) -> None:
    far = gpd.GeoDataFrame({"Main_Damage_Site_Class": [1, 6]},
                           geometry=[shapely.Point(2.35, 48.85), shapely.Point(2.36, 48.86)],
                           crs=4326)
    far.to_file(tmp_path / "paris.gpkg", driver="GPKG")
    with pytest.raises(InputError, match=r"paris\.gpkg: no label lies within the results"):
        validate(city_run.spec.output.dir, ValidationSpec(labels=str(tmp_path / "paris.gpkg")),
                 out_dir=tmp_path / "check")
    assert not (tmp_path / "check" / "validation.json").exists()


def test_not_a_results_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a ruinmap results folder"):
        validate(tmp_path, ValidationSpec(labels=str(tmp_path / "x.gpkg")))


def test_validation_table_in_the_job_spec_runs_after_the_job(
        city: City, city_run: JobResult, dask_client: Client, tmp_path: Path) -> None:
    labels = _polygon_labels(city, tmp_path / "truth.gpkg")
    # the same job again, now with [validation]: the tiles are done, only validation runs
    spec = make_job_spec(city, Path(city_run.spec.output.dir),
                         validation={"labels": str(labels), "level": 0.8})
    result = run_job(spec, client=dask_client, progress=False)
    assert result.tiles_run == 0
    assert result.validation is not None
    assert (result.districts["buildings_damaged_interval"] == "calibrated").all()
    assert (result.districts["buildings_damaged_level"] == 0.8).all()
    out = Path(spec.output.dir)
    assert json.loads((out / "validation.json").read_text())["spec"]["level"] == 0.8
    on_disk = pd.read_csv(out / "districts.csv")
    assert (on_disk["buildings_damaged_interval"] == "calibrated").all()


def test_missing_labels_file_is_refused_before_work(city: City, tmp_path: Path) -> None:
    from ruinmap.cluster.job.spec.files import validate_spec_files
    from ruinmap.errors import SpecError

    spec = make_job_spec(city, tmp_path / "out", validation={"labels": "nowhere.gpkg"})
    with pytest.raises(SpecError, match=r"validation\.labels: .*nowhere\.gpkg' does not exist"):
        validate_spec_files(spec)


def test_cli_validate(city: City, city_run: JobResult, tmp_path: Path) -> None:
    labels = _polygon_labels(city, tmp_path / "truth.gpkg")
    done = subprocess.run(
        [str(BIN / "ruinmap"), "validate", str(city_run.spec.output.dir), "--labels",
         str(labels), "--out", str(tmp_path / "cli")],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "AUC 0." in done.stdout
    assert "F1-maximising threshold" in done.stdout
    assert "90% interval" in done.stdout
    assert "calibrated on labels" in done.stdout
    bad = subprocess.run(
        [str(BIN / "ruinmap"), "validate", str(tmp_path), "--labels", str(labels)],
        capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode == 1
    assert "not a ruinmap results folder" in bad.stderr
    assert "Traceback" not in bad.stderr
    wrong = subprocess.run(
        [str(BIN / "ruinmap"), "validate", str(city_run.spec.output.dir), "--labels",
         str(labels), "--level", "2", "--buffer-m", "-1"],
        capture_output=True, text=True, timeout=300, check=False)
    assert wrong.returncode == 1
    assert "--level: Input should be less than or equal to 0.999" in wrong.stderr
    assert "--buffer-m: Input should be greater than 0" in wrong.stderr


def test_validating_in_place_keeps_the_catalog_and_the_hxl_level_true(
    city: City, city_run: JobResult, tmp_path: Path,
) -> None:
    results = tmp_path / "results"  # a copy of the run: validation rewrites its tables
    shutil.copytree(city_run.spec.output.dir, results,
                    ignore=shutil.ignore_patterns("store.zarr", ".ruinmap*"))
    job_json = results / "job.json"
    report = json.loads(job_json.read_text())
    report["spec"]["districts"]["admin_level"] = 3
    job_json.write_text(json.dumps(report))
    validate(results, ValidationSpec(labels=str(_polygon_labels(city, tmp_path / "t.gpkg"))))
    before = (Path(city_run.spec.output.dir) / "districts.png").read_bytes()
    assert (results / "districts.png").read_bytes() != before  # redrawn: calibrated bars
    tags = (results / "districts_hxl.csv").read_text().splitlines()[1]
    assert tags.startswith("#adm3+code"), tags
    item = json.loads(next((results / "stac").glob("*/*.json")).read_text())
    for key in ("districts_gpkg", "districts_hxl_csv", "districts_parquet", "districts_png"):
        asset = item["assets"][key]
        name = {"districts_gpkg": "districts.gpkg", "districts_hxl_csv": "districts_hxl.csv",
                "districts_parquet": "districts.parquet", "districts_png": "districts.png"}[key]
        assert asset["file:checksum"] == file_checksum(results / name), key
