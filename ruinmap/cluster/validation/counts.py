"""Count intervals on a district table: the job's unvalidated ones, and those calibrated on
labels by `ruinmap validate` (the statistics are in `intervals`).

Columns added after `buildings_damaged`: `buildings_damaged_expected` (the expected true
count), `buildings_damaged_low` / `_high` (the central interval), `buildings_damaged_level`
(its confidence, default 0.9) and `buildings_damaged_interval` ("unvalidated" or
"calibrated", the method; its assumptions are in job.json / validation.json).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ruinmap.cluster.geo.vectors import points_in_polygons
from ruinmap.cluster.validation.intervals import (
    DEFAULT_LEVEL,
    CountIntervals,
    calibrate,
    count_intervals,
    district_dispersion,
    score_sigma,
    unvalidated_probabilities,
)

if TYPE_CHECKING:
    from ruinmap.cluster.validation.config import ValidationSpec
    from ruinmap.cluster.validation.results import Results

__all__ = ["add_count_intervals", "calibrated_intervals", "district_members",
           "unvalidated_intervals"]

log = logging.getLogger(__name__)

#: least labelled units in a block that measures the district dispersion
_MIN_BLOCK_UNITS = 20



def unvalidated_intervals(scores: np.ndarray, district: np.ndarray, n_districts: int, *,
                          method: str, threshold: float, level: float = DEFAULT_LEVEL,
                          members: tuple[np.ndarray, np.ndarray] | None = None
                          ) -> CountIntervals:
    """Intervals from the score's own assumed error (`intervals` module doc), for a job
    without labels. `scores`: each footprint's mean score (NaN: not scored); `district`: its
    0-based district (-1: none), or `members`: (footprint, district) pairs, where overlapping
    districts each count a footprint."""
    sigma = score_sigma(method, scores, threshold)
    why = ("pwtt's score is a t statistic with unit variance under the null" if method == "pwtt"
           else "1.4826 x MAD of the scores of the buildings at or below the threshold")
    assumptions = (
        f"not validated against labels: each building is damaged with probability "
        f"Phi((score - {threshold:g}) / {sigma:.3g}) ({why}), independently; the interval "
        "carries the score's noise only, not the method's bias; run `ruinmap validate` "
        "with ground truth for a calibrated interval")
    p = unvalidated_probabilities(scores, threshold, sigma)
    if members is not None:
        which, district = members
        p = p[which]
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


def _blocks(marked: gpd.GeoDataFrame, min_units: int) -> tuple[np.ndarray, str]:
    """Blocks of labelled units for `district_dispersion`: their districts where at least 5
    districts hold `min_units` of them, else square cells holding about 100 units each."""
    ids = marked["district_id"].astype(object).to_numpy()
    known = np.array([d is not None and d == d for d in ids])
    codes = np.full(len(ids), -1, np.int64)
    if known.any():
        codes[known] = pd.factorize(pd.Series(ids[known]).astype(str))[0]
        if (np.bincount(codes[known]) >= min_units).sum() >= 5:
            return codes, "districts"
    xy = shapely.get_coordinates(marked.geometry.centroid.to_numpy())
    n_side = max(1, math.ceil(math.sqrt(len(xy) / 100)))
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    cell = np.maximum((hi - lo) / n_side, 1e-9)
    ij = np.minimum(((xy - lo) // cell).astype(np.int64), n_side - 1)
    return ij[:, 1] * n_side + ij[:, 0], f"{n_side} x {n_side} square cells"


def district_members(units: gpd.GeoDataFrame, districts: gpd.GeoDataFrame | None,
                     first: np.ndarray, *, centroid: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(unit, district) 0-based index pairs: every district (row of `districts`) holding each
    unit's centroid (`centroid=False`: a point surely inside it), as the job counts
    footprints, so overlapping districts each count their units. Without geometries (a CSV
    table), `first`: each unit's one district (-1: none)."""
    if (districts is None or units.crs is None or districts.crs is None
            or "geometry" not in districts or units.empty):
        found = np.flatnonzero(first >= 0)
        return found.astype(np.int64), first[found].astype(np.int64)
    geoms = units.geometry
    points = (geoms.centroid if centroid else geoms.representative_point()).to_crs(districts.crs)
    return points_in_polygons(points.to_numpy(), districts.geometry.to_numpy())


