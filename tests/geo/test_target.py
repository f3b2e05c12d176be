"""The common ingest grid (`ruinmap.cluster.grid`): target grid, pass-through, window reads."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window

from ruinmap.cluster.geo.grid import Grid, pixel_offset
from ruinmap.cluster.geo.target import target_grid
from ruinmap.cluster.ingest.warp import SourceRead, read_window
from ruinmap.errors import InputError, SpecError
from tests.support.rasters import write_geotiff

UTM = CRS.from_epsg(32636).to_wkt()


def _grid(x0: float, y0: float, res: float, width: int, height: int, crs: str = UTM) -> Grid:
    return Grid.of(crs, from_origin(x0, y0, res, res), width, height)


def test_default_target_is_the_reference_when_everything_covers_it():
    ref = _grid(500000, 4000000, 10, 300, 200)
    bigger = _grid(499000, 4001000, 10, 500, 400)
    assert target_grid(ref, [("ref", ref), ("big", bigger)]) == ref


def test_target_is_the_intersection_snapped_inward_to_reference_pixels():
    ref = _grid(500000, 4000000, 10, 300, 200)
    other = _grid(500105, 3999895, 7, 100, 100)  # 500105..500805, 3999195..3999895
    grid = target_grid(ref, [("ref", ref), ("other", other)])
    assert grid.transform == (10.0, 0.0, 500110.0, 0.0, -10.0, 3999890.0)
    assert (grid.width, grid.height) == (69, 69)  # whole pixels inside both
    assert pixel_offset(ref, grid) == (11, 11)


def test_bbox_is_covered_outward():
    ref = _grid(500000, 4000000, 10, 300, 200)
    grid = target_grid(ref, [("ref", ref)], bbox=(500101.0, 3998500.0, 501005.0, 3999800.0))
    assert grid.transform[2] == 500100.0 and grid.transform[5] == 3999800.0
    assert (grid.width, grid.height) == (91, 130)


def test_bbox_in_another_crs_is_transformed():
    ref = _grid(500000, 4000000, 10, 300, 200)
    lonlat = CRS.from_epsg(4326)
    from rasterio.warp import transform_bounds

    box = transform_bounds(CRS.from_wkt(UTM), lonlat, 500500, 3998500, 501500, 3999500)
    grid = target_grid(ref, [("ref", ref)], bbox=box, bbox_crs="EPSG:4326")
    left, bottom, right, top = grid.bounds
    assert 500480 <= left <= 500500 and 501500 <= right <= 501520
    assert 3998480 <= bottom <= 3998500 and 3999500 <= top <= 3999520


def test_crs_override_gives_a_grid_aligned_to_multiples_of_the_resolution():
    ref = _grid(500000, 4000000, 10, 300, 200)
    grid = target_grid(ref, [("ref", ref)], crs="EPSG:4326", resolution=(1e-4, 1e-4))
    assert grid.crs == CRS.from_epsg(4326)
    assert grid.resolution == (1e-4, 1e-4)
    for value in (grid.transform[2], grid.transform[5]):
        assert abs(value / 1e-4 - round(value / 1e-4)) < 1e-6


def test_crs_override_without_resolution_keeps_about_the_same_pixel_size():
    ref = _grid(500000, 4000000, 10, 300, 200)
    grid = target_grid(ref, [("ref", ref)], crs="EPSG:32637")
    assert grid.resolution[0] == pytest.approx(10, rel=0.05)


def test_footprints_that_do_not_overlap_name_the_file():
    ref = _grid(500000, 4000000, 10, 300, 200)
    far = _grid(700000, 4000000, 10, 300, 200)
    with pytest.raises(InputError, match=r"^far.tif: its footprint .* does not overlap .* of ref"):
        target_grid(ref, [("ref", ref), ("far.tif", far)])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"bbox": (1, 1, 0, 2)}, SpecError, r"--bbox"),
        ({"resolution": (0.0, 10.0)}, SpecError, r"--resolution"),
        ({"crs": "not a crs"}, SpecError, r"--crs 'not a crs': not a CRS"),
        ({"bbox": (0, 0, 1, 1)}, InputError, r"does not overlap --bbox"),
    ],
)
def test_bad_grid_settings(kwargs, error, message):
    ref = _grid(500000, 4000000, 10, 300, 200)
    with pytest.raises(error, match=message):
        target_grid(ref, [("ref", ref)], **kwargs)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (_grid(500000, 4000000, 10, 300, 200), (0, 0)),
        (_grid(499900, 4000050, 10, 300, 200), (10, 5)),
        (_grid(499900.0000001, 4000050, 10, 300, 200), (10, 5)),  # float noise
        (_grid(499905, 4000050, 10, 300, 200), None),  # half a pixel off
        (_grid(500000, 4000000, 20, 300, 200), None),  # other resolution
        (_grid(500000, 4000000, 10, 300, 200, CRS.from_epsg(32637).to_wkt()), None),
        (Grid.of(UTM, Affine(10, 1, 500000, 0, -10, 4000000), 300, 200), None),  # rotated
    ],
)
def test_pixel_offset_detects_pass_through(source, expected):
    target = _grid(500000, 4000000, 10, 300, 200)
    assert pixel_offset(source, target) == expected


def test_read_window_passes_through_and_fills_outside_with_nan(tmp_path):
    data = np.arange(2 * 50 * 60, dtype=np.uint16).reshape(2, 50, 60)
    data[0, 0, 0] = 9
    path = write_geotiff(tmp_path / "a.tif", data, nodata=9, block=None)
    source_grid = _grid(500000, 4000000, 10, 60, 50)
    target = _grid(499900, 4000100, 10, 100, 100)  # source sits at col 10, row 10
    read = SourceRead(str(path), 2, "uint16", 9.0, source_grid, pixel_offset(source_grid, target))
    with rasterio.Env():
        block = read_window(read, target, Window(0, 0, 40, 30), resampling="bilinear", nodata=None)
    assert block.shape == (2, 30, 40) and block.dtype == np.float32
    assert np.isnan(block[:, :10, :]).all() and np.isnan(block[:, :, :10]).all()
    assert np.isnan(block[0, 10, 10])  # the nodata value
    np.testing.assert_array_equal(block[1, 10:30, 10:40], data[1, :20, :30].astype(np.float32))
