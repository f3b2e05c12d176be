"""Overlapping districts (a whole-city polygon drawn with its quarters): every pixel and every
footprint counts for each district that holds it, so each row reads as if its district had
been the job's only one."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from distributed import Client

from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import parse_spec
from ruinmap.synthetic import City
from tests.support.jobs import make_job_spec

# what must equal a job on the district alone; counts exactly, the rest to float64 rounding
COUNTS = ["buildings", "buildings_damaged"]
AREAS = ["area_km2", "valid_km2", "damaged_km2", "class_1_km2", "class_4_km2"]
STATS = ["damaged_fraction", "mean_score", "p90_score", "buildings_damaged_fraction"]


def _write(frame: gpd.GeoDataFrame, path: Path) -> dict[str, str]:
    frame.to_file(path, driver="GeoJSON")
    return {"path": str(path), "id": "district_id", "name": "name"}


def _whole_city(city: City) -> gpd.GeoDataFrame:
    quarters = gpd.read_file(city.districts_path)
    whole = shapely.union_all(quarters.geometry.to_numpy()).buffer(0)
    return gpd.GeoDataFrame({"district_id": ["city"], "name": ["whole city"]},
                            geometry=[whole], crs=quarters.crs)


@pytest.fixture(scope="module")
def overlap_run(job_city: City, job_run: JobResult, dask_client: Client,
                tmp_path_factory: pytest.TempPathFactory) -> JobResult:
    """The city drawn whole first, then its quarters, on `job_run`'s store (same tiles)."""
    folder = tmp_path_factory.mktemp("overlap")
    quarters = gpd.read_file(job_city.districts_path)
    both = pd.concat([_whole_city(job_city), quarters], ignore_index=True)
    spec = make_job_spec(job_city, folder / "both", inputs={"store": str(job_run.store)},
                         districts=_write(gpd.GeoDataFrame(both, crs=quarters.crs),
                                          folder / "both.geojson"))
    return run_job(spec, client=dask_client, progress=False)


def _assert_rows_equal(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got, want = got.reset_index(drop=True), want.reset_index(drop=True)
    assert list(got["district_id"].astype(str)) == list(want["district_id"].astype(str))
    pd.testing.assert_frame_equal(got[COUNTS], want[COUNTS])
    pd.testing.assert_frame_equal(got[AREAS + STATS], want[AREAS + STATS], rtol=1e-9)


def test_each_quarter_reads_as_in_a_job_of_the_quarters_alone(
        overlap_run: JobResult, job_run: JobResult) -> None:
    table = overlap_run.districts
    assert str(table["district_id"].iloc[0]) == "city"
    _assert_rows_equal(table.iloc[1:], job_run.districts)


def test_the_whole_city_reads_as_in_a_job_of_the_whole_city_alone_on_other_tiles(
        overlap_run: JobResult, job_run_other_tiles: JobResult, job_city: City,
        dask_client: Client, tmp_path: Path) -> None:
    # a store ingested with other chunks and shards: other tiles, so this is also chunking
    # invariance for the overlapping layer
    spec = make_job_spec(job_city, tmp_path / "whole",
                         inputs={"store": str(job_run_other_tiles.store)},
                         districts=_write(_whole_city(job_city), tmp_path / "whole.geojson"))
    alone = run_job(spec, client=dask_client, progress=False)
    assert alone.tiles_total != overlap_run.tiles_total
    got, want = overlap_run.districts.iloc[:1], alone.districts
    pd.testing.assert_frame_equal(got[COUNTS].reset_index(drop=True), want[COUNTS])
    pd.testing.assert_frame_equal(got[AREAS + STATS].reset_index(drop=True),
                                  want[AREAS + STATS], rtol=1e-5)


def test_the_whole_city_holds_what_its_quarters_hold(overlap_run: JobResult) -> None:
    table = overlap_run.districts
    whole, quarters = table.iloc[0], table.iloc[1:]
    assert whole["valid_km2"] > 0
    # the quarters tile the city: their pixels and footprints add up to the city's
    assert whole["valid_km2"] == pytest.approx(quarters["valid_km2"].sum(), rel=1e-9)
    assert whole["damaged_km2"] == pytest.approx(quarters["damaged_km2"].sum(), rel=1e-9)
    assert whole["buildings"] == quarters["buildings"].sum() > 0
    assert whole["buildings_damaged"] == quarters["buildings_damaged"].sum()
    low, high = whole["buildings_damaged_low"], whole["buildings_damaged_high"]
    assert low <= whole["buildings_damaged_expected"] <= high


def test_the_footprints_keep_their_first_district(overlap_run: JobResult) -> None:
    assert overlap_run.buildings is not None
    ids = overlap_run.buildings["district_id"].dropna().astype(str)
    assert len(ids) > 0 and (ids == "city").all()  # the whole city is the file's first


def test_the_damage_time_series_counts_each_pixel_in_every_district_holding_it(
        job_city: City, job_run: JobResult, dask_client: Client, tmp_path: Path) -> None:
    # the quarters partition the whole city: by every date, the city's dated damage (area
    # and buildings) is the sum of its quarters'; one label image would have given each
    # pixel and footprint to one of them only
    quarters = gpd.read_file(job_city.districts_path)
    both = pd.concat([_whole_city(job_city), quarters], ignore_index=True)
    data = make_job_spec(job_city, tmp_path / "dated", inputs={"store": str(job_run.store)},
                         districts=_write(gpd.GeoDataFrame(both, crs=quarters.crs),
                                          tmp_path / "both.geojson")).to_json_dict()
    data["method_params"] = {**data["method_params"], "dating": True}
    run_job(parse_spec(data, tmp_path), client=dask_client, progress=False)
    series = pd.read_csv(tmp_path / "dated" / "districts_timeseries.csv")
    city = series[series["district_id"] == "city"].set_index("date")
    parts = (series[~series["district_id"].isin(["city", "all"])].groupby("date")
             [["damaged_km2", "buildings_damaged", "buildings_damaged_any"]].sum())
    assert city["damaged_km2"].iloc[-1] > 0 and city["buildings_damaged_any"].iloc[-1] > 0
    pd.testing.assert_series_equal(city["damaged_km2"], parts["damaged_km2"], rtol=1e-6)
    for column in ("buildings_damaged", "buildings_damaged_any"):
        pd.testing.assert_series_equal(city[column], parts[column])
