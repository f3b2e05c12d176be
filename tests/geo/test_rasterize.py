"""Footprint label images: the vectorised pixel-centre rule against GDAL's rasterizer."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from shapely import affinity

from ruinmap.cluster.geo.rasterize import footprint_labels, labels_on_window, overlap_layers

TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_000_000.0)


def _footprints(seed: int, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # random float corners: no pixel centre lies exactly on an edge
    cx = rng.uniform(499_950, 500_700, n)
    cy = rng.uniform(3_999_300, 4_000_050, n)
    w, h = rng.uniform(3, 40, n), rng.uniform(3, 40, n)
    boxes = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    if seed % 2:
        return boxes
    angles = rng.uniform(0, 90, n)  # rotated footprints: not axis-aligned
    return np.array([affinity.rotate(b, a) for b, a in zip(boxes, angles, strict=True)],
                    dtype=object)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("row0", "col0", "shape"), [(0, 0, (64, 64)), (13, 7, (40, 29))])
def test_footprint_labels_equal_gdal_rasterize(
    seed: int, row0: int, col0: int, shape: tuple[int, int]
) -> None:
    geoms = _footprints(seed)
    window = TRANSFORM @ Affine.translation(col0, row0)
    got = footprint_labels(geoms, window, shape)
    want = labels_on_window(geoms, np.arange(1, len(geoms) + 1), window, shape)
    np.testing.assert_array_equal(got, want)
    assert (got > 0).any()


def test_footprint_labels_of_nothing_are_zero() -> None:
    empty = np.array([shapely.Polygon(), None], dtype=object)
    assert not footprint_labels(empty, TRANSFORM, (5, 4)).any()
    assert footprint_labels(np.empty(0, object), TRANSFORM, (0, 3)).shape == (0, 3)


def _city_and_quarters() -> np.ndarray:
    quarters = [shapely.box(x, y, x + 500, y + 500)
                for y in (3_999_000, 3_999_500) for x in (500_000, 500_500)]
    return np.array([shapely.box(500_000, 3_999_000, 501_000, 4_000_000), *quarters], object)


def test_overlap_layers_put_a_city_and_its_quarters_apart() -> None:
    np.testing.assert_array_equal(overlap_layers(_city_and_quarters()), [0, 1, 1, 1, 1])


def test_overlap_layers_keep_touching_polygons_in_one_layer() -> None:
    # quarters share edges and corners: no interior meets, one layer (as before: one image)
    np.testing.assert_array_equal(overlap_layers(_city_and_quarters()[1:]), [0, 0, 0, 0])


def test_overlap_layers_colour_a_chain_with_two_layers_and_a_triangle_with_three() -> None:
    chain = np.array([shapely.box(i * 8, 0, i * 8 + 10, 10) for i in range(5)], object)
    np.testing.assert_array_equal(overlap_layers(chain), [0, 1, 0, 1, 0])
    triangle = np.array([shapely.box(0, 0, 10, 10), shapely.box(5, 0, 15, 10),
                         shapely.box(2, 5, 12, 15)], object)
    np.testing.assert_array_equal(overlap_layers(triangle), [0, 1, 2])


def test_overlap_layers_skip_missing_and_empty_polygons() -> None:
    geoms = np.array([shapely.box(0, 0, 10, 10), None, shapely.Polygon(),
                      shapely.box(5, 5, 15, 15)], object)
    np.testing.assert_array_equal(overlap_layers(geoms), [0, 0, 0, 1])


@pytest.mark.parametrize("seed", [0, 1])
def test_each_overlap_layer_gives_every_pixel_to_each_district_holding_it(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(500_000, 500_300, 12), rng.uniform(3_999_400, 3_999_700, 12)
    w, h = rng.uniform(50, 300, 12), rng.uniform(50, 300, 12)
    geoms = shapely.box(x0, y0, x0 + w, y0 + h)
    layer = overlap_layers(geoms)
    assert layer.max() > 0  # random boxes overlap
    shape = (70, 70)
    for k in range(len(geoms)):  # each layer's image holds each district whole
        alone = labels_on_window(geoms[[k]], np.array([1]), TRANSFORM, shape) > 0
        image = labels_on_window(geoms[layer == layer[k]],
                                 np.flatnonzero(layer == layer[k]) + 1, TRANSFORM, shape)
        np.testing.assert_array_equal(image == k + 1, alone)
