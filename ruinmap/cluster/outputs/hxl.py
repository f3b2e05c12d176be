"""`districts_hxl.csv`: the district table as an HXL-tagged CSV, so it drops into HDX.

HXL (Humanitarian Exchange Language, https://hxlstandard.org/standard/) adds one row of
hashtags under the header row; tools such as libhxl and HDX find columns by tag, not by name.
The district key is the admin unit's code (`#adm2+code`: an OCHA P-code when the districts'
key field holds them), its name `#adm2+name`, at the admin level the job names
(`[districts] admin_level`, default 2). Damaged buildings are `#affected+buildings+damaged`
and all buildings `#affected+buildings+total`, after HXL's `#affected` (the number affected)
and its `+total` attribute; areas carry `+km2`, shares `+ratio` (0 to 1), scores are
`#indicator+score`. A column without a known meaning is tagged `#meta+<its name>`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ruinmap.cluster.storage.durable import atomic_path
from ruinmap.errors import InputError

__all__ = ["DISTRICTS_HXL", "MAX_ADMIN_LEVEL", "hxl_tags", "write_hxl_csv"]

DISTRICTS_HXL = "districts_hxl.csv"
#: HXL's dictionary has #adm1 to #adm5
MAX_ADMIN_LEVEL = 5

_FIXED: dict[str, str] = {
    "area_km2": "#meta+area+km2",
    "valid_km2": "#meta+area+valid+km2",
    "damaged_km2": "#affected+area+damaged+km2",
    "damaged_fraction": "#affected+area+damaged+ratio",
    "built_km2": "#meta+area+built+km2",
    "damaged_built_km2": "#affected+area+built+damaged+km2",
    "damaged_built_fraction": "#affected+area+built+damaged+ratio",
    "mean_score": "#indicator+score+mean",
    "p90_score": "#indicator+score+p90",
    "buildings": "#affected+buildings+total",
    "buildings_damaged": "#affected+buildings+damaged",
    "buildings_damaged_fraction": "#affected+buildings+damaged+ratio",
    "buildings_damaged_expected": "#affected+buildings+damaged+expected",
    "buildings_damaged_low": "#affected+buildings+damaged+low",
    "buildings_damaged_high": "#affected+buildings+damaged+high",
    "buildings_damaged_level": "#meta+interval+level",
    "buildings_damaged_interval": "#meta+interval+method",
}
_CLASS = re.compile(r"^class_(.+)_km2$")


def _attribute(text: str) -> str:
    # HXL attributes are lower-case letters, digits and underscores, starting with a letter
    slug = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    return slug if slug[:1].isalpha() else f"c{slug}"


def hxl_tags(columns: Sequence[str], admin_level: int = 2) -> list[str]:
    """The HXL hashtag of each district column, in order (module doc)."""
    if not 1 <= admin_level <= MAX_ADMIN_LEVEL:
        raise InputError(f"districts.admin_level: {admin_level} is not an HXL admin level; "
                         f"use 1 to {MAX_ADMIN_LEVEL} (#adm1 to #adm5)")
    adm = f"#adm{admin_level}"
    tags = []
    for column in columns:
        if column == "district_id":
            tags.append(f"{adm}+code")
        elif column == "name":
            tags.append(f"{adm}+name")
        elif column in _FIXED:
            tags.append(_FIXED[column])
        elif match := _CLASS.match(column):
            tags.append(f"#affected+area+km2+class_{_attribute(match.group(1))}")
        else:
            tags.append(f"#meta+{_attribute(column)}")
    return tags


def write_hxl_csv(frame: pd.DataFrame, path: Path, admin_level: int = 2, *,
                  float_format: str = "%.6g") -> Path:
    """Write `frame` (no geometry column) as CSV with an HXL hashtag row under the header."""
    tags = hxl_tags([str(c) for c in frame.columns], admin_level)
    cells = frame.astype(object)
    for column in frame.columns:  # the tag row makes every column text: format floats here
        if pd.api.types.is_float_dtype(frame[column]):
            cells[column] = [("" if pd.isna(v) else float_format % v) for v in frame[column]]
    tagged = pd.concat([pd.DataFrame([tags], columns=frame.columns), cells],
                       ignore_index=True)
    with atomic_path(path) as tmp:
        # the key stays text (a P-code such as SY0200 or 0102 keeps its leading zeros)
        tagged.to_csv(tmp, index=False, float_format=float_format, lineterminator="\n")
    return path
