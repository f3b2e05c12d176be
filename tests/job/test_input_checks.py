"""Bad inputs found before any pixel moves (or, for an empty result, named after the merge):
each is an InputError / SpecError naming the file or key, through `run_job`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from distributed import Client
from shapely import affinity
from shapely.geometry import Point, Polygon

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.polygons import read_polygons
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.job.spec.files import validate_spec_files
from ruinmap.errors import InputError, SpecError
from ruinmap.synthetic import City
from tests.support.jobs import SHARD, make_job_spec

OPTIONS = IngestOptions(chunk=64, shard=SHARD)


def _nothing_written(spec: JobSpec) -> bool:
    out = Path(spec.output.dir)
    return not (out / "store.zarr").exists() and not (out / ".ruinmap-job").exists()


def _run(spec: JobSpec, client: Client) -> JobResult:
    return run_job(spec, client=client, progress=False, ingest_options=OPTIONS)


def _districts(city: City) -> gpd.GeoDataFrame:
    return gpd.read_file(city.districts_path)


def _with_districts(city: City, out: Path, frame: gpd.GeoDataFrame, **changes: Any) -> JobSpec:
    """The city's job with `frame` as its districts; `changes` replace other top-level tables."""
    path = out.parent / f"{out.name}-districts.geojson"
    frame.to_file(path, driver="GeoJSON")
    return make_job_spec(city, out, districts={"path": str(path), "id": "district_id"},
                         **changes)


def _bowtie(district: Polygon) -> Polygon:
    """A self-intersecting polygon over the district's bounding box (its diagonals cross)."""
    left, bottom, right, top = district.bounds
    return Polygon([(left, bottom), (right, top), (right, bottom), (left, top)])


def test_bowtie_district_is_repaired_with_a_note(
    job_city: City, job_run: JobResult, tmp_path: Path, dask_client: Client,
    caplog: pytest.LogCaptureFixture
) -> None:
    frame = _districts(job_city)
    bowtie = _bowtie(frame.geometry.iloc[0])
    assert not bowtie.is_valid
    frame.loc[0, "geometry"] = bowtie
    # the note and the district table are all this checks: on the session job's store (no
    # ingest) and without products
    spec = _with_districts(job_city, tmp_path / "out", frame,
                           inputs={"store": str(job_run.store)})
    with caplog.at_level(logging.WARNING, logger="ruinmap"):
        result = run_job(spec, client=dask_client, progress=False, write_products=False)
    note = " ".join(r.getMessage() for r in caplog.records)
    assert "invalid polygon" in note and "make_valid" in note and "D001" in note, note
    row = result.districts.iloc[0]
    assert row["district_id"] == "D001"
    # the repaired bowtie is two triangles: half its box, not the zero of lobes that cancel
    assert row["area_km2"] > 0 and row["valid_km2"] > 0


def test_metre_coordinates_in_a_geojson_without_crs_suggest_districts_crs(
    job_city: City, tmp_path: Path, dask_client: Client
) -> None:
    metres = _districts(job_city).to_crs(job_city.crs)
    text = json.loads(metres.to_json())
    text.pop("crs", None)  # as many tools write it: RFC 7946 says WGS 84
    path = tmp_path / "metres.geojson"
    path.write_text(json.dumps(text))
    spec = make_job_spec(job_city, tmp_path / "out",
                         districts={"path": str(path), "id": "district_id"})
    with pytest.raises(SpecError, match=r"districts\.path: .*metres\.geojson' has coordinates "
                       r"from \(33\d+\.\d+, .*outside longitude/latitude ranges.*districts\.crs"):
        _run(spec, dask_client)
    assert _nothing_written(spec)

    fixed = make_job_spec(job_city, tmp_path / "out",
                          districts={"path": str(path), "id": "district_id",
                                     "crs": job_city.crs})
    frame, _ = read_polygons(fixed, validate_spec_files(fixed))
    assert frame.crs == job_city.crs
    assert np.allclose(frame.total_bounds, metres.total_bounds)


