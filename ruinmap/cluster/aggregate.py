"""Per-tile partial aggregates and their merge into district, building and grid results.

A tile task reduces its cropped score and classes to a `TilePartial`: `LabelStats` of the
score per district, class and damaged pixel counts per district, per-footprint sums for the
footprints it was sent (by their global index), and additive damage-grid partials (score sum,
valid count, damaged count) per global grid cell it touches. Partials are small, add up
exactly (sums to float64 rounding), and are stored as one `.npz` per tile, so a resumed job
merges the partials of tiles finished in an earlier run with the new ones. `merge_partials`
folds them into a `Merged` result; `district_table`, `building_table` and `grid_layers` turn
that into what the job writes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from ruinmap.kernels import (
    LabelStats,
    block_reduce,
    classify,
    label_quantile,
    label_stats,
    merge_label_stats,
)

__all__ = [
    "DISTRICT_BINS",
    "Merged",
    "TilePartial",
    "building_scores",
    "district_table",
    "grid_layers",
    "load_partial",
    "merge_partials",
    "save_partial",
    "score_edges",
    "tile_partial",
]

#: Histogram bins of the per-district score (for p90): fine enough that the estimate is within
#: 1/512 of the score range of the exact quantile.
DISTRICT_BINS = 512
_BUILDING_EDGES = np.array([0.0, 1.0])  # buildings need no histogram: one bin


def score_edges(class_thresholds: tuple[float, ...]) -> np.ndarray:
    """Histogram edges of the score: symmetric around 0 out to 4x the top class threshold."""
    top = 4.0 * max(abs(t) for t in class_thresholds) or 1.0
    return np.linspace(-top, top, DISTRICT_BINS + 1)


@dataclass(frozen=True, eq=False)
class TilePartial:
    """What one tile adds to the job's aggregates (see the module docstring)."""

    # districts: LabelStats fields (n_districts rows), classes (n_districts, n_classes),
    # damaged pixels (n_districts,)
    d_count: np.ndarray
    d_sum: np.ndarray
    d_sum_sq: np.ndarray
    d_min: np.ndarray
    d_max: np.ndarray
    d_hist: np.ndarray
    d_classes: np.ndarray
    d_damaged: np.ndarray
    # buildings: global index, valid pixel count, sum, max, pixel centres inside (valid or
    # not), and for those whose centroid lies in the tile the score under the centroid
    b_index: np.ndarray
    b_count: np.ndarray
    b_sum: np.ndarray
    b_max: np.ndarray
    b_members: np.ndarray
    b_centroid_index: np.ndarray
    b_centroid_score: np.ndarray
    # grid: the first global cell (row, col) and per-cell sum, valid count, damaged count
    g_origin: np.ndarray
    g_sum: np.ndarray
    g_count: np.ndarray
    g_damaged: np.ndarray


