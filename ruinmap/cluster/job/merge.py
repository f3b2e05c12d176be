"""Merging the tiles' partials into the job's results: the per-district table, per-building
scores and the damage grid's layers. Partials add up in any order (to float64 rounding), so a
resumed job merges those of earlier runs with its own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ruinmap.cluster.job.partials import TilePartial
from ruinmap.errors import InputError
from ruinmap.kernels import LabelStats, classify, label_quantile

__all__ = ["Merged", "building_scores", "district_table", "grid_layers", "merge_partials"]


@dataclass(frozen=True, eq=False)
class Merged:
    """The job's aggregates: district statistics, per-footprint sums and the damage grid."""

    districts: LabelStats
    district_classes: np.ndarray  # (n_districts, n_classes) pixel counts
    district_damaged: np.ndarray  # (n_districts,) pixels with score > threshold
    district_npost_sum: np.ndarray  # (n_districts,) sum of n_post over valid pixels
    district_npost_count: np.ndarray  # (n_districts,) valid pixels with an n_post
    # areas in grid-centre pixels (float64): valid, damaged (n_districts,), classes (.., n_classes)
    district_valid_area: np.ndarray
    district_damaged_area: np.ndarray
    district_class_area: np.ndarray
    district_observed_area: np.ndarray  # (n_districts,) valid statistic, built-up or not
    b_count: np.ndarray
    b_sum: np.ndarray
    b_max: np.ndarray
    b_members: np.ndarray
    b_centroid_score: np.ndarray
    g_sum: np.ndarray
    g_count: np.ndarray
    g_damaged: np.ndarray


def merge_partials(
    partials: Iterable[TilePartial],
    *,
    n_districts: int,
    n_classes: int,
    edges: np.ndarray,
    n_buildings: int,
    grid_shape: tuple[int, int],
) -> Merged:
    """Add partials together (their order does not matter beyond float64 rounding)."""
    stats = LabelStats.empty(n_districts, edges)
    classes = np.zeros((n_districts, n_classes), np.int64)
    damaged = np.zeros(n_districts, np.int64)
    npost_sum = np.zeros(n_districts, np.float64)
    npost_count = np.zeros(n_districts, np.int64)
    valid_area = np.zeros(n_districts, np.float64)
    damaged_area = np.zeros(n_districts, np.float64)
    class_area = np.zeros((n_districts, n_classes), np.float64)
    observed_area = np.zeros(n_districts, np.float64)
    b_count = np.zeros(n_buildings, np.int64)
    b_sum = np.zeros(n_buildings, np.float64)
    b_max = np.full(n_buildings, -np.inf)
    b_members = np.zeros(n_buildings, np.int64)
    b_centroid = np.full(n_buildings, np.nan)
    g_sum = np.zeros(grid_shape, np.float64)
    g_count = np.zeros(grid_shape, np.int64)
    g_damaged = np.zeros(grid_shape, np.int64)
    for part in partials:
        _add_label_stats(stats, LabelStats(part.d_count, part.d_sum, part.d_sum_sq,
                                           part.d_min, part.d_max, part.d_hist, edges))
        classes += part.d_classes
        damaged += part.d_damaged
        npost_sum += part.d_npost_sum
        npost_count += part.d_npost_count
        valid_area += part.d_valid_area
        damaged_area += part.d_damaged_area
        class_area += part.d_class_area
        observed_area += part.d_observed_area
        # a footprint appears at most once per tile, so plain fancy-index adds are exact
        b_count[part.b_index] += part.b_count
        b_sum[part.b_index] += part.b_sum
        b_max[part.b_index] = np.maximum(b_max[part.b_index], part.b_max)
        b_members[part.b_index] += part.b_members
        b_centroid[part.b_centroid_index] = part.b_centroid_score
        r0, c0 = (int(v) for v in part.g_origin)
        h, w = part.g_sum.shape
        g_sum[r0 : r0 + h, c0 : c0 + w] += part.g_sum
        g_count[r0 : r0 + h, c0 : c0 + w] += part.g_count
        g_damaged[r0 : r0 + h, c0 : c0 + w] += part.g_damaged
    return Merged(
        districts=stats, district_classes=classes, district_damaged=damaged,
        district_npost_sum=npost_sum, district_npost_count=npost_count,
        district_valid_area=valid_area, district_damaged_area=damaged_area,
        district_class_area=class_area,
        district_observed_area=observed_area,
        b_count=b_count, b_sum=b_sum, b_max=b_max, b_members=b_members,
        b_centroid_score=b_centroid, g_sum=g_sum, g_count=g_count, g_damaged=g_damaged,
    )  # fmt: skip


def _add_label_stats(total: LabelStats, part: LabelStats) -> None:
    """Add `part` into `total` in place: `merge_label_stats([total, part])`'s sums in the
    same order, without copying the running total's histograms once a tile (500 districts x
    512 bins over 1,500 tiles was 3 GB of copies)."""
    if part.n_labels != total.n_labels or not np.array_equal(part.edges, total.edges):
        raise InputError(f"a partial has {part.n_labels} districts and {part.n_bins} bins, "
                         f"the job {total.n_labels} and {total.n_bins}; the partial is not "
                         "this job's: run the job again to recompute it")
    np.add(total.count, part.count, out=total.count)  # the arrays, not the frozen fields
    np.add(total.sum, part.sum, out=total.sum)
    np.add(total.sum_sq, part.sum_sq, out=total.sum_sq)
    np.minimum(total.min, part.min, out=total.min)
    np.maximum(total.max, part.max, out=total.max)
    np.add(total.hist, part.hist, out=total.hist)


