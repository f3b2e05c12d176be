"""`ruinmap demo`: a synthetic city with known damage, the whole job on it, and its accuracy.

`run_demo(out_dir, size)` writes a city (`ruinmap.synthetic.make_city`: buildings,
roads, districts, pre and post Sentinel-1-like stacks with speckle, seasonal change in fields
and new construction as distractors, a known set of destroyed buildings), writes its job file,
runs the job (pwtt by default) and scores the result against the truth:

- per-building AUC: the probability that a destroyed footprint scores higher than an intact
  one (Mann-Whitney U / (n_pos n_neg), ties counted half), over footprints with a score;
- F1 of the method's `damaged` flag (score > threshold) against `destroyed`;
- per-district damaged-fraction error: mean absolute difference between the truth's
  destroyed share of footprint area and the estimated share (area of footprints flagged
  damaged / area of footprints with a score), over districts with buildings;
- district ranking: Spearman's rank correlation, over every district (a district without
  buildings has a true destroyed share of 0), of the truth's destroyed share with the
  district table's damaged-building share (`buildings_damaged_fraction`) and with its pixel
  figure, the damaged share of the built-up area (`damaged_built_fraction`, or of the valid
  area, `damaged_fraction`, without a mask); an analyst ranks districts by one of these.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ruinmap.cluster.compute.phases import phase
from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.run import STORE_NAME, JobResult, run_job
from ruinmap.cluster.job.spec import load_spec
from ruinmap.cluster.job.workdir import WORK_DIR
from ruinmap.errors import InputError
from ruinmap.synthetic import City, make_city, write_job_spec

__all__ = ["Accuracy", "DemoResult", "accuracy", "f1_score", "rank_auc", "run_demo"]

DEFAULT_SIZE = 1024


def rank_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney rank formula (average ranks for ties).

    AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R_pos the rank sum of the positives.
    NaN when either class is empty.
    """
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, np.float64)
    # average rank of each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], scores.size]
    average = (starts + ends + 1) / 2.0  # ranks are 1-based: run covers starts+1 .. ends
    ranks[order] = np.repeat(average, ends - starts)
    r_pos = ranks[positive].sum()
    return float((r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def f1_score(predicted: np.ndarray, actual: np.ndarray) -> float:
    """F1 = 2 TP / (2 TP + FP + FN); NaN when there is nothing to find and nothing found."""
    predicted = np.asarray(predicted, bool)
    actual = np.asarray(actual, bool)
    tp = int((predicted & actual).sum())
    wrong = int((predicted ^ actual).sum())
    return float("nan") if tp == 0 and wrong == 0 else 2 * tp / (2 * tp + wrong)


@dataclass(frozen=True)
class Accuracy:
    """How well a job's result matches the city's truth (see the module docstring)."""

    building_auc: float
    building_f1: float
    district_fraction_mae: float
    n_buildings: int
    n_destroyed: int
    n_districts: int
    district_rank_buildings: float = float("nan")  # Spearman, damaged-building share
    district_rank_pixels: float = float("nan")  # Spearman, damaged share of built-up area
    pixel_figure: str = "damaged_built_fraction"  # the column behind district_rank_pixels
    n_ranked: int = 0  # districts in the rank correlations


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3:
        return float("nan")
    return float(spearmanr(a[keep], b[keep]).statistic)


def district_ranking(table: pd.DataFrame, city: City) -> tuple[float, float, str, int]:
    """(rho of the damaged-building share, rho of the pixel figure, that figure's column,
    districts) against the truth's destroyed share; districts without buildings count as 0
    destroyed."""
    truth = city.districts.set_index("district_id")["damaged_fraction"].fillna(0.0)
    ours = table.set_index("district_id").reindex(truth.index)
    figure = ("damaged_built_fraction" if "damaged_built_fraction" in ours.columns
              and ours["damaged_built_fraction"].notna().any() else "damaged_fraction")
    true = truth.to_numpy(np.float64)
    by_buildings = float("nan")
    if "buildings_damaged_fraction" in ours.columns:
        # a district without buildings has no damaged building: 0, as the truth says
        shares = ours["buildings_damaged_fraction"].astype(float).fillna(0.0)
        by_buildings = _spearman(shares.to_numpy(np.float64), true)
    pixels = ours[figure].astype(float).to_numpy(np.float64)
    # a district with no built-up pixel has no damaged built-up area
    if figure == "damaged_built_fraction":
        pixels = np.where(np.isnan(pixels), 0.0, pixels)
    return by_buildings, _spearman(pixels, true), figure, int(np.isfinite(true).sum())


def accuracy(result: JobResult, city: City) -> Accuracy:
    """Score `result` against `city`'s truth."""
    if result.buildings is None:
        raise InputError("the demo's accuracy needs per-building scores; the job had no buildings")
    truth = city.buildings.set_index("building_id")
    ours = pd.DataFrame(result.buildings.drop(columns="geometry")).set_index("building_id")
    joined = ours.merge(truth[["destroyed", "area_m2", "district_id"]], how="left",
                        left_index=True, right_index=True, suffixes=("", "_truth"))
    scored = joined[np.isfinite(joined["mean_score"].to_numpy(np.float64))]
    destroyed = scored["destroyed"].to_numpy(bool)
    damaged = scored["damaged"].to_numpy(bool)
    area = scored["area_m2"].to_numpy(np.float64)
    by_district = pd.DataFrame({
        "district_id": scored["district_id_truth"], "area": area, "hit": area * damaged,
    }).groupby("district_id")[["area", "hit"]].sum()
    estimate = (by_district["hit"] / by_district["area"]).rename("estimate")
    districts = city.districts.set_index("district_id").join(estimate)
    keep = np.isfinite(districts["damaged_fraction"]) & districts["estimate"].notna()
    districts = districts[keep]
    error = np.abs(districts["estimate"] - districts["damaged_fraction"]).to_numpy(np.float64)
    rank_b, rank_p, figure, n_ranked = district_ranking(result.districts, city)
    return Accuracy(
        building_auc=rank_auc(scored["mean_score"].to_numpy(np.float64), destroyed),
        building_f1=f1_score(damaged, destroyed),
        district_fraction_mae=float(error.mean()) if error.size else float("nan"),
        n_buildings=int(destroyed.size),
        n_destroyed=int(destroyed.sum()),
        n_districts=int(error.size),
        district_rank_buildings=rank_b, district_rank_pixels=rank_p, pixel_figure=figure,
        n_ranked=n_ranked,
    )


@dataclass
class DemoResult:
    city: City
    job_path: Path
    result: JobResult
    accuracy: Accuracy
    labels_path: Path  # the truth as polygon labels, for `ruinmap validate`


def write_truth_labels(city: City, path: Path) -> Path:
    """The city's truth as polygon labels in xBD's vocabulary (`subtype` destroyed or
    no-damage), a GeoPackage `ruinmap validate --labels` reads."""
    truth = gpd.read_parquet(city.truth_buildings_path)
    subtype = np.where(truth["destroyed"].to_numpy(bool), "destroyed", "no-damage")
    labels = gpd.GeoDataFrame({"building_id": truth["building_id"].to_numpy(),
                               "subtype": subtype},
                              geometry=truth.geometry.to_numpy(), crs=truth.crs)
    labels.to_file(path, driver="GPKG", layer="truth")
    return path


def run_demo(
    out_dir: str | Path,
    size: int = DEFAULT_SIZE,
    *,
    method: str = "pwtt",
    seed: int = 0,
    scheduler: str | None = None,
    client: object | None = None,
    progress: bool | None = None,
    ingest_options: IngestOptions | None = None,
    write_products: bool = True,
) -> DemoResult:
    """Make the city in `out_dir/city`, run the job (`out_dir/job.toml`, results in
    `out_dir/out`) and score it. An existing demo in `out_dir` is replaced."""
    out_dir = Path(out_dir)
    previous = out_dir / "out"
    if (previous / STORE_NAME).exists() or (previous / WORK_DIR).exists():
        shutil.rmtree(previous)  # results of an earlier demo, made from another city
    with phase(f"making the synthetic city ({size} x {size} px)", enabled=progress):
        city = make_city(out_dir / "city", size=size, seed=seed, overwrite=True)
    job_path = write_job_spec(city, out_dir, method=method)
    spec = load_spec(job_path)
    result = run_job(spec, client=client, scheduler=scheduler,  # type: ignore[arg-type]
                     progress=progress, ingest_options=ingest_options,
                     write_products=write_products)
    labels = write_truth_labels(city, out_dir / "truth_labels.gpkg")
    return DemoResult(city, job_path, result, accuracy(result, city), labels)
