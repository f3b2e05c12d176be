"""Ground sizes of pixels: per axis and per row on lon/lat grids, against the ellipsoid's own
radii of curvature (textbook formulas, not pyproj) and pyproj.Geod's polygon areas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS, Geod

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.geo.units import pixel_area_m2, pixel_sides_metres
from ruinmap.cluster.job.plan import pixel_sides_m, pixel_size_m

WGS84 = CRS.from_epsg(4326).to_wkt()
UTM = CRS.from_epsg(32637).to_wkt()
A, F = 6_378_137.0, 1 / 298.257223563  # WGS84
E2 = F * (2 - F)


def meridian_m_per_degree(lat: float) -> float:
    """M(lat) pi / 180: the meridional radius of curvature a (1 - e^2) / (1 - e^2 sin^2)^1.5."""
    s2 = math.sin(math.radians(lat)) ** 2
    return A * (1 - E2) / (1 - E2 * s2) ** 1.5 * math.pi / 180


def parallel_m_per_degree(lat: float) -> float:
    """N(lat) cos(lat) pi / 180: N = a / sqrt(1 - e^2 sin^2)."""
    s2 = math.sin(math.radians(lat)) ** 2
    return A / math.sqrt(1 - E2 * s2) * math.cos(math.radians(lat)) * math.pi / 180


def lonlat_grid(lat: float, res: float = 4e-6, size: int = 200) -> Grid:
    """A size x size px EPSG:4326 grid of `res` degree pixels centred on (30 E, lat)."""
    transform = Affine(res, 0.0, 30.0 - size * res / 2, 0.0, -res, lat + size * res / 2)
    return Grid(transform=tuple(transform)[:6], width=size, height=size, crs_wkt=WGS84)


@pytest.mark.parametrize("lat", [0.0, 15.0, 31.5, 48.0, 60.0, -35.0, 70.0])
def test_lonlat_pixel_sides_equal_the_ellipsoid_radii(lat: float) -> None:
    res = 4e-6  # ~0.45 m at the equator
    down, across = pixel_sides_metres(WGS84, res, res, 30.0, lat)
    assert down == pytest.approx(res * meridian_m_per_degree(lat), rel=1e-6)
    assert across == pytest.approx(res * parallel_m_per_degree(lat), rel=1e-6)


@pytest.mark.parametrize("lat", [0.0, 31.5, 48.0, 60.0])
def test_lonlat_pixel_sides_equal_geod_distances(lat: float) -> None:
    grid = lonlat_grid(lat)
    down, across = pixel_sides_m(grid)
    geod = Geod(ellps="WGS84")
    res = grid.resolution[0]
    # 100 pixels along each axis through the centre, measured on the ellipsoid
    assert across == pytest.approx(geod.inv(30.0 - 50 * res, lat, 30.0 + 50 * res, lat)[2] / 100,
                                   rel=1e-6)
    assert down == pytest.approx(geod.inv(30.0, lat - 50 * res, 30.0, lat + 50 * res)[2] / 100,
                                 rel=1e-6)
    assert pixel_size_m(grid) == pytest.approx(math.sqrt(down * across), rel=1e-12)


def test_projected_pixel_sides_are_the_resolution_in_metres() -> None:
    assert pixel_sides_metres(UTM, 10.0, 20.0, 500_000.0, 4e6) == (20.0, 10.0)
    feet = CRS.from_epsg(2263).to_wkt()  # NY Long Island, US survey feet
    down, across = pixel_sides_metres(feet, 10.0, 10.0, 1e6, 2e5)
    assert down == across == pytest.approx(3.048006, rel=1e-6)


@pytest.mark.parametrize("lat", [0.0, 31.5, 60.0])
def test_lonlat_row_areas_equal_geod_polygon_areas(lat: float) -> None:
    res = 1e-3  # ~100 m pixels: the areas change visibly over the rows
    transform = (res, 0.0, 30.0, 0.0, -res, lat + 0.05)
    rows = np.arange(100)
    areas = pixel_area_m2(WGS84, transform, rows)
    geod = Geod(ellps="WGS84")
    lat_top = lat + 0.05
    whole, _ = geod.polygon_area_perimeter([30.0, 30.0 + res, 30.0 + res, 30.0],
                                          [lat_top - 0.1, lat_top - 0.1, lat_top, lat_top])
    assert areas.sum() == pytest.approx(abs(whole), rel=1e-6)
    mid = lat_top - (rows + 0.5) * res
    sides = np.array([np.prod(pixel_sides_metres(WGS84, res, res, 30.0, y)) for y in mid])
    np.testing.assert_allclose(areas, sides, rtol=1e-5)
    if lat > 0:
        assert np.all(np.diff(areas) > 0)  # southward rows are wider in the north


def test_projected_row_areas_are_the_pixel_area() -> None:
    np.testing.assert_array_equal(
        pixel_area_m2(UTM, (10.0, 0.0, 5e5, 0.0, -20.0, 4e6), np.arange(3)), [200.0] * 3)
