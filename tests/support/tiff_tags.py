"""The tags of a TIFF's first image, read from its bytes (classic TIFF and BigTIFF), so a test
sees what is inside the file itself, not what GDAL adds from side-cars."""

from __future__ import annotations

import struct
from pathlib import Path

# TIFF field types -> (struct code, size)
_TYPES = {1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 16: ("Q", 8), 12: ("d", 8)}


def first_ifd_tags(path: Path) -> dict[int, object]:
    """{tag: value} of the first IFD: ASCII tags as str, one number as int, else a tuple."""
    data = path.read_bytes()
    order = {b"II": "<", b"MM": ">"}[data[:2]]
    (magic,) = struct.unpack(order + "H", data[2:4])
    big = magic == 43
    if big:
        (offset,) = struct.unpack(order + "Q", data[8:16])
        (count,) = struct.unpack(order + "Q", data[offset:offset + 8])
        entry, head, inline = 20, offset + 8, 8
    else:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset:offset + 2])
        entry, head, inline = 12, offset + 2, 4
    tags: dict[int, object] = {}
    for i in range(count):
        raw = data[head + i * entry: head + (i + 1) * entry]
        tag, kind = struct.unpack(order + "HH", raw[:4])
        n = struct.unpack(order + ("Q" if big else "I"), raw[4:12] if big else raw[4:8])[0]
        if kind not in _TYPES:
            continue
        code, size = _TYPES[kind]
        field = raw[12:] if big else raw[8:]
        if n * size > inline:
            (pointer,) = struct.unpack(order + ("Q" if big else "I"), field)
            field = data[pointer:pointer + n * size]
        if kind == 2:
            tags[tag] = field[:n].rstrip(b"\0").decode("utf-8", "replace")
        else:
            values = struct.unpack(order + code * n, field[: n * size])
            tags[tag] = values[0] if n == 1 else values
    return tags
