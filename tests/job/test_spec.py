"""The job spec: parsing, every refusal, round trips, and the file checks before work starts."""

from __future__ import annotations

import json
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from shapely.geometry import box

from ruinmap.cluster.job.spec import JobSpec, dump_toml, load_spec, parse_spec
from ruinmap.cluster.job.spec.files import validate_spec_files
from ruinmap.cluster.methods import (
    DEFAULT_CLASS_NAMES,
    METHODS,
    PARAMS_BY_METHOD,
    CvaParams,
    LogRatioParams,
    NdChangeParams,
    PwttParams,
    metres_to_px,
)
from ruinmap.errors import SpecError

VALID_TOML = """\
method = "pwtt"
[inputs]
pre  = ["data/pre/*.tif"]
post = ["data/post/*.tif"]
[districts]
path = "data/districts.geojson"
id = "district_id"
name = "name"
[buildings]
path = "data/buildings.gpkg"
[grid]
cell_size = 100
[output]
dir = "out/aleppo"
[cluster]
address = "local"
[method_params]
threshold = 3.3
"""


def _districts_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"district_id": ["D1", "D2"], "name": ["North", "South"]},
        geometry=[box(37.0, 36.1, 37.1, 36.2), box(37.0, 36.0, 37.1, 36.1)],
        crs="EPSG:4326",
    )


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    """A folder with images (empty files are enough here), districts, buildings, a job file."""
    data = tmp_path / "data"
    for sub, names in (("pre", ("S1_20230101.tif", "S1_20230113.tif", "S1_20230125.tif")),
                       ("post", ("S1_20230206.tif", "S1_20230218.tif"))):
        (data / sub).mkdir(parents=True)
        for name in names:
            (data / sub / name).write_bytes(b"")
    _districts_frame().to_file(data / "districts.geojson", driver="GeoJSON")
    gpd.GeoDataFrame(
        {"building_id": [1, 2]},
        geometry=[box(37.01, 36.11, 37.0101, 36.1101), box(37.02, 36.02, 37.0201, 36.0201)],
        crs="EPSG:4326",
    ).to_file(data / "buildings.gpkg", driver="GPKG")
    (tmp_path / "job.toml").write_text(VALID_TOML)
    return tmp_path


def _data(job_dir: Path) -> dict[str, Any]:
    with (job_dir / "job.toml").open("rb") as fh:
        return tomllib.load(fh)


def _parse(job_dir: Path, **changes: Any) -> JobSpec:
    data = _data(job_dir)
    for key, value in changes.items():
        table, _, name = key.rpartition("__")
        target = data.setdefault(table, {}) if table else data
        if value is _DELETE:
            target.pop(name, None)
        else:
            target[name] = value
    return parse_spec(data, job_dir, source="job.toml")


_DELETE = object()


# --------------------------------------------------------------------------- valid specs


def test_valid_spec_parses_with_documented_defaults(job_dir: Path) -> None:
    spec = load_spec(job_dir / "job.toml")
    assert spec.method == "pwtt"
    assert spec.grid.cell_size == 100.0
    assert spec.cluster.is_local
    params = spec.method_params
    assert isinstance(params, PwttParams)
    assert params.threshold == 3.3
    assert params.polarisations == ("VV", "VH")
    assert (params.lee_size, params.lee_enl, params.min_pre, params.min_post) == (3, 5.0, 3, 2)
    assert params.radii_m == (50.0, 100.0, 150.0)
    assert params.weights == (0.25, 0.25, 0.25, 0.25)
    assert params.class_thresholds == (2.0, 3.3, 4.0, 5.0)
    assert params.class_labels == DEFAULT_CLASS_NAMES
    assert params.min_building_m2 == 50.0


def test_relative_paths_resolve_against_the_spec_folder(job_dir: Path) -> None:
    spec = load_spec(job_dir / "job.toml")
    assert spec.inputs.pre == (str(job_dir / "data" / "pre" / "*.tif"),)
    assert Path(spec.districts.path) == job_dir / "data" / "districts.geojson"
    assert Path(spec.output.dir) == job_dir / "out" / "aleppo"


