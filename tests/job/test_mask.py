"""The built-up mask: a job with none, a class raster in another CRS, the errors before work,
and the mask of a window equal to the whole image's there (chunking invariance).

The footprint mask (the default of a job with footprints) is held to a whole-image
recomputation in `test_run.py`, on the session's `job_run`, and across two chunkings there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import zarr
from affine import Affine
from distributed import Client
from rasterio.warp import Resampling, calculate_default_transform, reproject

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.builtup import MaskChoice, window_mask
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.methods import ScoreContext, compute_score
from ruinmap.cluster.storage.store import read_store_attrs
from ruinmap.errors import InputError
from ruinmap.synthetic import City
from ruinmap.synthetic.radar import LandCover
from tests.support.jobs import SHARD

BUILT_CLASSES = [LandCover.OPEN, LandCover.ROAD, LandCover.BUILDING]  # as WorldCover's 50


def _run(spec: JobSpec, client: Client) -> JobResult:
    return run_job(spec, client=client, progress=False, write_products=False,
                   ingest_options=IngestOptions(chunk=64, shard=SHARD))


def _whole(result: JobResult, mask: np.ndarray | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Grid]:
    """(the job's score, the method's score on the whole stacks with `mask` and NaN outside
    it, where the statistic was valid, the grid)."""
    store = str(result.store)
    pre = zarr.open_array(store=store, path="pre", mode="r")[...]
    post = zarr.open_array(store=store, path="post", mode="r")[...]
    context = ScoreContext(bands=("VV", "VH"), pre_orbits=(0,) * pre.shape[0],
                           post_orbits=(0,) * post.shape[0], pixel_size_m=10.0)
    valid = np.empty(pre.shape[2:], bool)
    whole = compute_score(pre, post, result.spec.method_params, context, mask, valid)
    if mask is not None:
        whole[~mask] = np.nan
    score = zarr.open_array(store=store, path="score", mode="r")[...]
    return score, whole, valid, Grid.from_attrs(read_store_attrs(store)["grid"])


def _district_labels(result: JobResult, grid: Grid) -> np.ndarray:
    frame = gpd.read_file(result.spec.districts.path).to_crs(grid.crs_wkt)
    return rasterio.features.rasterize(
        [(g, i + 1) for i, g in enumerate(frame.geometry)], out_shape=grid.shape,
        transform=Affine(*grid.transform), fill=0, dtype="int32")


def _landcover_in_lonlat(city: City, path: Path) -> Path:
    """The city's land cover warped to EPSG:4326 (nearest): a class raster in another CRS."""
    with rasterio.open(city.landcover_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        out = np.zeros((height, width), np.uint8)
        reproject(src.read(1), out, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs="EPSG:4326", resampling=Resampling.nearest)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="uint8", crs="EPSG:4326", transform=transform, nodata=0) as dst:
        dst.write(out, 1)
    return path


def test_no_mask_scores_every_pixel_and_counts_valid_statistics_only(
    job_city: City, dask_client: Client, job_spec_for: Callable[..., JobSpec],
) -> None:
    out = job_city.out_dir.parent / "mask_none"
    # pwtt's reference re-masks its score to its data (mask_score_to_data): off here, so
    # the focal steps' spread into nodata shows
    params = {**job_spec_for(job_city, out).to_json_dict()["method_params"],
              "mask_score_to_data": False}
    result = _run(job_spec_for(job_city, out, mask={"source": "none"}, method_params=params),
                  dask_client)
    assert result.mask is not None and result.mask["kind"] == "none"
    score, whole, observed, grid = _whole(result, None)
    np.testing.assert_allclose(score, whole, rtol=1e-5, atol=1e-5, equal_nan=True)
    # the focal steps score nodata pixels near valid ones (the swath edges): not valid area
    spread = np.isfinite(score) & ~observed
    assert spread.sum() > 100
    labels = _district_labels(result, grid)
    n = len(result.districts)
    table = result.districts
    np.testing.assert_allclose(table["valid_km2"],
                               np.bincount(labels[observed], minlength=n + 1)[1:] * 1e-4,
                               rtol=1e-12)
    assert table[["built_km2", "damaged_built_km2", "damaged_built_fraction"]].isna().all().all()
    damaged = np.bincount(labels[observed & (score > result.spec.method_params.threshold)],
                          minlength=n + 1)[1:]
    np.testing.assert_allclose(table["damaged_km2"], damaged * 1e-4, rtol=1e-12)


