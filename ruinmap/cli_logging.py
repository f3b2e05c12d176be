"""The commands' log on the terminal: ruinmap's own messages, one per line.

GDAL's bundled libtiff writes its own lines straight to stderr on a full disk
(`_tiffWriteProc: No space left on device.`), outside Python's logging and outside rasterio's
error handlers, so they cannot be filtered here; ruinmap's one `DiskFullError` line, naming
the file and the space it needs, follows them.
"""

from __future__ import annotations

import logging

__all__ = ["log_to_terminal"]


def log_to_terminal() -> None:
    """Log to stderr, message only, with ruinmap's INFO lines shown."""
    logging.basicConfig(format="%(message)s")
    logging.getLogger("ruinmap").setLevel(logging.INFO)
