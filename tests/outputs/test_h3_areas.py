"""The H3 grid's km² are ground areas: on a lon/lat raster each pixel's geodesic area (it
shrinks with latitude), not square degrees; on a projected raster the pixel's area."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS, Geod

from ruinmap.cluster.outputs.h3grid import h3_grid


@pytest.mark.parametrize("lat", [0.0, 36.2, 60.0])
def test_h3_km2_on_a_lonlat_raster_are_geodesic_pixel_areas(lat: float) -> None:
    res = 1e-3  # ~100 m pixels over 0.04 degrees: several H3 cells at resolution 7
    score = np.full((40, 30), 4.0, np.float32)
    score[::3, ::2] = 1.0  # some pixels below the threshold
    score[5:8, 5:9] = np.nan
    transform = Affine(res, 0.0, 37.0, 0.0, -res, lat + 0.02)
    grid = h3_grid(score, transform, CRS.from_epsg(4326).to_wkt(), 7, 3.3, block=16)
    geod = Geod(ellps="WGS84")
    top = lat + 0.02 - np.arange(40) * res
    row_m2 = np.array([abs(geod.polygon_area_perimeter(
        [37.0, 37.0 + res, 37.0 + res, 37.0], [t - res, t - res, t, t])[0]) for t in top])
    area = np.broadcast_to(row_m2[:, None], score.shape)
    valid = np.isfinite(score)
    assert grid["valid_km2"].sum() == pytest.approx(area[valid].sum() / 1e6, rel=1e-9)
    assert grid["damaged_km2"].sum() == pytest.approx(area[score > 3.3].sum() / 1e6, rel=1e-9)
    assert grid["n_valid"].sum() == valid.sum()


def test_h3_km2_on_a_projected_raster_are_pixel_counts_times_the_pixel_area() -> None:
    score = np.full((20, 20), 4.0, np.float32)
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -20.0, 4_000_000.0)
    grid = h3_grid(score, transform, CRS.from_epsg(32637).to_wkt(), 9, 3.3)
    np.testing.assert_allclose(grid["valid_km2"], grid["n_valid"] * 200.0 / 1e6, rtol=1e-12)
