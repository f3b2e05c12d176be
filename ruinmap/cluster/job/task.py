"""One task per tile: read its window plus the halo from the store, score, write, reduce, record.

A task reads its window plus a halo (`JobPlan.halo`, clipped at the image edge) straight from
the Zarr store (a global `map_overlap` keeps neighbours' blocks alive far longer,
dask/dask#3671), scores it, crops the halo off, writes its own shards of `score` and
`damage` and of the method's extra layers (pwtt's `p_value`, `n_pre`, `n_post`) (durably),
reduces the tile to a `TilePartial` saved beside the ledger, and records
the tile in the ledger last, with the sha256 of its files.

With a built-up mask (`builtup`), the mask over the padded window goes to the method, which
blanks its statistic outside it before the focal steps; the written score is then NaN
outside the mask (PWTT never reports unmasked pixels), and the partial and `damage` count
only the pixels whose statistic was valid and built-up: the focal steps also give a score to
nodata pixels within their radius of valid ones, and those are not valid area (`damage`
255). So a recorded tile's outputs and partial are whole and durable, and a re-run can tell
if they changed since (`integrity`); anything else is redone.

With an automatic threshold (`threshold = "otsu"`, ...) the classes are not known yet: the
task writes only `score`, its partial counts the score's histogram (`s_hist`) and no damaged
pixels and keeps the counted pixels (`s_counted`), and the second pass
(`classes.run_class_tile`) writes `damage` and the class counts once the client has chosen
the threshold.
"""

from __future__ import annotations

import math
import time

import numpy as np
import shapely
from affine import Affine

from ruinmap.cluster.geo.rasterize import labels_on_window
from ruinmap.cluster.geo.units import pixel_area_m2
from ruinmap.cluster.ingest.inplace import InPlaceDates, read_dates_window
from ruinmap.cluster.job.dating import date_tile, dating_enabled
from ruinmap.cluster.job.integrity import write_layer_shards
from ruinmap.cluster.job.partials import save_partial, tile_partial
from ruinmap.cluster.job.plan import JobPlan
from ruinmap.cluster.job.polygons import TileVectors
from ruinmap.cluster.job.score_state import MomentsBase, moment_layers
from ruinmap.cluster.job.tile_inputs import kept_footprint_labels, kept_window_mask
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.methods import compute_layers
from ruinmap.cluster.methods.params import MethodParamsBase
from ruinmap.cluster.storage.store import StoreInfo
from ruinmap.kernels import classify
from ruinmap.kernels.classify import NODATA_CLASS
from ruinmap.kernels.thresholds import score_hist_edges

__all__ = ["district_label_layers", "first_pass_classes", "first_pass_threshold",
           "read_window_stack", "run_tile"]


def read_window_stack(
    store: StoreInfo, side: str, tile: Tile, halo: int, token: str = "", first: int = 0,
) -> tuple[np.ndarray, tuple[int, int]]:
    """The (time, band, y, x) window of `tile` widened by `halo` (clipped at the image edge),
    each date (from index `first` on) from the store's array or, when the store reads it in
    place, its source file.

    Returns the block and the (row, col) of the tile's first pixel inside it.
    """
    grid = store.grid
    r0, c0, r1, c1 = grid.padded(tile.row0, tile.col0, tile.height, tile.width, halo)
    block = read_dates_window(store.location, side, store.n_times[side],
                              InPlaceDates.from_store_attrs(store.attrs), grid,
                              (r0, c0, r1, c1), store.attrs.get("nodata"), token, first)
    return block, (tile.row0 - r0, tile.col0 - c0)


def district_label_layers(vectors: TileVectors, transform: Affine, shape: tuple[int, int]
                          ) -> np.ndarray:
    """The tile's district label images, (layers, rows, cols) int32: one per overlap layer
    (`TileVectors.district_layer`), so overlapping districts each hold their pixels. A job
    without overlaps has one layer; a tile no district reaches gets one empty image."""
    geoms = shapely.from_wkb(vectors.district_wkb)
    n_layers = int(vectors.district_layer.max()) + 1 if len(vectors.district_layer) else 1
    layers = [
        labels_on_window(geoms[vectors.district_layer == k],
                         vectors.district_label[vectors.district_layer == k], transform, shape)
        for k in range(n_layers)
    ]
    # one layer (no overlaps, the usual case) needs no stacking copy of the tile's labels
    return layers[0][np.newaxis] if n_layers == 1 else np.stack(layers)


def tile_row_area(plan: JobPlan, tile: Tile) -> np.ndarray | None:
    """Each of the tile's rows' pixel area over `plan.pixel_size_m`² (the table's unit), on a
    lon/lat grid, where it changes with latitude; None (all 1) on a projected grid."""
    if not plan.grid.crs.is_geographic:
        return None
    rows = np.arange(tile.row0, tile.row0 + tile.height)
    return pixel_area_m2(plan.grid.crs_wkt, plan.grid.transform, rows) / plan.pixel_size_m**2


