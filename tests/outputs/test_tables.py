"""District and building tables: GeoParquet, RFC 7946 GeoJSON and CSV, read back for real."""

from __future__ import annotations

import io
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import CRS
from rich.console import Console

from ruinmap.cluster.outputs.tables import (
    district_column_order,
    format_district_table,
    write_building_table,
    write_district_tables,
)
from ruinmap.errors import InputError

UTM = "EPSG:32636"
EXPECTED_ORDER = [
    "district_id",
    "name",
    "area_km2",
    "valid_km2",
    "damaged_km2",
    "damaged_fraction",
    "mean_score",
    "p90_score",
    "class_1_km2",
    "class_2_km2",
    "buildings",
    "buildings_damaged",
    "buildings_damaged_fraction",
    "note",
    "geometry",
]


def _districts(n: int = 6) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(1)
    boxes = [shapely.box(300000 + i * 1000, 4000000, 301000 + i * 1000, 4001000) for i in range(n)]
    damaged = rng.uniform(0, 0.5, n)
    frame = {
        # Deliberately scrambled: the writer puts columns in the documented order.
        "note": [f"n{i}" for i in range(n)],
        "buildings_damaged": rng.integers(0, 50, n),
        "class_1_km2": damaged * 0.6,
        "district_id": [f"D{i:02d}" for i in range(n)],
        "damaged_km2": damaged,
        "p90_score": rng.uniform(2, 6, n),
        "name": [f"Quarter {i}" for i in range(n)],
        "area_km2": np.ones(n),
        "class_2_km2": damaged * 0.4,
        "valid_km2": np.full(n, 0.98),
        "damaged_fraction": damaged / 0.98,
        "mean_score": rng.uniform(0, 3, n),
        "buildings": np.full(n, 50),
        "buildings_damaged_fraction": rng.uniform(0, 1, n),
    }
    return gpd.GeoDataFrame(frame, geometry=boxes, crs=UTM)


def test_district_column_order_is_documented_order_with_extras_before_geometry() -> None:
    assert district_column_order(list(_districts().columns)) == EXPECTED_ORDER


def test_write_district_tables_writes_five_files_and_nothing_else(tmp_path: Path) -> None:
    paths = write_district_tables(_districts(), tmp_path)
    assert set(paths) == {"districts_parquet", "districts_geojson", "districts_csv",
                          "districts_gpkg", "districts_hxl"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "districts.csv",
        "districts.geojson",
        "districts.gpkg",
        "districts.parquet",
        "districts_hxl.csv",
    ]


def test_districts_parquet_reads_back_with_crs_order_and_values(tmp_path: Path) -> None:
    gdf = _districts()
    paths = write_district_tables(gdf, tmp_path)
    back = gpd.read_parquet(paths["districts_parquet"])
    assert CRS.from_user_input(back.crs) == CRS.from_user_input(UTM)
    assert list(back.columns) == EXPECTED_ORDER
    np.testing.assert_allclose(back["damaged_km2"], gdf["damaged_km2"])
    assert back.geometry.equals(gdf.geometry)


def test_districts_geojson_is_rfc7946_lon_lat(tmp_path: Path) -> None:
    paths = write_district_tables(_districts(), tmp_path)
    back = gpd.read_file(paths["districts_geojson"])
    assert back.crs.to_epsg() == 4326
    minx, miny, maxx, maxy = back.total_bounds
    assert 30 < minx < maxx < 36 and 35 < miny < maxy < 37  # UTM 36N near 36 N
    raw = json.loads(paths["districts_geojson"].read_text())
    assert "crs" not in raw  # RFC 7946 has no crs member: WGS84 lon/lat is implied
    assert list(raw["features"][0]["properties"]) == EXPECTED_ORDER[:-1]


def test_districts_csv_has_stable_columns_without_geometry(tmp_path: Path) -> None:
    paths = write_district_tables(_districts(), tmp_path)
    back = pd.read_csv(paths["districts_csv"])
    assert list(back.columns) == EXPECTED_ORDER[:-1]
    assert list(back["district_id"]) == [f"D{i:02d}" for i in range(6)]


def test_write_district_tables_accepts_another_geometry_column_name(tmp_path: Path) -> None:
    gdf = _districts().rename_geometry("shape")
    paths = write_district_tables(gdf, tmp_path)
    assert list(gpd.read_parquet(paths["districts_parquet"]).columns)[-1] == "geometry"


def test_write_district_tables_refuses_a_table_without_crs(tmp_path: Path) -> None:
    gdf = _districts().set_crs(None, allow_override=True)
    with pytest.raises(InputError, match="no CRS"):
        write_district_tables(gdf, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_district_tables_refuses_a_table_without_district_id(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="district_id"):
        write_district_tables(_districts().drop(columns="district_id"), tmp_path)


def test_write_building_table_round_trips_many_buildings(tmp_path: Path) -> None:
    n = 30_000
    rng = np.random.default_rng(2)
    x = 300000 + rng.uniform(0, 10000, n)
    y = 4000000 + rng.uniform(0, 10000, n)
    geometry = shapely.box(x, y, x + 12, y + 9)
    gdf = gpd.GeoDataFrame(
        {
            "building_id": np.arange(n),
            "score": rng.normal(2, 1, n).astype(np.float32),
            "damage_class": rng.integers(0, 5, n).astype(np.uint8),
        },
        geometry=geometry,
        crs=UTM,
    )
    path = write_building_table(gdf, tmp_path)
    assert path == tmp_path / "buildings.parquet"
    back = gpd.read_parquet(path)
    assert CRS.from_user_input(back.crs) == CRS.from_user_input(UTM)
    assert len(back) == n
    assert list(back.columns)[:3] == ["building_id", "score", "damage_class"]
    assert back.geometry.equals(gdf.geometry)


def _render(table: object) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("drop", "built", "rank", "title"), [
    ((), False, "buildings_damaged", "by damaged buildings"),
    (("buildings", "buildings_damaged", "buildings_damaged_fraction"), True,
     "damaged_built_km2", "by damaged built-up area"),
    (("buildings", "buildings_damaged", "buildings_damaged_fraction"), False,
     "damaged_km2", "by damaged area"),
])
def test_format_district_table_ranks_by_damaged_buildings_else_built_up_area(
    drop: tuple[str, ...], built: bool, rank: str, title: str,
) -> None:
    gdf = _districts().drop(columns=list(drop))
    if built:
        # a building-free district with much damaged area but no built-up: ranked last
        gdf["built_km2"] = np.linspace(0.5, 0.0, len(gdf))
        gdf["damaged_built_km2"] = np.where(gdf["built_km2"] > 0, gdf["damaged_km2"], 0.0)
        gdf.loc[len(gdf) - 1, "damaged_km2"] = 0.9
    text = _render(format_district_table(gdf, max_rows=10))
    order = gdf.sort_values(rank, ascending=False, kind="stable")["name"].tolist()
    positions = [text.index(name) for name in order]
    assert positions == sorted(positions)
    assert "%" in text and title in text
    assert ("Built-up km²" in text) == built


def test_format_district_table_summarises_rows_beyond_max_rows() -> None:
    text = _render(format_district_table(_districts(), max_rows=2))
    assert "top 2 of 6" in text and "4 more district(s)" in text


def test_format_district_table_shows_missing_values_as_dashes() -> None:
    gdf = _districts(2)
    gdf.loc[0, "damaged_fraction"] = np.nan
    gdf.loc[0, "name"] = None
    text = _render(format_district_table(gdf))
    assert "–" in text and "D00" in text
