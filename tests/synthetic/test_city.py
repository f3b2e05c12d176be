"""The synthetic city: real, georeferenced files, deterministic, with consistent truth."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
from rasterio.features import rasterize

from ruinmap.cluster.job.spec import load_spec
from ruinmap.cluster.job.spec.files import validate_spec_files
from ruinmap.errors import InputError
from ruinmap.synthetic import (
    BAND_TAG_POLARISATION,
    TAG_DATE,
    TAG_ORBIT,
    City,
    LandCover,
    make_city,
    write_job_spec,
)

SIZE = 192


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("city"), size=SIZE, seed=3)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def _mean_vv(paths: tuple[Path, ...]) -> np.ndarray:
    """Per-pixel mean VV over dates; NaN where no date has data (the swath edge)."""
    stack = np.stack([_read(p)[0] for p in paths])
    valid = np.isfinite(stack)
    count = valid.sum(0)
    total = np.where(valid, stack, 0.0).sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def test_every_file_is_written(city: City) -> None:
    paths = [*city.pre_files, *city.post_files, city.districts_path, city.buildings_path,
             city.truth_buildings_path, city.truth_districts_path, city.landcover_path,
             city.destroyed_fraction_path]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert (len(city.pre_files), len(city.post_files)) == (5, 3)


def test_images_share_one_projected_10m_grid(city: City) -> None:
    for path in city.pre_files + city.post_files:
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 32637
            assert src.transform == city.transform
            assert (src.height, src.width) == city.shape == (SIZE, SIZE)
            assert src.res == (10.0, 10.0)
    left, bottom, right, top = city.bounds
    # near Aleppo, in UTM zone 37N metres
    assert 300_000 < left < right < 370_000
    assert 3_980_000 < bottom < top < 4_040_000


def test_dates_in_names_and_tags_agree_and_straddle_the_event(city: City) -> None:
    for path, day in zip(city.pre_files + city.post_files, city.pre_dates + city.post_dates,
                         strict=True):
        assert path.name == f"S1_{day:%Y%m%d}_VV_VH.tif"
        with rasterio.open(path) as src:
            tags = src.tags()
        assert tags[TAG_DATE] == day.isoformat()
        assert tags["TIFFTAG_DATETIME"].startswith(f"{day:%Y:%m:%d}")
        assert int(tags[TAG_ORBIT]) == city.orbit_of[path]
    assert max(city.pre_dates) < city.event_date < min(city.post_dates)
    assert list(city.pre_dates) == sorted(city.pre_dates)


def test_bands_are_named_for_their_polarisation(city: City) -> None:
    with rasterio.open(city.pre_files[0]) as src:
        assert src.descriptions == ("VV", "VH")
        assert [src.tags(b)[BAND_TAG_POLARISATION] for b in (1, 2)] == ["VV", "VH"]
        assert src.dtypes == ("float32", "float32")
        assert np.isnan(src.nodata)


def test_backscatter_is_linear_sigma0_at_c_band_levels(city: City) -> None:
    stack = _read(city.pre_files[0])
    valid = stack[:, np.isfinite(stack).all(0)]
    assert (valid > 0).all()
    vv_db, vh_db = (10 * np.log10(np.median(band)) for band in valid)
    assert -16 < vv_db < -6
    assert vh_db < vv_db - 4  # cross-pol is weaker


def test_buildings_are_brighter_than_roads_and_water(city: City) -> None:
    mean = _mean_vv(city.pre_files)
    cover = _read(city.landcover_path)[0]
    level = {c: 10 * np.log10(np.nanmedian(mean[cover == c])) for c in
             (LandCover.BUILDING, LandCover.ROAD, LandCover.WATER, LandCover.FIELD)}
    assert level[LandCover.BUILDING] > level[LandCover.FIELD] > level[LandCover.ROAD]
    assert level[LandCover.BUILDING] > level[LandCover.WATER] + 10


def test_nodata_edge_and_missing_burst_are_nan(city: City) -> None:
    for path in city.pre_files + city.post_files:
        stack = _read(path)
        assert np.isnan(stack[:, :, 0]).all()  # the swath edge of the first orbit
        assert np.isfinite(stack[:, SIZE // 2, SIZE // 2]).all()
    burst = _read(city.pre_files[1])
    assert np.isnan(burst[0]).all(axis=1).any()  # whole rows missing
    assert not np.isnan(_read(city.pre_files[0])[0]).all(axis=1).any()


def test_destroyed_buildings_darken_after_the_event(city: City) -> None:
    pre, post = _mean_vv(city.pre_files), _mean_vv(city.post_files)
    change_db = 10 * np.log10(post / pre)
    truth = city.buildings
    core = truth[(truth.area_m2 > 200) & ~truth.is_new]
    ids = rasterize(((g, i) for i, g in zip(core.building_id, core.geometry, strict=True)),
                    out_shape=city.shape, transform=city.transform, dtype="int32")
    destroyed = np.isin(ids, core.building_id[core.destroyed]) & np.isfinite(change_db)
    intact = np.isin(ids, core.building_id[~core.destroyed]) & np.isfinite(change_db)
    assert destroyed.sum() > 20
    assert np.mean(change_db[destroyed]) < np.mean(change_db[intact]) - 2.0
    assert abs(np.mean(change_db[intact])) < 1.0


def test_truth_marks_a_clustered_tenth_of_buildings_destroyed(city: City) -> None:
    truth = city.buildings
    assert 0.10 <= truth.destroyed.mean() <= 0.14
    assert not (truth.destroyed & truth.is_new).any()
    assert truth.is_new.any()
    # concentrated in a few districts, not spread evenly
    fractions = city.districts.damaged_fraction.dropna()
    assert fractions.max() > 2 * truth.destroyed.mean()
    assert (fractions < 0.05).any()


def test_buildings_have_realistic_sizes_including_sheds(city: City) -> None:
    area = city.buildings.area_m2
    assert len(area) > 300
    assert area.max() <= 2000 + 1e-6
    assert (area < 50).any() and (area[~city.buildings.is_shed] >= 60).all()
    assert np.allclose(area, city.buildings.geometry.area)


def test_truth_files_match_the_returned_truth(city: City) -> None:
    buildings = gpd.read_parquet(city.truth_buildings_path)
    pd.testing.assert_frame_equal(
        pd.DataFrame(buildings.drop(columns="geometry")),
        pd.DataFrame(city.buildings.drop(columns="geometry")), check_dtype=False,
    )
    districts = pd.read_csv(city.truth_districts_path)
    assert list(districts.district_id) == list(city.districts.district_id)
    np.testing.assert_allclose(districts.damaged_fraction, city.districts.damaged_fraction)


def test_district_fractions_follow_from_the_building_truth(city: City) -> None:
    truth = city.buildings
    by_district = truth.groupby("district_id").apply(
        lambda b: b.area_m2[b.destroyed].sum() / b.area_m2.sum(), include_groups=False
    )
    table = city.districts.set_index("district_id")
    np.testing.assert_allclose(table.loc[by_district.index, "damaged_fraction"], by_district)
    assert table.n_buildings.sum() == len(truth)


def test_districts_are_lon_lat_polygons_covering_the_grid(city: City) -> None:
    info = pyogrio.read_info(city.districts_path)
    assert info["crs"] == "EPSG:4326"
    districts = gpd.read_file(city.districts_path)
    assert {"district_id", "name"} <= set(districts.columns)
    assert districts.district_id.is_unique and districts.name.is_unique
    area = districts.to_crs(city.crs).area.sum()
    assert area == pytest.approx(SIZE * SIZE * 100.0, rel=1e-3)


def test_buildings_file_carries_ids_in_the_grid_crs(city: City) -> None:
    buildings = gpd.read_file(city.buildings_path)
    assert buildings.crs.to_epsg() == 32637
    assert list(buildings.building_id) == list(city.buildings.building_id)


def test_destroyed_fraction_raster_matches_destroyed_area(city: City) -> None:
    lost = _read(city.destroyed_fraction_path)[0]
    destroyed_area = city.buildings.area_m2[city.buildings.destroyed].sum()
    # footprints are rasterized 4x finer, so the areas agree to a few percent
    assert lost.sum() * 100.0 == pytest.approx(destroyed_area, rel=0.05)


def test_same_seed_gives_identical_files(city: City, tmp_path: Path) -> None:
    again = make_city(tmp_path, size=SIZE, seed=3)
    for a, b in zip(city.pre_files + city.post_files, again.pre_files + again.post_files,
                    strict=True):
        np.testing.assert_array_equal(_read(a), _read(b))
    assert city.buildings.geometry.geom_equals(again.buildings.geometry).all()
    pd.testing.assert_frame_equal(city.districts, again.districts)


def test_another_seed_gives_another_city(city: City, tmp_path: Path) -> None:
    other = make_city(tmp_path, size=SIZE, seed=4, n_pre=1, n_post=1)
    assert len(other.buildings) != len(city.buildings) or not np.array_equal(
        other.buildings.destroyed, city.buildings.destroyed
    )


def test_two_orbits_alternate_and_are_tagged(tmp_path: Path) -> None:
    city = make_city(tmp_path, size=64, n_pre=4, n_post=4, orbits=(87, 21), n_districts=3)
    orbits = [city.orbit_of[p] for p in city.pre_files + city.post_files]
    assert orbits == [87, 21, 87, 21, 87, 21, 87, 21]
    assert city.orbits == (87, 21)
    for path in city.pre_files:
        with rasterio.open(path) as src:
            assert int(src.tags()[TAG_ORBIT]) == city.orbit_of[path]
    days = np.diff([d.toordinal() for d in city.pre_dates + city.post_dates])
    assert set(days) == {6}


def test_single_polarisation_writes_one_band(tmp_path: Path) -> None:
    city = make_city(tmp_path, size=64, n_pre=2, n_post=2, polarisations=("VV",))
    assert city.pre_files[0].name.endswith("_VV.tif")
    with rasterio.open(city.pre_files[0]) as src:
        assert src.count == 1 and src.descriptions == ("VV",)


@pytest.mark.parametrize("method", ["pwtt", "log-ratio", "nd-change", "cva"])
def test_written_job_spec_passes_validation(city: City, method: str, tmp_path: Path) -> None:
    path = write_job_spec(city, tmp_path, method=method)
    spec = load_spec(path)
    files = validate_spec_files(spec)
    assert spec.method == method
    assert files.pre == city.pre_files and files.post == city.post_files
    assert spec.districts.id == "district_id"
    assert Path(spec.output.dir) == tmp_path / "out"


def test_job_spec_beside_the_city_uses_relative_paths(city: City) -> None:
    path = write_job_spec(city, method="pwtt", name="job-relative.toml")
    data = tomllib.loads(path.read_text())
    assert data["inputs"]["pre"] == ["pre/S1_*.tif"]
    assert data["districts"]["path"] == "districts.geojson"
    assert validate_spec_files(load_spec(path)).pre == city.pre_files


def test_existing_city_is_not_overwritten_by_accident(city: City) -> None:
    with pytest.raises(InputError, match=r"already holds .* pass overwrite=True"):
        make_city(city.out_dir, size=SIZE, seed=3)


def test_overwrite_replaces_stale_images(tmp_path: Path) -> None:
    make_city(tmp_path, size=64, n_pre=4, n_post=2, n_districts=2)
    city = make_city(tmp_path, size=64, n_pre=2, n_post=2, n_districts=2, overwrite=True)
    assert sorted((tmp_path / "pre").glob("*.tif")) == sorted(city.pre_files)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crs": "EPSG:4326"}, "projected CRS in metres"),
        ({"polarisations": ("VV", "XX")}, "polarisations must be distinct names"),
        ({"size": 32}, "size must be an integer >= 64"),
        ({"n_pre": 0}, "n_pre must be an integer >= 1"),
        ({"orbits": ()}, "orbits must be distinct"),
        ({"destroyed_fraction": 1.5}, r"destroyed_fraction must be in \[0, 1\)"),
    ],
)
def test_impossible_arguments_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        make_city(tmp_path, **kwargs)


def test_event_date_moves_the_schedule(tmp_path: Path) -> None:
    city = make_city(tmp_path, size=64, n_pre=2, n_post=1, n_districts=2,
                     event_date=date(2016, 7, 1))
    assert city.post_dates == (date(2016, 7, 3),)
    assert city.pre_dates == (date(2016, 6, 9), date(2016, 6, 21))