def test_absolute_paths_stay_as_given(job_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    spec = _parse(job_dir, output__dir=str(elsewhere / "out"))
    assert Path(spec.output.dir) == elsewhere / "out"


def test_one_glob_string_is_accepted_as_a_list(job_dir: Path) -> None:
    spec = _parse(job_dir, inputs__pre="data/pre/*.tif")
    assert spec.inputs.pre == (str(job_dir / "data" / "pre" / "*.tif"),)


def test_store_alone_is_a_valid_input(job_dir: Path) -> None:
    spec = _parse(job_dir, inputs__pre=_DELETE, inputs__post=_DELETE, inputs__store="s.zarr")
    assert spec.inputs.store == str(job_dir / "s.zarr")
    assert spec.inputs.pre is None


def test_json_job_file_loads_like_toml(job_dir: Path) -> None:
    (job_dir / "job.json").write_text(json.dumps(_data(job_dir)))
    assert load_spec(job_dir / "job.json") == load_spec(job_dir / "job.toml")


@pytest.mark.parametrize("method", METHODS)
def test_json_dict_round_trips_through_parse_spec(job_dir: Path, tmp_path: Path, method: str):
    spec = _parse(job_dir, method=method, method_params={})
    again = parse_spec(json.loads(json.dumps(spec.to_json_dict())), tmp_path / "other")
    assert again == spec
    assert type(again.method_params) is PARAMS_BY_METHOD[method]


def test_toml_text_round_trips(job_dir: Path) -> None:
    spec = _parse(job_dir, method_params={"orbits": {"*_A_*": 14}, "class_names": list("abcd")})
    assert parse_spec(tomllib.loads(spec.to_toml()), "/") == spec


def test_dump_toml_quotes_odd_keys_and_strings() -> None:
    text = dump_toml({"a": 'say "hi"', "t": {"odd key": 1, "x": [1.5, True]}})
    assert tomllib.loads(text) == {"a": 'say "hi"', "t": {"odd key": 1, "x": [1.5, True]}}


def test_spec_is_frozen(job_dir: Path) -> None:
    spec = load_spec(job_dir / "job.toml")
    with pytest.raises(Exception, match="frozen"):
        spec.method = "cva"  # type: ignore[misc]


def test_json_schema_forbids_unknown_keys() -> None:
    schema = JobSpec.model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) >= {"method", "inputs", "districts", "output"}


# --------------------------------------------------------------------------- bad specs


def test_unknown_top_level_key_is_named(job_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"unknown key 'treshold' at the top level.*valid keys"):
        _parse(job_dir, treshold=3)


def test_unknown_key_in_a_table_names_the_table_and_valid_keys(job_dir: Path) -> None:
    with pytest.raises(SpecError) as info:
        _parse(job_dir, districts__idd="x")
    message = str(info.value)
    assert "job.toml" in message
    assert "districts.idd: unknown key 'idd' in [districts]" in message
    assert "did you mean 'id'" in message
    assert "valid keys: path, id, name, layer" in message


def test_unknown_method_lists_the_methods(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="method: 'pwt' is not a method; choose one of pwtt, "
                                        "log-ratio, nd-change, cva"):
        _parse(job_dir, method="pwt")


def test_missing_method_is_named(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="method: missing"):
        _parse(job_dir, method=_DELETE)


def test_missing_required_key_is_named(job_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"districts\.id: missing"):
        _parse(job_dir, districts__id=_DELETE)


@pytest.mark.parametrize("method", METHODS)
def test_unknown_method_params_key_names_the_method_and_its_keys(job_dir: Path, method: str):
    with pytest.raises(SpecError) as info:
        _parse(job_dir, method=method, method_params={"bogus": 1})
    message = str(info.value)
    assert f"method_params.bogus: unknown key 'bogus' in [method_params] for method '{method}'" \
        in message
    valid = ", ".join(PARAMS_BY_METHOD[method].model_fields)
    assert f"valid keys: {valid}" in message


