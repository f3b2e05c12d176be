"""Focal (moving-window) statistics on 2-D images: the circular (or elliptical) disk and its
mean (the median is in `kernels.focal_median`, the Lee speckle filter, a square window, in
`kernels.lee`).

Every kernel treats NaN as nodata and pixels outside the array as missing, never as zero or as
a reflected copy. That is what makes halos work: cut a tile with `focal_halo` extra pixels on
each side (clipped at the image edge), run the kernel, crop back to the tile, and the result
equals the same window of the whole-image result (bitwise for `focal_median`,
to float64 rounding for `focal_mean`, see there).

The circular window of radius r holds the pixels whose centres lie within r pixels of the
centre pixel's centre: offsets (dy, dx) with dy^2 + dx^2 <= r^2. Row dy of the disk spans
dx = -w..w with w = isqrt(r^2 - dy^2) (`disk_half_widths`).

A radius may also be a pair (radius_y, radius_x) of pixels, for pixels that are not square on
the ground (a lon/lat grid away from the equator: at 60 degrees N a pixel is half as wide as
it is tall, so a 30 m radius is twice as many pixels across as down). The window is then the
ellipse (dy / ry)^2 + (dx / rx)^2 <= 1, in integers dy^2 rx^2 + dx^2 ry^2 <= rx^2 ry^2, whose
row dy spans w = isqrt(rx^2 (ry^2 - dy^2) // ry^2); (r, r) is the circle of radius r.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ruinmap.errors import InputError
from ruinmap.kernels._checks import as_image, contiguous_image, non_negative_int

__all__ = [
    "Radius",
    "disk_half_widths",
    "disk_offsets",
    "focal_halo",
    "focal_mean",
    "focal_mean_reference",
    "radii_yx",
]

# focal_mean works on column blocks this wide (plus the halo): the prefix sums restart at each
# block, which bounds their magnitude (precision), and the ring of prefix rows of a block stays
# within the per-core L2 cache for the radii damage smoothing uses.
_BLOCK_COLUMNS = 2048
# Running group sums are rebuilt from the prefix rows this often, so float64 rounding in the
# add-one-row/drop-one-row updates cannot accumulate down a tall image.
_REANCHOR_ROWS = 256
# Disk rows of equal half-width that are this many or more a side are summed as one running
# vertical group (4 row reads a step) instead of one by one (2 reads a row).
_MIN_GROUP_ROWS = 2
# Window counts are kept mod 2**16 while every count fits (the differences of wrapped prefix
# counts are exact); larger windows fall back to int32.
_UINT16_COUNTS_MAX = np.iinfo(np.uint16).max
# Flags a prefix row reports.
_HAS_NAN = 1
_HAS_INF = 2


# --- the disk ---------------------------------------------------------------------------------

#: A window radius in pixels: one int (a circle) or (radius_y, radius_x) (an ellipse).
Radius = int | tuple[int, int]


def radii_yx(radius: object) -> tuple[int, int]:
    """`radius` (an int, or a (radius_y, radius_x) pair of ints) as (radius_y, radius_x).

    Raises InputError for negative or non-integer values, or a pair of another length.
    """
    if isinstance(radius, tuple | list):
        if len(radius) != 2:
            raise InputError(f"radius: expected an int or a (radius_y, radius_x) pair, got "
                             f"{radius!r}")
        return non_negative_int(radius[0], "radius_y"), non_negative_int(radius[1], "radius_x")
    r = non_negative_int(radius, "radius")
    return r, r


def disk_half_widths(radius: Radius) -> np.ndarray:
    """Half-widths w[d], d = 0..radius_y, of the rows of the window (int64).

    Row dy of the window covers dx = -w[|dy|]..w[|dy|], w[d] = isqrt(radius^2 - d^2) for a
    circle (isqrt(rx^2 (ry^2 - d^2) // ry^2) for an ellipse (ry, rx)), so the window holds
    sum(2 w[|dy|] + 1) pixels. radius 0 gives [0] (the centre pixel alone); (0, rx) gives
    [rx] (one row).
    """
    ry, rx = radii_yx(radius)
    if ry == 0:
        return np.array([rx], dtype=np.int64)
    return np.array([math.isqrt(rx * rx * (ry * ry - d * d) // (ry * ry)) for d in range(ry + 1)],
                    dtype=np.int64)


def disk_offsets(radius: Radius) -> np.ndarray:
    """(n, 2) int64 array of the (dy, dx) offsets in the window, row-major order."""
    w = disk_half_widths(radius)
    r = len(w) - 1
    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-w[abs(dy)], w[abs(dy)] + 1)]
    return np.array(offsets, dtype=np.int64).reshape(-1, 2)


def focal_halo(radius: Radius) -> int:
    """Pixels of halo a tile needs on each side for the window: the radius (the larger of
    radius_y and radius_x: tiles are cut with one halo on every side)."""
    return max(radii_yx(radius))


def _clamped_half_widths(radius: Radius, rows: int, cols: int) -> np.ndarray:
    """Window half-widths limited to what an image of rows x cols can reach.

    Offsets beyond rows - 1 (cols - 1) never pair two pixels of the image, so clamping the
    vertical reach to rows - 1 and every half-width to cols - 1 leaves the window unchanged
    inside the image while bounding the buffers.
    """
    w = disk_half_widths(radius)
    w = w[: min(len(w) - 1, rows - 1) + 1]
    return np.minimum(w, cols - 1)


def _row_groups(hw: np.ndarray) -> np.ndarray:
    """(n, 3) int64 rows (d0, d1, w): the disk rows at distance d0..d1 above and below have half
    width w. Runs of equal half-width shorter than _MIN_GROUP_ROWS are split into single rows."""
    groups: list[tuple[int, int, int]] = []
    d = 1
    r = len(hw) - 1
    while d <= r:
        e = d
        while e + 1 <= r and hw[e + 1] == hw[d]:
            e += 1
        if e - d + 1 >= _MIN_GROUP_ROWS:
            groups.append((d, e, int(hw[d])))
        else:
            groups.extend((dd, dd, int(hw[dd])) for dd in range(d, e + 1))
        d = e + 1
    return np.array(groups, dtype=np.int64).reshape(-1, 3)


# --- focal_mean: jitted core ------------------------------------------------------------------
#
# Per column block, each input row becomes a float64 prefix-sum row (NaN and out-of-image as 0)
# in a ring of 2 r + 2 rows; the sum over disk row dy at column x is P[x + w + 1] - P[x - w].
# The window sum is then one vectorised pass per few disk rows, with no per-pixel work that
# grows with the window area. Disk rows of equal half-width (the flat top and bottom of the
# disk) are pre-added into running vertical group sums, which cuts the passes by a third at
# r = 15. NaN-free blocks skip the counts (the window size is geometric); a block switches to
# counting valid pixels the first time a NaN row enters its ring.
#
# Indices are passed through max(i, 0): numba wraps negative indices, and proving them
# non-negative is what lets LLVM drop that check and vectorise the inner loops.


@njit(cache=True, nogil=True, error_model="numpy")
def _prefix_row(
    x: np.ndarray, z: int, c0: int, c1: int, lead: int, width: int, P: np.ndarray, k: int
) -> int:
    """P[k, :width + 1] = prefix sums of image row z from column c0 - lead on.

    Returns _HAS_NAN | _HAS_INF flags: NaN pixels (counted as missing) and an infinite or
    overflowing row sum (the prefix differences are then meaningless, see focal_mean).
    """
    k = max(k, 0)
    z = max(z, 0)
    c0 = max(c0, 0)
    lead = max(lead, 0)
    n_in = max(c1 - c0, 0)
    for j in range(lead + 1):
        P[k, j] = 0.0
    s = 0.0
    nan_seen = 0
    o = lead + 1
    for j in range(n_in):
        v = np.float64(x[z, c0 + j])
        nan_seen += v != v
        s += v if v == v else 0.0
        P[k, o + j] = s
    for j in range(o + n_in, width + 1):
        P[k, j] = s
    return (_HAS_NAN if nan_seen > 0 else 0) | (_HAS_INF if s - s != 0.0 else 0)


@njit(cache=True, nogil=True, error_model="numpy")
def _prefix_count_row(
    x: np.ndarray,
    z: int,
    c0: int,
    c1: int,
    lead: int,
    width: int,
    P: np.ndarray,
    C: np.ndarray,
    k: int,
) -> int:
    """_prefix_row and _count_row in one read of the image row; returns _HAS_INF or 0."""
    k = max(k, 0)
    z = max(z, 0)
    c0 = max(c0, 0)
    lead = max(lead, 0)
    n_in = max(c1 - c0, 0)
    for j in range(lead + 1):
        P[k, j] = 0.0
        C[k, j] = 0
    s = 0.0
    c = 0
    o = lead + 1
    for j in range(n_in):
        v = np.float64(x[z, c0 + j])
        valid = v == v
        s += v if valid else 0.0
        c += valid
        P[k, o + j] = s
        C[k, o + j] = c
    for j in range(o + n_in, width + 1):
        P[k, j] = s
        C[k, j] = c
    return _HAS_INF if s - s != 0.0 else 0


@njit(cache=True, nogil=True, error_model="numpy")
def _count_row(
    x: np.ndarray, z: int, c0: int, c1: int, lead: int, width: int, C: np.ndarray, k: int
) -> None:
    """C[k, :width + 1] = prefix counts of the valid pixels of row z (wrapping in C's type)."""
    k = max(k, 0)
    z = max(z, 0)
    c0 = max(c0, 0)
    lead = max(lead, 0)
    n_in = max(c1 - c0, 0)
    for j in range(lead + 1):
        C[k, j] = 0
    c = 0
    o = lead + 1
    for j in range(n_in):
        v = x[z, c0 + j]
        c += v == v
        C[k, o + j] = c
    for j in range(o + n_in, width + 1):
        C[k, j] = c


@njit(cache=True, nogil=True, error_model="numpy")
def _group_step(B: np.ndarray, t: int, a: int, b: int, c: int, d: int, m: int) -> None:
    """B[t] += (B[a] - B[b]) + (B[c] - B[d]) over the first m columns (rows are distinct)."""
    t = max(t, 0)
    a = max(a, 0)
    b = max(b, 0)
    c = max(c, 0)
    d = max(d, 0)
    for j in range(m):
        B[t, j] += (B[a, j] - B[b, j]) + (B[c, j] - B[d, j])


@njit(cache=True, nogil=True, error_model="numpy")
def _group_rebuild(
    B: np.ndarray, t: int, ring: int, y: int, d0: int, d1: int, rows: int, m: int
) -> None:
    """B[t] = sum of ring rows y - d and y + d, d0 <= d <= d1, that lie in the image."""
    t = max(t, 0)
    for j in range(m):
        B[t, j] = 0
    for d in range(d0, d1 + 1):
        for yy in (y - d, y + d):
            if 0 <= yy < rows:
                src = max(yy % ring, 0)
                for j in range(m):
                    B[t, j] += B[src, j]


@njit(cache=True, nogil=True, error_model="numpy")
def _add_terms4(
    acc: np.ndarray, B: np.ndarray, rw: np.ndarray, oa: np.ndarray, ob: np.ndarray, j: int, n: int
) -> None:
    """acc[i] += sum over terms j..j+3 of B[rw, i + oa] - B[rw, i + ob]."""
    r0 = max(rw[j], 0)
    r1 = max(rw[j + 1], 0)
    r2 = max(rw[j + 2], 0)
    r3 = max(rw[j + 3], 0)
    a0 = max(oa[j], 0)
    a1 = max(oa[j + 1], 0)
    a2 = max(oa[j + 2], 0)
    a3 = max(oa[j + 3], 0)
    b0 = max(ob[j], 0)
    b1 = max(ob[j + 1], 0)
    b2 = max(ob[j + 2], 0)
    b3 = max(ob[j + 3], 0)
    for i in range(n):
        acc[i] += ((B[r0, i + a0] - B[r0, i + b0]) + (B[r1, i + a1] - B[r1, i + b1])) + (
            (B[r2, i + a2] - B[r2, i + b2]) + (B[r3, i + a3] - B[r3, i + b3])
        )


@njit(cache=True, nogil=True, error_model="numpy")
def _add_terms1(
    acc: np.ndarray, B: np.ndarray, rw: np.ndarray, oa: np.ndarray, ob: np.ndarray, j: int, n: int
) -> None:
    r0 = max(rw[j], 0)
    a0 = max(oa[j], 0)
    b0 = max(ob[j], 0)
    for i in range(n):
        acc[i] += B[r0, i + a0] - B[r0, i + b0]


@njit(cache=True, nogil=True, error_model="numpy")
def _sum_terms(
    acc: np.ndarray, B: np.ndarray, rw: np.ndarray, oa: np.ndarray, ob: np.ndarray, k: int, n: int
) -> None:
    """acc[:n] = sum of the k terms; four per pass keeps acc's loads and stores off the bill."""
    for i in range(n):
        acc[i] = 0
    j = 0
    while j + 4 <= k:
        _add_terms4(acc, B, rw, oa, ob, j, n)
        j += 4
    while j < k:
        _add_terms1(acc, B, rw, oa, ob, j, n)
        j += 1


@njit(cache=True, nogil=True, error_model="numpy")
def _focal_mean_block(
    x: np.ndarray,
    hw: np.ndarray,
    groups: np.ndarray,
    x0: int,
    x1: int,
    out: np.ndarray,
    P: np.ndarray,
    C: np.ndarray,
    acc: np.ndarray,
    cnt: np.ndarray,
    cfull: np.ndarray,
    colcnt: np.ndarray,
    rw: np.ndarray,
    oa: np.ndarray,
    ob: np.ndarray,
) -> bool:
    """Focal mean of output columns x0..x1-1, all rows; True if an infinity spoilt the sums.

    P (float64) and C (counts) hold, by row: the ring of 2 r + 2 prefix rows, one running sum
    per multi-row group, then a row of zeros that stands in for rows outside the image.
    Local column j of a prefix row is image column x0 - px + j - 1 (P[.., 0] = 0).
    """
    rows, cols = x.shape
    r = hw.shape[0] - 1
    px = hw[0]
    ring = 2 * r + 2
    ng = groups.shape[0]
    zrow = ring + ng
    n = x1 - x0
    c0 = max(x0 - px, 0)
    c1 = min(x1 + px, cols)
    lead = c0 - (x0 - px)
    width = n + 2 * px
    m = width + 1
    for j in range(m):
        P[zrow, j] = 0.0
        C[zrow, j] = 0
    for g in range(ng):
        for j in range(m):
            P[ring + g, j] = 0.0
            C[ring + g, j] = 0
    # Window sizes of a NaN-free block: columns in the image per disk row, summed.
    for d in range(r + 1):
        w = hw[d]
        for i in range(n):
            xx = x0 + i
            colcnt[d, i] = min(xx + w, cols - 1) - max(xx - w, 0) + 1
    for i in range(n):
        cfull[i] = 0
    for dy in range(-r, r + 1):
        for i in range(n):
            cfull[i] += colcnt[abs(dy), i]
    nan_mode = False
    has_inf = False
    for y in range(-r - 1, rows):
        z = y + r
        if 0 <= z < rows:
            if nan_mode:
                flags = _prefix_count_row(x, z, c0, c1, lead, width, P, C, z % ring)
            else:
                flags = _prefix_row(x, z, c0, c1, lead, width, P, z % ring)
            has_inf = has_inf or (flags & _HAS_INF) != 0
            if not nan_mode and flags & _HAS_NAN:
                # First NaN: count every row still in the ring, and the group sums at y - 1.
                nan_mode = True
                for zz in range(max(z - ring + 1, 0), z + 1):
                    _count_row(x, zz, c0, c1, lead, width, C, zz % ring)
                for g in range(ng):
                    if groups[g, 0] < groups[g, 1]:
                        _group_rebuild(
                            C, ring + g, ring, y - 1, groups[g, 0], groups[g, 1], rows, m
                        )
        # Group sums step from y - 1 to y:
        # T_g += P[y + d1] - P[y - 1 + d0] + P[y - d0] - P[y - 1 - d1].
        reanchor = (y + r + 1) % _REANCHOR_ROWS == 0
        for g in range(ng):
            d0 = groups[g, 0]
            d1 = groups[g, 1]
            if d0 == d1:
                continue
            if reanchor:
                _group_rebuild(P, ring + g, ring, y, d0, d1, rows, m)
                if nan_mode:
                    _group_rebuild(C, ring + g, ring, y, d0, d1, rows, m)
                continue
            ra = y + d1
            rb = y - 1 + d0
            rc = y - d0
            rd = y - 1 - d1
            ra = ra % ring if 0 <= ra < rows else zrow
            rb = rb % ring if 0 <= rb < rows else zrow
            rc = rc % ring if 0 <= rc < rows else zrow
            rd = rd % ring if 0 <= rd < rows else zrow
            _group_step(P, ring + g, ra, rb, rc, rd, m)
            if nan_mode:
                _group_step(C, ring + g, ra, rb, rc, rd, m)
        if y < 0:
            continue
        # The terms of output row y: the centre row, then each group or single row pair.
        k = 0
        rw[k] = y % ring
        oa[k] = px + hw[0] + 1
        ob[k] = px - hw[0]
        k += 1
        for g in range(ng):
            d0 = groups[g, 0]
            d1 = groups[g, 1]
            w = groups[g, 2]
            if d0 == d1:
                for yy in (y - d0, y + d0):
                    if 0 <= yy < rows:
                        rw[k] = yy % ring
                        oa[k] = px + w + 1
                        ob[k] = px - w
                        k += 1
            else:
                rw[k] = ring + g
                oa[k] = px + w + 1
                ob[k] = px - w
                k += 1
        _sum_terms(acc, P, rw, oa, ob, k, n)
        yo = max(y, 0)
        xo = max(x0, 0)
        if nan_mode:
            _sum_terms(cnt, C, rw, oa, ob, k, n)
            for i in range(n):
                c = cnt[i]
                out[yo, xo + i] = acc[i] / c if c > 0 else np.nan
        elif y - r >= 0 and y + r < rows:
            for i in range(n):
                out[yo, xo + i] = acc[i] / cfull[i]
        else:
            for i in range(n):
                cnt[i] = 0
            for yy in range(max(y - r, 0), min(y + r, rows - 1) + 1):
                d = abs(yy - y)
                for i in range(n):
                    cnt[i] += colcnt[d, i]
            for i in range(n):
                out[yo, xo + i] = acc[i] / cnt[i]
    return has_inf


@njit(cache=True, nogil=True, error_model="numpy")
def _focal_mean_2d(
    x: np.ndarray,
    hw: np.ndarray,
    groups: np.ndarray,
    block: int,
    counts: np.ndarray,
    out: np.ndarray,
) -> bool:
    """Run the blocks; `counts` is an empty array whose dtype (uint16 or int32) the counts take.

    Returns True if some row held an infinity (or its sum overflowed): out is then unreliable.
    """
    cols = x.shape[1]
    r = hw.shape[0] - 1
    px = hw[0]
    ring = 2 * r + 2
    ng = groups.shape[0]
    nb = min(block, cols)
    m = nb + 2 * px + 1
    P = np.empty((ring + ng + 1, m))
    C = np.empty((ring + ng + 1, m), counts.dtype)
    acc = np.empty(nb)
    cnt = np.empty(nb, counts.dtype)
    cfull = np.empty(nb, np.int64)
    colcnt = np.empty((r + 1, nb), np.int64)
    rw = np.empty(2 * r + 2, np.int64)
    oa = np.empty(2 * r + 2, np.int64)
    ob = np.empty(2 * r + 2, np.int64)
    has_inf = False
    for x0 in range(0, cols, block):
        x1 = min(x0 + block, cols)
        has_inf |= _focal_mean_block(
            x, hw, groups, x0, x1, out, P, C, acc, cnt, cfull, colcnt, rw, oa, ob
        )
    return has_inf


def focal_mean(x: np.ndarray, radius: Radius) -> np.ndarray:
    """NaN-aware mean over a circular window of `radius` pixels (float32 out).

    out[y, x] = mean of the valid x[y + dy, x + dx] with dy^2 + dx^2 <= radius^2 (for a
    (radius_y, radius_x) pair, the ellipse of the module docstring). NaN pixels and
    pixels outside the array are skipped, so the edge windows are smaller rather than padded;
    NaN where the window holds no valid pixel. radius 0 is the identity (NaN stays NaN).
    A tile cut with a halo of `radius` pixels (clipped at the image edge) and cropped back
    gives the same values as the whole image.

    Cost: each input row becomes a float64 prefix-sum row once; a disk row's sum is then two
    reads, disk rows of equal half-width share a running vertical sum (16 terms at r = 15
    instead of 31), and the terms are added four per vectorised pass. Nothing grows with the
    window area (pi r^2), only with the number of distinct disk rows; where a block holds no
    NaN the window sizes are geometric and no counts are kept.

    Precision: sums are float64. Prefix sums restart every 2048 columns and running group sums
    every 256 rows, so the absolute error of a window sum stays below (2 r + 1) L^2 2^-52
    max|x| (L = block width + 2 r; about 3e-8 max|x| at r = 15, typically far less), where
    max|x| is over the rows involved: below float32 resolution unless bright and dark pixels
    six or more decades apart share rows. For float32 input whose magnitudes span less than
    about three decades every partial sum is exact, and tiles equal the whole image bitwise;
    otherwise they agree to that bound. Infinities follow NumPy (a window with +inf has mean
    +inf, with both signs NaN) through a slower exact path.

    Raises InputError for a non-2-D or non-float image and for a negative or non-integer radius.
    """
    img = contiguous_image(x)
    r = radii_yx(radius)
    out = np.empty(img.shape, dtype=np.float32)
    if img.size == 0:
        return out
    if r == (0, 0):
        out[...] = img
        return out
    if _focal_mean_into(img, r, out):
        # An infinity makes every later prefix sum of its row infinite, so redo the sums over
        # the finite pixels and apply NumPy's rules: a window with +inf (-inf) has mean +inf
        # (-inf), with both NaN. Rare (to_db of 0 gives -inf), so three passes are fine.
        infinite = np.isinf(img)
        _focal_mean_into(np.where(infinite, np.nan, img), r, out)
        reach = np.empty(img.shape, dtype=np.float32)
        _focal_mean_into(np.where(img == np.inf, 1.0, 0.0), r, reach)
        has_pos = reach > 0
        _focal_mean_into(np.where(img == -np.inf, 1.0, 0.0), r, reach)
        has_neg = reach > 0
        out[has_pos] = np.inf
        out[has_neg] = -np.inf
        out[has_pos & has_neg] = np.nan
    return out


def _focal_mean_into(img: np.ndarray, r: tuple[int, int], out: np.ndarray) -> bool:
    """Run the jitted focal mean (radii (ry, rx), not both 0) into out; True if an infinity
    was met."""
    rows, cols = img.shape
    hw = _clamped_half_widths(r, rows, cols)
    window = int(np.sum(2 * hw[np.abs(np.arange(-len(hw) + 1, len(hw)))] + 1))
    counts = np.empty(0, np.uint16 if window <= _UINT16_COUNTS_MAX else np.int32)
    # Equal blocks of at most _BLOCK_COLUMNS, so no thin last block pays the halo for little.
    n_blocks = -(-cols // _BLOCK_COLUMNS)
    block = -(-cols // n_blocks)
    return bool(_focal_mean_2d(img, hw, _row_groups(hw), block, counts, out))


def focal_mean_reference(x: np.ndarray, radius: Radius) -> np.ndarray:
    """Plain NumPy focal_mean: NaN-pad by the radius, add every disk offset's shifted image."""
    img = as_image(x, "x").astype(np.float64)
    ry, rx = radii_yx(radius)
    rows, cols = img.shape
    padded = np.pad(img, ((ry, ry), (rx, rx)), constant_values=np.nan)
    total = np.zeros((rows, cols))
    count = np.zeros((rows, cols))
    for dy, dx in disk_offsets((ry, rx)):
        shifted = padded[ry + dy : ry + dy + rows, rx + dx : rx + dx + cols]
        with np.errstate(invalid="ignore"):  # inf + -inf is NaN, as in np.nanmean
            total += np.where(np.isnan(shifted), 0.0, shifted)
        count += ~np.isnan(shifted)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32)
