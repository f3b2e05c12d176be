"""Per-tile partial aggregates: what one tile adds to the job's district, building and grid
results.

A tile task reduces its cropped score and classes to a `TilePartial`: `LabelStats` of the
score per district, class and damaged pixel counts per district (and their areas, in pixels
of the grid's centre: a lon/lat grid's pixels shrink with latitude), per-footprint sums for the
footprints it was sent (by their global index), the sum and count of the method's `n_post`
layer over each district's valid pixels (zeros for methods without one), and additive
damage-grid partials (score sum, valid count, damaged count) per global grid cell it touches;
with an automatic threshold also the histogram of its valid scores over the job-wide fixed
bins (`s_hist`, see `kernels.thresholds`; empty otherwise) and the pixels it counts (`s_counted`,
bits), and no classes yet (`job.classes` counts them in a second pass once the threshold is
chosen, over those pixels only). Partials are small, add up
exactly (sums to float64 rounding), and are stored as one `.npz` per tile (`save_partial`,
locally or in object storage, written whole or not at all) that holds its own tile key and
only the district rows the tile touched (a country's tile touches a few of 500 districts, and
their 512-bin histograms were 80 % of the bytes the client read back), so a
resumed job merges the partials of tiles finished in an earlier run with the new ones
(`merge`), after checking each is whole (its checksum in the ledger) and its tile's.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np

from ruinmap.cluster.storage.checksums import digest
from ruinmap.cluster.storage.location import as_location
from ruinmap.errors import StoreError
from ruinmap.kernels import block_reduce, label_stats
from ruinmap.kernels.thresholds import SCORE_HIST_LIMIT

T = TypeVar("T")

__all__ = [
    "DISTRICT_BINS",
    "DISTRICT_ROWS",
    "N_DISTRICTS",
    "TILE_KEY",
    "TilePartial",
    "automatic_score_edges",
    "counted_pixels",
    "district_fields",
    "load_npz", "load_partial", "npz_problem",
    "partial_bytes",
    "partial_problem",
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


def automatic_score_edges() -> np.ndarray:
    """Per-district histogram edges for a score of unknown scale (an automatic threshold):
    DISTRICT_BINS equal steps in asinh(score) over +-SCORE_HIST_LIMIT, so p90 is within
    about 6 % of its value (|p90| > 1) wherever the score lies."""
    top = np.arcsinh(SCORE_HIST_LIMIT)
    return np.sinh(np.linspace(-top, top, DISTRICT_BINS + 1))


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
    # districts: sum of n_post over the valid-score pixels that have one, and their count
    d_npost_sum: np.ndarray
    d_npost_count: np.ndarray
    # the same as areas (float64), in pixels of the grid-centre area: valid, damaged, classes
    d_valid_area: np.ndarray
    d_damaged_area: np.ndarray
    d_class_area: np.ndarray
    # districts: the area of the pixels whose statistic was valid (imagery to score),
    # built-up or not, in grid-centre pixels (the valid area)
    d_observed_area: np.ndarray
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
    # the job-wide score histogram's counts (SCORE_HIST_BINS), with an automatic threshold
    s_hist: np.ndarray
    # with an automatic threshold the pixels the figures count (`counted`), np.packbits of
    # the tile's rows: the second pass classes these alone (`counted_pixels`)
    s_counted: np.ndarray


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
    n_post: np.ndarray | None = None,
    row_area: np.ndarray | None = None,
    hist_edges: np.ndarray | None = None,
    counted: np.ndarray | None = None,
    observed: np.ndarray | None = None,
) -> TilePartial:
    """Reduce one tile's score (float32, NaN = nodata) and classes (uint8, 255 = nodata).

    `district_labels`: 0 or district k (1-based), one image or a (layers, rows, cols) stack of
    images whose districts do not overlap within a layer (`geo.rasterize.overlap_layers`),
    so a pixel counts for every district holding it; `building_labels`: 0 or j+1 for the j-th of
    `building_index` (the global footprint indices sent to this tile); `centroid_index` /
    `centroid_rc`: footprints whose centroid pixel (row, col in the tile) lies in this tile.
    `origin` is the tile's (row0, col0) in the image; grid cells are `cell_px` pixels aligned
    to the image origin. `n_post`: the method's post-date count layer (pwtt), or None.
    `row_area`: each row's pixel area over the grid-centre pixel's
    (`geo.units.pixel_area_m2`; None: all 1, as on a projected grid).
    `hist_edges`: count the valid scores into these bins (`s_hist`) and keep `counted`
    (`s_counted`) for the second pass (an automatic threshold).

    `counted` (bool): the pixels the district and grid figures count (the built-up pixels
    whose statistic was valid); `observed`: those whose statistic was valid, built-up or not
    (`d_observed_area`, the valid area). Both default to the pixels with a score. Footprints
    take every scored pixel.
    """
    building_score = score
    if counted is not None:
        score = np.where(counted, score, np.float32(np.nan))
        classes = np.where(counted, classes, np.uint8(255))
    d_fields = district_fields(score, classes, district_labels, row_area, n_post,
                               observed=observed, threshold=threshold, n_classes=n_classes,
                               edges=edges, n_districts=n_districts)

    k = len(building_index)
    building = label_stats(building_labels, building_score, k, _BUILDING_EDGES)
    members = np.bincount(building_labels.ravel(), minlength=k + 1)[1:]
    rows, cols = centroid_rc[:, 0], centroid_rc[:, 1]
    centroid_score = building_score[rows, cols].astype(np.float64)

    row0, col0 = origin
    offset = (row0 % cell_px, col0 % cell_px)
    g_count = block_reduce(score, cell_px, "count", block_offset=offset)
    s_hist = np.zeros(0, np.int64)
    s_counted = np.zeros(0, np.uint8)
    if hist_edges is not None:
        everywhere = np.ones(score.shape, np.uint8)  # every pixel: NaN ones count nowhere
        s_hist = label_stats(everywhere, score, 1, hist_edges).hist[0].astype(np.int64)
        # the focal steps score nodata pixels too: only the stored score cannot tell them
        s_counted = np.packbits(np.isfinite(score) if counted is None else counted)
    return TilePartial(
        **d_fields,
        b_index=np.asarray(building_index, np.int64), b_count=building.count,
        b_sum=building.sum, b_max=building.max, b_members=members.astype(np.int64),
        b_centroid_index=np.asarray(centroid_index, np.int64), b_centroid_score=centroid_score,
        g_origin=np.array([row0 // cell_px, col0 // cell_px], np.int64),
        g_sum=block_reduce(score, cell_px, "sum", block_offset=offset).astype(np.float64),
        g_count=np.rint(g_count).astype(np.int64),
        g_damaged=np.rint(block_reduce(score, cell_px, "count_above", threshold,
                                       block_offset=offset)).astype(np.int64),
        s_hist=s_hist, s_counted=s_counted,
    )  # fmt: skip


def counted_pixels(partial: TilePartial, shape: tuple[int, int]) -> np.ndarray:
    """The `counted` pixels (bool, the tile's `shape`) a partial keeps with an automatic
    threshold (`s_counted`)."""
    n = shape[0] * shape[1]
    if partial.s_counted.size != -(-n // 8):
        raise StoreError(f"the partial holds {partial.s_counted.size} bytes of counted pixels, "
                         f"not those of a {shape[0]} x {shape[1]} tile: run the job again")
    return np.unpackbits(partial.s_counted, count=n).reshape(shape).view(bool)


def district_fields(score: np.ndarray, classes: np.ndarray, district_labels: np.ndarray,
                    row_area: np.ndarray | None, n_post: np.ndarray | None, *,
                    observed: np.ndarray | None = None, threshold: float, n_classes: int,
                    edges: np.ndarray, n_districts: int) -> dict[str, np.ndarray]:
    """The `d_*` fields of a partial (n_districts rows each) from one label image or a
    (layers, rows, cols) stack of them (see `tile_partial`); also the second pass's class
    counts (`job.classes`)."""
    if observed is None:
        observed = np.isfinite(score)
    layers = district_labels if district_labels.ndim == 3 else district_labels[np.newaxis]
    d_fields = _district_fields(score, classes, layers[0], row_area, n_post, observed,
                                threshold=threshold, n_classes=n_classes, edges=edges,
                                n_districts=n_districts)
    for labels in layers[1:]:
        # a district is in one layer only: its rows come from the layer that holds it
        rows = np.unique(labels)
        rows = rows[rows > 0] - 1
        more = _district_fields(score, classes, labels, row_area, n_post, observed,
                                threshold=threshold, n_classes=n_classes, edges=edges,
                                n_districts=n_districts)
        for name, values in more.items():
            d_fields[name][rows] = values[rows]
    return d_fields


def _district_fields(score: np.ndarray, classes: np.ndarray, labels: np.ndarray,
                     row_area: np.ndarray | None, n_post: np.ndarray | None,
                     observed: np.ndarray, *, threshold: float, n_classes: int,
                     edges: np.ndarray, n_districts: int) -> dict[str, np.ndarray]:
    """The `d_*` fields of a partial from one label image (n_districts rows each)."""
    district = label_stats(labels, score, n_districts, edges)
    size = n_districts + 1
    valid = classes != 255
    flat = labels[valid].astype(np.int64) * n_classes + classes[valid]
    d_classes = np.bincount(flat, minlength=size * n_classes)
    damaged = score > threshold
    d_damaged = np.bincount(labels[damaged], minlength=size)
    finite = np.isfinite(score)  # what label_stats counts as valid
    class_area: np.ndarray
    damaged_area: np.ndarray
    valid_area: np.ndarray
    observed_area: np.ndarray
    if row_area is None:  # a projected grid: every pixel's area is 1, so areas are counts
        class_area = d_classes.astype(np.float64)
        damaged_area = d_damaged[1:].astype(np.float64)
        valid_area = np.bincount(labels[finite], minlength=size)[1:].astype(np.float64)
        observed_area = np.bincount(labels[observed], minlength=size)[1:].astype(np.float64)
    else:
        area = np.broadcast_to(np.asarray(row_area, np.float64)[:, np.newaxis], score.shape)
        class_area = np.bincount(flat, weights=area[valid], minlength=size * n_classes)
        damaged_area = np.bincount(labels[damaged], weights=area[damaged], minlength=size)[1:]
        valid_area = np.bincount(labels[finite], weights=area[finite], minlength=size)[1:]
        observed_area = np.bincount(labels[observed], weights=area[observed],
                                    minlength=size)[1:]
    npost_sum: np.ndarray = np.zeros(n_districts, np.float64)
    npost_count: np.ndarray = np.zeros(n_districts, np.int64)
    if n_post is not None:
        has = finite & np.isfinite(n_post)
        npost_sum = np.bincount(labels[has], weights=n_post[has].astype(np.float64),
                                minlength=size)[1:]
        npost_count = np.bincount(labels[has], minlength=size)[1:].astype(np.int64)
    return {
        "d_count": district.count, "d_sum": district.sum, "d_sum_sq": district.sum_sq,
        "d_min": district.min, "d_max": district.max, "d_hist": district.hist,
        "d_classes": d_classes.reshape(size, n_classes)[1:].astype(np.int64),
        "d_damaged": d_damaged[1:].astype(np.int64),
        "d_valid_area": valid_area, "d_observed_area": observed_area,
        "d_damaged_area": damaged_area,
        "d_class_area": class_area.reshape(size, n_classes)[1:],
        "d_npost_sum": npost_sum, "d_npost_count": npost_count,
    }


#: the npz member holding the key of the tile a partial belongs to
TILE_KEY = "tile_key"
#: the npz members of a partial's stored district rows (0-based) and of how many there are
#: in all; the `d_*` members hold those rows only, every other row is empty
DISTRICT_ROWS = "district_rows"
N_DISTRICTS = "n_districts"
#: what an empty district row holds where it is not 0: the identity of the merge's extremes
_EMPTY_ROW = {"d_min": np.inf, "d_max": -np.inf}


def partial_bytes(partial: object, tile_key: str) -> bytes:
    """A partial (a `TilePartial` or another dataclass of arrays) as .npz bytes, holding its
    own `tile_key` (a partial in another tile's place is recognised as such) and, of its
    `d_*` fields (n_districts rows each), only the rows not empty (`DISTRICT_ROWS`)."""
    members = {f.name: getattr(partial, f.name) for f in fields(partial)}  # type: ignore[arg-type]
    district = [name for name in members if name.startswith("d_")]
    if district:
        n = len(members[district[0]])
        touched = np.zeros(n, bool)
        for name in district:
            touched |= _differs_from_empty(members[name], name)
        rows = np.flatnonzero(touched)
        members.update({name: members[name][rows] for name in district})
        members[DISTRICT_ROWS], members[N_DISTRICTS] = rows, np.array(n, np.int64)
    members[TILE_KEY] = np.array(tile_key)
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    return buffer.getvalue()


def _differs_from_empty(values: np.ndarray, name: str) -> np.ndarray:
    """Per row of `values`, whether any entry is not the empty row's, bit for bit (a -0.0
    or a NaN is kept, so the rebuilt partial is the one saved)."""
    values = np.asarray(values)
    empty = _EMPTY_ROW.get(name, 0)
    differs = values != empty
    if values.dtype.kind == "f":
        differs |= np.signbit(values) != np.signbit(empty)
    return differs.reshape(len(values), -1).any(axis=1)


def _district_rows_filled(npz: Any, name: str) -> np.ndarray:
    """The `d_*` member `name` with its empty rows put back (a partial saved before rows
    were dropped holds them all)."""
    stored = npz[name]
    if DISTRICT_ROWS not in npz.files:
        return stored
    rows = npz[DISTRICT_ROWS]
    full = np.full((int(npz[N_DISTRICTS]), *stored.shape[1:]), _EMPTY_ROW.get(name, 0),
                   stored.dtype)
    full[rows] = stored
    return full


def save_partial(partial: TilePartial, path: str | os.PathLike[str], tile_key: str) -> str:
    """Write a partial of tile `tile_key` as .npz (local or s3://), durably and atomically;
    returns the sha256 of the bytes written."""
    data = partial_bytes(partial, tile_key)
    as_location(path).write_durably(data)
    return digest(data)


def partial_problem(tile_key: str, data: bytes) -> str | None:
    """What is wrong with `data` as the saved partial of tile `tile_key`, or None."""
    return npz_problem(TilePartial, tile_key, data, "partial")


def npz_problem(kind: type, tile_key: str, data: bytes, what: str) -> str | None:
    """What is wrong with `data` as the `.npz` of a `kind` dataclass saved for tile
    `tile_key` (`partial_bytes`), or None; `what` names it in the message."""
    problem, _ = _read_npz(kind, tile_key, data, what, read=False)
    return problem


def _read_npz(kind: type[T], tile_key: str, data: bytes, what: str, *, read: bool
              ) -> tuple[str | None, T | None]:
    """(what is wrong with `data`, None) or (None, the `kind` it holds; None unless `read`),
    from one pass over the `.npz`."""
    try:
        with np.load(io.BytesIO(data)) as npz:
            found = str(npz[TILE_KEY]) if TILE_KEY in npz.files else None
            missing = [f.name for f in fields(kind) if f.name not in npz.files]  # type: ignore[arg-type]
            if found != tile_key:
                return f"is the {what} of tile {found!r}, not of {tile_key!r}", None
            if missing:
                return f"lacks {', '.join(missing)}", None
            if not read:
                return None, None
            return None, kind(**{
                f.name: _district_rows_filled(npz, f.name) if f.name.startswith("d_")
                else npz[f.name] for f in fields(kind)})  # type: ignore[arg-type]
    except (OSError, ValueError, EOFError, IndexError) as exc:
        return f"is not a readable {what} ({type(exc).__name__})", None


def load_partial(path: str | os.PathLike[str], tile_key: str,
                 checksum: str | None = None) -> TilePartial:
    """Read the partial of tile `tile_key` written by `save_partial`.

    Raises StoreError naming the file when it is missing, does not match `checksum` (the one
    recorded in the ledger) or is not `tile_key`'s partial.
    """
    return load_npz(TilePartial, path, tile_key, checksum, "partial")


def load_npz(kind: type[T], path: str | os.PathLike[str], tile_key: str,
             checksum: object, what: str) -> T:
    """Read the `kind` dataclass of tile `tile_key` written by `partial_bytes`; StoreError
    naming the file (and `what` it is) when it is missing, does not match `checksum` (None:
    not checked) or is not `tile_key`'s."""
    location = as_location(path)
    try:
        data = location.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{location}: the {what} of tile {tile_key} is missing") from None
    if checksum is not None and digest(data) != checksum:
        raise StoreError(f"{location}: the {what} of tile {tile_key} does not match its "
                         "checksum (truncated or changed)")
    problem, loaded = _read_npz(kind, tile_key, data, what, read=True)
    if problem is not None or loaded is None:
        raise StoreError(f"{location} {problem}")
    return loaded