def first_pass_classes(score: np.ndarray, params: MethodParamsBase) -> np.ndarray:
    """A tile's classes: by `class_thresholds`, or with an automatic threshold all 0 (and
    nodata where the score is NaN) until the second pass applies the chosen one."""
    if params.is_automatic:
        return np.where(np.isnan(score), NODATA_CLASS, 0).astype(np.uint8)
    return classify(score, params.class_thresholds)


def first_pass_threshold(params: MethodParamsBase) -> float:
    """The score above which a tile's partial counts a pixel damaged: with an automatic
    threshold none yet (the second pass counts them)."""
    return math.inf if params.is_automatic else params.fixed_threshold


def run_tile(plan: JobPlan, tile: Tile, vectors: TileVectors,
             moments: MomentsBase | None = None) -> dict[str, float]:
    """Score, write and reduce one tile, then record it; returns timings in seconds.

    With `moments` (a job that keeps its score's moments, `score_state`), the tile writes
    them, and when they hold the first post dates already reads neither the pre dates nor
    those post dates: only the appended ones."""
    started = time.perf_counter()
    store, params = plan.store, plan.params
    first = moments.held if moments is not None else 0
    post, (dr, dc) = read_window_stack(store, "post", tile, plan.halo, plan.signature, first)
    pre = (None if first else
           read_window_stack(store, "pre", tile, plan.halo, plan.signature)[0])
    read_s = time.perf_counter() - started
    padded_shape = post.shape[2:]
    window = plan.grid.padded(tile.row0, tile.col0, tile.height, tile.width, plan.halo)
    # date-independent: kept from an earlier run of the job when whole (`tile_inputs`)
    built, mask_kept = kept_window_mask(plan, tile, window, vectors)
    valid = np.zeros(padded_shape, bool)  # the method fills it (`mask_statistic`)
    if moments is not None:
        padded = moment_layers(plan, tile, moments, pre, post, window, (dr, dc), built, valid)
    else:
        assert pre is not None
        padded = compute_layers(pre, post, params, plan.context, built, valid)
    # the date layers read the same padded window (method_params.dating)
    dated = (date_tile(plan, tile, pre, post, (dr, dc), first) if dating_enabled(params)
             else {})
    dates_read = float(post.shape[0] + (0 if pre is None else pre.shape[0]))
    del pre, post
    crop = (slice(dr, dr + tile.height), slice(dc, dc + tile.width))
    score = np.ascontiguousarray(padded.score[crop])
    extra = {name: np.ascontiguousarray(layer[crop]) for name, layer in padded.extra.items()}
    del padded
    observed = valid[crop]  # the statistic was valid here: imagery to score
    counted = observed
    if built is not None:
        score[~built[crop]] = np.nan  # only built-up pixels are reported, as in PWTT
        counted = observed & built[crop]
    automatic = params.is_automatic
    classes = first_pass_classes(score, params)
    # damage.tif classes the pixels the tables count, as the second pass does: not those the
    # focal steps scored in nodata
    classes[~counted] = NODATA_CLASS
    score_s = time.perf_counter() - started - read_s
    # with an automatic threshold the second pass writes `damage`
    written = {"score": score, **extra, **({} if automatic else {"damage": classes})}
    checksums = {**write_layer_shards(plan, tile, written), **dated}
    write_s = time.perf_counter() - started - read_s - score_s

    transform = tile.grid(plan.grid).affine
    shape = (tile.height, tile.width)
    districts = district_label_layers(vectors, transform, shape)
    buildings, labels_kept = kept_footprint_labels(plan, tile, vectors, transform, shape)
    partial = tile_partial(
        score, classes,
        threshold=first_pass_threshold(params),
        n_classes=len(params.class_edges_given) + 1,
        edges=plan.edges, district_labels=districts, n_districts=plan.n_districts,
        building_labels=buildings, building_index=vectors.building_index,
        centroid_index=vectors.centroid_index, centroid_rc=vectors.centroid_rc,
        origin=(tile.row0, tile.col0), cell_px=plan.cell_px, n_post=extra.get("n_post"),
        row_area=tile_row_area(plan, tile), hist_edges=score_hist_edges() if automatic else None,
        counted=counted, observed=observed,
    )  # fmt: skip
    checksums["partial"] = save_partial(partial, plan.partial(tile), tile.key)
    total_s = time.perf_counter() - started
    # last: a recorded tile's outputs and partial are durable, their checksums with it
    plan.ledger.record(tile.key, {"signature": plan.signature, "seconds": round(total_s, 3)},
                       checksums=checksums)
    return {"read_s": read_s, "score_s": score_s, "write_s": write_s, "total_s": total_s,
            "dates_read": dates_read, "mask_kept": float(mask_kept),
            "labels_kept": float(labels_kept)}
