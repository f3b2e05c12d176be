"""Windows of a large 2-D raster read piece by piece: whole storage chunks, bounded in bytes in
both directions, so a reader's memory stays the same whatever the raster's width (a full-width
strip of a 32768 px wide score, one shard of rows high, is 256 MB of float32)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["raster_windows", "source_chunk_shape", "window_shape"]


def source_chunk_shape(source: Any) -> tuple[int, int] | None:
    """(rows, cols) of one storage chunk of `source` (a zarr array's inner chunk, which it
    reads on its own even inside a shard; a dask array's first block), or None."""
    chunks = getattr(source, "chunks", None)
    if not chunks or len(chunks) != 2:
        return None
    sides = [side[0] if isinstance(side, tuple) and side else side for side in chunks]
    if all(isinstance(side, (int, np.integer)) and side > 0 for side in sides):
        return int(sides[0]), int(sides[1])
    return None


def window_shape(shape: tuple[int, int], itemsize: int, *, max_bytes: int,
                 multiple: tuple[int, int] = (1, 1),
                 chunks: tuple[int, int] | None = None) -> tuple[int, int]:
    """(rows, cols) of the full windows `raster_windows` cuts: sides whole multiples of
    `multiple` and of `chunks` (their least common multiple, the "unit"); full-width when a
    unit of rows of the whole width fits `max_bytes`, else as many units of columns as fit (at
    least one); then as many units of rows as fit (at least one)."""
    height, width = shape
    chunk_rows, chunk_cols = chunks or (1, 1)
    unit_rows = math.lcm(multiple[0], chunk_rows)
    unit_cols = math.lcm(multiple[1], chunk_cols)
    budget = max(max_bytes // max(itemsize, 1), 1)  # pixels
    cols = min(-(-width // unit_cols) * unit_cols,
               max(unit_cols, budget // unit_rows // unit_cols * unit_cols))
    rows = max(unit_rows, budget // cols // unit_rows * unit_rows)
    return min(rows, -(-height // unit_rows) * unit_rows), cols


def raster_windows(shape: tuple[int, int], itemsize: int, *, max_bytes: int,
                   multiple: tuple[int, int] = (1, 1),
                   chunks: tuple[int, int] | None = None
                   ) -> Iterator[tuple[slice, slice]]:
    """Windows (row slice, column slice) covering a raster of `shape`, row after row of
    windows, each of `window_shape` cut where the raster ends."""
    height, width = shape
    rows, cols = window_shape(shape, itemsize, max_bytes=max_bytes, multiple=multiple,
                              chunks=chunks)
    for r0 in range(0, height, rows):
        for c0 in range(0, width, cols):
            yield slice(r0, min(r0 + rows, height)), slice(c0, min(c0 + cols, width))
