"""The project's own exceptions.

Every error a user can cause (bad arrays, bad files, a bad job spec) is a `RuinmapError`,
with a message that names the input, says what is wrong and, where it can, what to do.
`InputError` also derives from `ValueError` so generic callers that catch `ValueError`
still see bad input as bad input.
"""

from __future__ import annotations


class RuinmapError(Exception):
    """Base class of every error ruinmap raises on purpose."""


class InputError(RuinmapError, ValueError):
    """An input array, raster or vector file cannot be used as given."""


class SpecError(RuinmapError, ValueError):
    """A job specification or request is malformed or names something that does not exist."""


class StoreError(RuinmapError):
    """An output store is missing, foreign, incomplete or inconsistent."""


class ClusterError(RuinmapError):
    """The Dask cluster could not be started, reached or used."""


class DiskFullError(RuinmapError):
    """A file could not be written: its file system is full (or the quota is used up)."""


class ConfinementError(InputError):
    """An input file resolves (or was swapped to resolve) outside the allowed data roots."""
