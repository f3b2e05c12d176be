"""The words of a figure that come from its inputs: the imagery dates of each side and the
source credit line, from the sources a store records (`path`, `side`, `time` of each file).

The credit of Copernicus Sentinel imagery follows the Sentinel data legal notice ("Contains
modified Copernicus Sentinel data [year]"); files whose names are not Sentinel products (by
their mission prefix S1A/S1B/S1C/S2A/S2B/S2C, or "sentinel" in the name) are credited by
name, so a user's own imagery is never credited to Copernicus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

__all__ = ["SideDates", "default_credit", "imagery_dates", "imagery_dates_text"]

_SENTINEL = re.compile(r"(^s[12][abc][_-])|sentinel", re.IGNORECASE)
_MAX_NAMED_FILES = 4


@dataclass(frozen=True)
class SideDates:
    """The first and last acquisition date (ISO, day precision) of one side, and how many."""

    first: str
    last: str
    count: int

    def __str__(self) -> str:
        dates = self.first if self.first == self.last else f"{self.first} to {self.last}"
        return f"{dates} ({self.count} date{'s' if self.count != 1 else ''})"


def imagery_dates(sources: Sequence[Mapping[str, Any]]) -> dict[str, SideDates]:
    """{side: SideDates} of the dated sources (undated ones are left out)."""
    days: dict[str, set[str]] = {}
    for source in sources:
        if source.get("time"):
            days.setdefault(str(source.get("side")), set()).add(str(source["time"])[:10])
    return {side: SideDates(min(d), max(d), len(d)) for side, d in sorted(days.items())}


def imagery_dates_text(sources: Sequence[Mapping[str, Any]]) -> str | None:
    """"Imagery: before 2022-11-23 to 2023-01-10 (5 dates); after ..." or None if undated."""
    dates = imagery_dates(sources)
    parts = [f"{label} {dates[side]}" for side, label in (("pre", "before"), ("post", "after"))
             if side in dates]
    return f"Imagery: {'; '.join(parts)}" if parts else None


def _name(path: str) -> str:
    return PurePosixPath(path.rstrip("/")).name or path


def default_credit(sources: Sequence[Mapping[str, Any]]) -> str:
    """The credit line of the imagery (module doc); "" when there are no sources."""
    names = sorted({_name(str(s.get("path", ""))) for s in sources if s.get("path")})
    if not names:
        return ""
    if all(_SENTINEL.search(n) for n in names):
        years = sorted({str(s["time"])[:4] for s in sources if s.get("time")})
        span = "" if not years else (f" [{years[0]}]" if len(years) == 1
                                      else f" [{years[0]}-{years[-1]}]")
        return f"Contains modified Copernicus Sentinel data{span}"
    shown = ", ".join(names[:_MAX_NAMED_FILES])
    more = len(names) - _MAX_NAMED_FILES
    return f"Imagery: {shown}" + (f" and {more} more file{'s' if more > 1 else ''}"
                                  if more > 0 else "")
