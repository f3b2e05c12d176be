"""UNOSAT damage-site tables: the class codes and the layouts they are published in.

UNOSAT Comprehensive Damage Assessment (CDA) points carry one class per assessment date, in
one of three layouts, all turned here into the same long records (one row per site and date):

- date columns: one column per assessment date, named as an ISO date (`2014-05-01`), holding
  the class then, empty where the site was not recorded (the layout of the reshaped Syria
  files in github.com/arogyakoirala/destruction);
- UNOSAT wide: the CDA attribute pairs `SensorDate` / `Main_Damage_Site_Class`,
  `SensorDate_2` / `Main_Damage_Site_Class_2`, ...;
- long: one row per site and date in `date_field` / `class_field`, sites told apart by
  identical geometry.

A table with one class field and no dates (any point or polygon label layer) is the fourth,
trivial layout. Class codes (CDA convention): 1 destroyed, 2 severe, 3 moderate, 4 possible
damage, 0 or 6 no visible damage, -1 no coverage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from ruinmap.errors import InputError

__all__ = ["CLASS_FIELD_CANDIDATES", "NO_COVERAGE", "UNOSAT_CLASSES", "UNOSAT_DAMAGED",
           "UNOSAT_UNDAMAGED", "TableRecords", "class_text", "parse_dates", "table_records",
           "unosat_code"]

#: code -> meaning, in the order they are reported
UNOSAT_CLASSES: dict[str, str] = {
    "1": "destroyed", "2": "severe damage", "3": "moderate damage", "4": "possible damage",
    "0": "no visible damage", "6": "no visible damage", "-1": "no coverage",
}
UNOSAT_DAMAGED = ("1", "2", "3")
UNOSAT_UNDAMAGED = ("0", "6")
#: a record of this class says nothing about the site, so an earlier record is preferred
NO_COVERAGE = "-1"
_TEXTUAL = {
    "destroyed": "1", "severe damage": "2", "severely damaged": "2", "moderate damage": "3",
    "moderately damaged": "3", "possible damage": "4", "possibly damaged": "4",
    "no visible damage": "6", "no coverage": "-1",
}
#: fields tried, in order, when no class field is named and the layout has no dates
CLASS_FIELD_CANDIDATES = ("subtype", "damage", "damage_class", "Main_Damage_Site_Class")

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WIDE_DATE = re.compile(r"^sensordate(?:_(\d+))?$", re.IGNORECASE)
_WIDE_CLASS = re.compile(r"^main_damage_site_class(?:_(\d+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class TableRecords:
    """A label table as long records.

    `records`: one row per recorded class, columns `site` (int, index into `sites`),
    `label_class` (str as written, numbers without a trailing `.0`) and `label_date`
    (datetime64[ns], NaT in the class-field layout). `sites`: one row per site, geometry only.
    """

    records: pd.DataFrame
    sites: gpd.GeoDataFrame
    layout: str
    class_field: str
    notes: tuple[str, ...]

    @property
    def is_unosat(self) -> bool:
        """Whether the layout itself says the classes are UNOSAT codes."""
        return self.layout in ("date columns", "UNOSAT wide")


def unosat_code(text: str) -> str | None:
    """The UNOSAT code of a class as written ("2", "2.0", "Severe Damage"), None if unknown."""
    folded = " ".join(text.strip().lower().split())
    if folded in _TEXTUAL:
        return _TEXTUAL[folded]
    try:
        number = float(folded)
    except ValueError:
        return None
    code = str(int(number)) if number.is_integer() else folded
    return code if code in UNOSAT_CLASSES else None


def class_text(values: pd.Series) -> pd.Series:
    """Classes as text: None where missing, integral numbers without `.0`, else stripped."""

    def one(value: object) -> str | None:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return None
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return str(int(value))
        text = str(value).strip()
        return text if text and text.lower() not in ("nan", "none", "null") else None

    return values.map(one).astype(object)


def parse_dates(values: pd.Series, what: str) -> pd.Series:
    """Dates as datetime64[ns] (naive, UTC): datetimes as they are, text as ISO 8601 or
    day-first `18/09/2016`; NaT where missing. InputError naming `what` on anything else."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    else:
        text = class_text(values)
        iso = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        day_first = pd.to_datetime(text, format="%d/%m/%Y", errors="coerce", utc=True)
        parsed = iso.fillna(day_first)
        bad = text.notna() & parsed.isna()
        if bool(bad.any()):
            examples = ", ".join(repr(v) for v in text[bad].unique()[:5])
            raise InputError(f"{what}: {int(bad.sum())} dates are not ISO (2016-09-18) or "
                             f"day-first (18/09/2016) dates: {examples}; fix them in the file")
    return parsed.dt.tz_localize(None).astype("datetime64[ns]")


def _field(frame: gpd.GeoDataFrame, name: str) -> str | None:
    matches = [c for c in frame.columns if c == name] or [
        c for c in frame.columns if c.lower() == name.lower()]
    return matches[0] if matches else None


