"""Do the count intervals hold the truth? On synthetic cities with known damage, labels are
the truth of a random 30 % of the footprints, and each district's calibrated 90 % interval is
held against its true destroyed count (`benchmarks/bench_validation.py coverage` measures
the same over more cities; its figure is in the README)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from distributed import Client

from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.validation.config import ValidationSpec
from ruinmap.cluster.validation.run import validate
from ruinmap.synthetic import City, make_city
from tests.support.jobs import CITY_SIZE, make_job_spec


def _covered(city: City, run: JobResult, tmp: Path, seed: int) -> np.ndarray:
    """Per district with buildings: does the calibrated interval hold the true count?"""
    truth = gpd.read_parquet(city.truth_buildings_path)
    sample = truth[np.random.default_rng(seed).random(len(truth)) < 0.3]
    labels = gpd.GeoDataFrame(
        {"subtype": np.where(sample["destroyed"], "destroyed", "no-damage")},
        geometry=sample.geometry.to_numpy(), crs=truth.crs)
    labels.to_file(tmp / "labels.gpkg", driver="GPKG")
    done = validate(run.spec.output.dir, ValidationSpec(labels=str(tmp / "labels.gpkg")),
                    out_dir=tmp / "check")
    buildings = pd.read_parquet(Path(run.spec.output.dir) / "buildings.parquet")
    scored = buildings[buildings["mean_score"].notna()].merge(
        truth[["building_id", "destroyed"]], on="building_id")
    true = scored.groupby("district_id")["destroyed"].sum()
    assert done.districts is not None
    t = done.districts.set_index("district_id")
    t = t[t["buildings"] > 0]
    n = true.reindex(t.index).fillna(0).to_numpy()
    return np.asarray((t["buildings_damaged_low"].to_numpy() <= n)
                      & (n <= t["buildings_damaged_high"].to_numpy()))


@pytest.fixture(scope="module")
def second_run(tmp_path_factory: pytest.TempPathFactory, dask_client: Client
               ) -> tuple[City, JobResult]:
    city = make_city(tmp_path_factory.mktemp("coverage") / "city", size=CITY_SIZE, seed=11)
    spec = make_job_spec(city, city.out_dir.parent / "run")
    return city, run_job(spec, client=dask_client, progress=False)


def test_calibrated_intervals_hold_the_true_counts(
        city: City, city_run: JobResult, second_run: tuple[City, JobResult],
        tmp_path: Path) -> None:
    calibrated = []
    for k, (c, run) in enumerate(((city, city_run), second_run)):
        (tmp_path / str(k)).mkdir()
        calibrated.append(_covered(c, run, tmp_path / str(k), seed=k))
    share = float(np.concatenate(calibrated).mean())
    n = int(np.concatenate(calibrated).size)
    # nominal 90 %; with ~20 districts, fewer than 75 % covered would be a 1-in-100 event
    assert n >= 15
    assert share >= 0.75, f"calibrated 90% intervals held the truth in {share:.0%} of {n}"
