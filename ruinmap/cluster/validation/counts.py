"""Count intervals on a district table: the job's unvalidated ones, and those calibrated on
labels by `ruinmap validate` (the statistics are in `intervals`).

Columns added after `buildings_damaged`: `buildings_damaged_expected` (the expected true
count), `buildings_damaged_low` / `_high` (the central interval), `buildings_damaged_level`
(its confidence, default 0.9) and `buildings_damaged_interval` ("unvalidated" or
"calibrated", the method; its assumptions are in job.json / validation.json).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ruinmap.cluster.validation.intervals import (
    DEFAULT_LEVEL,
    CountIntervals,
    calibrate,
    count_intervals,
    score_sigma,
    unvalidated_probabilities,
)

if TYPE_CHECKING:
    from ruinmap.cluster.validation.config import ValidationSpec
    from ruinmap.cluster.validation.results import Results

__all__ = ["INTERVAL_COLUMNS", "add_count_intervals", "calibrated_intervals",
           "unvalidated_intervals"]

INTERVAL_COLUMNS = ("buildings_damaged_expected", "buildings_damaged_low",
                    "buildings_damaged_high", "buildings_damaged_level",
                    "buildings_damaged_interval")


def unvalidated_intervals(scores: np.ndarray, district: np.ndarray, n_districts: int, *,
                          method: str, threshold: float,
                          level: float = DEFAULT_LEVEL) -> CountIntervals:
    """Intervals from the score's own assumed error (`intervals` module doc), for a job
    without labels. `scores`: each footprint's mean score (NaN: not scored)."""
    sigma = score_sigma(method, scores, threshold)
    why = ("pwtt's score is a t statistic with unit variance under the null" if method == "pwtt"
           else "1.4826 x MAD of the scores of the buildings at or below the threshold")
    assumptions = (
        f"not validated against labels: each building is damaged with probability "
        f"Phi((score - {threshold:g}) / {sigma:.3g}) ({why}), independently; the interval "
        "carries the score's noise only, not the method's bias; run `ruinmap validate` "
        "with ground truth for a calibrated interval")
    p = unvalidated_probabilities(scores, threshold, sigma)
    return count_intervals(district, n_districts, p=p, level=level, method="unvalidated",
                           assumptions=assumptions)


def add_count_intervals(table: pd.DataFrame, intervals: CountIntervals) -> pd.DataFrame:
    """`table` (one row per district, in the intervals' order) with INTERVAL_COLUMNS set."""
    table = table.copy()
    has = table["buildings"].to_numpy() > 0 if "buildings" in table else np.ones(len(table), bool)
    table["buildings_damaged_expected"] = np.where(has, intervals.expected, np.nan)
    table["buildings_damaged_low"] = pd.array(intervals.low, dtype="Int64")
    table["buildings_damaged_high"] = pd.array(intervals.high, dtype="Int64")
    table.loc[~has, ["buildings_damaged_low", "buildings_damaged_high"]] = pd.NA
    table["buildings_damaged_level"] = intervals.level
    table["buildings_damaged_interval"] = intervals.method
    return table


def calibrated_intervals(results: Results, scores: np.ndarray, damaged: np.ndarray,
                         spec: ValidationSpec) -> tuple[CountIntervals | None, dict[str, Any]]:
    """Calibrate P(damaged | score) on the labelled units and apply it to every scored
    footprint of each district. Returns (None, record) without footprints or districts."""
    calibration = calibrate(scores, damaged, n_boot=spec.n_boot, seed=spec.seed)
    record: dict[str, Any] = {
        "method": "calibrated",
        "model": "P(damaged | score) = 1 / (1 + exp(-(a + b score))), maximum likelihood "
                 f"on {calibration.n_labelled} labelled units ({calibration.n_damaged} "
                 f"damaged), refitted on {spec.n_boot} bootstrap resamples",
        "a": calibration.intercept, "b": calibration.slope, "level": spec.level,
        "assumptions": "the labelled units are representative of the district's buildings "
                       "(same P(damaged | score)); buildings are damaged independently given "
                       "their scores; the labels are right",
    }
    buildings, districts = results.buildings, results.districts
    if buildings is None or districts is None or "district_id" not in buildings:
        record["applied"] = "no footprints or districts in the results: no district interval"
        return None, record
    s = buildings["mean_score"].to_numpy(np.float64, na_value=np.nan)
    order = {d: i for i, d in enumerate(districts["district_id"].astype(str))}
    ids = buildings["district_id"].astype(object).to_numpy()
    index = np.array([order.get(str(d), -1) if d is not None and d == d else -1 for d in ids],
                     np.int64)
    finite = np.isfinite(s)
    p = np.full(s.shape, np.nan)
    p[finite] = calibration.probabilities(s[finite])
    p_boot = np.full((spec.n_boot, s.size), np.nan)
    p_boot[:, finite] = calibration.boot_probabilities(s[finite])
    intervals = count_intervals(np.where(finite, index, -1), len(districts), p=p,
                                p_boot=np.nan_to_num(p_boot), level=spec.level,
                                method="calibrated", assumptions=record["assumptions"],
                                seed=spec.seed)
    record["applied"] = (f"to the {int(finite.sum())} scored footprints of "
                         f"{len(districts)} districts")
    return intervals, record
