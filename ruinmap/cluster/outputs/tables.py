"""Per-district and per-building result tables, and the district summary printed in a terminal.

Files (each written atomically, see `atomic`):
- `districts.parquet`: GeoParquet (geometry as WKB, CRS in the metadata) in the districts'
  CRS; exact values, the table to compute with.
- `districts.geojson`: RFC 7946 GeoJSON (EPSG:4326 lon/lat, right-hand polygons), for web
  maps and any GIS.
- `districts.csv`: the same columns without geometry, for spreadsheets.
- `districts.gpkg`: GeoPackage (layer `districts`, the districts' CRS), for GDAL builds
  without a Parquet driver (Debian's GDAL 3.6, QGIS 3.22).
- `districts_hxl.csv`: the CSV with an HXL hashtag row, for HDX (`outputs.hxl`).
- `buildings.parquet`: GeoParquet of the building footprints with their scores, with a bbox
  covering column so GDAL >= 3.8 (QGIS) filters it spatially without reading it whole;
  `buildings.gpkg` the same as a GeoPackage (layer `buildings`).

District columns come in a stable order (`DISTRICT_COLUMNS`, class columns in the caller's
order, then any others, geometry last) whatever order the pipeline built them in.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from rich.table import Table

from ruinmap.cluster.outputs.hxl import DISTRICTS_HXL, write_hxl_csv
from ruinmap.cluster.storage.durable import atomic_path
from ruinmap.errors import InputError

LEADING_COLUMNS = (
    "district_id",
    "name",
    "area_km2",
    "valid_km2",
    "built_km2",
    "damaged_km2",
    "damaged_fraction",
    "damaged_built_km2",
    "damaged_built_fraction",
    "mean_score",
    "p90_score",
)
#: the interval on the true damaged count (written by `validation.counts`)
INTERVAL_COLUMNS = ("buildings_damaged_expected", "buildings_damaged_low",
                    "buildings_damaged_high", "buildings_damaged_level",
                    "buildings_damaged_interval")
BUILDING_COLUMNS = ("buildings", "buildings_damaged", "buildings_damaged_fraction",
                    *INTERVAL_COLUMNS)
CLASS_COLUMN = re.compile(r"^class_(.+)_km2$")
#: The documented order: leading columns, `class_<k>_km2` columns (here the placeholder), then
#: building counts; other columns follow, geometry is last.
DISTRICT_COLUMNS = (*LEADING_COLUMNS, "class_<k>_km2", *BUILDING_COLUMNS)

DISTRICTS_PARQUET = "districts.parquet"
DISTRICTS_GEOJSON = "districts.geojson"
DISTRICTS_CSV = "districts.csv"
DISTRICTS_GPKG = "districts.gpkg"
BUILDINGS_PARQUET = "buildings.parquet"
BUILDINGS_GPKG = "buildings.gpkg"
# Spreadsheet cells: 6 significant digits keep km2 to the m2 for districts up to 1000 km2.
_CSV_FLOAT_FORMAT = "%.6g"


def district_column_order(columns: Sequence[str], geometry: str = "geometry") -> list[str]:
    """`columns` in the documented district order (module doc); nothing added or dropped."""
    present = [str(c) for c in columns]
    ordered = [c for c in LEADING_COLUMNS if c in present]
    ordered += [c for c in present if CLASS_COLUMN.match(c)]
    ordered += [c for c in BUILDING_COLUMNS if c in present]
    ordered += [c for c in present if c not in ordered and c != geometry]
    if geometry in present:
        ordered.append(geometry)
    return ordered


def _check_frame(gdf: Any, what: str, required: Sequence[str]) -> gpd.GeoDataFrame:
    if not isinstance(gdf, gpd.GeoDataFrame):
        raise InputError(f"{what}: expected a GeoDataFrame, got {type(gdf).__name__}")
    try:
        geometry = gdf.geometry.name
    except AttributeError:
        raise InputError(f"{what}: the table has no active geometry column") from None
    if gdf.crs is None:
        raise InputError(f"{what}: the table has no CRS; set one with gdf.set_crs(...)")
    missing = [c for c in required if c not in gdf.columns]
    if missing:
        raise InputError(f"{what}: missing column(s) {missing}; columns are {list(gdf.columns)}")
    if geometry != "geometry":
        gdf = gdf.rename_geometry("geometry")
    return gdf


def write_district_tables(
    gdf: gpd.GeoDataFrame, out_dir: str | os.PathLike[str], *, admin_level: int = 2
) -> dict[str, Path]:
    """Write districts.parquet, .geojson, .csv, .gpkg and districts_hxl.csv into `out_dir`.

    `gdf` holds one row per district with at least `district_id` and a geometry, in any CRS
    (GeoJSON is reprojected to EPSG:4326); `admin_level` is the HXL level of the key
    (`#adm2+code`). Returns {"districts_parquet": path, "districts_geojson": path,
    "districts_csv": path, "districts_gpkg": path, "districts_hxl": path}.
    """
    out = Path(out_dir)
    gdf = _check_frame(gdf, "district table", ["district_id"])
    gdf = gdf[district_column_order(list(gdf.columns))]
    paths = {
        "districts_parquet": out / DISTRICTS_PARQUET,
        "districts_geojson": out / DISTRICTS_GEOJSON,
        "districts_csv": out / DISTRICTS_CSV,
        "districts_gpkg": out / DISTRICTS_GPKG,
        "districts_hxl": out / DISTRICTS_HXL,
    }
    with atomic_path(paths["districts_parquet"]) as tmp:
        gdf.to_parquet(tmp, index=False, compression="zstd")
    with atomic_path(paths["districts_geojson"]) as tmp:
        _write_geojson(gdf, tmp)
    with atomic_path(paths["districts_csv"]) as tmp:
        frame = pd.DataFrame(gdf.drop(columns="geometry"))
        frame.to_csv(tmp, index=False, float_format=_CSV_FLOAT_FORMAT, lineterminator="\n")
    write_hxl_csv(frame, paths["districts_hxl"], admin_level, float_format=_CSV_FLOAT_FORMAT)
    _write_geopackage(gdf, paths["districts_gpkg"], "districts")
    return paths


def _write_geopackage(gdf: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    with atomic_path(path) as tmp:
        # the temporary's name does not end in .gpkg: name the driver
        gdf.to_file(tmp, driver="GPKG", layer=layer, engine="pyogrio")


def _write_geojson(gdf: gpd.GeoDataFrame, path: Path) -> None:
    wgs84 = gdf.to_crs(4326)
    # RFC7946=YES: lon/lat, counter-clockwise outer rings, antimeridian cut, 7 decimals (1 cm).
    wgs84.to_file(path, driver="GeoJSON", engine="pyogrio", RFC7946="YES", WRITE_NAME="NO")


def write_building_table(gdf: gpd.GeoDataFrame, out_dir: str | os.PathLike[str]) -> Path:
    """Write buildings.parquet (GeoParquet, zstd, bbox covering) into `out_dir`; returns its path.

    `gdf` holds one row per building footprint with any columns and a CRS; its geometry
    column is written last.
    """
    gdf = _check_frame(gdf, "building table", [])
    gdf = gdf[[c for c in gdf.columns if c != "geometry"] + ["geometry"]]
    path = Path(out_dir) / BUILDINGS_PARQUET
    with atomic_path(path) as tmp:
        gdf.to_parquet(tmp, index=False, compression="zstd", write_covering_bbox=True)
    return path


def write_building_geopackage(gdf: gpd.GeoDataFrame,
                              out_dir: str | os.PathLike[str]) -> Path:
    """Write buildings.gpkg (layer `buildings`, the footprints' CRS) into `out_dir`."""
    gdf = _check_frame(gdf, "building table", [])
    path = Path(out_dir) / BUILDINGS_GPKG
    _write_geopackage(gdf[[c for c in gdf.columns if c != "geometry"] + ["geometry"]], path,
                      "buildings")
    return path


# ---------------------------------------------------------------------------------------------
# terminal summary


def _is_missing(value: Any) -> bool:
    try:
        return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
    except TypeError:
        return False


def _km2(value: Any) -> str:
    if _is_missing(value):
        return "–"
    value = float(value)
    if value == 0:
        return "0"
    if abs(value) < 0.01:
        return "<0.01"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"


def _percent(value: Any) -> str:
    if _is_missing(value):
        return "–"
    pct = float(value) * 100
    if 0 < pct < 0.1:
        return "<0.1%"
    return f"{pct:.1f}%"


def _number(value: Any, digits: int = 2) -> str:
    return "–" if _is_missing(value) else f"{float(value):.{digits}f}"


def _count(value: Any) -> str:
    return "–" if _is_missing(value) else f"{int(value):,}"


def _first(df: pd.DataFrame, column: str) -> Any:
    """The first non-missing value of `column`, or None."""
    if column not in df.columns:
        return None
    values = df[column].dropna()
    return values.iloc[0] if len(values) else None


def _has_values(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and bool(df[column].notna().any())


def ranking_column(df: pd.DataFrame) -> str:
    """What the terminal table ranks districts by: damaged buildings when the job had
    footprints, else the damaged built-up area (with a built-up mask), else the damaged area."""
    for column in ("buildings_damaged", "damaged_built_km2"):
        if _has_values(df, column):
            return column
    return "damaged_km2"


def format_district_table(df: pd.DataFrame, max_rows: int = 20) -> Table:
    """A rich Table of the most damaged districts, for a terminal: ranked by damaged
    buildings, else damaged built-up area, else damaged area (`ranking_column`), descending.

    Shows district (name, else id), area, the built-up area (with a built-up mask), damaged
    area and its share of the built-up (else the valid) area, mean score and, when the table
    has building counts, damaged buildings and the interval on their true number (with its
    level and method); districts beyond `max_rows` are summarised in the caption.
    """
    if "damaged_km2" not in df.columns:
        raise InputError(f"district table: no 'damaged_km2' column; columns are {list(df.columns)}")
    rank = ranking_column(df)
    rows = df.sort_values([rank, "damaged_km2"], ascending=False, na_position="last",
                          kind="stable")
    has_buildings = "buildings_damaged" in df.columns
    has_built = _has_values(df, "built_km2")
    title = "Damage by district" + (f" (top {max_rows} of {len(df)})" if len(df) > max_rows else "")
    by = {"buildings_damaged": "damaged buildings", "damaged_built_km2": "damaged built-up area",
          "damaged_km2": "damaged area"}[rank]
    table = Table(title=f"{title}, by {by}", title_justify="left")
    table.add_column("District", overflow="fold", max_width=32)
    table.add_column("Area km²", justify="right")
    if has_built:
        table.add_column("Built-up km²", justify="right")
    table.add_column("Damaged built-up km²" if has_built else "Damaged km²", justify="right")
    table.add_column("of built-up" if has_built else "Damaged", justify="right")
    if "mean_score" in df.columns:
        table.add_column("Mean score", justify="right")
    if has_buildings:
        table.add_column("Buildings damaged", justify="right")
    has_interval = {"buildings_damaged_low", "buildings_damaged_high"} <= set(df.columns)
    footnote = ""
    if has_interval:
        levels = _first(df, "buildings_damaged_level")
        pct = f"{float(levels):.0%}" if levels is not None else "90%"
        table.add_column(f"{pct} interval", justify="right")
        meaning = {"calibrated": "calibrated on labels",
                   "unvalidated": "unvalidated: score noise only, run `ruinmap validate`"}
        kind = _first(df, "buildings_damaged_interval")
        if kind is not None:
            footnote = (f"{pct} interval on the true number of damaged buildings: "
                        f"{meaning.get(str(kind), str(kind))}")
    for _, row in rows.head(max(max_rows, 0)).iterrows():
        label = row.get("name")
        if _is_missing(label) or str(label) == "":
            label = row.get("district_id")
        cells = [str(label), _km2(row.get("area_km2"))]
        if has_built:
            cells.append(_km2(row.get("built_km2")))
        cells += [_km2(row.get("damaged_km2")), _percent(row.get("damaged_fraction"))]
        if "mean_score" in df.columns:
            cells.append(_number(row.get("mean_score")))
        if has_buildings:
            damaged = row.get("buildings_damaged")
            total = row.get("buildings")
            text = _count(damaged)
            if not _is_missing(total) and not _is_missing(damaged):
                text += f" of {_count(total)}"
                share = row.get("buildings_damaged_fraction")
                if not _is_missing(share):
                    text += f" ({_percent(share)})"
            cells.append(text)
        if has_interval:
            low, high = row.get("buildings_damaged_low"), row.get("buildings_damaged_high")
            cells.append("–" if _is_missing(low) or _is_missing(high)
                         else f"{_count(low)}–{_count(high)}")
        table.add_row(*cells)
    hidden = len(df) - min(len(df), max(max_rows, 0))
    captions = []
    if hidden > 0:
        rest = rows.iloc[max(max_rows, 0) :]["damaged_km2"]
        captions.append(
            f"{hidden} more district(s) with {np.nansum(rest.to_numpy(dtype=float)):,.2f} km² "
            "damaged in all; see districts.csv"
        )
    if footnote:
        captions.append(footnote)
    if captions:
        table.caption = "\n".join(captions)
    return table