def test_point_feature_in_the_districts_is_refused(
    job_city: City, tmp_path: Path, dask_client: Client
) -> None:
    frame = _districts(job_city)
    point = gpd.GeoDataFrame({"district_id": ["P1"], "name": ["a label point"]},
                             geometry=[frame.geometry.iloc[0].centroid], crs=frame.crs)
    spec = _with_districts(job_city, tmp_path / "out", pd.concat([frame, point]))
    with pytest.raises(SpecError, match=r"1 feature\(s\) that are not polygons \(Point\): "
                       r"districts\.id P1"):
        _run(spec, dask_client)
    assert _nothing_written(spec)


def test_districts_outside_the_imagery_are_an_error_before_work(
    job_city: City, tmp_path: Path, dask_client: Client
) -> None:
    frame = _districts(job_city).to_crs(job_city.crs)
    frame["geometry"] = frame.geometry.apply(lambda g: affinity.translate(g, xoff=100_000.0))
    spec = _with_districts(job_city, tmp_path / "out", frame.to_crs("EPSG:4326"))
    left, bottom, right, top = job_city.bounds
    with pytest.raises(InputError, match=r"none of the 10 districts .* overlaps the imagery: .*"
                       rf"the imagery \({left!r}, {bottom!r}, {right!r}, {top!r}\)"):
        _run(spec, dask_client)
    assert _nothing_written(spec)


def test_footprints_far_from_the_imagery_are_an_error_before_work(
    job_city: City, tmp_path: Path, dask_client: Client
) -> None:
    # the footprints of another city (here: the same ones 50 km away) would score nothing
    frame = gpd.read_file(job_city.buildings_path)
    frame["geometry"] = frame.geometry.apply(lambda g: affinity.translate(g, yoff=50_000.0))
    path = tmp_path / "far-buildings.gpkg"
    frame.to_file(path, driver="GPKG")
    spec = make_job_spec(job_city, tmp_path / "out",
                         buildings={"path": str(path), "id": "building_id"})
    with pytest.raises(InputError, match=rf"buildings\.path: none of the {len(frame)} buildings "
                       r"of .*far-buildings\.gpkg' overlaps the imagery: .*buildings\.crs"):
        _run(spec, dask_client)
    assert _nothing_written(spec)


def test_cell_size_larger_than_the_scene_is_an_error_before_work(
    job_city: City, tmp_path: Path, dask_client: Client
) -> None:
    spec = make_job_spec(job_city, tmp_path / "out", grid={"cell_size": 5000})
    with pytest.raises(SpecError, match=r"grid\.cell_size = 5000\.0 m is larger than the "
                       r"imagery \(3200\.0 x 3200\.0 m"):
        _run(spec, dask_client)
    assert _nothing_written(spec)


def _params(city: City, folder: Path, **changes: object) -> dict[str, object]:
    params = make_job_spec(city, folder / "base").method_params.model_dump(mode="json")
    return {**{k: v for k, v in params.items() if v is not None}, **changes}


@pytest.mark.parametrize("case", ["min-pre-above-dates", "one-post-date"])
def test_too_few_dates_for_the_method_are_an_error_before_work(
    case: str, job_city: City, tmp_path: Path, dask_client: Client
) -> None:
    if case == "min-pre-above-dates":
        spec = make_job_spec(job_city, tmp_path / "out",
                             method_params=_params(job_city, tmp_path, min_pre=6))
        message = r"method_params\.min_pre = 6, but the imagery has 5 pre-event date\(s\)"
    else:
        inputs = {"pre": [str(p) for p in job_city.pre_files],
                  "post": [str(job_city.post_files[0])]}
        spec = make_job_spec(job_city, tmp_path / "out", inputs=inputs)
        message = r"method_params\.min_post = 2, but the imagery has 1 post-event date\(s\)"
    with pytest.raises(SpecError, match=message + r" \(inputs\.p\w+\); no pixel could be scored"):
        _run(spec, dask_client)
    assert _nothing_written(spec)