def tile_partial(
    score: np.ndarray,
    classes: np.ndarray,
    *,
    threshold: float,
    n_classes: int,
    edges: np.ndarray,
    district_labels: np.ndarray,
    n_districts: int,
    building_labels: np.ndarray,
    building_index: np.ndarray,
    centroid_index: np.ndarray,
    centroid_rc: np.ndarray,
    origin: tuple[int, int],
    cell_px: int,
) -> TilePartial:
    """Reduce one tile's score (float32, NaN = nodata) and classes (uint8, 255 = nodata).

    `district_labels`: 0 or district k (1-based); `building_labels`: 0 or j+1 for the j-th of
    `building_index` (the global footprint indices sent to this tile); `centroid_index` /
    `centroid_rc`: footprints whose centroid pixel (row, col in the tile) lies in this tile.
    `origin` is the tile's (row0, col0) in the image; grid cells are `cell_px` pixels aligned
    to the image origin.
    """
    district = label_stats(district_labels, score, n_districts, edges)
    valid = classes != 255
    flat = district_labels[valid].astype(np.int64) * n_classes + classes[valid]
    d_classes = np.bincount(flat, minlength=(n_districts + 1) * n_classes)
    d_classes = d_classes.reshape(n_districts + 1, n_classes)[1:]
    damaged = score > threshold
    d_damaged = np.bincount(district_labels[damaged], minlength=n_districts + 1)[1:]

    k = len(building_index)
    building = label_stats(building_labels, score, k, _BUILDING_EDGES)
    members = np.bincount(building_labels.ravel(), minlength=k + 1)[1:]
    rows, cols = centroid_rc[:, 0], centroid_rc[:, 1]
    centroid_score = score[rows, cols].astype(np.float64)

    row0, col0 = origin
    offset = (row0 % cell_px, col0 % cell_px)
    g_count = block_reduce(score, cell_px, "count", block_offset=offset)
    return TilePartial(
        d_count=district.count, d_sum=district.sum, d_sum_sq=district.sum_sq,
        d_min=district.min, d_max=district.max, d_hist=district.hist,
        d_classes=d_classes.astype(np.int64), d_damaged=d_damaged.astype(np.int64),
        b_index=np.asarray(building_index, np.int64), b_count=building.count,
        b_sum=building.sum, b_max=building.max, b_members=members.astype(np.int64),
        b_centroid_index=np.asarray(centroid_index, np.int64), b_centroid_score=centroid_score,
        g_origin=np.array([row0 // cell_px, col0 // cell_px], np.int64),
        g_sum=block_reduce(score, cell_px, "sum", block_offset=offset).astype(np.float64),
        g_count=np.rint(g_count).astype(np.int64),
        g_damaged=np.rint(block_reduce(score, cell_px, "count_above", threshold,
                                       block_offset=offset)).astype(np.int64),
    )  # fmt: skip


def save_partial(partial: TilePartial, path: str | Path) -> None:
    """Write a partial as .npz, durably and atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **{f.name: getattr(partial, f.name) for f in fields(TilePartial)})
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_partial(path: str | Path) -> TilePartial:
    """Read a partial written by `save_partial`."""
    with np.load(path) as data:
        return TilePartial(**{f.name: data[f.name] for f in fields(TilePartial)})


@dataclass(frozen=True, eq=False)
class Merged:
    """The job's aggregates: district statistics, per-footprint sums and the damage grid."""

    districts: LabelStats
    district_classes: np.ndarray  # (n_districts, n_classes) pixel counts
    district_damaged: np.ndarray  # (n_districts,) pixels with score > threshold
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
    stats = [LabelStats.empty(n_districts, edges)]
    classes = np.zeros((n_districts, n_classes), np.int64)
    damaged = np.zeros(n_districts, np.int64)
    b_count = np.zeros(n_buildings, np.int64)
    b_sum = np.zeros(n_buildings, np.float64)
    b_max = np.full(n_buildings, -np.inf)
    b_members = np.zeros(n_buildings, np.int64)
    b_centroid = np.full(n_buildings, np.nan)
    g_sum = np.zeros(grid_shape, np.float64)
    g_count = np.zeros(grid_shape, np.int64)
    g_damaged = np.zeros(grid_shape, np.int64)
    for part in partials:
        stats.append(LabelStats(part.d_count, part.d_sum, part.d_sum_sq, part.d_min,
                                part.d_max, part.d_hist, edges))
        classes += part.d_classes
        damaged += part.d_damaged
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
        stats = [merge_label_stats(stats)]  # keep one running total: memory stays flat
    return Merged(
        districts=stats[0], district_classes=classes, district_damaged=damaged,
        b_count=b_count, b_sum=b_sum, b_max=b_max, b_members=b_members,
        b_centroid_score=b_centroid, g_sum=g_sum, g_count=g_count, g_damaged=g_damaged,
    )  # fmt: skip


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
    ids: np.ndarray,
    names: np.ndarray,
    area_km2: np.ndarray,
    pixel_area_m2: float,
    class_labels: tuple[str, ...],
    building_district: np.ndarray | None = None,
    building_damaged: pd.Series | None = None,
) -> pd.DataFrame:
    """The per-district table (one row per district, in the file's order).

    `building_district`: for each footprint, the 0-based district holding its centroid (-1:
    none); `building_damaged`: its `damaged` flag (missing = not scored, not counted).
    """
    km2 = pixel_area_m2 / 1e6
    stats = merged.districts
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(stats.count > 0, merged.district_damaged / stats.count, np.nan)
    table = pd.DataFrame({
        "district_id": ids,
        "name": names,
        "area_km2": area_km2,
        "valid_km2": stats.count * km2,
        "damaged_km2": merged.district_damaged * km2,
        "damaged_fraction": fraction,
        "mean_score": stats.mean,
        "p90_score": label_quantile(stats, 0.9),
    })
    for k in range(1, len(class_labels) + 1):
        table[f"class_{k}_km2"] = merged.district_classes[:, k] * km2
    if building_district is not None and building_damaged is not None:
        n = len(ids)
        scored = building_damaged.notna().to_numpy()
        inside = scored & (building_district >= 0)
        hit = building_damaged.fillna(False).to_numpy(bool) & inside
        counts = np.bincount(building_district[inside], minlength=n)
        hits = np.bincount(building_district[hit], minlength=n)
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
