"""A tile's polygons reach its task as a file in the job's work folder, not as a task argument.

At country scale a tile's footprints are about 0.8 MiB of WKB (6,000-18,000 footprints, a
second time within the built-up mask's margin). Sent as task arguments, 1,500 tiles put
1.25 GiB through the scheduler, which keeps every pending task's arguments in its memory
until the task runs. Here the client writes each tile's `TileVectors` to
`.ruinmap-job/vectors/<pass>_<iy>_<ix>.npz` (local or s3://, where the workers already write
the partials), the task carries only a `VectorsFile` (the location and the sha256, about
200 bytes), and the worker reads and checks the file when the tile starts. The files are
removed once their pass has finished; a crashed run's are written again by the next.

The `.npz` holds no pickles (loaded with `allow_pickle=False`): the distinct WKB geometries
are their bytes concatenated and their offsets, and each WKB column indices into them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ruinmap.cluster.job.polygons import TileVectors
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.storage.checksums import digest
from ruinmap.cluster.storage.location import Location
from ruinmap.errors import StoreError

__all__ = ["VECTORS_DIR", "VectorsFile", "load_tile_vectors", "remove_vector_files",
           "vectors_bytes", "write_vector_files"]

VECTORS_DIR = "vectors"
_TILE_KEY = "__tile_key__"
_WKB_BYTES = "__wkb_bytes__"
_WKB_OFFSETS = "__wkb_offsets__"
_WKB_INDEX = ".wkb_index"


@dataclass(frozen=True)
class VectorsFile:
    """Where the polygons of tile `tile_key` wait for its task, and the sha256 of the file."""

    location: Location
    tile_key: str
    sha256: str


def _pack_wkb(values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """WKB objects as (their bytes concatenated, uint8; offsets, int64 of length n + 1)."""
    lengths = np.fromiter((len(v) for v in values), np.int64, count=len(values))
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.frombuffer(b"".join(values), np.uint8), offsets


def _unpack_wkb(data: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    raw = data.tobytes()
    return [raw[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]


def vectors_bytes(vectors: TileVectors, tile_key: str) -> bytes:
    """`vectors` of tile `tile_key` as the `.npz` `write_vector_files` writes: the WKB
    columns share one table of distinct geometries (a footprint is sent to a tile once to
    score and again within the mask's margin), each column its indices into it."""
    arrays: dict[str, Any] = {_TILE_KEY: np.array(tile_key)}
    table: dict[bytes, int] = {}
    for field in fields(TileVectors):
        value = np.asarray(getattr(vectors, field.name))
        if value.dtype == object:
            arrays[field.name + _WKB_INDEX] = np.fromiter(
                (table.setdefault(wkb, len(table)) for wkb in value), np.int64, count=len(value))
        else:
            arrays[field.name] = value
    arrays[_WKB_BYTES], arrays[_WKB_OFFSETS] = _pack_wkb(list(table))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # uncompressed: WKB coordinates barely compress
    return buffer.getvalue()


def write_vector_files(work_dir: Location, pass_name: str, tiles: Sequence[Tile],
                       vectors: Sequence[TileVectors]) -> list[VectorsFile]:
    """Write the polygons of each tile for the pass `pass_name` ("tile", "classes") into the
    work folder; returns what each task needs to read its own (`load_tile_vectors`)."""
    folder = work_dir.join(VECTORS_DIR)
    folder.ensure_folder()
    refs = []
    for tile, vec in zip(tiles, vectors, strict=True):
        data = vectors_bytes(vec, tile.key)
        location = folder.join(f"{pass_name}_{tile.iy}_{tile.ix}.npz")
        location.write_durably(data)
        refs.append(VectorsFile(location, tile.key, digest(data)))
    return refs


def load_tile_vectors(ref: VectorsFile) -> TileVectors:
    """The polygons `write_vector_files` wrote; StoreError naming the file when it is missing,
    was changed since (sha256) or is not the tile's."""
    try:
        data = ref.location.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"{ref.location}: the polygons of tile {ref.tile_key} are missing "
                         "(the job's work folder was changed while the job ran?)") from None
    if digest(data) != ref.sha256:
        raise StoreError(f"{ref.location}: the polygons of tile {ref.tile_key} do not match "
                         "their checksum (changed while the job ran)")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        if str(npz[_TILE_KEY]) != ref.tile_key:
            raise StoreError(f"{ref.location}: holds the polygons of tile "
                             f"{str(npz[_TILE_KEY])!r}, not of {ref.tile_key!r}")
        table = np.empty(len(npz[_WKB_OFFSETS]) - 1, object)
        table[:] = _unpack_wkb(npz[_WKB_BYTES], npz[_WKB_OFFSETS])
        values: dict[str, Any] = {}
        for field in fields(TileVectors):
            if field.name + _WKB_INDEX in npz.files:
                values[field.name] = table[npz[field.name + _WKB_INDEX]]
            else:
                values[field.name] = npz[field.name]
    return TileVectors(**values)


def remove_vector_files(work_dir: Location) -> None:
    """Remove every tile's polygons (after a pass; the next run writes its own)."""
    work_dir.join(VECTORS_DIR).remove_tree()