def test_method_params_are_checked_against_the_chosen_method(job_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"unknown key 'lee_size' .* for method 'cva'"):
        _parse(job_dir, method="cva", method_params={"lee_size": 3})


@pytest.mark.parametrize("thresholds", [[2.0, 1.0], [1.0, 1.0], [1.0, 3.0, 2.0]])
def test_class_thresholds_must_be_strictly_ascending(job_dir: Path, thresholds: list[float]):
    with pytest.raises(SpecError, match="class_thresholds: must be strictly ascending"):
        _parse(job_dir, method_params={"class_thresholds": thresholds})


def test_class_thresholds_must_not_be_empty(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="class_thresholds: empty"):
        _parse(job_dir, method_params={"class_thresholds": []})


@pytest.mark.parametrize("method", ["pwtt", "log-ratio", "nd-change", "cva"])
def test_default_threshold_is_one_of_the_default_class_edges(job_dir: Path, method: str):
    params = _parse(job_dir, method=method, method_params={}).method_params
    assert params.fixed_threshold in params.class_thresholds
    k = params.damaged_class
    assert params.class_thresholds[k - 1] == params.threshold


def test_fixed_threshold_that_is_not_a_class_edge_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"threshold 3 is not one of class_thresholds.*add it"):
        _parse(job_dir, method_params={"threshold": 3.0})


@pytest.mark.parametrize("rule", ["otsu", "kittler-illingworth", "gmm"])
def test_automatic_threshold_parses_with_class_multiples(job_dir: Path, rule: str) -> None:
    params = _parse(job_dir, method_params={"threshold": rule}).method_params
    assert params.is_automatic and params.threshold == rule
    assert params.class_multiples == (0.5, 1.0, 1.5, 2.0)
    assert params.class_labels == DEFAULT_CLASS_NAMES
    chosen = params.with_threshold(2.0, (1.0, 2.0, 3.0, 4.0))
    assert not chosen.is_automatic and chosen.damaged_class == 2


def test_unknown_threshold_rule_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="threshold"):
        _parse(job_dir, method_params={"threshold": "otsu-ish"})


def test_automatic_threshold_with_class_thresholds_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="class_thresholds are derived from threshold"):
        _parse(job_dir, method_params={"threshold": "otsu", "class_thresholds": [1.0, 2.0]})


@pytest.mark.parametrize("multiples", [[0.5, 2.0], [1.0, 0.5], [-1.0, 1.0]])
def test_class_multiples_must_hold_one_and_ascend(job_dir: Path, multiples: list[float]):
    with pytest.raises(SpecError, match="class_multiples"):
        _parse(job_dir, method_params={"threshold": "otsu", "class_multiples": multiples})


def test_class_names_must_match_class_multiples(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="class_names has 2 names but class_multiples has 4"):
        _parse(job_dir, method_params={"threshold": "gmm", "class_names": ["a", "b"]})


def test_class_names_must_match_thresholds(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="class_names has 2 names but class_thresholds has 4"):
        _parse(job_dir, method_params={"class_names": ["a", "b"]})


def test_class_labels_fall_back_to_numbered_names(job_dir: Path) -> None:
    spec = _parse(job_dir, method_params={"threshold": 2.0, "class_thresholds": [1.0, 2.0]})
    assert spec.method_params.class_labels == ("class 1", "class 2")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"weights": [0.5, 0.5]}, "weights has 2 values but the score combines 4 layers"),
        ({"weights": [1, -1, 1, 1]}, "weights must be >= 0"),
        ({"lee_size": 4}, "lee_size: must be odd"),
        ({"min_pre": 1}, "min_pre: Input should be greater than or equal to 2"),
        ({"lee_enl": 0}, "lee_enl: Input should be greater than 0"),
        ({"radii_m": [50, -1]}, "radii must be positive"),
        ({"polarisations": ["VV", "VV"]}, "names repeat"),
        ({"orbits": {"*.tif": 0}}, "must be an integer from 1 to 10000"),
        ({"threshold": "high"}, "threshold: must be a number or one of otsu"),
    ],
)
def test_bad_pwtt_parameters_are_refused(job_dir: Path, params: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _parse(job_dir, method_params=params)


def test_both_store_and_pre_post_are_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"inputs: give either pre and post .* not both"):
        _parse(job_dir, inputs__store="s.zarr")


