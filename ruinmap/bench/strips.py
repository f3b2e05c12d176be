"""Run a kernel over horizontal row strips on a thread pool: all cores, the way Dask threads do.

Our kernels release the GIL (numba `nogil=True`), as do most NumPy ufuncs and reductions, so
one process with one thread per core runs a strip per thread concurrently. Neighbourhood
kernels read `halo` extra rows above and below each strip and the extra output rows are cropped
(a view, no copy), so strips agree with the whole image; reductions hand their per-strip
partials to a combine function (e.g. `merge_label_stats`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np


def strip_bounds(rows: int, n_strips: int, quantum: int = 1) -> list[tuple[int, int]]:
    """Split `rows` into at most `n_strips` near-equal [start, stop) ranges.

    Every start is a multiple of `quantum` (e.g. a block_reduce factor, so no block straddles
    two strips); only the last strip may end off the quantum grid.
    """
    blocks = -(-rows // quantum)
    n = max(1, min(n_strips, blocks))
    edges = [min(rows, (blocks * i // n) * quantum) for i in range(n + 1)]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def map_strips(
    pool: Executor,
    n_strips: int,
    func: Callable[..., Any],
    arrays: Sequence[np.ndarray],
    *,
    halo: int = 0,
    quantum: int = 1,
) -> list[Any]:
    """`func(*strips)` for each row strip of `arrays` (sliced on axis -2), run on `pool`.

    With `halo` > 0 each call sees `halo` more rows on each side (clipped at the image edge)
    and its output, 2-D or stacked on leading axes, is cropped back to the strip's rows.
    Returns the per-strip results in row order.
    """
    rows = arrays[0].shape[-2]

    def one(bounds: tuple[int, int]) -> Any:
        r0, r1 = bounds
        s0, s1 = max(r0 - halo, 0), min(r1 + halo, rows)
        out = func(*(a[..., s0:s1, :] for a in arrays))
        if halo:
            out = out[..., r0 - s0 : r1 - s0, :]
        return out

    return list(pool.map(one, strip_bounds(rows, n_strips, quantum)))


def concat_strips(parts: Sequence[Any]) -> Any:
    """Join per-strip image outputs back into one image (for checks, outside any timing)."""
    return np.concatenate(parts, axis=-2)