def calibrated_intervals(results: Results, marked: gpd.GeoDataFrame, spec: ValidationSpec
                         ) -> tuple[CountIntervals | None, dict[str, Any]]:
    """Calibrate P(damaged | score) on the labelled units (`marked`: `score`, `damaged`,
    `district_id`, `building_row`, geometry), measure the district-wide dispersion on them,
    and apply both to every unlabelled scored footprint of each district; a labelled
    footprint counts as its label. Returns (None, record) without footprints or districts."""
    scores = marked["score"].to_numpy(np.float64)
    damaged = marked["damaged"].to_numpy(bool)
    n_pos, n_neg = int(damaged.sum()), int((~damaged).sum())
    if min(n_pos, n_neg) < 2:
        why = (f"not calibrated: the labels give {n_pos} damaged and {n_neg} undamaged units; "
               "a calibration needs at least 2 of each (damage-site points alone have no "
               "undamaged sites: give footprints)")
        log.warning("%s", why)
        return None, {"method": None, "why": why}
    calibration = calibrate(scores, damaged, n_boot=spec.n_boot, seed=spec.seed)
    blocks, block_kind = _blocks(marked, _MIN_BLOCK_UNITS)
    tau2, n_blocks = district_dispersion(calibration.probabilities(scores), damaged, blocks,
                                         min_units=_MIN_BLOCK_UNITS)
    record: dict[str, Any] = {
        "method": "calibrated",
        "model": "P(damaged | score) = 1 / (1 + exp(-(a + b score))), maximum likelihood "
                 f"on {calibration.n_labelled} labelled units ({calibration.n_damaged} "
                 f"damaged), refitted on {spec.n_boot} bootstrap resamples; a district-wide "
                 "logit offset of variance tau2 (method of moments over blocks of labelled "
                 "units): count variance V + tau2 V^2, V = sum p (1 - p), Student t quantiles "
                 "with (blocks - 1) degrees of freedom",
        "a": calibration.intercept, "b": calibration.slope, "tau2": tau2,
        "dispersion_blocks": {"kind": block_kind, "used": n_blocks,
                              "min_units": _MIN_BLOCK_UNITS},
        "level": spec.level,
        "assumptions": "labelled footprints count as their labels (the labels are right); "
                       "the labelled units are representative of the unlabelled buildings "
                       "(same P(damaged | score) and the same spread of district offsets); "
                       "given its district's offset each building is damaged independently",
    }
    if n_blocks < 5:
        warning = (f"the district dispersion rests on {n_blocks} block(s) of "
                   f">= {_MIN_BLOCK_UNITS} labelled units; the intervals may be too narrow")
        record["warning"] = warning
        log.warning("%s", warning)
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
    p_boot = np.zeros((spec.n_boot, s.size))
    p_boot[:, finite] = calibration.boot_probabilities(s[finite])
    # a labelled footprint's state is known: it adds its label, not a probability
    known = marked["building_row"].to_numpy(np.int64)
    known_damaged = damaged[known >= 0].astype(np.float64)
    known = known[known >= 0]
    p[known] = known_damaged
    p_boot[:, known] = known_damaged
    # every district holding a footprint counts it (districts may overlap), as in the job
    which, district = district_members(buildings, districts, np.where(finite, index, -1))
    intervals = count_intervals(np.where(finite[which], district, -1), len(districts),
                                p=p[which], p_boot=p_boot[:, which], level=spec.level, tau2=tau2,
                                tau2_blocks=n_blocks,
                                method="calibrated", assumptions=record["assumptions"],
                                seed=spec.seed)
    record["applied"] = (f"to the {int(finite.sum()) - known.size} unlabelled scored "
                         f"footprints of {len(districts)} districts; {known.size} labelled "
                         "footprints count as their labels")
    return intervals, record
