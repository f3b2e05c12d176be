"""The job's GeoPackages, HXL CSV, H3 grid and STAC catalog, read back by the libraries their
users have (pyogrio, libhxl, pystac), from one real job (`products_run`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h3
import hxl
import numpy as np
import pandas as pd
import pyogrio
import pystac
import pytest
import zarr

from ruinmap.cluster.job.spec import parse_spec
from ruinmap.cluster.outputs.stac import (
    file_checksum,
    refresh_file_checksums,
    validate_catalog,
)
from ruinmap.errors import SpecError
from tests.outputs.conftest import H3_RESOLUTION, ProductsRun


@pytest.mark.parametrize(("name", "layer", "key"), [("districts", "districts", "district_id"),
                                                     ("buildings", "buildings", "mean_score")])
def test_geopackages_read_back_like_the_parquet(products_run: ProductsRun, name: str,
                                                layer: str, key: str) -> None:
    gpkg = pyogrio.read_dataframe(products_run.out / f"{name}.gpkg", layer=layer)
    parquet = pd.read_parquet(products_run.out / f"{name}.parquet").drop(columns="bbox",
                                                                        errors="ignore")
    assert len(gpkg) == len(parquet) > 0
    assert list(gpkg.columns) == list(parquet.columns)
    np.testing.assert_array_equal(gpkg[key].to_numpy(), parquet[key].to_numpy())
    assert pyogrio.read_info(products_run.out / f"{name}.gpkg")["crs"] is not None


def test_pcode_key_flows_through_unchanged_as_text(products_run: ProductsRun) -> None:
    table = pyogrio.read_dataframe(products_run.out / "districts.gpkg")
    assert sorted(table["district_id"]) == sorted(products_run.pcodes.values())
    csv = pd.read_csv(products_run.out / "districts.csv", dtype={"district_id": str})
    assert set(csv["district_id"]) == set(products_run.pcodes.values())


def test_hxl_csv_tags_round_trip_through_libhxl(products_run: ProductsRun) -> None:
    source = hxl.data(str(products_run.out / "districts_hxl.csv"),
                      hxl.InputOptions(allow_local=True))  # libhxl refuses local files by default
    tags = [str(c.display_tag) for c in source.columns]
    assert tags[:2] == ["#adm2+code", "#adm2+name"]
    assert "#affected+buildings+damaged" in tags and "#affected+buildings+total" in tags
    assert "#meta+area+km2" in tags
    rows = list(source)
    assert {row.get("#adm2+code") for row in rows} == set(products_run.pcodes.values())
    plain = pd.read_csv(products_run.out / "districts.csv", dtype={"district_id": str})
    by_code = {row.get("#adm2+code"): row.get("#affected+buildings+damaged") for row in rows}
    for _, district in plain.iterrows():
        assert int(by_code[district["district_id"]]) == district["buildings_damaged"]
    # the built-up figures of the default footprint mask, tagged as areas and a ratio
    for tag, column in (("#meta+area+built+km2", "built_km2"),
                        ("#affected+area+built+damaged+km2", "damaged_built_km2"),
                        ("#affected+area+built+damaged+ratio", "damaged_built_fraction")):
        assert tag in tags
        by_code = {row.get("#adm2+code"): row.get(tag) for row in rows}
        for _, district in plain.iterrows():
            value = by_code[district["district_id"]]
            assert (float(value) if value not in (None, "") else np.nan) == pytest.approx(
                district[column], rel=1e-5, nan_ok=True)


def test_hxl_admin_level_sets_the_key_tag(tmp_path: object) -> None:
    from ruinmap.cluster.outputs.hxl import hxl_tags

    assert hxl_tags(["district_id", "name"], admin_level=1) == ["#adm1+code", "#adm1+name"]


def _h3_reference(run: ProductsRun) -> pd.DataFrame:
    # every pixel at once, plainly: the reference the block-by-block grid must equal
    from pyproj import Transformer

    plan_grid = json.loads((run.out / "job.json").read_text())
    threshold = plan_grid["parameters"]["threshold"]
    score = zarr.open_array(run.out / "store.zarr", path="score", mode="r")[...]
    import rasterio

    with rasterio.open(run.out / "score.tif") as tif:
        transform, crs = tif.transform, tif.crs
    rows, cols = np.nonzero(np.isfinite(score))
    x, y = transform @ (cols + 0.5, rows + 0.5)
    lng, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(x, y)
    frame = pd.DataFrame({
        "h3_cell": [h3.latlng_to_cell(a, b, H3_RESOLUTION) for a, b in zip(lat, lng, strict=True)],
        "valid": 1, "damaged": score[rows, cols] > threshold,
        "score": score[rows, cols].astype(float)})
    return frame.groupby("h3_cell").agg(n_valid=("valid", "sum"), n_damaged=("damaged", "sum"),
                                        mean_score=("score", "mean"))


def test_h3_grid_equals_a_whole_raster_reference(products_run: ProductsRun) -> None:
    grid = pyogrio.read_dataframe(products_run.out / "grid_h3.gpkg").set_index("h3_cell")
    reference = _h3_reference(products_run)
    assert sorted(grid.index) == sorted(reference.index)
    grid = grid.loc[reference.index]
    np.testing.assert_array_equal(grid["n_valid"], reference["n_valid"])
    np.testing.assert_array_equal(grid["n_damaged"], reference["n_damaged"])
    np.testing.assert_allclose(grid["mean_score"], reference["mean_score"], rtol=1e-9)
    np.testing.assert_allclose(grid["damaged_fraction"],
                               reference["n_damaged"] / reference["n_valid"])
    assert (grid["h3_resolution"] == H3_RESOLUTION).all()
    buildings = pd.read_parquet(products_run.out / "buildings.parquet")
    assert grid["buildings_damaged"].sum() <= buildings["damaged"].fillna(False).sum()
    assert grid["buildings"].sum() > 0


@pytest.mark.parametrize("resolution", [-1, 16])
def test_bad_h3_resolution_is_a_spec_error(products_run: ProductsRun, resolution: int) -> None:
    data = {"method": "pwtt", "inputs": {"store": "x.zarr"},
            "districts": {"path": "d.geojson", "id": "id"}, "output": {"dir": "out"},
            "grid": {"h3_resolution": resolution}}
    with pytest.raises(SpecError, match=r"grid\.h3_resolution"):
        parse_spec(data, products_run.out.parent)


def test_stac_catalog_validates_offline(products_run: ProductsRun) -> None:
    checked = validate_catalog(products_run.out / "stac" / "collection.json")
    assert any("projection" in uri for uri in checked)
    assert any("raster" in uri for uri in checked) and any("file" in uri for uri in checked)
    collection = pystac.read_file(str(products_run.out / "stac" / "collection.json"))
    assert isinstance(collection, pystac.Collection)
    collection.validate_all()  # the validator set by validate_catalog: bundled schemas


def test_stac_item_describes_the_products(products_run: ProductsRun) -> None:
    collection = pystac.Collection.from_file(str(products_run.out / "stac" / "collection.json"))
    (item,) = collection.get_items()
    assert collection.catalog_type == pystac.CatalogType.SELF_CONTAINED
    names = {"score.tif", "damage.tif", "grid.tif", "districts.gpkg", "districts_hxl.csv",
             "buildings.gpkg", "map.png", "job.json", "grid_h3.gpkg", "pwtt_layers.tif"}
    hrefs = {asset.get_absolute_href(): asset for asset in item.assets.values()}
    for name in names:
        asset = hrefs[str(products_run.out / name)]
        assert asset.extra_fields["file:checksum"] == file_checksum(products_run.out / name)
        assert asset.extra_fields["file:size"] == (products_run.out / name).stat().st_size
    damage = item.assets["damage_tif"].extra_fields["raster:bands"][0]
    assert damage["nodata"] == 255 and damage["data_type"] == "uint8"
    assert item.assets["score_tif"].extra_fields["raster:bands"][0]["nodata"] == "nan"
    assert len(item.assets["pwtt_layers_tif"].extra_fields["raster:bands"]) == 3  # its layers
    props = item.properties
    assert props["proj:code"].startswith("EPSG:") and len(props["proj:shape"]) == 2
    assert props["ruinmap:method"] == "pwtt" and "threshold" in props["ruinmap:parameters"]
    assert props["ruinmap:pre_start"] <= props["ruinmap:pre_end"] < props["ruinmap:post_start"]
    assert props["start_datetime"][:10] == props["ruinmap:pre_start"][:10]
    assert props["end_datetime"][:10] == props["ruinmap:post_end"][:10]
    assert any(i.get("side") == "pre" and i.get("sha256") for i in props["ruinmap:inputs"])
    lon0, lat0, lon1, lat1 = item.bbox
    assert -180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90


def test_a_rewritten_table_gets_its_checksum_refreshed_in_the_catalog(
    products_run: ProductsRun, tmp_path: Path,
) -> None:
    out = tmp_path / "out"  # a copy: the session's run stays as it was written
    shutil.copytree(products_run.out, out, ignore=shutil.ignore_patterns("store.zarr", ".ruinmap*"))
    table = out / "districts_hxl.csv"
    table.write_text(table.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert refresh_file_checksums(out) == ["districts_hxl_csv"]
    collection = pystac.Collection.from_file(str(out / "stac" / "collection.json"))
    (item,) = collection.get_items()
    assert item.assets["districts_hxl_csv"].extra_fields["file:checksum"] == file_checksum(table)
    assert refresh_file_checksums(out) == []  # now current: nothing rewritten
    validate_catalog(out / "stac" / "collection.json")
