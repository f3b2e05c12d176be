"""A window of an imagery array (time, band, y, x), decoded straight from its local shards.

A tile reads its window plus a halo of ~17 px. With 512 px inner chunks, the halo reaches into
a ring of neighbouring chunks: a 2048² tile decodes 36 chunks a band and date instead of 16,
and through zarr's general selection path a padded read cost 2.8 times the CPU of the same
window without its halo (zarr 3.1, blosc-zstd). This reader decodes each inner chunk the
window touches once, straight into the block, and of a chunk above or below the window only
the rows it needs: blosc compresses a chunk in independent blocks (32 KiB for our chunks), so
`blosc_getitem` decodes 17 rows of a 512² chunk for ~7 % of a whole chunk's decode. The ring
left and right of the window still costs whole chunks (every row holds the halo's columns).

It reads the layout ingest writes (`arrays.write_template`): a local store, one sharding
codec with its index at the end (bytes + crc32c), inner chunks of one date and band, and
inner codecs bytes (little-endian) then blosc, zstd or nothing. Anything else, and every
store in object storage, is read through zarr, with the same result.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Any

import google_crc32c
import numcodecs.blosc
import numpy as np
import zarr
from numcodecs.zstd import Zstd
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation

from ruinmap.cluster.storage.arrays import open_array, shard_file
from ruinmap.cluster.storage.location import Location
from ruinmap.errors import StoreError

__all__ = ["ShardLayout", "read_window"]

#: the index entry of an inner chunk the shard does not hold (all fill value)
_MISSING = np.uint64(2**64 - 1)


@dataclass(frozen=True)
class ShardLayout:
    """What the reader needs of a 4-d sharded array: shapes, dtype, fill and inner codec."""

    shape: tuple[int, ...]
    shard: tuple[int, ...]
    inner: tuple[int, ...]
    dtype: np.dtype[Any]
    fill_value: Any
    codec: str  # "blosc", "zstd" or "raw"

    @property
    def chunks_per_shard(self) -> tuple[int, ...]:
        return tuple(s // i for s, i in zip(self.shard, self.inner, strict=True))

    @classmethod
    def of(cls, array: zarr.Array) -> ShardLayout | None:
        """The layout of `array`, or None when this reader does not know it (module doc)."""
        meta = array.metadata
        codecs: tuple[Any, ...] = tuple(getattr(meta, "codecs", ()))
        if array.ndim != 4 or len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
            return None
        sharding = codecs[0]
        inner = tuple(sharding.chunk_shape)
        index_codecs = tuple(sharding.index_codecs)
        if (inner[:2] != (1, 1) or sharding.index_location != ShardingCodecIndexLocation.end
                or len(index_codecs) != 2 or not _is_little_bytes(index_codecs[0])
                or not isinstance(index_codecs[1], Crc32cCodec)):
            return None
        inner_codecs = tuple(sharding.codecs)
        if not inner_codecs or not _is_little_bytes(inner_codecs[0]):
            return None
        rest = inner_codecs[1:]
        if not rest:
            codec = "raw"
        elif len(rest) == 1 and isinstance(rest[0], BloscCodec):
            codec = "blosc"
        elif len(rest) == 1 and isinstance(rest[0], ZstdCodec):
            codec = "zstd"
        else:
            return None
        shard = tuple(array.shards or ())
        if len(shard) != 4 or any(s % i for s, i in zip(shard, inner, strict=True)):
            return None
        dtype = np.dtype(array.dtype).newbyteorder("<")
        return cls(tuple(array.shape), shard, inner, dtype, array.fill_value, codec)


def _is_little_bytes(codec: object) -> bool:
    return isinstance(codec, BytesCodec) and (codec.endian is None
                                              or codec.endian.value == "little")


def read_window(location: Location, name: str, window: tuple[int, int, int, int],
                token: str = "", first: int = 0) -> np.ndarray:
    """The (time, band, rows, cols) block of array `name` over `window` = (row0, col0, row1,
    col1), every date from index `first` on and every band, in the array's dtype; equal to
    zarr's `array[first:, :, row0:row1, col0:col1]`.

    StoreError when a shard's index or an inner chunk does not decode (a damaged store).
    """
    array = open_array(location, name, "r", token)
    layout = None if location.is_remote else ShardLayout.of(array)
    r0, c0, r1, c1 = window
    if (layout is None or not 0 <= r0 < r1 <= layout.shape[2]
            or not 0 <= c0 < c1 <= layout.shape[3] or not 0 <= first <= layout.shape[0]):
        return np.asarray(array[first:, :, r0:r1, c0:c1])
    # every pixel is written once below, by its chunk or as fill: no second pass over memory
    block = np.empty((layout.shape[0] - first, layout.shape[1], r1 - r0, c1 - c0),
                     layout.dtype)
    for coords in _shards_over(layout, window, first):
        _read_shard(shard_file(location, array, coords), layout, coords, window, block, first)
    return block


def _shards_over(layout: ShardLayout, window: tuple[int, int, int, int], first: int
                 ) -> Iterator[tuple[int, ...]]:
    r0, c0, r1, c1 = window
    st, sb, sy, sx = layout.shard
    yield from product(range(first // st, -(-layout.shape[0] // st)),
                       range(-(-layout.shape[1] // sb)),
                       range(r0 // sy, -(-r1 // sy)), range(c0 // sx, -(-c1 // sx)))


def _read_shard(path: Location, layout: ShardLayout, coords: tuple[int, ...],
                window: tuple[int, int, int, int], block: np.ndarray, first: int) -> None:
    """Decode the inner chunks of shard `coords` (file `path`) that `window` touches into
    `block` (whose first date is `first`); an absent shard is all fill value (zarr stores
    none)."""
    r0, c0, r1, c1 = window
    _, _, iy, ix = layout.inner
    n_t, n_b, n_y, n_x = layout.chunks_per_shard
    t0, b0 = coords[0] * layout.shard[0], coords[1] * layout.shard[1]
    ts = range(max(t0, first), min(t0 + n_t, layout.shape[0]))
    bs = range(b0, min(b0 + n_b, layout.shape[1]))
    y_base, x_base = coords[2] * layout.shard[2], coords[3] * layout.shard[3]
    ys = range(max(r0, y_base) // iy, (min(r1, y_base + layout.shard[2]) - 1) // iy + 1)
    xs = range(max(c0, x_base) // ix, (min(c1, x_base + layout.shard[3]) - 1) // ix + 1)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        fd = None
    try:
        index = None if fd is None else _shard_index(fd, path, layout)
        for t, b, cy, cx in product(ts, bs, ys, xs):
            # the chunk's rows and columns inside the window, chunk-relative
            y0, y1 = max(r0, cy * iy) - cy * iy, min(r1, (cy + 1) * iy) - cy * iy
            x0, x1 = max(c0, cx * ix) - cx * ix, min(c1, (cx + 1) * ix) - cx * ix
            target = block[t - first, b, cy * iy + y0 - r0:cy * iy + y1 - r0,
                           cx * ix + x0 - c0:cx * ix + x1 - c0]
            entry = None if index is None else index[t - t0, b - b0, cy % n_y, cx % n_x]
            if fd is None or entry is None or (entry[0] == _MISSING and entry[1] == _MISSING):
                target[...] = layout.fill_value  # zarr stores no chunk (or shard) of fill
                continue
            data = os.pread(fd, int(entry[1]), int(entry[0]))
            target[...] = _decode_rows(data, layout, y0, y1, path)[:, x0:x1]
    finally:
        if fd is not None:
            os.close(fd)


def _shard_index(fd: int, path: Location, layout: ShardLayout) -> np.ndarray:
    """The shard's (offset, nbytes) per inner chunk, its crc32c checked."""
    n_chunks = int(np.prod(layout.chunks_per_shard))
    size = n_chunks * 16 + 4
    length = os.fstat(fd).st_size
    raw = os.pread(fd, size, length - size) if length >= size else b""
    if len(raw) != size or google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
        raise StoreError(f"{path}: the shard's index is damaged (truncated or checksum "
                         "mismatch); ingest the imagery again (`ruinmap ingest --overwrite`)")
    return np.frombuffer(raw[:-4], "<u8").reshape(*layout.chunks_per_shard, 2)


