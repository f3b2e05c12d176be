"""Damage dating in a job (`method_params.dating`): on a synthetic city whose buildings fall on
known post-event dates, the dated products exist, are well formed, and date the destroyed
buildings to the right acquisition often enough (a floor held here; the figures go in the
README's "Damage dating" section)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import parse_spec
from ruinmap.cluster.outputs.cog import cog_problems
from ruinmap.cluster.outputs.timeseries import DATE_NODATA, EPOCH
from ruinmap.errors import SpecError
from ruinmap.synthetic import City, make_city
from tests.support.jobs import make_job_spec

SIZE = 192
N_POST = 6
#: floors of the dating accuracy on this city (measured: see the README's Damage dating)
FLOORS = {"two_exceedance": (0.65, 6.0)}


@pytest.fixture(scope="module")
def dated_city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("dating") / "city", size=SIZE, n_pre=6,
                     n_post=N_POST, seed=5, destroyed_fraction=0.2, dated_destruction=True)


def _dated_spec(city: City, out: Path, **params: Any) -> Any:
    data = make_job_spec(city, out).to_json_dict()
    data["method_params"] = {**data["method_params"], "dating": True, **params}
    return parse_spec(data, out.parent)


@pytest.fixture(scope="module")
def dated_run(dated_city: City, dask_client: Client) -> tuple[str, JobResult]:
    # one job (the cusum rule's accuracy is held without a cluster, tests/methods)
    spec = _dated_spec(dated_city, dated_city.out_dir.parent / "run")
    return "two_exceedance", run_job(spec, client=dask_client, progress=False,
                                     ingest_options=IngestOptions(chunk=64, shard=128))


def dating_accuracy(city: City, buildings: pd.DataFrame) -> tuple[float, float, int]:
    """(share of the destroyed buildings dated to their acquisition, median |error| in days
    of those dated at all, number of destroyed buildings scored)."""
    truth = city.buildings.set_index("building_id")
    table = buildings.set_index("building_id").join(truth[["destroyed", "destroyed_date"]])
    destroyed = table[table["destroyed"] & (table["n_pixels"] > 0)]
    predicted = pd.to_datetime(destroyed["damage_date"])
    right = (predicted == pd.to_datetime(destroyed["destroyed_date"])).mean()
    errors = (predicted - pd.to_datetime(destroyed["destroyed_date"])).abs().dt.days.dropna()
    return float(right), float(errors.median()), len(destroyed)


def test_dating_accuracy_on_the_dated_city(dated_run: tuple[str, JobResult],
                                           dated_city: City) -> None:
    rule, result = dated_run
    buildings = pd.read_parquet(Path(result.files["buildings_parquet"]))
    right, median_days, n = dating_accuracy(dated_city, buildings)
    print(f"{rule}: {right:.3f} of {n} destroyed buildings dated right, median error "
          f"{median_days:g} days")
    floor_right, ceiling_days = FLOORS[rule]
    assert n > 50
    assert right >= floor_right
    assert median_days <= ceiling_days


def test_dated_products_are_written_and_listed(dated_run: tuple[str, JobResult],
                                               dated_city: City) -> None:
    _, result = dated_run
    files = {key: Path(str(path)) for key, path in result.files.items()}
    assert cog_problems(files["damage_date_tif"], block=512) == []
    with rasterio.open(files["damage_date_tif"]) as src:
        assert (src.count, src.dtypes[0], src.nodata) == (2, "int32", DATE_NODATA)
        assert src.tags()["DATE_EPOCH"] == EPOCH.isoformat()
        assert src.descriptions == ("damage_date", "damage_date_earliest")
        date, earliest = src.read()
    dated = date != DATE_NODATA
    assert dated.any() and not dated.all()
    assert np.all(earliest[dated] < date[dated])  # the bracket opens before the date
    post_days = {(d - EPOCH).days for d in dated_city.post_dates}
    assert set(np.unique(date[dated])) <= post_days
    assert set(np.unique(earliest[dated])) <= post_days | {(dated_city.pre_dates[-1]
                                                           - EPOCH).days}

    buildings = pd.read_parquet(files["buildings_parquet"])
    assert set(buildings["damage_date_status"]) <= {"confirmed", "uncertain", "none"}
    has = buildings["damage_date_status"] != "none"
    assert buildings.loc[has, "damage_date"].notna().all()
    assert buildings.loc[~has, "damage_date"].isna().all()
    assert (buildings.loc[has, "damage_date_earliest"] < buildings.loc[has, "damage_date"]).all()

    series = pd.read_csv(files["districts_timeseries_csv"])
    total = series[series["district_id"] == "all"]
    assert list(total["date"]) == [d.isoformat() for d in dated_city.post_dates]
    assert total["buildings_damaged"].is_monotonic_increasing
    assert total["damaged_km2"].is_monotonic_increasing
    per_district = series[series["district_id"] != "all"].groupby("date")["buildings_damaged"]
    # buildings outside every district count only in "all"
    assert (per_district.sum().to_numpy() <= total["buildings_damaged"].to_numpy()).all()
    assert files["districts_timeseries_png"].stat().st_size > 10_000

    item = next((files["stac_item"]).parent.glob("*.json"))
    assets = json.loads(item.read_text())["assets"]
    assert {"damage_date.tif", "districts_timeseries.csv", "districts_timeseries.png"} <= {
        Path(a["href"]).name for a in assets.values()}


def test_dating_needs_two_post_dates(tmp_path: Path, dask_client: Client) -> None:
    # log-ratio scores one post date; dating it is refused before the tiles run
    city = make_city(tmp_path / "city", size=64, n_pre=3, n_post=1, seed=2)
    data = make_job_spec(city, tmp_path / "out").to_json_dict()
    data.update(method="log-ratio", method_params={"band": "VV", "dating": True})
    spec = parse_spec(data, tmp_path)
    with pytest.raises(SpecError, match="at least 2 post-event dates"):
        run_job(spec, client=dask_client, progress=False)


def test_dating_rule_without_dating_is_refused(dated_city: City, tmp_path: Path) -> None:
    data = make_job_spec(dated_city, tmp_path / "out").to_json_dict()
    data["method_params"] = {**data["method_params"], "dating_rule": "cusum"}
    with pytest.raises(SpecError, match="dating"):
        parse_spec(data, tmp_path)