def test_neither_store_nor_pre_post_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="inputs: give pre and post"):
        _parse(job_dir, inputs__pre=_DELETE, inputs__post=_DELETE)


def test_pre_without_post_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="post is missing; pre and post go together"):
        _parse(job_dir, inputs__post=_DELETE)


def test_empty_glob_list_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"inputs\.pre: empty list"):
        _parse(job_dir, inputs__pre=[])


@pytest.mark.parametrize(
    "address",
    ["tcp://host", "http://host:8786", "tcp://host:99999", "remote", "tcp://:8786", "",
     "lsf"],
)
def test_bad_cluster_address_is_refused(job_dir: Path, address: str) -> None:
    with pytest.raises(SpecError, match=r"cluster\.address: '.*' is not a cluster address; "
                                        r"use 'local'"):
        _parse(job_dir, cluster__address=address)


@pytest.mark.parametrize(
    "address", ["local", "tcp://127.0.0.1:8786", "tls://scheduler.example.org:8786",
                "tcp://[::1]:8786"],
)
def test_good_cluster_addresses_are_accepted(job_dir: Path, address: str) -> None:
    assert _parse(job_dir, cluster__address=address).cluster.address == address


def test_non_positive_cell_size_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"grid\.cell_size: Input should be greater than 0"):
        _parse(job_dir, grid__cell_size=0)


def test_url_paths_are_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="is a URL; only local paths"):
        _parse(job_dir, districts__path="s3://bucket/districts.geojson")


def test_every_problem_is_reported_at_once(job_dir: Path) -> None:
    with pytest.raises(SpecError) as info:
        _parse(job_dir, extra=1, cluster__address="nowhere", method_params={"lee_sz": 3})
    message = str(info.value)
    assert message.startswith("job.toml: 3 problems:")
    for key in ("extra:", "cluster.address:", "method_params.lee_sz:"):
        assert key in message


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("method = \n")
    with pytest.raises(SpecError, match=r"bad\.toml: not valid TOML"):
        load_spec(tmp_path / "bad.toml")


def test_json_syntax_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SpecError, match=r"bad\.json: not valid JSON"):
        load_spec(tmp_path / "bad.json")


def test_json_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(SpecError, match="must be a table"):
        load_spec(tmp_path / "list.json")


def test_missing_job_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.toml: no such job file"):
        load_spec(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- method details


def test_nd_change_ndvi_preset_is_the_default() -> None:
    params = NdChangeParams.model_validate({})
    assert (params.preset, params.a, params.b, params.direction) == ("ndvi", "B08", "B04",
                                                                      "decrease")


def test_nd_change_ndbi_preset_sets_swir_and_nir() -> None:
    params = NdChangeParams.model_validate({"preset": "ndbi"})
    assert (params.a, params.b) == ("B11", "B08")


def test_nd_change_custom_bands_drop_the_preset() -> None:
    params = NdChangeParams.model_validate({"a": "B12", "b": "B8A"})
    assert (params.preset, params.a, params.b, params.direction) == (None, "B12", "B8A", "both")


def test_nd_change_band_contradicting_the_preset_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="a = 'B12' contradicts preset 'ndvi'"):
        _parse(job_dir, method="nd-change", method_params={"preset": "ndvi", "a": "B12"})


def test_nd_change_same_band_twice_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match="a and b are the same band"):
        _parse(job_dir, method="nd-change", method_params={"a": "B04", "b": "B04"})


def test_log_ratio_and_cva_defaults() -> None:
    log_ratio = LogRatioParams.model_validate({})
    assert (log_ratio.band, log_ratio.radius_m, log_ratio.threshold) == (None, 30.0, 3.0)
    cva = CvaParams.model_validate({})
    assert (cva.bands, cva.standardize, cva.threshold) == (None, True, 2.0)


