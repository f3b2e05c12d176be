"""The commands' log on the terminal: ruinmap's own messages, one per line.

GDAL's libtiff reports a full disk itself (`_tiffWriteProc: No space left on device`, then
`TIFFAppendToStrip: Write error ...`), through rasterio's logger; ruinmap then says it once,
naming the file and the space it needs (`DiskFullError`), so those echoes are dropped.
"""

from __future__ import annotations

import logging

__all__ = ["log_to_terminal"]

_DISK_FULL_ECHOES = ("No space left on device", "Write error at scanline", "Write error on",
                     "TIFFAppendToStrip", "TIFFFlushData", "_tiffWriteProc")


class _DropDiskFullEchoes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("rasterio"):
            return True
        text = record.getMessage()
        return not any(echo in text for echo in _DISK_FULL_ECHOES)


def log_to_terminal() -> None:
    """Log to stderr, message only; ruinmap's INFO lines shown, GDAL's disk-full echoes not."""
    logging.basicConfig(format="%(message)s")
    logging.getLogger("ruinmap").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _DropDiskFullEchoes) for f in handler.filters):
            handler.addFilter(_DropDiskFullEchoes())
