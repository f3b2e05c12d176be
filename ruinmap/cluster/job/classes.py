"""The second pass of a job with an automatic threshold: classes from the stored score.

With `threshold = "otsu" | "kittler-illingworth" | "gmm"` the tile pass (`task.run_tile`)
writes the score and a partial holding the score's histogram (`s_hist`) but no classes: the
threshold is not known yet. The client adds the histograms (`job_histogram`), chooses the
threshold (`thresholds.threshold_choice`), and then each tile's `run_class_tile` reads its
own shard of the stored score back, writes its `damage` shard (`classify(score,
class_thresholds)` over the pixels the first pass counted, `s_counted`: the focal steps also
score nodata pixels, which are not valid area) and a `ClassPartial` (district class and
damaged pixel counts, grid damaged counts) to `partials/classes_<iy>_<ix>.npz`, and records
itself last in the class ledger (`<work dir>/class-ledger/`) with the sha256 of both files
and the class edges it applied. A re-run verifies those (`verified_class_tiles`) and redoes
a tile whose files changed, whose edges differ from the ones chosen now, or whose score was
recomputed; so a crashed second pass resumes like the first. The merge takes the class
counts from these partials (`merge_class_partials`); building flags come from the merged
mean score and the chosen threshold, as with a fixed one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ruinmap.cluster.job.integrity import layer_shard, load_verified_partial, write_layer_shard
from ruinmap.cluster.job.partials import (
    counted_pixels,
    district_fields,
    load_npz,
    npz_problem,
    partial_bytes,
)
from ruinmap.cluster.job.plan import JobPlan
from ruinmap.cluster.job.polygons import TileVectors
from ruinmap.cluster.job.task import district_label_layers, tile_row_area
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.storage.arrays import open_array
from ruinmap.cluster.storage.checksums import CHECKSUMS_KEY, digest, verified_units
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import Location
from ruinmap.errors import StoreError
from ruinmap.kernels import block_reduce, classify
from ruinmap.kernels.thresholds import SCORE_HIST_BINS

__all__ = ["CLASS_LEDGER", "ClassPartial", "ClassTotals", "class_ledger", "class_partial",
           "class_task_prefix", "job_histogram", "merge_class_partials", "run_class_tile",
           "verified_class_tiles"]

#: the second pass's ledger folder in the work folder
CLASS_LEDGER = "class-ledger"


@dataclass(frozen=True, eq=False)
class ClassPartial:
    """What one tile's classes add: per district the pixels of each class and the damaged
    pixels (score > threshold), and their areas (in grid-centre pixels, as `TilePartial`'s),
    and the damaged pixels of each grid cell it touches."""

    d_classes: np.ndarray  # (n_districts, n_classes)
    d_damaged: np.ndarray  # (n_districts,)
    d_class_area: np.ndarray  # (n_districts, n_classes)
    d_damaged_area: np.ndarray  # (n_districts,)
    g_origin: np.ndarray  # first global cell (row, col)
    g_damaged: np.ndarray


@dataclass(eq=False)
class ClassTotals:
    """Every tile's `ClassPartial`, added (`merge_class_partials`)."""

    classes: np.ndarray
    damaged: np.ndarray
    class_area: np.ndarray
    damaged_area: np.ndarray
    g_damaged: np.ndarray


def class_ledger(work_dir: Location) -> Ledger:
    return Ledger(work_dir.join(CLASS_LEDGER))


def class_partial_location(work_dir: Location, tile: Tile) -> Location:
    return work_dir.join("partials", f"classes_{tile.iy}_{tile.ix}.npz")


def class_task_prefix(plan: JobPlan) -> str:
    """The key prefix of the second pass's tasks (`compute.stragglers` waits on it)."""
    return f"ruinmap-classes-{plan.signature}-"


def class_partial(score: np.ndarray, classes: np.ndarray, *, threshold: float, n_classes: int,
                  district_labels: np.ndarray, n_districts: int, origin: tuple[int, int],
                  cell_px: int, edges: np.ndarray, row_area: np.ndarray | None = None
                  ) -> ClassPartial:
    """Reduce one tile's classes (uint8, 255 = nodata) as `partials.tile_partial` does (the
    same `district_fields`: overlap layers and per-row areas alike)."""
    d_fields = district_fields(score, classes, district_labels, row_area, None,
                               threshold=threshold, n_classes=n_classes, edges=edges,
                               n_districts=n_districts)
    row0, col0 = origin
    offset = (row0 % cell_px, col0 % cell_px)
    g_damaged = block_reduce(score, cell_px, "count_above", threshold, block_offset=offset)
    return ClassPartial(
        d_classes=d_fields["d_classes"], d_damaged=d_fields["d_damaged"],
        d_class_area=d_fields["d_class_area"], d_damaged_area=d_fields["d_damaged_area"],
        g_origin=np.array([row0 // cell_px, col0 // cell_px], np.int64),
        g_damaged=np.rint(g_damaged).astype(np.int64),
    )  # fmt: skip


def _partial_problem(tile_key: str, data: bytes) -> str | None:
    """What is wrong with `data` as the class partial of `tile_key`, or None."""
    return npz_problem(ClassPartial, tile_key, data, "class partial")


def _edges_record(plan: JobPlan) -> list[float]:
    return [float(t) for t in plan.params.class_thresholds]


def run_class_tile(plan: JobPlan, tile: Tile, vectors: TileVectors) -> float:
    """Classes of one tile from its stored score, with `plan`'s chosen threshold and class
    edges: write its `damage` shard and class partial, then record it; returns seconds."""
    started = time.perf_counter()
    params = plan.params
    threshold = params.fixed_threshold
    rows = slice(tile.row0, tile.row0 + tile.height)
    cols = slice(tile.col0, tile.col0 + tile.width)
    score = np.ascontiguousarray(
        open_array(plan.layers, "score", "r", plan.signature)[rows, cols], dtype=np.float32)
    counted = counted_pixels(load_verified_partial(plan, tile), score.shape)
    score[~counted] = np.nan  # as the first pass's figures: only pixels with a valid statistic
    classes = classify(score, params.class_thresholds)
    checksums = {"damage": write_layer_shard(plan, "damage", tile, classes)}
    districts = district_label_layers(vectors, tile.grid(plan.grid).affine,
                                      (tile.height, tile.width))
    partial = class_partial(score, classes, threshold=threshold,
                            n_classes=len(params.class_thresholds) + 1,
                            district_labels=districts, n_districts=plan.n_districts,
                            origin=(tile.row0, tile.col0), cell_px=plan.cell_px,
                            edges=plan.edges, row_area=tile_row_area(plan, tile))
    data = partial_bytes(partial, tile.key)
    class_partial_location(plan.work_dir, tile).write_durably(data)
    checksums["classes"] = digest(data)
    seconds = time.perf_counter() - started
    # last: a recorded tile's damage shard and class partial are durable
    class_ledger(plan.work_dir).record(
        tile.key, {"signature": plan.signature, "class_thresholds": _edges_record(plan),
                   "seconds": round(seconds, 3)}, checksums=checksums)
    return seconds


def verified_class_tiles(plan: JobPlan, recomputed: list[Tile]) -> set[str]:
    """The keys of the tiles whose recorded classes are whole and were made with `plan`'s
    class edges; every other recorded one (and those of the `recomputed` tiles, whose score
    was written again) is forgotten and so run again."""
    ledger = class_ledger(plan.work_dir)
    for tile in recomputed:
        ledger.forget(tile.key)
    units = {tile.key: {"classes": class_partial_location(plan.work_dir, tile),
                        "damage": layer_shard(plan, "damage", tile)} for tile in plan.tiles}
    good = verified_units(ledger, units, kind="class tile",
                          checks={"classes": _partial_problem})
    wanted = _edges_record(plan)
    for key in list(good):
        if ledger.info(key).get("class_thresholds") != wanted:
            ledger.forget(key)  # classes of an earlier choice (the scores changed since)
            good.discard(key)
    return good


def job_histogram(plan: JobPlan) -> np.ndarray:
    """The job-wide score histogram: every tile's `s_hist`, added (checked partials)."""
    total = np.zeros(SCORE_HIST_BINS, np.int64)
    for tile in plan.tiles:
        total += load_verified_partial(plan, tile).s_hist
    return total


def merge_class_partials(plan: JobPlan, grid_shape: tuple[int, int]) -> ClassTotals:
    """The district class counts, damaged pixels and their areas, and the grid damaged counts
    of every tile's class partial, checked against the class ledger."""
    n_classes = len(plan.params.class_thresholds) + 1
    totals = ClassTotals(
        classes=np.zeros((plan.n_districts, n_classes), np.int64),
        damaged=np.zeros(plan.n_districts, np.int64),
        class_area=np.zeros((plan.n_districts, n_classes), np.float64),
        damaged_area=np.zeros(plan.n_districts, np.float64),
        g_damaged=np.zeros(grid_shape, np.int64),
    )
    ledger = class_ledger(plan.work_dir)
    for tile in plan.tiles:
        try:
            checksum = ledger.info(tile.key)[CHECKSUMS_KEY]["classes"]  # type: ignore[index]
            part = load_npz(ClassPartial, class_partial_location(plan.work_dir, tile), tile.key,
                            checksum, "class partial")
        except (StoreError, ValueError, KeyError, TypeError) as exc:
            ledger.forget(tile.key)
            raise StoreError(f"tile {tile.key}: {exc}; its class ledger entry is removed: run "
                             "the job again to recompute its classes") from None
        totals.classes += part.d_classes
        totals.damaged += part.d_damaged
        totals.class_area += part.d_class_area
        totals.damaged_area += part.d_damaged_area
        r0, c0 = (int(v) for v in part.g_origin)
        h, w = part.g_damaged.shape
        totals.g_damaged[r0 : r0 + h, c0 : c0 + w] += part.g_damaged
    return totals