def test_too_few_dates_in_an_ingested_store_are_an_error_before_work(
    job_run: JobResult, job_city: City, tmp_path: Path, dask_client: Client
) -> None:
    store = str(job_run.store)
    spec = make_job_spec(job_city, tmp_path / "out", inputs={"store": store},
                         method_params=_params(job_city, tmp_path, min_post=4))
    with pytest.raises(SpecError, match=r"min_post = 4, but the imagery has 3 post-event "
                       r"date\(s\) \(inputs\.store"):
        _run(spec, dask_client)
    assert not (tmp_path / "out").exists()


def _nan_copy(source: Path, target: Path) -> Path:
    with rasterio.open(source) as src:
        profile, tags = src.profile, src.tags()
        descriptions = src.descriptions
    target.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(np.full((profile["count"], profile["height"], profile["width"]), np.nan,
                          np.float32))
        dst.update_tags(**tags)
        dst.descriptions = descriptions
    return target


def test_all_nan_post_stack_is_an_error_after_the_merge_and_products_are_kept(
    job_city: City, tmp_path: Path, dask_client: Client
) -> None:
    post = [str(_nan_copy(p, tmp_path / "nan_post" / p.name)) for p in job_city.post_files]
    spec = make_job_spec(job_city, tmp_path / "out", inputs={
        "pre": [str(p) for p in job_city.pre_files], "post": post})
    message = (r"no district of 10 has a valid score \(valid_km2 is 0 everywhere\): the imagery "
               r"over the districts is nodata .* \(the imagery has 5 pre and 3 post dates\)")
    with pytest.raises(InputError, match=message):
        _run(spec, dask_client)
    out = Path(spec.output.dir)
    table = pd.read_csv(out / "districts.csv")
    assert len(table) == 10 and (table["valid_km2"] == 0).all()
    with pytest.raises(InputError, match=message):  # the finished job says it again
        _run(spec, dask_client)


LINKS: dict[str, Callable[[Path, Path], str]] = {
    "same-path": lambda pre, folder: str(pre),
    "other-spelling": lambda pre, folder: os.path.join(str(pre.parent), ".", pre.name),
    "symlink": lambda pre, folder: (os.symlink(pre, folder / "link.tif"),
                                    str(folder / "link.tif"))[1],
    "hard-link": lambda pre, folder: (os.link(pre, folder / "hard.tif"),
                                      str(folder / "hard.tif"))[1],
}


@pytest.mark.parametrize("how", sorted(LINKS))
def test_same_file_as_pre_and_post_is_refused(
    how: str, job_city: City, tmp_path: Path, write_geotiff: Callable[..., Path]
) -> None:
    # a copy of one pre image, so that a hard link stays inside tmp_path's file system
    with rasterio.open(job_city.pre_files[0]) as src:
        pre = write_geotiff(tmp_path / "pre.tif", src.read(), crs=src.crs.to_string(),
                            transform=src.transform)
    post = LINKS[how](pre, tmp_path)
    spec = make_job_spec(job_city, tmp_path / "out",
                         inputs={"pre": [str(pre)], "post": [post]})
    with pytest.raises(SpecError, match=r"inputs\.post: '.*' is also in inputs\.pre"):
        validate_spec_files(spec)


def test_empty_district_geometry_is_refused(job_city: City, tmp_path: Path) -> None:
    frame = _districts(job_city)
    frame.loc[0, "geometry"] = Point(0, 0).buffer(0.0)  # empty after buffering
    spec = _with_districts(job_city, tmp_path / "out", frame)
    with pytest.raises(SpecError, match=r"not polygons \(empty\): districts\.id D001"):
        read_polygons(spec, validate_spec_files(spec))