def test_orbit_globs_match_names_or_resolved_paths(job_dir: Path) -> None:
    spec = _parse(job_dir, method_params={"orbits": {"*_20230101*": 14, "data/post/*": 87}})
    params = spec.method_params
    assert isinstance(params, PwttParams)
    assert params.orbit_from_spec(job_dir / "data/pre/S1_20230101.tif") == 14
    assert params.orbit_from_spec(job_dir / "data/post/S1_20230206.tif") == 87
    assert params.orbit_from_spec(job_dir / "data/pre/S1_20230113.tif") is None


@pytest.mark.parametrize(("metres", "pixel", "radius"),
                         [(10, 10, 1), (50, 10, 5), (150, 10, 15), (15, 10, 2), (0, 10, 0),
                          (4, 10, 0), (30, 20, 2)])
def test_metres_to_px_rounds_to_whole_pixels(metres: float, pixel: float, radius: int) -> None:
    assert metres_to_px(metres, pixel) == radius


def test_metres_to_px_refuses_bad_pixel_size() -> None:
    with pytest.raises(SpecError, match="pixel size"):
        metres_to_px(10, 0)


# --------------------------------------------------------------------------- file checks


def test_valid_files_pass_and_are_listed(job_dir: Path) -> None:
    files = validate_spec_files(load_spec(job_dir / "job.toml"))
    assert [p.name for p in files.pre] == ["S1_20230101.tif", "S1_20230113.tif",
                                           "S1_20230125.tif"]
    assert len(files.post) == 2
    assert "district_id" in files.districts.fields
    assert files.districts.crs == "EPSG:4326"
    assert files.buildings is not None and files.buildings.n_features == 2
    assert not files.output_dir.exists()  # checked, not created


def test_glob_matching_nothing_is_named(job_dir: Path) -> None:
    spec = _parse(job_dir, inputs__post=["data/post/*.tif", "data/late/*.tif"])
    with pytest.raises(SpecError, match=r"inputs\.post\[1\]: '.*late/\*\.tif' matches no file"):
        validate_spec_files(spec)


def test_missing_plain_input_file_is_named(job_dir: Path) -> None:
    spec = _parse(job_dir, inputs__pre=["data/pre/S1_19990101.tif"])
    with pytest.raises(SpecError, match=r"inputs\.pre\[0\]: '.*S1_19990101\.tif' does not exist"):
        validate_spec_files(spec)


def test_folder_given_as_input_suggests_a_glob(job_dir: Path) -> None:
    spec = _parse(job_dir, inputs__pre=["data/pre"])
    with pytest.raises(SpecError, match=r"is a folder; give a glob such as '.*pre/\*\.tif'"):
        validate_spec_files(spec)


def test_file_in_both_pre_and_post_is_refused(job_dir: Path) -> None:
    spec = _parse(job_dir, inputs__post=["data/post/*.tif", "data/pre/S1_20230101.tif"])
    with pytest.raises(SpecError, match=r"S1_20230101\.tif' is also in inputs\.pre"):
        validate_spec_files(spec)


def test_missing_store_is_named(job_dir: Path) -> None:
    spec = _parse(job_dir, inputs__pre=_DELETE, inputs__post=_DELETE, inputs__store="s.zarr")
    with pytest.raises(SpecError, match=r"inputs\.store: '.*s\.zarr' does not exist"):
        validate_spec_files(spec)


def test_existing_store_passes(job_dir: Path) -> None:
    (job_dir / "s.zarr").mkdir()
    spec = _parse(job_dir, inputs__pre=_DELETE, inputs__post=_DELETE, inputs__store="s.zarr")
    assert validate_spec_files(spec).store == job_dir / "s.zarr"


def test_missing_districts_file_is_named(job_dir: Path) -> None:
    spec = _parse(job_dir, districts__path="data/nowhere.geojson")
    with pytest.raises(SpecError, match=r"districts\.path: '.*nowhere\.geojson' does not exist"):
        validate_spec_files(spec)


