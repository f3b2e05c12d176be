"""`validate` against real ground truth from `../shared/data`:

- xBD Joplin tile 00000000: its real pre/post images (PNG, georeferenced here with the affine
  fitted in its PROVENANCE.md and warped to UTM 15N) mapped with cva, footprints = the xBD
  polygons, validated against the xBD post-disaster labels;
- UNOSAT Daraa: a synthetic city placed on Daraa (EPSG:32637) with its post imagery ending in
  December 2016, validated against the real damage-site file, whose declared CRS is wrong
  and whose classes sit in one column per assessment date.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from affine import Affine
from distributed import Client
from PIL import Image
from rasterio.warp import Resampling, calculate_default_transform, reproject
from scipy.stats import mannwhitneyu

from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import parse_spec
from ruinmap.cluster.validation.config import ValidationSpec
from ruinmap.cluster.validation.run import validate
from ruinmap.synthetic import make_city
from tests.support.jobs import make_job_spec
from tests.support.rasters import SHARED_DATA

XBD = SHARED_DATA / "xbd-joplin-00000000"
DARAA = SHARED_DATA / "unosat-daraa" / "daraa_damage.gpkg"
#: tile 0's pixel -> lon/lat affine (corner convention), from xbd-joplin-00000000/PROVENANCE.md
XBD_AFFINE = Affine(5.07438922e-06, 8.04677261e-08, -94.5092534,
                    6.44622291e-08, -4.06657242e-06, 37.0656454)
XBD_DATES = {"pre": "2009-08-08", "post": "2011-05-29"}  # capture dates in the label JSON


def _xbd_geotiff(side: str, out: Path) -> Path:
    png = XBD / "images" / f"joplin-tornado_00000000_{side}_disaster.png"
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    dst_crs = "EPSG:32615"
    # the source affine is slightly rotated: the target covers the bounds of its corners
    corners = [XBD_AFFINE @ (c, r) for c, r in ((0, 0), (1024, 0), (0, 1024), (1024, 1024))]
    lons, lats = zip(*corners, strict=True)
    transform, width, height = calculate_default_transform(
        "EPSG:4326", dst_crs, 1024, 1024, min(lons), min(lats), max(lons), max(lats),
        resolution=2.4)
    warped = np.zeros((3, height, width), np.uint8)
    for band in range(3):
        reproject(rgb[band], warped[band], src_transform=XBD_AFFINE, src_crs="EPSG:4326",
                  dst_transform=transform, dst_crs=dst_crs, resampling=Resampling.bilinear,
                  src_nodata=None, dst_nodata=0)
    path = out / f"{side}_{XBD_DATES[side].replace('-', '')}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3,
                       dtype="uint8", crs=dst_crs, transform=transform, nodata=0) as dst:
        dst.write(warped)
        dst.descriptions = ("red", "green", "blue")
        dst.update_tags(ACQUISITION_DATE=XBD_DATES[side])
    return path


@pytest.fixture(scope="module")
def xbd_run(tmp_path_factory: pytest.TempPathFactory, dask_client: Client) -> JobResult:
    if not XBD.exists():
        pytest.skip(f"{XBD} absent (shared data)")
    root = tmp_path_factory.mktemp("xbd")
    pre, post = _xbd_geotiff("pre", root), _xbd_geotiff("post", root)
    labels = json.loads((XBD / "labels" / "joplin-tornado_00000000_pre_disaster.json")
                        .read_text())["features"]["lng_lat"]
    feet = gpd.GeoDataFrame({"uid": [f["properties"]["uid"] for f in labels]},
                            geometry=shapely.from_wkt([f["wkt"] for f in labels]), crs=4326)
    feet.to_file(root / "footprints.geojson", driver="GeoJSON")
    x0, y0, x1, y1 = feet.total_bounds
    mid = (x0 + x1) / 2
    gpd.GeoDataFrame({"district_id": ["west", "east"]},
                     geometry=[shapely.box(x0 - 1e-3, y0 - 1e-3, mid, y1 + 1e-3),
                               shapely.box(mid, y0 - 1e-3, x1 + 1e-3, y1 + 1e-3)],
                     crs=4326).to_file(root / "districts.geojson", driver="GeoJSON")
    spec = parse_spec({
        "method": "cva", "inputs": {"pre": [str(pre)], "post": [str(post)]},
        "districts": {"path": str(root / "districts.geojson"), "id": "district_id"},
        "buildings": {"path": str(root / "footprints.geojson"), "id": "uid"},
        "grid": {"cell_size": 100.0}, "output": {"dir": str(root / "out")},
        "method_params": {"radius_m": 5.0},
    }, root)
    return run_job(spec, client=dask_client, progress=False)


def test_xbd_joplin_labels_on_a_real_cva_run(xbd_run: JobResult, tmp_path: Path) -> None:
    post = XBD / "labels" / "joplin-tornado_00000000_post_disaster.json"
    done = validate(xbd_run.spec.output.dir, ValidationSpec(labels=str(post)),
                    out_dir=tmp_path)
    report = done.report
    assert report["labels"]["kind"] == "polygons"
    assert report["labels"]["epoch"] == "2011-05-29"
    # independent join: the pre and post label files hold the same polygons, keyed by uid
    subtype = {f["properties"]["uid"]: f["properties"]["subtype"]
               for f in json.loads(post.read_text())["features"]["lng_lat"]}
    buildings = pd.read_parquet(Path(xbd_run.spec.output.dir) / "buildings.parquet")
    buildings["subtype"] = buildings["uid"].map(subtype)
    used = buildings[buildings["mean_score"].notna() & (buildings["subtype"] != "un-classified")]
    damaged = used["subtype"].isin(["major-damage", "destroyed"]).to_numpy()
    scores = used["mean_score"].to_numpy()
    assert report["join"]["n_scored"] == len(used)
    assert report["join"]["n_damaged"] == int(damaged.sum())
    u = mannwhitneyu(scores[damaged], scores[~damaged]).statistic
    assert done.auc == pytest.approx(u / (damaged.sum() * (~damaged).sum()), abs=1e-9)
    assert done.auc > 0.5  # the tornado track shows in the change vectors
    print(f"xBD Joplin tile 0, cva: AUC {done.auc:.3f} over {len(used)} footprints")


@pytest.fixture(scope="module")
def daraa_run(tmp_path_factory: pytest.TempPathFactory, dask_client: Client) -> JobResult:
    if not DARAA.exists():
        pytest.skip(f"{DARAA} absent (shared data)")
    city = make_city(tmp_path_factory.mktemp("daraa") / "city", size=256, seed=2,
                     centre_lonlat=(36.101, 32.620), crs="EPSG:32637",
                     event_date=dt.date(2016, 11, 20))
    spec = make_job_spec(city, city.out_dir.parent / "out")
    return run_job(spec, client=dask_client, progress=False)


def test_unosat_daraa_points_with_their_quirks(daraa_run: JobResult, tmp_path: Path) -> None:
    done = validate(daraa_run.spec.output.dir, ValidationSpec(labels=str(DARAA)),
                    out_dir=tmp_path)
    labels = done.report["labels"]
    # post imagery ends in December 2016: the 2016-04-19 assessment, not the 2017 ones
    assert done.report["post_end"].startswith("2016-12")
    assert labels["epoch"] == "2016-04-19"
    assert any("EPSG:32637" in note and "geographic" in note for note in labels["notes"])
    # the PWTT rule, computed here with a nearest join instead of the STRtree query
    buildings = gpd.read_parquet(Path(daraa_run.spec.output.dir) / "buildings.parquet")
    scored = buildings[buildings["mean_score"].notna()].reset_index(drop=True)
    raw = gpd.read_file(DARAA, layer="UNOSAT_A3_Daraa_Damage_Points_20170207")
    raw = raw.set_crs(32637, allow_override=True)
    dates = ["2014-05-01", "2015-06-04", "2016-04-19"]
    latest = raw[dates].ffill(axis=1).iloc[:, -1]  # the latest class recorded by 2016-04-19
    sites = raw[latest.isin(["1", "2", "3"]).to_numpy()]
    near = gpd.sjoin_nearest(scored[["geometry"]], sites[["geometry"]], max_distance=10.0)
    assert done.report["join"]["n_damaged"] == near.index.nunique()
    assert done.report["join"]["n_damaged"] > 0
    assert done.auc is not None  # undamaged = footprints in the coverage with no site near
    print(f"Daraa: {done.report['join']}")


def test_unosat_daraa_damage_sites_alone_give_recall_only(daraa_run: JobResult,
                                                          tmp_path: Path) -> None:
    """No footprints and a layer of damage sites only: the points are scored themselves,
    recall is measured, AUC and the calibration cannot be and say why."""
    results = tmp_path / "results"
    results.mkdir()
    for name in ("job.json", "score.tif", "districts.parquet"):
        shutil.copy(Path(daraa_run.spec.output.dir) / name, results / name)
    done = validate(results, ValidationSpec(labels=str(DARAA)))
    report = done.report
    assert report["join"]["unit"] == "label points"
    assert report["join"]["n_undamaged"] == 0
    assert done.auc is None
    job = report["accuracy"]["buildings"]["at_thresholds"][0]
    assert 0 <= job["recall"] <= 1 and job["precision"] == 1.0  # every site is damaged
    assert report["count_intervals"]["method"] is None
    assert "2 of each" in report["count_intervals"]["why"]
    assert (results / "validation.png").stat().st_size > 10_000