def _fields_text(frame: gpd.GeoDataFrame) -> str:
    return ", ".join(str(c) for c in frame.columns if c != frame.geometry.name) or "none"


def _class_field(frame: gpd.GeoDataFrame, path: str, class_field: str | None) -> str:
    if class_field is not None:
        found = _field(frame, class_field)
        if found is None:
            raise InputError(f"{path}: no field {class_field!r}; the fields are "
                             f"{_fields_text(frame)}; name one with class_field")
        return found
    for candidate in CLASS_FIELD_CANDIDATES:
        found = _field(frame, candidate)
        if found is not None:
            return found
    raise InputError(f"{path}: no damage class field found (tried "
                     f"{', '.join(CLASS_FIELD_CANDIDATES)}); the fields are "
                     f"{_fields_text(frame)}; name one with class_field")


def _sites(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(geometry=frame.geometry.reset_index(drop=True), crs=frame.crs)


def _records(site: np.ndarray, classes: pd.Series, dates: pd.Series) -> pd.DataFrame:
    out = pd.DataFrame({"site": site, "label_class": classes.to_numpy(object),
                        "label_date": dates.to_numpy("datetime64[ns]")})
    return out[out["label_class"].notna()]


def table_records(frame: gpd.GeoDataFrame, path: str, *, class_field: str | None,
                  date_field: str | None) -> TableRecords:
    """`frame`'s classes as long records, its layout found from its fields (module docstring):
    long when `date_field` is given, one class field when `class_field` is, else date
    columns, then UNOSAT wide, then a class field among `CLASS_FIELD_CANDIDATES`."""
    site = np.arange(len(frame))
    if date_field is not None:
        return _long_records(frame, path, _class_field(frame, path, class_field), date_field)
    if class_field is None:
        date_columns = sorted((c for c in frame.columns if _ISO_DATE.match(str(c))),
                              key=lambda c: pd.Timestamp(c))
        if date_columns:
            records = pd.concat([_records(site, class_text(frame[c]),
                                          pd.Series(pd.Timestamp(c), index=frame.index))
                                 for c in date_columns], ignore_index=True)
            described = f"date columns {date_columns[0]}..{date_columns[-1]}"
            return TableRecords(records, _sites(frame), "date columns", described, ())
        wide = _wide_pairs(frame)
        if wide:
            return _wide_records(frame, path, wide)
    field = _class_field(frame, path, class_field)
    none = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    records = _records(site, class_text(frame[field]), none)
    return TableRecords(records, _sites(frame), "class field", field, ())


def _wide_pairs(frame: gpd.GeoDataFrame) -> list[tuple[str, str]]:
    """(date field, class field) pairs of the UNOSAT wide layout, in suffix order."""
    dates: dict[int, str] = {}
    classes: dict[int, str] = {}
    for column in frame.columns:
        if match := _WIDE_DATE.match(str(column)):
            dates[int(match.group(1) or 1)] = column
        elif match := _WIDE_CLASS.match(str(column)):
            classes[int(match.group(1) or 1)] = column
    return [(dates[k], classes[k]) for k in sorted(dates.keys() & classes.keys())]


def _wide_records(frame: gpd.GeoDataFrame, path: str,
                  pairs: list[tuple[str, str]]) -> TableRecords:
    site = np.arange(len(frame))
    parts = [_records(site, class_text(frame[c]), parse_dates(frame[d], f"{path}: field {d!r}"))
             for d, c in pairs]
    records = pd.concat(parts, ignore_index=True)
    undated = records["label_date"].isna()
    notes: tuple[str, ...] = ()
    if bool(undated.any()):
        notes = (f"{int(undated.sum())} classes have no SensorDate beside them and were "
                 f"not used.",)
        records = records[~undated]
    described = ", ".join(f"{c} ({d})" for d, c in pairs)
    return TableRecords(records, _sites(frame), "UNOSAT wide", described, notes)


def _long_records(frame: gpd.GeoDataFrame, path: str, class_field: str,
                  date_field: str) -> TableRecords:
    found = _field(frame, date_field)
    if found is None:
        raise InputError(f"{path}: no date field {date_field!r}; the fields are "
                         f"{_fields_text(frame)}; name one with date_field")
    # one site per distinct geometry: long files repeat a site's point once per date
    site, _ = pd.factorize(pd.Series(frame.geometry.to_wkb(), index=frame.index))
    first = pd.Series(np.arange(len(frame))).groupby(site).first().to_numpy()
    sites = _sites(frame.iloc[first])
    records = _records(site, class_text(frame[class_field]),
                       parse_dates(frame[found], f"{path}: field {found!r}"))
    undated = records["label_date"].isna()
    notes = [f"{len(frame)} rows are {len(sites)} sites (rows with identical geometry are "
             f"one site on several dates)."]
    if bool(undated.any()):
        notes.append(f"{int(undated.sum())} rows have a class but no {found!r} and were "
                     f"not used.")
        records = records[~undated]
    return TableRecords(records, sites, "long", f"{class_field} (dated by {found})",
                        tuple(notes))