def test_unreadable_vector_file_is_named(job_dir: Path) -> None:
    (job_dir / "data" / "junk.geojson").write_text("this is not json")
    spec = _parse(job_dir, buildings__path="data/junk.geojson")
    with pytest.raises(SpecError, match=r"buildings\.path: '.*junk\.geojson' is not a readable"):
        validate_spec_files(spec)


def test_missing_id_field_lists_the_available_fields(job_dir: Path) -> None:
    spec = _parse(job_dir, districts__id="pcode")
    with pytest.raises(SpecError) as info:
        validate_spec_files(spec)
    message = str(info.value)
    assert "job.toml: districts.id: field 'pcode' is not in 'districts.geojson'" in message
    assert "available fields: district_id, name" in message


def test_missing_name_field_is_named(job_dir: Path) -> None:
    spec = _parse(job_dir, districts__name="label")
    with pytest.raises(SpecError, match=r"districts\.name: field 'label' is not in"):
        validate_spec_files(spec)


def test_missing_buildings_id_field_is_named(job_dir: Path) -> None:
    spec = _parse(job_dir, buildings__id="osm_id")
    with pytest.raises(SpecError, match=r"buildings\.id: field 'osm_id' .* available fields: "
                                        r"building_id"):
        validate_spec_files(spec)


def test_point_districts_are_refused(job_dir: Path) -> None:
    frame = _districts_frame().to_crs("EPSG:32637")
    frame.geometry = frame.geometry.centroid
    frame.to_file(job_dir / "data" / "points.geojson", driver="GeoJSON")
    spec = _parse(job_dir, districts__path="data/points.geojson")
    with pytest.raises(SpecError, match="holds Point geometries; polygons are needed"):
        validate_spec_files(spec)


def test_zipped_shapefile_districts_are_accepted(job_dir: Path) -> None:
    shp_dir = job_dir / "shp"
    shp_dir.mkdir()
    frame = _districts_frame().rename(columns={"district_id": "pcode"})  # shapefile: 10 chars
    frame.to_crs("EPSG:32637").to_file(shp_dir / "districts.shp")
    with zipfile.ZipFile(job_dir / "data" / "districts.zip", "w") as archive:
        for part in shp_dir.iterdir():
            archive.write(part, part.name)
    spec = _parse(job_dir, districts__path="data/districts.zip", districts__id="pcode")
    files = validate_spec_files(spec)
    assert files.districts.crs == "EPSG:32637"
    assert files.districts.fields == ("pcode", "name")


def test_geoparquet_districts_are_checked_too(job_dir: Path) -> None:
    _districts_frame().to_parquet(job_dir / "data" / "districts.parquet")
    spec = _parse(job_dir, districts__path="data/districts.parquet")
    files = validate_spec_files(spec)
    assert files.districts.fields == ("district_id", "name")
    assert files.districts.n_features == 2
    with pytest.raises(SpecError, match="available fields: district_id, name"):
        validate_spec_files(_parse(job_dir, districts__path="data/districts.parquet",
                                   districts__id="pcode"))


def test_output_dir_blocked_by_a_file_is_refused(job_dir: Path) -> None:
    (job_dir / "out").write_text("a file where a folder should go")
    spec = load_spec(job_dir / "job.toml")
    with pytest.raises(SpecError, match=r"output\.dir: cannot create '.*aleppo': '.*out' is not "
                                        r"a folder"):
        validate_spec_files(spec)


def test_orbit_glob_matching_no_input_is_refused(job_dir: Path) -> None:
    spec = _parse(job_dir, method_params={"orbits": {"*_1999*": 14}})
    with pytest.raises(SpecError, match=r"method_params\.orbits: '\*_1999\*' matches none"):
        validate_spec_files(spec)


def test_file_problems_are_reported_together(job_dir: Path) -> None:
    spec = _parse(job_dir, inputs__pre=["data/none/*.tif"], districts__id="pcode")
    with pytest.raises(SpecError, match=r"job.toml: 2 problems:\n  inputs\.pre\[0\]:.*\n  "
                                        r"districts\.id:"):
        validate_spec_files(spec)


