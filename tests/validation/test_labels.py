"""read_labels on the real UNOSAT Daraa and xBD Joplin labels, and on synthetic files shaped
like the products (written with geopandas in tmp_path)."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point, box

from ruinmap.cluster.validation.labels import Labels, read_labels
from ruinmap.errors import InputError
from tests.support.rasters import SHARED_DATA

DARAA = SHARED_DATA / "unosat-daraa" / "daraa_damage.gpkg"
XBD_LABELS = SHARED_DATA / "xbd-joplin-00000000" / "labels"
XBD_POST = XBD_LABELS / "joplin-tornado_00000000_post_disaster.json"
DARAA_FIRST_LAYER = "UNOSAT_A3_Daraa_Damage_Points_20170207"
#: the Daraa grid: UTM 37N, a 20 km square around the city
DARAA_RESULTS = {"results_crs": "EPSG:32637",
                 "results_bounds": (220000.0, 3600000.0, 240000.0, 3620000.0)}

needs_daraa = pytest.mark.skipif(not DARAA.exists(), reason=f"{DARAA} absent (shared data)")
needs_xbd = pytest.mark.skipif(not XBD_POST.exists(), reason=f"{XBD_POST} absent (shared data)")

#: the CRS GDAL writes for a GEOGCS it cannot identify, as declared by the UNOSAT Daraa file
UNDEFINED_GEOGRAPHIC = (
    'GEOGCS["Undefined geographic SRS",DATUM["unknown",SPHEROID["unknown",6378137,'
    '298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433,'
    'AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST]]')
#: Daraa, a few km apart, EPSG:4326 lon/lat, as UNOSAT CDA points are published on HDX
LONLAT_SITES = [Point(36.10 + 0.001 * i, 32.61 + 0.001 * i) for i in range(6)]


def _write(frame: gpd.GeoDataFrame, path: Path, **kwargs: object) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pyogrio warns on a missing CRS
        frame.to_file(path, engine="pyogrio", **kwargs)
    return path


def _class_counts(labels: Labels) -> dict[str, int]:
    return {str(k): int(v) for k, v in labels.frame["label_class"].value_counts().items()}


def _daraa_expected(layer: str, cutoff: dt.date) -> tuple[int, int, dt.date]:
    """(sites kept, damaged, epoch) for Daraa, computed from the date columns directly."""
    raw = gpd.read_file(DARAA, layer=layer)
    dates = sorted((c for c in raw.columns if c != "geometry"), key=pd.Timestamp)
    used = [c for c in dates if pd.Timestamp(c) <= pd.Timestamp(cutoff)]
    table = raw[used]
    latest = table.ffill(axis=1).iloc[:, -1]
    kept = latest.notna()
    damaged = latest.isin(["1", "2", "3"])
    last_date = max(c for c in used if table[c].notna().any())
    return int(kept.sum()), int(damaged.sum()), pd.Timestamp(last_date).date()


# -- real data: UNOSAT Daraa ---------------------------------------------------------------


@needs_daraa
@pytest.mark.parametrize("layer", [DARAA_FIRST_LAYER, "daraa_damage"])
@pytest.mark.parametrize(("post_end", "epoch"), [(dt.date(2016, 12, 31), dt.date(2016, 4, 19)),
                                                 (dt.date(2016, 4, 19), dt.date(2016, 4, 19)),
                                                 (dt.date(2017, 1, 31), dt.date(2017, 1, 6)),
                                                 (dt.date(2017, 3, 1), dt.date(2017, 2, 7))])
def test_daraa_epoch_is_latest_assessment_before_post_end(
        layer: str, post_end: dt.date, epoch: dt.date) -> None:
    labels = read_labels(DARAA, layer=layer, post_end=post_end, **DARAA_RESULTS)
    n_kept, n_damaged, expected_epoch = _daraa_expected(layer, post_end)
    assert expected_epoch == epoch
    assert labels.epoch == epoch
    assert len(labels.frame) == n_kept
    assert int(labels.frame["damaged"].sum()) == n_damaged
    assert labels.frame["label_date"].max() == pd.Timestamp(epoch)
    assert labels.class_field == "date columns 2014-05-01..2017-02-07"


@needs_daraa
def test_daraa_metres_read_as_results_crs_with_note() -> None:
    labels = read_labels(DARAA, post_end=dt.date(2017, 3, 1), **DARAA_RESULTS)
    assert labels.kind == "points"
    assert labels.layer == DARAA_FIRST_LAYER
    assert 1500 <= len(labels.frame) <= 1513
    assert labels.frame.crs.to_epsg() == 32637
    minx, miny, maxx, maxy = labels.frame.total_bounds
    assert 226000 < minx < maxx < 232000 and 3610000 < miny < maxy < 3616000
    assert any("not lon/lat" in n and "EPSG:32637" in n for n in labels.notes)
    assert any("2 layers" in n and DARAA_FIRST_LAYER in n for n in labels.notes)
    assert labels.frame["label_date"].dtype == np.dtype("datetime64[ns]")
    assert set(labels.frame.columns) == {"label_class", "damaged", "label_date", "geometry"}


@needs_daraa
def test_daraa_layer_with_no_visible_damage_has_undamaged_sites() -> None:
    labels = read_labels(DARAA, layer="daraa_damage", **DARAA_RESULTS)
    undamaged = labels.frame[~labels.frame["damaged"]]
    assert len(undamaged) > 0
    assert set(undamaged["label_class"]) == {"6"}
    assert labels.undamaged_classes == ("0", "6")


@needs_daraa
def test_daraa_without_results_crs_asks_for_labels_crs() -> None:
    with pytest.raises(InputError, match="--labels-crs") as caught:
        read_labels(DARAA)
    message = str(caught.value)
    assert str(DARAA) in message and "Undefined geographic SRS" in message
    assert "226337" in message


@needs_daraa
def test_daraa_outside_results_bounds_asks_for_labels_crs() -> None:
    with pytest.raises(InputError, match="--labels-crs"):
        read_labels(DARAA, results_crs="EPSG:32637", results_bounds=(0.0, 0.0, 1000.0, 1000.0))


@needs_daraa
def test_daraa_labels_crs_wins_and_reprojects_to_results() -> None:
    labels = read_labels(DARAA, labels_crs="EPSG:32637", results_crs="EPSG:4326")
    assert labels.frame.crs.to_epsg() == 4326
    minx, miny, maxx, maxy = labels.frame.total_bounds
    assert 36.0 < minx < maxx < 36.2 and 32.5 < miny < maxy < 32.7  # Daraa city
    assert any("--labels-crs" in n for n in labels.notes)


@needs_daraa
def test_daraa_date_before_every_assessment_is_an_error() -> None:
    with pytest.raises(InputError, match=r"2014-05-01.*--date"):
        read_labels(DARAA, date=dt.date(2013, 1, 1), **DARAA_RESULTS)


@needs_daraa
def test_daraa_date_overrides_post_end() -> None:
    labels = read_labels(DARAA, date=dt.date(2015, 12, 31), post_end=dt.date(2017, 3, 1),
                         **DARAA_RESULTS)
    assert labels.epoch == dt.date(2015, 6, 4)


@needs_daraa
def test_unknown_layer_lists_the_layers() -> None:
    with pytest.raises(InputError, match=r"no layer 'nope'.*daraa_damage"):
        read_labels(DARAA, layer="nope", **DARAA_RESULTS)


# -- real data: xBD Joplin -----------------------------------------------------------------


@needs_xbd
@pytest.mark.parametrize("source", ["file", "folder", "glob"])
def test_xbd_counts(source: str) -> None:
    path = {"file": XBD_POST, "folder": XBD_LABELS, "glob": XBD_LABELS / "*.json"}[source]
    labels = read_labels(path)
    assert labels.kind == "polygons"
    assert labels.class_field == "subtype"
    assert int(labels.frame["damaged"].sum()) == 129  # destroyed 102 + major 27
    assert int((~labels.frame["damaged"]).sum()) == 49  # minor 43 + no-damage 6
    assert _class_counts(labels) == {"destroyed": 102, "major-damage": 27,
                                     "minor-damage": 43, "no-damage": 6}
    assert any("7 of class un-classified" in n for n in labels.notes)
    assert labels.epoch == dt.date(2011, 5, 29)
    assert labels.frame.crs.to_epsg() == 4326
    assert labels.frame.geom_type.isin(["Polygon", "MultiPolygon"]).all()


@needs_xbd
def test_xbd_damaged_classes_override_and_results_crs() -> None:
    labels = read_labels(XBD_POST, damaged_classes=["destroyed"], results_crs="EPSG:32615")
    assert labels.damaged_classes == ("destroyed",)
    assert int(labels.frame["damaged"].sum()) == 102
    assert "major-damage" not in set(labels.frame["label_class"])
    assert labels.frame.crs.to_epsg() == 32615
    assert labels.frame.total_bounds[0] > 100000  # metres, not degrees


@needs_xbd
def test_xbd_pre_disaster_only_is_an_error() -> None:
    with pytest.raises(InputError, match="only pre-disaster"):
        read_labels(XBD_LABELS / "*_pre_disaster.json")


# -- synthetic files shaped like the products ---------------------------------------------


def _unosat_wide(tmp_path: Path) -> Path:
    # UNOSAT CDA attribute names (SensorDate, Main_Damage_Site_Class, SensorDate_2,
    # Main_Damage_Site_Class_2), EPSG:4326 lon/lat; the second date written day-first as text
    frame = gpd.GeoDataFrame({
        "SiteID": ["A", "B", "C", "D", "E", "F"],
        "SensorDate": pd.to_datetime(["2015-05-01"] * 6),
        "Main_Damage_Site_Class": [3, 6, 4, 2, -1, 6],
        "SensorDate_2": ["18/09/2016", "18/09/2016", None, "18/09/2016", None, "18/09/2016"],
        "Main_Damage_Site_Class_2": [1.0, 2.0, np.nan, -1.0, np.nan, 6.0],
    }, geometry=LONLAT_SITES, crs="EPSG:4326")
    return _write(frame, tmp_path / "unosat_wide.gpkg", layer="Damage_Sites_CDA")


@pytest.mark.parametrize(("cutoff", "classes", "epoch"), [
    (None, {"1": 1, "2": 2, "6": 1}, dt.date(2016, 9, 18)),
    (dt.date(2016, 1, 1), {"3": 1, "2": 1, "6": 2}, dt.date(2015, 5, 1)),
])
def test_unosat_wide_takes_latest_observed_class(
        tmp_path: Path, cutoff: dt.date | None, classes: dict[str, int], epoch: dt.date) -> None:
    labels = read_labels(_unosat_wide(tmp_path), post_end=cutoff)
    assert _class_counts(labels) == classes
    assert labels.epoch == epoch
    assert labels.layer == "Damage_Sites_CDA"
    assert labels.frame.crs.to_epsg() == 4326
    assert labels.frame["damaged"].sum() == sum(n for c, n in classes.items() if c in "123")
    assert any("class 4 (possible damage)" in n for n in labels.notes)


def test_unosat_wide_no_coverage_keeps_the_earlier_class(tmp_path: Path) -> None:
    labels = read_labels(_unosat_wide(tmp_path))
    site_d = labels.frame[labels.frame.geometry.x.round(4) == 36.103]
    assert list(site_d["label_class"]) == ["2"]
    assert list(site_d["label_date"]) == [pd.Timestamp("2015-05-01")]


def test_long_format_groups_rows_by_geometry(tmp_path: Path) -> None:
    sites = [LONLAT_SITES[0], LONLAT_SITES[0], LONLAT_SITES[1], LONLAT_SITES[1], LONLAT_SITES[2]]
    frame = gpd.GeoDataFrame({"assessed": ["2016-04-19", "2017-02-07", "2017-02-07",
                                           "2016-04-19", "2017-02-07"],
                              "code": [6, 1, 3, 2, 6]}, geometry=sites, crs="EPSG:4326")
    path = _write(frame, tmp_path / "long.gpkg")
    labels = read_labels(path, class_field="code", date_field="assessed")
    assert len(labels.frame) == 3
    assert sorted(labels.frame["label_class"]) == ["1", "3", "6"]
    assert labels.epoch == dt.date(2017, 2, 7)
    early = read_labels(path, class_field="code", date_field="assessed",
                        date=dt.date(2016, 12, 31))
    assert sorted(early.frame["label_class"]) == ["2", "6"]
    assert any("1 of 3 sites" in n for n in early.notes)


def test_shapefile_with_date_columns(tmp_path: Path) -> None:
    # the reshaped-UNOSAT layout (one column per date) as a Shapefile with a .prj
    frame = gpd.GeoDataFrame({"2014-05-01": ["3", None, "6", None],
                              "2016-09-18": ["1", "2", None, None]},
                             geometry=LONLAT_SITES[:4], crs="EPSG:4326")
    labels = read_labels(_write(frame, tmp_path / "sites.shp"))
    assert labels.layer == "sites"
    assert _class_counts(labels) == {"1": 1, "2": 1, "6": 1}
    assert any("1 of 4 sites" in n for n in labels.notes)


def test_textual_unosat_classes_are_codes(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"Main_Damage_Site_Class": [
        "Destroyed", "severe damage", "Moderate Damage", "Possible Damage", "No Visible Damage",
        "DESTROYED"]}, geometry=LONLAT_SITES, crs="EPSG:4326")
    labels = read_labels(_write(frame, tmp_path / "text.gpkg"))
    assert _class_counts(labels) == {"1": 2, "2": 1, "3": 1, "6": 1}
    assert int(labels.frame["damaged"].sum()) == 4
    assert labels.epoch is None
    assert labels.frame["label_date"].isna().all()
    assert any("read as UNOSAT codes" in n for n in labels.notes)


def test_unknown_codes_are_named(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"Main_Damage_Site_Class": [1, 2, 7, 9, 3, 6]},
                             geometry=LONLAT_SITES, crs="EPSG:4326")
    path = _write(frame, tmp_path / "codes.gpkg")
    with pytest.raises(InputError, match=r"Main_Damage_Site_Class.*: 7, 9 ") as caught:
        read_labels(path)
    assert str(path) in str(caught.value)
    named = read_labels(path, damaged_classes=["1", "2", "7", "9"])
    assert int(named.frame["damaged"].sum()) == 4
    assert named.undamaged_classes == ("0", "6")
    assert "3" not in set(named.frame["label_class"])  # known, neither named nor no-damage


def _polygons(values: list[str], field: str = "damage") -> gpd.GeoDataFrame:
    squares = [box(-94.51 + 0.001 * i, 37.06, -94.5095 + 0.001 * i, 37.0605)
               for i in range(len(values))]
    return gpd.GeoDataFrame({field: values}, geometry=squares, crs="EPSG:4326")


def test_polygon_geojson_with_xbd_classes(tmp_path: Path) -> None:
    frame = _polygons(["destroyed", "no-damage", "major-damage", "un-classified"])
    frame = pd.concat([frame, gpd.GeoDataFrame({"damage": ["destroyed"]},
                                               geometry=[Point(-94.5, 37.06)], crs="EPSG:4326")])
    path = _write(frame, tmp_path / "buildings.geojson", driver="GeoJSON")
    labels = read_labels(path)
    assert labels.kind == "polygons"
    assert labels.class_field == "damage"
    assert labels.frame.crs.to_epsg() == 4326
    assert _class_counts(labels) == {"destroyed": 1, "no-damage": 1, "major-damage": 1}
    assert any("dropped 1 Point" in n for n in labels.notes)


def test_polygon_own_vocabulary_needs_damaged_classes(tmp_path: Path) -> None:
    path = _write(_polygons(["yes", "no", "no"], "hit"), tmp_path / "own.geojson",
                  driver="GeoJSON")
    with pytest.raises(InputError, match=r"no, yes.*damaged_classes"):
        read_labels(path, class_field="hit")
    labels = read_labels(path, class_field="hit", damaged_classes=["yes"])
    assert labels.damaged_classes == ("yes",) and labels.undamaged_classes == ("no",)
    assert list(labels.frame["damaged"]) == [True, False, False]


def test_polygons_without_a_class_field_list_the_fields(tmp_path: Path) -> None:
    path = _write(_polygons(["a", "b"], "colour"), tmp_path / "plain.geojson", driver="GeoJSON")
    with pytest.raises(InputError, match=r"no damage class field.*colour"):
        read_labels(path)


def test_no_damaged_labels_is_an_error(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"2016-09-18": ["6", "6", "4"]}, geometry=LONLAT_SITES[:3],
                             crs="EPSG:4326")
    with pytest.raises(InputError, match=r"no damaged labels.*at epoch 2016-09-18"):
        read_labels(_write(frame, tmp_path / "intact.gpkg"))


def test_empty_layer_is_an_error(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"Main_Damage_Site_Class": pd.Series([], dtype="int64")},
                             geometry=gpd.GeoSeries([], crs="EPSG:4326"))
    with pytest.raises(InputError, match="no features"):
        read_labels(_write(frame, tmp_path / "empty.gpkg"))


@pytest.mark.parametrize("coordinates", ["lonlat", "metres"])
def test_file_without_crs(tmp_path: Path, coordinates: str) -> None:
    sites = LONLAT_SITES if coordinates == "lonlat" else [
        Point(227948.0 + 10 * i, 3612061.0 + 10 * i) for i in range(6)]
    frame = gpd.GeoDataFrame({"Main_Damage_Site_Class": [1, 2, 3, 6, 6, 1]}, geometry=sites)
    path = _write(frame, tmp_path / "nocrs.gpkg")
    if coordinates == "lonlat":
        labels = read_labels(path)
        assert labels.frame.crs.to_epsg() == 4326
        assert any("no CRS" in n and "EPSG:4326" in n for n in labels.notes)
    else:
        with pytest.raises(InputError, match=r"no CRS.*--labels-crs"):
            read_labels(path)
        labels = read_labels(path, **DARAA_RESULTS)
        assert labels.frame.crs.to_epsg() == 32637
        assert labels.frame.total_bounds[0] == pytest.approx(227948.0)


def test_undefined_geographic_crs_with_lonlat_is_epsg_4326(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"Main_Damage_Site_Class": [1, 2, 3, 6, 6, 1]},
                             geometry=LONLAT_SITES, crs=UNDEFINED_GEOGRAPHIC)
    labels = read_labels(_write(frame, tmp_path / "undefined.gpkg"), results_crs="EPSG:32637")
    assert any("undefined" in n and "EPSG:4326" in n for n in labels.notes)
    assert labels.frame.crs.to_epsg() == 32637
    assert labels.frame.total_bounds[0] == pytest.approx(227_900, abs=1_000)  # Daraa in UTM 37N


def test_file_geodatabase_in_unosat_wide_layout(tmp_path: Path) -> None:
    # UNOSAT also ships File Geodatabases: the same wide layout, read through OpenFileGDB
    wide = gpd.read_file(_unosat_wide(tmp_path))
    wide["SensorDate_2"] = pd.to_datetime(wide["SensorDate_2"], format="%d/%m/%Y")
    path = _write(wide, tmp_path / "unosat.gdb", driver="OpenFileGDB",
                  layer="Damage_Sites_CDA")
    labels = read_labels(path)
    assert labels.layer == "Damage_Sites_CDA"
    assert _class_counts(labels) == {"1": 1, "2": 2, "6": 1}
    assert labels.epoch == dt.date(2016, 9, 18)
