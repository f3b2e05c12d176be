"""RTC products recognised by name and tags, scales decided from metadata or values, masks,
per-polarisation grouping, zero as data, and the inputs refused (SAFE, ambiguous scales, a
date missing a polarisation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.ingest.plan import plan_inputs
from ruinmap.cluster.ingest.products import mask_pixels, recognise_product, refuse_safe
from ruinmap.cluster.ingest.scale import scale_from_values, to_power
from ruinmap.cluster.storage.store import open_store, read_store_attrs, side_array
from ruinmap.errors import InputError, SpecError
from ruinmap.synthetic import City, make_city
from tests.support.rasters import write_geotiff
from tests.support.rtc import write_products

SMALL = IngestOptions(chunk=32, shard=64)


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("rtc") / "city", size=64, seed=5)


@pytest.mark.parametrize(("name", "kind", "pol", "scale"), [
    ("S1A_IW_20180128T161201_DVP_RTC30_G_gpuned_FD6A_VV.tif", "hyp3-rtc", "VV", "power"),
    ("S1A_IW_20180128T161201_DVP_RTC30_G_sauned_FD6A_VH.tif", "hyp3-rtc", "VH", "amplitude"),
    ("S1B_IW_20180128T161201_DVP_RTC10_G_gdufem_0A1B_VH.tif", "hyp3-rtc", "VH", "db"),
    ("S1A_IW_20180128T161201_DVP_RTG_p_int_0F5B_VV.tif", "hyp3-rtc", "VV", "power"),
    ("OPERA_L2_RTC-S1_T102-217155-IW1_20240703T162341Z_20240703T220516Z_S1A_30_v1.0_VH.tif",
     "opera-rtc-s1", "VH", "power"),
    ("iw-vv.rtc.tiff", "planetary-computer-rtc", "VV", "power"),
    ("scene.tif", "geotiff", None, None),
])
def test_products_are_recognised_by_name(name: str, kind: str, pol: str | None,
                                         scale: str | None) -> None:
    product = recognise_product(f"/data/{name}", {}, (None,), None, "float32",
                                exists=lambda p: False)
    assert (product.kind, product.polarisation, product.scale) == (kind, pol, scale)


def test_opera_track_and_pass_come_from_name_and_tags() -> None:
    name = "OPERA_L2_RTC-S1_T102-217155-IW1_20240703T162341Z_20240703T220516Z_S1A_30_v1.0_VV.tif"
    product = recognise_product(f"/d/{name}", {"ORBIT_PASS_DIRECTION": "Ascending"}, (None,),
                                float("nan"), "float32", exists=lambda p: p.endswith("_mask.tif"))
    assert (product.orbit, product.pass_direction) == (102, "ASCENDING")
    assert product.mask is not None and product.mask.path.endswith("v1.0_mask.tif")


def test_pc_nodata_and_gee_bands_are_recognised() -> None:
    pc = recognise_product("/d/x_VV.tif", {}, (None,), -32768.0, "float32")
    assert (pc.kind, pc.scale, pc.polarisation) == ("planetary-computer-rtc", "power", "VV")
    gee = recognise_product("/d/export.tif", {}, ("VV", "VH", "angle"), None, "float32")
    assert (gee.kind, gee.scale) == ("gee-s1-grd", None)  # GEE states no scale: its values do


def test_scale_tags_are_read() -> None:
    product = recognise_product("/d/a.tif", {"UNITS": "gamma0 dB"}, ("VV",), None, "float32")
    assert product.scale == "db"


@pytest.mark.parametrize(("values", "kind", "expected"), [
    (np.array([1, 3, 4, 9, 20], float), "hyp3-ls-map", [False, False, True, False, True]),
    (np.array([0, 1, 2, 3, 255, np.nan]), "opera-mask", [False, True, True, True, True, False]),
])
def test_mask_layers_mark_layover_and_shadow(values: np.ndarray, kind: str,
                                             expected: list[bool]) -> None:
    assert mask_pixels(kind, values).tolist() == expected


@pytest.mark.parametrize("path", ["S1A_IW_GRDH_1SDV_20230101T000000_20230101T000025_046_A.SAFE",
                                  "data/S1A_X.SAFE/manifest.safe",
                                  "S1A_IW_GRDH_1SDV_20230101T000000_20230101T000025_046.zip"])
def test_safe_products_are_refused_naming_the_ways_to_rtc(path: str) -> None:
    with pytest.raises(InputError, match=r"HyP3.*OPERA.*sarsen") as info:
        refuse_safe(path)
    assert path in str(info.value)


def test_db_values_are_recognised() -> None:
    rng = np.random.default_rng(0)
    db = 10 * np.log10(rng.gamma(5, 0.02, 10_000))
    assert scale_from_values(db, "f.tif", is_sar=True).scale == "db"
    assert scale_from_values(10 ** (db / 10), "f.tif", is_sar=True).scale == "power"


def test_ambiguous_values_are_an_error_naming_the_file() -> None:
    mixed = np.linspace(-0.3, 1.0, 1000)  # neither linear nor dB: standardised, say
    with pytest.raises(InputError, match=r"f\.tif.*inputs\.scale"):
        scale_from_values(mixed, "f.tif", is_sar=True)
    assert scale_from_values(mixed, "f.tif", is_sar=False).scale == "as-is"


@pytest.mark.parametrize("scale", ["db", "amplitude", "power"])
def test_to_power_inverts_each_scale(scale: str) -> None:
    power = np.array([[[0.01, 0.5, np.nan, 2.0]]], np.float32)
    with np.errstate(divide="ignore"):
        given = {"db": 10 * np.log10(power), "amplitude": np.sqrt(power), "power": power}[scale]
    np.testing.assert_allclose(to_power(given.astype(np.float32), scale), power, rtol=1e-6)


def test_per_polarisation_files_are_one_date(city: City, tmp_path: Path) -> None:
    pre, post = write_products(city, tmp_path, "hyp3", "p")
    plan = plan_inputs(pre, post, IngestOptions())
    assert plan.bands == ("VV", "VH")
    assert [len(plan.acquisitions[s]) for s in ("pre", "post")] == [len(city.pre_files),
                                                                    len(city.post_files)]


def test_a_date_missing_a_polarisation_is_an_error_naming_it(city: City, tmp_path: Path
                                                             ) -> None:
    pre, post = write_products(city, tmp_path, "hyp3", "p")
    lone = sorted((tmp_path / "pre").glob("*_VH.tif"))[1]
    lone.unlink()
    with pytest.raises(InputError, match=r"only polarisation.*VV.*VH") as info:
        plan_inputs(pre, post, IngestOptions())
    assert lone.name.replace("_VH", "_VV") in str(info.value)


def test_an_ambiguous_file_is_an_error_telling_to_set_the_scale(tmp_path: Path) -> None:
    values = np.linspace(-0.5, 1.0, 64 * 64, dtype=np.float32).reshape(1, 64, 64)
    for side in ("pre", "post"):
        write_geotiff(tmp_path / f"{side}_VV.tif", values, descriptions=["VV"])
    with pytest.raises(InputError, match=r"pre_VV\.tif.*inputs\.scale"):
        plan_inputs(str(tmp_path / "pre_VV.tif"), str(tmp_path / "post_VV.tif"),
                    IngestOptions())
    plan = plan_inputs(str(tmp_path / "pre_VV.tif"), str(tmp_path / "post_VV.tif"),
                       IngestOptions(scale="power"))
    assert plan.acquisitions["pre"][0].files[0].scale.by == "spec"  # type: ignore[union-attr]
    with pytest.raises(SpecError, match="--scale"):
        plan_inputs(str(tmp_path / "pre_VV.tif"), str(tmp_path / "post_VV.tif"),
                    IngestOptions(scale="linear-ish"))


def _layover_block(shape: tuple[int, int]) -> np.ndarray:
    flags = np.ones(shape, np.uint8)
    flags[10:20, 30:40] = 1 + 4  # tested, layover
    flags[40:44, :] = 1 + 16  # tested, shadow
    return flags


def test_masks_become_nodata_and_are_recorded(city: City, tmp_path: Path,
                                              dask_client: Client) -> None:
    pre, post = write_products(city, tmp_path / "in", "hyp3", "d", mask=_layover_block)
    out = tmp_path / "store.zarr"
    ingest(pre, post, out, SMALL, client=dask_client, progress=False)
    with open_store(out) as ds:
        stack = side_array(ds, "pre").values
    power = rasterio.open(city.pre_files[0]).read()
    assert np.isnan(stack[:, :, 10:20, 30:40]).all() and np.isnan(stack[:, :, 40:44]).all()
    kept = np.ones(power.shape[1:], bool)
    kept[10:20, 30:40] = kept[40:44] = False
    np.testing.assert_allclose(stack[0][:, kept], power[:, kept], rtol=2e-6)
    sources = read_store_attrs(out)["sources"]
    assert all(s["mask"]["kind"] == "hyp3-ls-map" for s in sources)
    share = (100 + 4 * 64) / 64**2
    assert all(abs(s["masked_fraction"] - share) < 0.02 for s in sources)
    assert {s["scale"]["scale"] for s in sources} == {"db"}


def test_zero_is_data_unless_the_file_says_nodata(tmp_path: Path, dask_client: Client) -> None:
    rng = np.random.default_rng(1)
    values = rng.gamma(5, 0.02, (1, 64, 64)).astype(np.float32)
    values[0, :20] = 0.0  # a dark strip: data
    for side in ("pre", "post"):
        write_geotiff(tmp_path / f"{side}.tif", values, descriptions=["VV"])
        write_geotiff(tmp_path / f"{side}_nd.tif", values, descriptions=["VV"], nodata=0.0)
    for suffix, zero_is_nodata in (("", False), ("_nd", True)):
        out = tmp_path / f"store{suffix}.zarr"
        ingest(str(tmp_path / f"pre{suffix}.tif"), str(tmp_path / f"post{suffix}.tif"), out,
               SMALL, client=dask_client, progress=False)
        with open_store(out) as ds:
            strip = side_array(ds, "pre").values[0, 0, :20]
        assert np.isnan(strip).all() == zero_is_nodata
        assert (strip == 0).all() != zero_is_nodata


def test_a_large_nodata_share_is_warned_of_naming_the_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(2)
    values = rng.gamma(5, 0.02, (1, 64, 64)).astype(np.float32)
    holed = values.copy()
    holed[0, :40] = 0.0  # the file says 0 is nodata: 62% of it is empty
    write_geotiff(tmp_path / "pre_VV.tif", holed, descriptions=["VV"], nodata=0.0)
    write_geotiff(tmp_path / "post_VV.tif", values, descriptions=["VV"])
    with caplog.at_level("INFO", logger="ruinmap"):
        plan_inputs(str(tmp_path / "pre_VV.tif"), str(tmp_path / "post_VV.tif"),
                    IngestOptions())
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "pre_VV.tif: 62% nodata" in warnings[0]
    assert any("read as power, decided from its values" in r.getMessage()
               for r in caplog.records)
