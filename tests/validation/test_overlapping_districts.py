"""`validate` on a job whose districts overlap (the whole city drawn with its quarters): each
district counts every labelled unit and footprint it holds, as the job's table does."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from distributed import Client

from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.validation.config import ValidationSpec
from ruinmap.cluster.validation.run import validate
from ruinmap.synthetic import City
from tests.support.jobs import make_job_spec


def _labels(city: City, path: Path) -> Path:
    truth = gpd.read_parquet(city.truth_buildings_path)
    gpd.GeoDataFrame({"subtype": np.where(truth["destroyed"], "destroyed", "no-damage")},
                     geometry=truth.geometry.to_numpy(), crs=truth.crs,
                     ).to_file(path, driver="GPKG", layer="buildings")
    return path


def test_whole_city_and_quarters_each_count_their_labels_and_footprints(
        city: City, city_run: JobResult, dask_client: Client, tmp_path: Path) -> None:
    quarters = gpd.read_file(city.districts_path)
    whole = gpd.GeoDataFrame({"district_id": ["city"], "name": ["whole city"]},
                             geometry=[shapely.union_all(quarters.geometry.to_numpy())],
                             crs=quarters.crs)
    both = gpd.GeoDataFrame(pd.concat([whole, quarters], ignore_index=True), crs=quarters.crs)
    both.to_file(tmp_path / "both.geojson", driver="GeoJSON")
    spec = make_job_spec(city, tmp_path / "both", inputs={"store": str(city_run.store)},
                         districts={"path": str(tmp_path / "both.geojson"),
                                    "id": "district_id", "name": "name"})
    run_job(spec, client=dask_client, progress=False)
    labels = _labels(city, tmp_path / "truth.gpkg")
    done = validate(spec.output.dir, ValidationSpec(labels=str(labels)), out_dir=tmp_path / "v")
    alone = validate(city_run.spec.output.dir, ValidationSpec(labels=str(labels)),
                     out_dir=tmp_path / "alone")

    per = pd.read_csv(tmp_path / "v" / "validation.csv").set_index("district_id")
    per_alone = pd.read_csv(tmp_path / "alone" / "validation.csv").set_index("district_id")
    ids = [str(i) for i in quarters["district_id"]]
    per.index, per_alone.index = per.index.astype(str), per_alone.index.astype(str)
    columns = ["labelled_units", "labelled_damaged", "predicted_damaged"]
    pd.testing.assert_frame_equal(per.loc[ids, columns], per_alone.loc[ids, columns])
    assert per.loc["city", "labelled_units"] == per_alone[columns[0]].sum() > 0
    assert per.loc["city", "labelled_damaged"] == per_alone["labelled_damaged"].sum()

    # calibrated intervals: the quarters as in the job of the quarters alone, the city their sum
    assert done.districts is not None and alone.districts is not None
    table = done.districts.set_index(done.districts["district_id"].astype(str))
    table_alone = alone.districts.set_index(alone.districts["district_id"].astype(str))
    expected = table["buildings_damaged_expected"]
    np.testing.assert_allclose(expected.loc[ids].fillna(0),
                               table_alone.loc[ids, "buildings_damaged_expected"].fillna(0),
                               rtol=1e-9)
    assert expected.loc["city"] == pytest.approx(expected.loc[ids].fillna(0).sum(), rel=1e-9)
    assert table.loc["city", "buildings"] == table_alone["buildings"].sum()
