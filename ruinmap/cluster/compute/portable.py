"""Task functions whose ruinmap errors reach the client as themselves.

A task's exception travels back pickled with its chain (`__cause__`, `__context__`). GDAL's
own exceptions (rasterio's `CPLE_*`, e.g. a full disk's "Write failed") do not unpickle, so
a ruinmap error raised while handling one (`raise DiskFullError(...) from None` still keeps
the context) would reach the client as a plain `Exception` carrying its repr, and the CLI
would print a traceback instead of the error's one line. `portable_errors` runs the task and
raises such an error afresh, without its chain; the worker's log keeps the original.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ruinmap.errors import RuinmapError

__all__ = ["portable_errors"]

T = TypeVar("T")


def portable_errors(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`func(*args, **kwargs)`; a RuinmapError it raises is raised again as a fresh error of
    the same type and message, without the exceptions chained under it."""
    try:
        return func(*args, **kwargs)
    except RuinmapError as exc:
        error = type(exc)(*exc.args)
    raise error  # outside the handler, so the new error has no context
