"""Footprint label images: the vectorised pixel-centre rule against GDAL's rasterizer."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from shapely import affinity

from ruinmap.cluster.geo.rasterize import footprint_labels, labels_on_window

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