def test_class_raster_in_another_crs_is_reprojected_onto_the_grid(
    job_city: City, dask_client: Client, job_spec_for: Callable[..., JobSpec], tmp_path: Path,
) -> None:
    path = _landcover_in_lonlat(job_city, tmp_path / "landcover_4326.tif")
    spec = job_spec_for(job_city, job_city.out_dir.parent / "mask_classes",
                        mask={"source": str(path), "classes": BUILT_CLASSES})
    result = _run(spec, dask_client)
    assert result.mask is not None and result.mask["kind"] == "raster"
    store = str(result.store)
    grid = Grid.from_attrs(read_store_attrs(store)["grid"])
    # the whole grid's mask in one piece, which each tile's window equals (tested below)
    choice = MaskChoice(kind="raster", chosen_by="spec", path=str(path),
                        classes=tuple(BUILT_CLASSES))
    mask = window_mask(choice, grid, (0, 0, grid.height, grid.width), np.empty(0, object), 10.0)
    assert mask is not None and 0.2 < mask.mean() < 0.9
    # ... and the land cover warped back by GDAL's reproject: the same but for a few pixels
    # on class edges, where the two warp paths may pick the other nearest source pixel
    classes = np.zeros(grid.shape, np.uint8)
    with rasterio.open(path) as src:
        reproject(rasterio.band(src, 1), classes, dst_transform=Affine(*grid.transform),
                  dst_crs=grid.crs_wkt, resampling=Resampling.nearest)
    assert (np.isin(classes, BUILT_CLASSES) != mask).mean() < 0.005
    score, whole, observed, _ = _whole(result, mask)
    np.testing.assert_allclose(score, whole, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert not np.isfinite(score[~mask]).any()
    labels = _district_labels(result, grid)
    n = len(result.districts)
    built = np.bincount(labels[observed & mask], minlength=n + 1)[1:] * 1e-4
    np.testing.assert_allclose(result.districts["built_km2"], built, rtol=1e-12)


@pytest.mark.parametrize("threshold", [0.1, 0.5])
@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_probability_raster_window_equals_whole_grid_there(
    job_city: City, tmp_path: Path, threshold: float, crs: str,
) -> None:
    """The mask of any padded window is the whole grid's mask cut there, so tiles agree."""
    with rasterio.open(job_city.landcover_path) as src:
        cover = src.read(1)
        grid = Grid.of(src.crs, src.transform, src.width, src.height)
        probability = np.select([cover == LandCover.BUILDING, cover == LandCover.ROAD],
                                [0.9, 0.3], 0.05).astype(np.float32)
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds)
        warped = np.full((height, width), np.nan, np.float32)
        reproject(probability, warped, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs=crs, dst_nodata=np.nan,
                  resampling=Resampling.bilinear)
    path = tmp_path / "built.tif"
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="float32", crs=crs, transform=transform, nodata=np.nan) as dst:
        dst.write(warped, 1)
    choice = MaskChoice(kind="raster", chosen_by="spec", path=str(path), threshold=threshold)
    whole = window_mask(choice, grid, (0, 0, grid.height, grid.width), np.empty(0, object),
                        10.0)
    assert whole is not None and 0.05 < whole.mean() < 0.95
    for window in [(0, 0, 100, 130), (37, 201, 320, 320), (150, 10, 151, 300)]:
        part = window_mask(choice, grid, window, np.empty(0, object), 10.0)
        r0, c0, r1, c1 = window
        np.testing.assert_array_equal(part, whole[r0:r1, c0:c1])


def test_footprint_window_mask_equals_whole_grid_there(job_city: City) -> None:
    grid = Grid.of(job_city.crs, job_city.transform, job_city.shape[1], job_city.shape[0])
    geoms = job_city.buildings.to_crs(grid.crs_wkt).geometry.to_numpy()
    choice = MaskChoice(kind="buildings", chosen_by="default", buffer_m=10.0)
    wkb = shapely.to_wkb(geoms)
    whole = window_mask(choice, grid, (0, 0, grid.height, grid.width), wkb, 10.0)
    assert whole is not None
    for r0, c0, r1, c1 in [(0, 0, 100, 130), (37, 201, 320, 320)]:
        # only the footprints near the window, as a tile gets them
        near = shapely.intersects(geoms, shapely.box(*grid.window(
            r0 - 2, c0 - 2, r1 - r0 + 4, c1 - c0 + 4).bounds).buffer(10.0))
        part = window_mask(choice, grid, (r0, c0, r1, c1), wkb[near], 10.0)
        np.testing.assert_array_equal(part, whole[r0:r1, c0:c1])


def test_mask_raster_covering_nothing_is_refused_before_work(
    job_city: City, dask_client: Client, job_spec_for: Callable[..., JobSpec], tmp_path: Path,
) -> None:
    path = tmp_path / "elsewhere.tif"
    with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=Affine(0.01, 0, 100.0, 0, -0.01, 10.0)) as dst:
        dst.write(np.full((10, 10), 50, np.uint8), 1)
    out = job_city.out_dir.parent / "mask_elsewhere"
    spec = job_spec_for(job_city, out, mask={"source": str(path), "classes": [50]})
    with pytest.raises(InputError, match=r"mask.source: .*elsewhere.tif' covers nothing of the "
                                         r"imagery: it spans \(100.0, "):
        _run(spec, dask_client)
    assert not (out / "store.zarr").exists()


def test_mask_raster_without_built_up_pixels_is_an_error_after_the_products(
    job_city: City, dask_client: Client, job_spec_for: Callable[..., JobSpec], tmp_path: Path,
) -> None:
    path = _landcover_in_lonlat(job_city, tmp_path / "landcover_4326.tif")
    out = job_city.out_dir.parent / "mask_empty"
    spec = job_spec_for(job_city, out, mask={"source": str(path), "classes": [99]})
    with pytest.raises(InputError, match=r"holds no built-up pixel in any district"):
        _run(spec, dask_client)


def test_footprints_far_from_the_imagery_are_refused_before_work(
    job_city: City, dask_client: Client, job_spec_for: Callable[..., JobSpec], tmp_path: Path,
) -> None:
    far = job_city.buildings.copy()
    far["geometry"] = far.geometry.translate(xoff=500_000.0)
    path = tmp_path / "far_buildings.gpkg"
    far.to_file(path, driver="GPKG")
    out = job_city.out_dir.parent / "mask_far"
    spec = job_spec_for(job_city, out, buildings={"path": str(path), "id": "building_id"})
    with pytest.raises(InputError, match=r"none of the \d+ buildings .* overlaps the imagery"):
        _run(spec, dask_client)
    assert not (out / "store.zarr").exists()
