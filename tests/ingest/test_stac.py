"""STAC inputs: a static catalog made here with pystac from real GeoTIFFs (the Joplin tiles),
and a STAC API on 127.0.0.1 (tests/support/stac_api.py) serving Sentinel-2 L2A-shaped items
made from the real OSCD Bercy bands, their assets read over HTTP through GDAL's /vsicurl/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from ruinmap.cli import main
from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.ingest.stac import StacQuery, plan_stac_inputs, search_summary
from ruinmap.cluster.storage.store import open_store, read_store_attrs, side_array
from ruinmap.errors import InputError, SpecError
from tests.support.stac_items import S2, AssetFile, make_item, s2_api_server, write_catalog

SMALL = IngestOptions(chunk=64, shard=128)


# ---------------------------------------------------------------- static catalog: Joplin


@pytest.fixture
def joplin_tiles(shared_data):
    root = shared_data / "joplin-tornado"
    pre = sorted((root / "pre").glob("*.tif"))
    post = sorted((root / "post").glob("*.tif"))
    if len(pre) != 2 or len(post) != 2:
        pytest.skip(f"real data absent: {root}")
    return pre, post


def _joplin_catalog(folder: Path, pre: list[Path], post: list[Path]) -> Path:
    items = [make_item(f"pre-{p.stem}", "2011-04-01T17:00:00Z", {"image": AssetFile(p)},
                       collection="joplin") for p in pre]
    items += [make_item(f"post-{p.stem}", "2011-05-24T18:00:00Z", {"image": AssetFile(p)},
                        collection="joplin") for p in post]
    return write_catalog(folder, items, collection_id="joplin")


def _joplin_query(catalog: Path, **changes: Any) -> StacQuery:
    query = StacQuery(source=str(catalog), is_api=False, pre_datetime="2011-03-01/2011-04-30",
                      post_datetime="2011-05-23/2011-06-30", assets=("image",))
    return replace(query, **changes)


def test_static_catalog_tiles_of_one_date_equal_the_same_files_given_as_globs(
        tmp_path, dask_client, joplin_tiles):
    pre, post = joplin_tiles
    catalog = _joplin_catalog(tmp_path / "catalog", pre, post)
    # a box across the seam of the two pre tiles (lat 37.07186..37.07195), inside the northern
    # post tile
    box = (-94.4990, 37.0705, -94.4950, 37.0735)
    options = IngestOptions(chunk=256, shard=256)
    plan = plan_stac_inputs(_joplin_query(catalog, bbox=box), options)
    assert [len(a.members) for a in plan.acquisitions["pre"]] == [2]
    assert plan.bands == ("image_1", "image_2", "image_3")
    via_stac, via_files = tmp_path / "stac.zarr", tmp_path / "files.zarr"
    ingest([], [], via_stac, options, client=dask_client, inputs=plan)
    ingest(pre, post, via_files, replace(options, bbox=box, bbox_crs="EPSG:4326"),
           client=dask_client)
    a, b = open_store(via_stac), open_store(via_files)
    for side in ("pre", "post"):
        np.testing.assert_array_equal(side_array(a, side).values, side_array(b, side).values)
    sources = read_store_attrs(via_stac)["sources"]
    # the southern post tile misses the box: left out of the search, as it is of the grid
    assert sorted(s["stac_item"] for s in sources) == [
        "joplin/post-tile_31500-5137", "joplin/pre-tile_337-10160", "joplin/pre-tile_337-9136"]
    assert all(s["sha256"] is None and s["date_source"] == "stac:datetime" for s in sources)


def test_static_catalog_outside_the_dates_is_zero_items_named(tmp_path, joplin_tiles):
    catalog = _joplin_catalog(tmp_path / "catalog", *joplin_tiles)
    with pytest.raises(InputError, match=r"has no pre-event item for datetime "
                                         r"'2012-01-01/2012-02-01'.*widen"):
        plan_stac_inputs(_joplin_query(catalog, pre_datetime="2012-01-01/2012-02-01"), SMALL)


def test_query_on_a_static_catalog_is_a_spec_error(tmp_path, joplin_tiles):
    catalog = _joplin_catalog(tmp_path / "catalog", *joplin_tiles)
    with pytest.raises(SpecError, match="query and filter need a STAC API"):
        plan_stac_inputs(_joplin_query(catalog, query={"eo:cloud_cover": {"lt": 10}}), SMALL)


def test_static_catalog_items_outside_the_bbox_are_left_out(tmp_path, joplin_tiles):
    catalog = _joplin_catalog(tmp_path / "catalog", *joplin_tiles)
    # a box over the northern pre tile only (lat 37.0720..37.0775)
    query = _joplin_query(catalog, bbox=(-94.4999, 37.0722, -94.4935, 37.0760))
    rows = search_summary(query)
    pre_rows = [r for r in rows if r.side == "pre"]
    assert [len(r.items) for r in pre_rows] == [1]
    assert pre_rows[0].coverage == pytest.approx(1.0)


def test_asset_that_is_not_a_raster_is_named(tmp_path, joplin_tiles):
    pre, post = joplin_tiles
    note = tmp_path / "notes.json"
    note.write_text(json.dumps({"not": "a raster"}))
    items = [make_item("pre-a", "2011-04-01T17:00:00Z",
                       {"image": AssetFile(pre[0]),
                        "meta": AssetFile(note, media_type="application/json")}),
             make_item("post-a", "2011-05-24T18:00:00Z", {"image": AssetFile(post[0]),
                                                          "meta": AssetFile(note)})]
    catalog = write_catalog(tmp_path / "c", items)
    with pytest.raises(InputError, match=r"item test-collection/pre-a, asset 'meta': media type "
                                         r"'application/json' is not a raster"):
        plan_stac_inputs(_joplin_query(catalog, assets=("image", "meta")), SMALL)
    # declared a GeoTIFF but is not one: GDAL's refusal, named
    items[0].assets["meta"].media_type = None
    catalog = write_catalog(tmp_path / "d", items)
    with pytest.raises(InputError, match=r"item test-collection/pre-a, asset 'meta' .*not a "
                                         r"readable raster"):
        plan_stac_inputs(_joplin_query(catalog, assets=("image", "meta")), SMALL)


def test_missing_asset_lists_what_the_item_has(tmp_path, joplin_tiles):
    catalog = _joplin_catalog(tmp_path / "catalog", *joplin_tiles)
    with pytest.raises(InputError, match=r"no asset 'vv' \(by key or role\); it has image"):
        plan_stac_inputs(_joplin_query(catalog, assets=("vv",)), SMALL)


# ------------------------------------------------------- STAC API: Sentinel-2 L2A at Bercy


@pytest.fixture
def bercy(shared_data):
    root = shared_data / "oscd-bercy"
    if not (root / "imgs_1").is_dir() or not (root / "imgs_2").is_dir():
        pytest.skip(f"real data absent: {root}")
    return root


@pytest.fixture
def s2_api(tmp_path_factory, bercy) -> Iterator[dict[str, Any]]:
    with s2_api_server(bercy, tmp_path_factory.mktemp("s2assets")) as api:
        yield api


def _s2_query(url: str, **changes: Any) -> StacQuery:
    query = StacQuery(source=url, is_api=True, collections=(S2,),
                      pre_datetime="2016-11-01/2016-12-31",
                      post_datetime="2017-08-01/2017-09-30", assets=("B04", "B08", "B11"),
                      mask="SCL", mask_classes=(3, 8, 9, 10))
    return replace(query, **changes)


def test_api_l2a_items_ingest_scaled_with_scl_clouds_as_nodata(tmp_path, dask_client, s2_api):
    plan = plan_stac_inputs(_s2_query(s2_api["url"]), SMALL)
    assert plan.bands == ("B04", "B08", "B11")
    out = tmp_path / "s2.zarr"
    ingest([], [], out, SMALL, client=dask_client, inputs=plan)
    ds = open_store(out)
    pre = side_array(ds, "pre").values[0]
    with rasterio.open(s2_api["files"]["pre"]["B04"]) as src:
        dn = src.read(1).astype(np.float32)
    with rasterio.open(s2_api["files"]["pre"]["SCL"]) as src:
        scl = src.read(1)
    # the 20 m SCL on the 10 m grid: pixel (r, c) takes SCL (r // 2, c // 2)
    scl10 = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)[:dn.shape[0], :dn.shape[1]]
    cloud = np.isin(scl10, (3, 8, 9, 10)) | (scl10 == 0)
    assert cloud.sum() > 1000
    assert np.isnan(pre[:, cloud]).all()
    clear = ~cloud & (dn > 0)
    expected = dn * np.float32(0.0001) + np.float32(-0.1)
    np.testing.assert_allclose(pre[0][clear], expected[clear], rtol=1e-6)
    post = side_array(ds, "post").values[0]
    assert np.isfinite(post[0]).mean() > 0.99  # the post SCL has no cloud
    sources = read_store_attrs(out)["sources"]
    masks = [s for s in sources if s.get("mask_classes")]
    assert len(masks) == 2 and all(s["bands"] == [] for s in masks)
    assert {s["orbit"] for s in sources if s["bands"]} == {51}


def test_api_zero_items_is_an_input_error(s2_api):
    query = _s2_query(s2_api["url"], post_datetime="2019-01-01/2019-02-01")
    with pytest.raises(InputError, match=r"no post-event item for datetime "
                                         r"'2019-01-01/2019-02-01', collections \['sentinel-2"):
        plan_stac_inputs(query, SMALL)


def test_api_query_extension_filters_items(s2_api):
    query = _s2_query(s2_api["url"], query={"eo:cloud_cover": {"lt": 10}})
    with pytest.raises(InputError, match="no pre-event item"):
        plan_stac_inputs(query, SMALL)


def test_api_paging_follows_next_links(s2_api):
    extra = []
    for k in range(12):  # 13 pre items on one day: several pages of 10
        item = json.loads(json.dumps(s2_api["items"][0]))
        item["id"] = f"S2_pre_copy{k:02d}"
        extra.append(item)
    s2_api["items"].extend(extra)
    try:
        rows = search_summary(_s2_query(s2_api["url"]))
    finally:
        del s2_api["items"][-len(extra):]
    assert [len(r.items) for r in rows if r.side == "pre"] == [13]


def _signed(href: str) -> str:
    return href.replace("/assets/", "/signed/") + "?token=valid"


def _expired(href: str) -> str:
    return href.replace("/assets/", "/signed/") + "?token=old"


def test_signer_hook_signs_every_asset_and_keeps_tokens_out_of_the_store(
        tmp_path, dask_client, s2_api):
    query = _s2_query(s2_api["url"], sign=f"{__name__}:_signed")
    plan = plan_stac_inputs(query, SMALL)
    out = tmp_path / "signed.zarr"
    ingest([], [], out, SMALL, client=dask_client, inputs=plan)
    text = json.dumps(read_store_attrs(out)["sources"])
    assert "/assets/" in text and "token" not in text and "/signed/" not in text
    assert np.isfinite(side_array(open_store(out), "post").values).mean() > 0.9


def test_expired_signature_is_an_input_error_naming_the_item(s2_api):
    query = _s2_query(s2_api["url"], sign=f"{__name__}:_expired")
    with pytest.raises(InputError, match=r"STAC item sentinel-2-l2a/S2_pre, asset 'B04' "
                                         r"\(http://127\.0\.0\.1:\d+/signed/pre/B04\.tif\): "
                                         r"access refused \(HTTP 403\).*sign again"):
        plan_stac_inputs(query, SMALL)


def test_signature_expiring_during_the_ingest_names_the_item_without_its_token(
        tmp_path, dask_client, s2_api):
    plan = plan_stac_inputs(_s2_query(s2_api["url"], sign=f"{__name__}:_signed"), SMALL)
    s2_api["app"].state.valid_token = "rotated"  # every signature given so far has expired
    try:
        with pytest.raises(InputError, match=r"STAC item sentinel-2-l2a/S2_\w+: .*signature "
                                             r"may have expired") as caught:
            ingest([], [], tmp_path / "x.zarr", SMALL, client=dask_client, inputs=plan)
    finally:
        s2_api["app"].state.valid_token = "valid"
    assert "token" not in str(caught.value)


def test_unknown_signer_is_a_spec_error(s2_api):
    with pytest.raises(SpecError, match=r"inputs.stac.sign = 'nowhere:sign': cannot load it"):
        plan_stac_inputs(_s2_query(s2_api["url"], sign="nowhere:sign"), SMALL)


def test_items_of_one_date_at_two_pixel_sizes_need_a_resolution(s2_api):
    # the B11 asset (20 m) of a second item of the pre date, offered as its B04
    twin = json.loads(json.dumps(s2_api["items"][0]))
    twin["id"] = "S2_pre_coarse"
    twin["assets"]["B04"]["href"] = twin["assets"]["B11"]["href"]
    s2_api["items"].append(twin)
    try:
        with pytest.raises(InputError, match=r"sentinel-2-l2a/S2_pre_coarse: pixel size .* "
                                             r"differs .*give the target grid's resolution"):
            plan_stac_inputs(_s2_query(s2_api["url"]), SMALL)
        plan = plan_stac_inputs(_s2_query(s2_api["url"]),
                                replace(SMALL, resolution=(1.2e-4, 1.2e-4)))
        assert len(plan.acquisitions["pre"][0].members) == 2
    finally:
        s2_api["items"].remove(twin)


def test_stac_search_command_prints_items_dates_orbits_and_coverage(tmp_path, s2_api, capsys):
    districts = tmp_path / "districts.geojson"
    districts.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": 1}, "geometry": {"type": "Polygon",
         "coordinates": [[[2.37, 48.83], [2.39, 48.83], [2.39, 48.85], [2.37, 48.85],
                          [2.37, 48.83]]]}}]}))
    job = tmp_path / "job.toml"
    job.write_text(f"""method = "nd-change"
[inputs.stac]
url = "{s2_api['url']}"
collections = ["{S2}"]
pre_datetime = "2016-11-01/2016-12-31"
post_datetime = "2017-08-01/2017-09-30"
assets = ["B04", "B08", "B11"]
mask = "SCL"
[districts]
path = "{districts}"
id = "id"
[output]
dir = "{tmp_path / 'out'}"
""")
    assert main(["stac", "search", str(job)]) == 0
    out = capsys.readouterr().out
    assert "pre: 1 date(s) from 1 item(s)" in out
    assert "2016-11-30 orbit 51: 1 item(s), covers 100.0 % of (2.37, 48.83, 2.39, 48.85)" in out
    assert "sentinel-2-l2a/S2_post" in out
