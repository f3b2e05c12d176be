"""xBD (xView2) building labels: one JSON per image tile.

Format (Gupta et al. 2019, arXiv:1911.09296): `{"features": {"lng_lat": [...], "xy": [...]},
"metadata": {"capture_date": ..., ...}}`, each feature `{"properties": {"feature_type":
"building", "subtype": "destroyed", "uid": ...}, "wkt": "POLYGON ((lon lat, ...))"}`.
`lng_lat` is EPSG:4326; `xy` (pixels) is not read. Only `*_post_disaster.json` files carry a
`subtype` (the Joint Damage Scale: no-damage, minor-damage, major-damage, destroyed, plus
un-classified); the `*_pre_disaster.json` twins hold the same polygons unlabelled.
"""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.errors import GEOSException

from ruinmap.cluster.storage.confined import open_input
from ruinmap.errors import InputError

__all__ = ["XBD_CLASSES", "XBD_DAMAGED", "XBD_UNDAMAGED", "XbdRecords", "read_xbd", "xbd_code",
           "xbd_files"]

#: subtype -> meaning, in the order they are reported
XBD_CLASSES: dict[str, str] = {
    "no-damage": "no damage", "minor-damage": "minor damage", "major-damage": "major damage",
    "destroyed": "destroyed", "un-classified": "not classified",
}
XBD_DAMAGED = ("major-damage", "destroyed")
XBD_UNDAMAGED = ("no-damage", "minor-damage")

_XBD_HEAD = re.compile(r'"features"\s*:\s*\{|"lng_lat"')
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class XbdRecords:
    """Buildings of the post-disaster files: `records` (site, label_class, label_date) and
    `sites` (geometry, EPSG:4326) as in `unosat.TableRecords`, and the files read and skipped."""

    records: pd.DataFrame
    sites: gpd.GeoDataFrame
    post_files: tuple[str, ...]
    pre_files: tuple[str, ...]


def xbd_code(text: str) -> str | None:
    """The xBD subtype of a class as written ("Major damage", "major_damage"), None if unknown."""
    folded = "-".join(text.strip().lower().replace("_", " ").replace("-", " ").split())
    folded = "un-classified" if folded in ("unclassified", "un-classified") else folded
    return folded if folded in XBD_CLASSES else None


def _is_xbd_json(path: Path) -> bool:
    with open_input(path, "r", encoding="utf-8", errors="replace") as stream:
        return _XBD_HEAD.search(stream.read(65536)) is not None


def xbd_files(path: str | Path) -> list[Path] | None:
    """The xBD label files `path` names (a JSON file, a folder of them, a glob), or None when
    it names something else (a GeoJSON, a GeoPackage ...)."""
    text = str(path)
    if _GLOB.search(text) and not Path(text).exists():
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if p.endswith(".json"))
        if not found:
            raise InputError(f"{text}: the pattern matches no .json file")
        return found
    candidate = Path(text)
    if candidate.is_dir() and candidate.suffix.lower() != ".gdb":  # a File Geodatabase is a folder
        found = sorted(candidate.rglob("*.json"))
        if not found:
            raise InputError(f"{text}: the folder holds no .json label files (xBD labels "
                             f"are *_post_disaster.json)")
        return found
    if candidate.suffix.lower() == ".json" and candidate.is_file() and _is_xbd_json(candidate):
        return [candidate]
    return None


def _load(path: Path) -> dict[str, object]:
    try:
        with open_input(path, "r", encoding="utf-8") as stream:
            document = json.load(stream)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read this JSON file ({exc})") from None
    features = document.get("features") if isinstance(document, dict) else None
    if not isinstance(features, dict) or not isinstance(features.get("lng_lat"), list):
        raise InputError(f"{path}: not an xBD label file (no features.lng_lat list)")
    return document


def read_xbd(files: list[Path]) -> XbdRecords:
    """Buildings and subtypes of the post-disaster files among `files`; InputError when there
    are none (pre-disaster files only)."""
    geometries: list[object] = []
    classes: list[str | None] = []
    dates: list[object] = []
    post: list[str] = []
    pre: list[str] = []
    for path in files:
        document = _load(path)
        features = document["features"]["lng_lat"]  # type: ignore[index]
        properties = [f.get("properties") or {} for f in features]
        buildings = [(f, p) for f, p in zip(features, properties, strict=True)
                     if p.get("feature_type", "building") == "building"]
        if "_pre_disaster" in path.name or (
                buildings and not any("subtype" in p for _, p in buildings)):
            pre.append(str(path))
            continue
        post.append(str(path))
        metadata = document.get("metadata") or {}
        captured = metadata.get("capture_date") if isinstance(metadata, dict) else None
        try:
            when = pd.to_datetime(captured, utc=True).tz_localize(None) if captured else pd.NaT
        except (ValueError, TypeError):
            raise InputError(f"{path}: metadata.capture_date {captured!r} is not a date; "
                             f"fix it (xBD writes 2011-05-29T17:29:25.433Z)") from None
        for feature, props in buildings:
            try:
                geometries.append(shapely.from_wkt(feature["wkt"]))
            except (KeyError, TypeError, GEOSException) as exc:
                raise InputError(f"{path}: a building has no readable wkt ({exc}); "
                                 f"uid {props.get('uid')!r}") from None
            subtype = props.get("subtype")
            classes.append(None if subtype in (None, "") else str(subtype))
            dates.append(when)
    if not post:
        shown = ", ".join(Path(p).name for p in pre[:3])
        raise InputError(f"{shown}{' ...' if len(pre) > 3 else ''}: only pre-disaster xBD "
                         f"files, which carry no damage subtype; give the "
                         f"*_post_disaster.json files")
    sites = gpd.GeoDataFrame(geometry=gpd.GeoSeries(geometries), crs="EPSG:4326")
    records = pd.DataFrame({"site": np.arange(len(geometries)),
                            "label_class": pd.Series(classes, dtype=object),
                            "label_date": pd.Series(dates, dtype="datetime64[ns]")})
    return XbdRecords(records[records["label_class"].notna()], sites, tuple(post), tuple(pre))