@pytest.mark.parametrize(("given", "scale"), [("auto", "auto"), ("dB", "db"),
                                              ("Amplitude", "amplitude"), ("power", "power")])
def test_inputs_scale_is_parsed(job_dir: Path, given: str, scale: str) -> None:
    assert _parse(job_dir, inputs__scale=given).inputs.scale == scale


def test_unknown_inputs_scale_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"inputs\.scale.*auto, power, amplitude or db"):
        _parse(job_dir, inputs__scale="linear")


def test_inputs_bands_name_the_bands(job_dir: Path) -> None:
    assert _parse(job_dir, inputs__bands="VV, VH").inputs.bands == ("VV", "VH")
    assert _parse(job_dir).inputs.bands is None


# --------------------------------------------------------------------------- [mask]


def test_mask_defaults_to_the_footprints_when_the_job_has_them(job_dir: Path) -> None:
    from ruinmap.cluster.job.builtup import mask_choice

    spec = load_spec(job_dir / "job.toml")
    assert spec.mask is None
    choice = mask_choice(spec)
    assert (choice.kind, choice.chosen_by, choice.buffer_m) == ("buildings", "default", 10.0)
    assert "footprints buffered by 10 m (the default)" in choice.describe()
    without = mask_choice(_parse(job_dir, buildings=_DELETE))
    assert (without.kind, without.chosen_by) == ("none", "default")
    assert "no [buildings]" in without.describe()


@pytest.mark.parametrize(("table", "kind", "threshold", "classes"), [
    ({"source": "None"}, "none", None, None),
    ({"source": "buildings", "buffer_m": 0}, "buildings", None, None),
    ({"source": "data/built.tif"}, "raster", 0.1, None),
    ({"source": "data/built.tif", "threshold": 0.3}, "raster", 0.3, None),
    ({"source": "data/worldcover.tif", "classes": [50]}, "raster", None, (50,)),
])
def test_mask_table_parses_every_source(job_dir: Path, table: dict[str, Any], kind: str,
                                        threshold: float | None,
                                        classes: tuple[int, ...] | None) -> None:
    from ruinmap.cluster.job.builtup import mask_choice

    spec = _parse(job_dir, mask=table)
    choice = mask_choice(spec)
    assert (choice.kind, choice.chosen_by, choice.threshold, choice.classes) == (
        kind, "spec", threshold, classes)
    if kind == "raster":  # relative to the job file, as every path
        assert choice.path == str(job_dir / table["source"])
        assert choice.to_json()["path"] == choice.path
    assert parse_spec(spec.to_json_dict(), job_dir) == spec


@pytest.mark.parametrize(("table", "message"), [
    ({"source": "x.tif", "classes": [50], "threshold": 0.1}, "either classes"),
    ({"source": "none", "classes": [50]}, "describe a mask raster"),
    ({"source": "x.tif", "classes": []}, "empty"),
    ({"source": "buildings", "buffer_m": -1}, "mask.buffer_m"),
    ({"source": "buildings", "radius": 3}, "radius"),
    ({"source": ""}, "mask.source"),
])
def test_bad_mask_tables_are_refused(job_dir: Path, table: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _parse(job_dir, mask=table)


def test_building_mask_without_buildings_is_refused(job_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"needs building footprints"):
        _parse(job_dir, buildings=_DELETE, mask={"source": "buildings"})


def test_missing_or_unreadable_mask_raster_is_named_before_work(job_dir: Path) -> None:
    spec = _parse(job_dir, mask={"source": "data/nothing.tif"})
    with pytest.raises(SpecError, match=r"mask.source: .*nothing.tif' does not exist"):
        validate_spec_files(spec)
    (job_dir / "data" / "garbage.tif").write_bytes(b"not a tiff")
    spec = _parse(job_dir, mask={"source": "data/garbage.tif"})
    with pytest.raises(SpecError, match=r"mask.source: .*garbage.tif' is not a readable raster"):
        validate_spec_files(spec)