def _decode_rows(data: bytes, layout: ShardLayout, y0: int, y1: int, path: Location
                 ) -> np.ndarray:
    """Rows y0:y1 of the inner chunk encoded in `data`, (rows, inner cols)."""
    _, _, iy, ix = layout.inner
    itemsize = layout.dtype.itemsize
    try:
        if layout.codec == "blosc" and y1 - y0 < iy:
            raw = _blosc_rows(data, y0 * ix, (y1 - y0) * ix, itemsize)
            return np.frombuffer(raw, layout.dtype).reshape(y1 - y0, ix)
        if layout.codec == "blosc":
            raw = numcodecs.blosc.decompress(data)
        elif layout.codec == "zstd":
            raw = Zstd().decode(data)
        else:
            raw = data
        return np.frombuffer(raw, layout.dtype).reshape(iy, ix)[y0:y1]
    except (RuntimeError, ValueError) as exc:
        raise StoreError(f"{path}: an inner chunk does not decode ({exc}); ingest the "
                         "imagery again (`ruinmap ingest --overwrite`)") from None


@lru_cache(maxsize=1)
def _blosc_getitem() -> Any:
    """c-blosc's `blosc_getitem` from the library numcodecs bundles (None if it is not
    exported: then whole chunks are decoded)."""
    try:
        function = ctypes.CDLL(numcodecs.blosc.__file__).blosc_getitem
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


# c-blosc 1.x keeps per-call state in blosc_getitem; the lock is insurance against a build
# that does not, and costs nothing next to a decode
_GETITEM_LOCK = threading.Lock()


def _blosc_rows(data: bytes, start: int, count: int, itemsize: int) -> bytes:
    """Items start:start+count of a blosc buffer, decoding only the blocks that hold them."""
    getitem = _blosc_getitem()
    typesize = data[3] if len(data) > 3 else 0  # blosc 1 header: the items' size, byte 3
    if getitem is None or not typesize or (start * itemsize) % typesize \
            or (count * itemsize) % typesize:
        raw = numcodecs.blosc.decompress(data)
        return bytes(raw[start * itemsize:(start + count) * itemsize])
    out = ctypes.create_string_buffer(count * itemsize)
    with _GETITEM_LOCK:
        done = getitem(data, start * itemsize // typesize, count * itemsize // typesize, out)
    if done != count * itemsize:
        raise ValueError(f"blosc_getitem returned {done}")
    return out.raw