def building_scores(
    merged: Merged, *, threshold: float, class_thresholds: tuple[float, ...],
    scored: np.ndarray,
) -> pd.DataFrame:
    """Per footprint: mean_score, max_score, n_pixels, damage_class, damaged.

    A footprint's score is the mean of the valid pixels whose centres it contains; one that
    contains no pixel centre takes the pixel under its centroid (mean = max = that pixel).
    Footprints not `scored` (below the minimum area) and those without a valid pixel get
    NaN scores and missing class and flag.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(merged.b_count > 0, merged.b_sum / merged.b_count, np.nan)
    peak = np.where(merged.b_count > 0, merged.b_max, np.nan)
    by_centroid = merged.b_members == 0
    mean = np.where(by_centroid, merged.b_centroid_score, mean)
    peak = np.where(by_centroid, merged.b_centroid_score, peak)
    n_pixels = np.where(by_centroid, np.isfinite(merged.b_centroid_score).astype(np.int64),
                        merged.b_count)
    mean = np.where(scored, mean, np.nan)
    peak = np.where(scored, peak, np.nan)
    has_score = np.isfinite(mean)
    classes = classify(mean.reshape(1, -1), class_thresholds).ravel().astype(np.int64)
    return pd.DataFrame({
        "mean_score": mean,
        "max_score": peak,
        "n_pixels": np.where(scored, n_pixels, 0),
        "damage_class": pd.Series(classes, dtype="Int64").where(has_score, pd.NA),
        "damaged": pd.Series(mean > threshold, dtype="boolean").where(has_score, pd.NA),
    })


def district_table(
    merged: Merged,
    *,
    has_n_post: bool = False,
    ids: np.ndarray,
    names: np.ndarray,
    area_km2: np.ndarray,
    pixel_area_m2: float,
    class_labels: tuple[str, ...],
    building_district: np.ndarray | None = None,
    building_damaged: pd.Series | None = None,
    building_pairs: tuple[np.ndarray, np.ndarray] | None = None,
    masked: bool = False,
) -> pd.DataFrame:
    """The per-district table (one row per district, in the file's order).

    `valid_km2`: pixels whose statistic was valid (imagery to score; not the nodata pixels
    the focal steps reach). The pixel figures (`damaged_km2`, `damaged_fraction`, scores,
    class areas) count the scored pixels: with a built-up mask (`masked`) the built-up ones
    only, whose area is `built_km2`, and `damaged_built_km2` / `damaged_built_fraction` say
    so by name (NaN without a mask).

    `building_district`: for each footprint, the 0-based district holding its centroid (-1:
    none); `building_damaged`: its `damaged` flag (missing = not scored, not counted);
    `building_pairs`: (footprint, district) index pairs, every district holding a centroid
    (overlapping districts each count the footprint), used instead of `building_district`.
    With `has_n_post` (the method gives an `n_post` layer: pwtt), `mean_n_post` is the mean
    number of post-event dates over the district's valid pixels, so coverage differences
    between districts are visible beside their scores.
    """
    km2 = pixel_area_m2 / 1e6
    stats = merged.districts
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(stats.count > 0, merged.district_damaged / stats.count, np.nan)
    table = pd.DataFrame({
        "district_id": ids,
        "name": names,
        "area_km2": area_km2,
        # areas per row (a lon/lat grid's pixels shrink with latitude), in centre pixels
        "valid_km2": merged.district_observed_area * km2,
        "built_km2": merged.district_valid_area * km2 if masked else np.nan,
        "damaged_km2": merged.district_damaged_area * km2,
        "damaged_fraction": fraction,
        "damaged_built_km2": merged.district_damaged_area * km2 if masked else np.nan,
        "damaged_built_fraction": fraction if masked else np.nan,
        "mean_score": stats.mean,
        "p90_score": label_quantile(stats, 0.9),
    })
    for k in range(1, len(class_labels) + 1):
        table[f"class_{k}_km2"] = merged.district_class_area[:, k] * km2
    if has_n_post:
        with np.errstate(invalid="ignore", divide="ignore"):
            table["mean_n_post"] = np.where(
                merged.district_npost_count > 0,
                merged.district_npost_sum / merged.district_npost_count, np.nan)
    if building_district is not None and building_damaged is not None:
        n = len(ids)
        if building_pairs is None:
            building_pairs = (np.flatnonzero(building_district >= 0),
                              building_district[building_district >= 0])
        which, district = building_pairs
        scored = building_damaged.notna().to_numpy()[which]
        hit = building_damaged.fillna(False).to_numpy(bool)[which] & scored
        counts = np.bincount(district[scored], minlength=n)
        hits = np.bincount(district[hit], minlength=n)
        table["buildings"] = counts
        table["buildings_damaged"] = hits
        with np.errstate(invalid="ignore", divide="ignore"):
            table["buildings_damaged_fraction"] = np.where(counts > 0, hits / counts, np.nan)
    return table


def grid_layers(merged: Merged) -> tuple[np.ndarray, np.ndarray]:
    """(damaged fraction, mean score) per grid cell, float32; NaN where a cell has no data."""
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(merged.g_count > 0, merged.g_damaged / merged.g_count, np.nan)
        mean = np.where(merged.g_count > 0, merged.g_sum / merged.g_count, np.nan)
    return fraction.astype(np.float32), mean.astype(np.float32)
