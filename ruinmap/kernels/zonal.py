"""Per-label (zonal) statistics that merge exactly across tiles.

A label image assigns each pixel to a zone (a district, a building footprint): 0 means "no zone",
1..n_labels are zones. `label_stats` reduces one tile of (labels, values) to a `LabelStats` of
power sums, extremes and a histogram per label; `merge_label_stats` adds tiles together, so a
Dask graph can map `label_stats` over chunks and tree-reduce the partials. Counts, histograms,
minima and maxima merge exactly; sums merge to float64 rounding. `label_quantile` then estimates
quantiles (p90 damage per district) from the merged histogram.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numba import njit

from ruinmap.errors import InputError
from ruinmap.kernels._checks import as_image, non_negative_int, same_shape

__all__ = [
    "LabelStats",
    "label_quantile",
    "label_stats",
    "label_stats_reference",
    "merge_label_stats",
]

# Edges whose spacing departs from the mean spacing by less than this (relative) take the
# arithmetic bin lookup. The lookup is corrected against the true edges afterwards, so this
# only decides speed, never which bin a value lands in.
_UNIFORM_RTOL = 1e-6
# Resolution of the guide that narrows the binary search over uneven edges.
_GUIDE_CELLS_PER_BIN = 4


_FIELD_DTYPES = {
    "count": np.int64,
    "sum": np.float64,
    "sum_sq": np.float64,
    "min": np.float64,
    "max": np.float64,
    "hist": np.int64,
    "edges": np.float64,
}


@dataclass(frozen=True, eq=False)
class LabelStats:
    """Statistics of the valid (non-NaN) values of each label 1..n_labels; row k-1 is label k.

    Attributes
    ----------
    count : int64 (n_labels,)
        Number of valid values.
    sum, sum_sq : float64 (n_labels,)
        Sum of the values and of their squares (0 where count is 0).
    min, max : float64 (n_labels,)
        Extremes; +inf and -inf where count is 0, so they merge with `np.minimum`/`np.maximum`.
    hist : int64 (n_labels, n_bins)
        Histogram over `edges`, clamped: values below edges[0] count in the first bin and values
        at or above edges[-1] in the last, so each row sums to `count`.
    edges : float64 (n_bins + 1,)
        Strictly ascending finite bin edges; bin b is [edges[b], edges[b + 1]).

    Plain NumPy arrays in a frozen dataclass: picklable, so Dask can ship partials between
    workers. Equality is identity (`eq=False`); compare fields with `np.array_equal`.
    """

    count: np.ndarray
    sum: np.ndarray
    sum_sq: np.ndarray
    min: np.ndarray
    max: np.ndarray
    hist: np.ndarray
    edges: np.ndarray

    def __post_init__(self) -> None:
        # Partials may come back from storage as lists or other dtypes; fix the dtypes once.
        for name, dtype in _FIELD_DTYPES.items():
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=dtype))
        n = self.count.shape[0] if self.count.ndim == 1 else -1
        n_bins = self.edges.shape[0] - 1 if self.edges.ndim == 1 else -1
        shapes = {
            "count": (self.count.shape, (n,)),
            "sum": (self.sum.shape, (n,)),
            "sum_sq": (self.sum_sq.shape, (n,)),
            "min": (self.min.shape, (n,)),
            "max": (self.max.shape, (n,)),
            "hist": (self.hist.shape, (n, n_bins)),
        }
        bad = [f"{k} {got}" for k, (got, want) in shapes.items() if got != want]
        if n < 0 or n_bins < 1 or bad:
            raise InputError(
                "LabelStats: inconsistent array shapes "
                f"(count {self.count.shape}, edges {self.edges.shape}"
                + (f"; mismatched: {', '.join(bad)}" if bad else "")
                + "); count, sum, sum_sq, min, max must be (n_labels,), hist (n_labels, n_bins) "
                "and edges (n_bins + 1,) with n_bins >= 1"
            )

    @property
    def n_labels(self) -> int:
        """Number of labels (rows)."""
        return int(self.count.shape[0])

    @property
    def n_bins(self) -> int:
        """Number of histogram bins."""
        return int(self.edges.shape[0] - 1)

    @property
    def mean(self) -> np.ndarray:
        """Mean of the valid values per label, float64; NaN where count is 0."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum / self.count, np.nan)

    @property
    def variance(self) -> np.ndarray:
        """Population variance (ddof=0) per label, float64; NaN where count is 0.

        var = (sum_sq - sum * mean) / count, clipped at 0. Computed from raw power sums, so its
        absolute error is about 1e-16 * mean**2: negligible for damage scores in [0, 1] or dB,
        but shift the values first if their mean is far from zero relative to their spread.
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum / self.count
            var = np.maximum((self.sum_sq - self.sum * mean) / self.count, 0.0)
        return np.where(self.count > 0, var, np.nan)

    @classmethod
    def empty(cls, n_labels: int, edges: np.ndarray) -> LabelStats:
        """Statistics of no pixels: the identity of `merge_label_stats`."""
        n = non_negative_int(n_labels, "n_labels")
        e = _as_edges(edges)
        return cls(
            count=np.zeros(n, np.int64),
            sum=np.zeros(n, np.float64),
            sum_sq=np.zeros(n, np.float64),
            min=np.full(n, np.inf),
            max=np.full(n, -np.inf),
            hist=np.zeros((n, e.size - 1), np.int64),
            edges=e,
        )


def _as_edges(bins: object) -> np.ndarray:
    """`bins` as a contiguous float64 1-D array of >= 2 strictly ascending finite edges."""
    try:
        edges = np.array(bins, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bins: cannot read {bins!r} as bin edges ({exc})") from None
    if edges.ndim != 1 or edges.size < 2:
        raise InputError(
            f"bins: expected a 1-D array of at least 2 edges, got shape {edges.shape}; "
            "pass e.g. np.linspace(0, 1, 101) for 100 bins over [0, 1]"
        )
    if not np.all(np.isfinite(edges)):
        raise InputError("bins: edges must be finite; out-of-range values are clamped anyway")
    if not np.all(np.diff(edges) > 0):
        raise InputError("bins: edges must be strictly ascending")
    return np.ascontiguousarray(edges)


def _is_uniform(edges: np.ndarray) -> bool:
    widths = np.diff(edges)
    mean_width = (edges[-1] - edges[0]) / widths.size
    return bool(np.all(np.abs(widths - mean_width) <= _UNIFORM_RTOL * mean_width))


def _bin_guide(edges: np.ndarray) -> np.ndarray | None:
    """None for uniform edges; otherwise the bin of each point of a grid of 4 cells per bin.

    A value in grid cell k lies in a bin between guide[k - 1] and guide[k + 2] (one cell of
    slack each side absorbs rounding in locating k), so the binary search runs over that
    narrow range only: O(1) for edges of similar widths, O(log n_bins) at worst.
    """
    if _is_uniform(edges):
        return None
    n_bins = edges.size - 1
    n_cells = _GUIDE_CELLS_PER_BIN * n_bins
    grid = edges[0] + np.arange(n_cells + 1) * ((edges[-1] - edges[0]) / n_cells)
    return np.clip(np.searchsorted(edges, grid, side="right") - 1, 0, n_bins - 1).astype(np.intp)


def _as_labels(labels: object) -> np.ndarray:
    arr = np.asarray(labels)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            f"labels: dtype {arr.dtype} is not supported; labels must be an integer array "
            "(0 = no label, 1..n_labels = zones); rasterize zones with an integer dtype"
        )
    if arr.ndim != 2:
        raise InputError(
            f"labels: expected a 2-D image (y, x), got {arr.ndim}-D with shape {arr.shape}"
        )
    return arr


@njit(cache=True, nogil=True)
def _bin_index(
    v: float,
    edges: np.ndarray,
    guide: np.ndarray | None,
    n_cells: int,
    e0: float,
    cells_per_unit: float,
) -> int:
    """Bin of `v`: np.searchsorted(edges, v, "right") - 1 clipped to [0, n_bins - 1], exactly.

    `guide is None` (uniform edges) is settled at compile time: numba prunes the branch on a
    None-typed argument, so each kind of edges gets its own specialization. Keeping the
    search out of the uniform build matters: its mere presence made the whole pixel loop
    3x slower (measured). The scalars are loop invariants passed in, since LLVM cannot hoist
    loads of `edges` past the histogram stores, which it must assume may alias them.
    """
    nb = edges.size - 1
    # Clamp in floating point first: int() of inf or a huge value is undefined.
    t = (v - e0) * cells_per_unit
    if t < 0.0:
        k = 0
    elif t >= n_cells:
        k = n_cells - 1
    else:
        k = int(t)
    if guide is None:
        # Uniform edges: cell k is bin k, give or take the rounding of t across an edge;
        # step to the bin the true edges give.
        b = k
        while b < nb - 1 and v >= edges[b + 1]:
            b += 1
        while b > 0 and v < edges[b]:
            b -= 1
        return b
    lo = guide[max(k - 1, 0)]
    hi = guide[min(k + 2, n_cells)]
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if v >= edges[mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@njit(cache=True, nogil=True)
def _label_stats_2d(
    labels: np.ndarray,
    values: np.ndarray,
    n_labels: int,
    edges: np.ndarray,
    guide: np.ndarray | None,
    count: np.ndarray,
    total: np.ndarray,
    total_sq: np.ndarray,
    vmin: np.ndarray,
    vmax: np.ndarray,
    hist: np.ndarray,
) -> int:
    """Accumulate into the output arrays; return the flat index of the first label out of
    [0, n_labels], or -1. Row 0 of each output is label 0 (discarded by the caller)."""
    h, w = labels.shape
    if guide is None:
        n_cells = edges.size - 1
    else:
        n_cells = guide.size - 1
    e0 = edges[0]
    cells_per_unit = n_cells / (edges[edges.size - 1] - e0)
    for i in range(h):
        # Zones are contiguous, so consecutive pixels mostly share a label: keep the current
        # run's sums in registers and touch the per-label arrays only when the label changes.
        run = np.int64(0)
        c = 0
        s = 0.0
        s2 = 0.0
        mn = np.inf
        mx = -np.inf
        for j in range(w):
            lab = np.int64(labels[i, j])
            if lab != run:
                if run != 0:
                    count[run] += c
                    total[run] += s
                    total_sq[run] += s2
                    if mn < vmin[run]:
                        vmin[run] = mn
                    if mx > vmax[run]:
                        vmax[run] = mx
                # Checked only where the label changes; uint64 beyond int64 wraps negative.
                if lab < 0 or lab > n_labels:
                    return i * w + j
                run = lab
                c = 0
                s = 0.0
                s2 = 0.0
                mn = np.inf
                mx = -np.inf
            if run == 0:
                continue
            v = np.float64(values[i, j])
            if v != v:
                continue
            c += 1
            s += v
            s2 += v * v
            if v < mn:
                mn = v
            if v > mx:
                mx = v
            hist[run, _bin_index(v, edges, guide, n_cells, e0, cells_per_unit)] += 1
        if run != 0:
            count[run] += c
            total[run] += s
            total_sq[run] += s2
            if mn < vmin[run]:
                vmin[run] = mn
            if mx > vmax[run]:
                vmax[run] = mx
    return -1


def label_stats(labels: np.ndarray, values: np.ndarray, n_labels: int, bins: object) -> LabelStats:
    """Count, sum, sum of squares, min, max and histogram of `values` per label, in one pass.

    Parameters
    ----------
    labels : 2-D integer array, any integer dtype and memory layout
        0 = no label (ignored); 1..n_labels = zones. Any other value raises InputError.
    values : 2-D float32/float64 array, same shape
        NaN = nodata, skipped (it counts nowhere). +-inf are values and propagate into sums.
    n_labels : int >= 0
        Number of zones; the result has one row per label 1..n_labels, present or not.
    bins : 1-D array of strictly ascending finite edges (n_bins + 1 >= 2)
        Histogram bin b is [edges[b], edges[b + 1]); the histogram is clamped: values below
        edges[0] count in the first bin and values >= edges[-1] in the last, so every row sums
        to `count` and quantiles see every value. Uniform edges take an O(1) arithmetic lookup,
        others a binary search narrowed by a guide table (O(1) for edges of similar widths);
        both give exactly `np.searchsorted(edges, v, "right") - 1`, clipped.

    Returns
    -------
    LabelStats
        Partial statistics that `merge_label_stats` combines exactly across tiles.

    Sums are accumulated in float64 (exact for float32 squares), in row-major order per run of
    equal labels, so they match a sequential sum to float64 rounding.
    """
    labels = _as_labels(labels)
    values = as_image(values, "values")
    same_shape(labels=labels, values=values)
    n = non_negative_int(n_labels, "n_labels")
    edges = _as_edges(bins)
    n_bins = edges.size - 1

    count = np.zeros(n + 1, np.int64)
    total = np.zeros(n + 1, np.float64)
    total_sq = np.zeros(n + 1, np.float64)
    vmin = np.full(n + 1, np.inf)
    vmax = np.full(n + 1, -np.inf)
    hist = np.zeros((n + 1, n_bins), np.int64)
    if labels.size:
        bad = _label_stats_2d(
            labels, values, n, edges, _bin_guide(edges),
            count, total, total_sq, vmin, vmax, hist,
        )  # fmt: skip
        if bad >= 0:
            i, j = divmod(bad, labels.shape[1])
            raise InputError(
                f"labels: value {labels[i, j]} at (row {i}, col {j}) is outside 0..{n} "
                f"(n_labels={n}); 0 means no label, so raise n_labels or fix the label image"
            )
    return LabelStats(
        count=count[1:].copy(),
        sum=total[1:].copy(),
        sum_sq=total_sq[1:].copy(),
        min=vmin[1:].copy(),
        max=vmax[1:].copy(),
        hist=hist[1:].copy(),
        edges=edges,
    )


def label_stats_reference(
    labels: np.ndarray, values: np.ndarray, n_labels: int, bins: object
) -> LabelStats:
    """NumPy reference of `label_stats` built on np.bincount and np.minimum.at; not fast."""
    labels = _as_labels(labels)
    values = as_image(values, "values")
    same_shape(labels=labels, values=values)
    n = non_negative_int(n_labels, "n_labels")
    edges = _as_edges(bins)
    n_bins = edges.size - 1

    lab = labels.ravel()
    out_of_range = (lab < 0) | (lab > n)
    if np.any(out_of_range):
        first = lab[np.argmax(out_of_range)]
        raise InputError(f"labels: value {first} is outside 0..{n} (n_labels={n})")
    lab = lab.astype(np.int64)
    val = values.ravel().astype(np.float64)
    keep = (lab != 0) & ~np.isnan(val)
    idx = lab[keep] - 1
    val = val[keep]

    bin_of = np.clip(np.searchsorted(edges, val, side="right") - 1, 0, n_bins - 1)
    vmin = np.full(n, np.inf)
    vmax = np.full(n, -np.inf)
    np.minimum.at(vmin, idx, val)
    np.maximum.at(vmax, idx, val)
    return LabelStats(
        count=np.bincount(idx, minlength=n).astype(np.int64),
        sum=np.bincount(idx, weights=val, minlength=n),
        sum_sq=np.bincount(idx, weights=val * val, minlength=n),
        min=vmin,
        max=vmax,
        hist=np.bincount(idx * n_bins + bin_of, minlength=n * n_bins)
        .astype(np.int64)
        .reshape(n, n_bins),
        edges=edges,
    )


def merge_label_stats(parts: Iterable[LabelStats]) -> LabelStats:
    """Combine the statistics of disjoint sets of pixels (tiles) into those of their union.

    Counts, histograms and sums add; min and max take the extremes. Exact for everything but
    `sum` and `sum_sq`, which are exact to float64 rounding (exact for integer-valued data).
    All parts must have the same n_labels and identical edges; at least one part is required.
    """
    items = list(parts)
    if not items:
        raise InputError(
            "merge_label_stats: no parts given; pass at least one LabelStats "
            "(LabelStats.empty(n_labels, edges) is the statistics of no pixels)"
        )
    for k, part in enumerate(items):
        if not isinstance(part, LabelStats):
            raise InputError(
                f"merge_label_stats: part {k} is a {type(part).__name__}, not LabelStats"
            )
    first = items[0]
    count = first.count.copy()
    total = first.sum.copy()
    total_sq = first.sum_sq.copy()
    vmin = first.min.copy()
    vmax = first.max.copy()
    hist = first.hist.copy()
    for k, part in enumerate(items[1:], start=1):
        if part.n_labels != first.n_labels:
            raise InputError(
                f"merge_label_stats: part {k} has {part.n_labels} labels, part 0 has "
                f"{first.n_labels}; compute every tile with the same n_labels"
            )
        if not np.array_equal(part.edges, first.edges):
            raise InputError(
                f"merge_label_stats: part {k} has different histogram edges from part 0; "
                "compute every tile with the same bins"
            )
        count += part.count
        total += part.sum
        total_sq += part.sum_sq
        np.minimum(vmin, part.min, out=vmin)
        np.maximum(vmax, part.max, out=vmax)
        hist += part.hist
    return LabelStats(
        count=count, sum=total, sum_sq=total_sq, min=vmin, max=vmax, hist=hist,
        edges=first.edges.copy(),
    )  # fmt: skip


def label_quantile(stats: LabelStats, q: float) -> np.ndarray:
    """Quantile `q` of each label's values, estimated from its histogram; float64 (n_labels,).

    The grouped-data estimate: with t = q * count, take the first non-empty bin b whose
    cumulative count reaches t and interpolate linearly inside it,
        Q = lo_b + (t - cum_{b-1}) / hist_b * (hi_b - lo_b),
    where [lo_b, hi_b] is the bin narrowed to [min, max] (the clamped end bins reach out to
    min and max). So q = 0 gives min, q = 1 gives max, and the estimate is always within one
    bin width of the ceil(t)-th smallest value. NaN where count is 0.
    """
    if not isinstance(stats, LabelStats):
        raise InputError(f"stats must be a LabelStats, got {type(stats).__name__}")
    if isinstance(q, bool) or not isinstance(q, int | float | np.integer | np.floating):
        raise InputError(f"q must be a number in [0, 1], got {q!r}")
    q = float(q)
    if not 0.0 <= q <= 1.0:  # also refuses NaN
        raise InputError(f"q must be in [0, 1] (0.9 for the 90th percentile), got {q}")
    if stats.n_labels == 0:
        return np.empty(0, np.float64)

    hist = stats.hist
    cum = np.cumsum(hist, axis=1)
    target = q * stats.count.astype(np.float64)
    reached = (cum >= target[:, None]) & (hist > 0)
    b = np.argmax(reached, axis=1)
    rows = np.arange(stats.n_labels)
    in_bin = hist[rows, b]
    before = cum[rows, b] - in_bin
    edges = stats.edges
    lo = np.where(b == 0, -np.inf, edges[b])
    hi = np.where(b == stats.n_bins - 1, np.inf, edges[b + 1])
    lo = np.maximum(lo, stats.min)
    hi = np.minimum(hi, stats.max)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip((target - before) / in_bin, 0.0, 1.0)
        # lo + frac * (hi - lo) is NaN for frac 0 and an infinite span; take lo then.
        est = np.where(frac == 0.0, lo, lo + frac * (hi - lo))
    return np.where(stats.count > 0, est, np.nan)
