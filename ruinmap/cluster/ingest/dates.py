"""Acquisition dates of raster files: from their metadata tags, else from a date in their name.

Precedence, first match wins:

1. an acquisition tag (case-insensitive, default metadata domain): `RUINMAP_DATE`,
   `ACQUISITION_DATE`, `ACQUISITION_DATETIME`, `ACQUISITIONDATETIME`, `DATE_ACQUIRED`,
   `SENSING_TIME`, `SENSING_DATE`;
2. `TIFFTAG_DATETIME` (TIFF's "YYYY:MM:DD HH:MM:SS"); it is often the processing time rather
   than the acquisition time, which is why the acquisition tags above win over it;
3. a date in the file name: `2016-09-21`, `2016_09_21` or `20160921` (years 1950-2100, a real
   calendar day, not part of a longer run of digits; `20160921T105019` also matches). The
   first such date in the name is taken;
4. none: the caller keeps the order the files were given in.

Dates are returned as `numpy.datetime64[ns]`; the time of day is kept when the tag has one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

import numpy as np

ACQUISITION_TAGS = (
    "RUINMAP_DATE",
    "ACQUISITION_DATE",
    "ACQUISITION_DATETIME",
    "ACQUISITIONDATETIME",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "SENSING_DATE",
)
TIFF_DATETIME_TAG = "TIFFTAG_DATETIME"

# One separator used twice (\2 back-reference), so 2016-09_21 and 2016-0921 do not match.
_NAME_DATE = re.compile(r"(?<!\d)((?:19[5-9]\d|20\d\d|2100))([-_]?)(\d\d)\2(\d\d)(?!\d)")
_TAG_DATE = re.compile(
    r"^\s*(\d{4})[-:/_]?(\d\d)[-:/_]?(\d\d)"
    r"(?:[T\s_]?(\d\d):?(\d\d)(?::?(\d\d(?:\.\d+)?))?)?\s*(?:Z|[+-]00:?00|UTC)?\s*$",
    re.IGNORECASE,
)


def parse_date_text(text: str) -> np.datetime64 | None:
    """A date (and optional time of day, UTC) from tag text, or None when it is not a date.

    Accepts ISO 8601 (`2016-09-21`, `2016-09-21T10:50:19Z`), compact (`20160921T105019`) and
    TIFF (`2016:09:21 10:50:19`) forms. Offsets other than UTC are refused (None).
    """
    match = _TAG_DATE.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = match.groups()
    try:
        stamp = dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            0,
        )
    except ValueError:
        return None
    seconds = float(second) if second else 0.0
    if not 0 <= seconds < 61:
        return None
    base = np.datetime64(stamp.isoformat(), "ns")
    return base + np.timedelta64(round(seconds * 1e9), "ns")


def date_from_name(name: str) -> np.datetime64 | None:
    """The first calendar date in a file name (`2016-09-21`, `2016_09_21`, `20160921`), or None."""
    for match in _NAME_DATE.finditer(name):
        year, _, month, day = match.groups()
        try:
            day_ = dt.date(int(year), int(month), int(day))
        except ValueError:
            continue
        return np.datetime64(day_.isoformat(), "ns")
    return None


def date_from_tags(tags: Mapping[str, str]) -> tuple[np.datetime64, str] | None:
    """The acquisition date from metadata tags and the tag it came from, or None."""
    upper = {key.upper(): value for key, value in tags.items()}
    for key in (*ACQUISITION_TAGS, TIFF_DATETIME_TAG):
        value = upper.get(key)
        if value is None:
            continue
        parsed = parse_date_text(str(value))
        if parsed is not None:
            return parsed, key
    return None


def acquisition_date(tags: Mapping[str, str], name: str) -> tuple[np.datetime64 | None, str]:
    """The acquisition date of a file and where it came from (`tag:<KEY>`, `name` or `order`)."""
    from_tags = date_from_tags(tags)
    if from_tags is not None:
        return from_tags[0], f"tag:{from_tags[1]}"
    from_name = date_from_name(name)
    if from_name is not None:
        return from_name, "name"
    return None, "order"
