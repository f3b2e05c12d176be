"""Which districts hold a footprint's centroid (`polygons.districts_of_centroids`) and the
first of them (`first_district`), against shapely's own point-in-polygon test per pair, with
overlapping districts, footprints outside every district and one on a shared edge."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from ruinmap.cluster.job.polygons import districts_of_centroids, first_district


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pairs_and_first_district_match_a_per_pair_check(seed: int) -> None:
    rng = np.random.default_rng(seed)
    quarters = [shapely.box(x, y, x + 50, y + 50) for x in (0, 50) for y in (0, 50)]
    whole, off = shapely.box(0, 0, 100, 100), shapely.box(200, 200, 250, 250)
    districts = np.array([*quarters, whole, off, shapely.box(25, 25, 75, 75)], object)
    corners = rng.uniform(-20, 120, (40, 2))
    corners[0] = (48, 10)  # centroid (50, 12): on the edge of two quarters, inside `whole`
    buildings = shapely.box(corners[:, 0], corners[:, 1], corners[:, 0] + 4, corners[:, 1] + 4)
    which, district = districts_of_centroids(buildings, districts)
    centres = shapely.centroid(buildings)
    want = {(b, d) for b in range(len(buildings)) for d in range(len(districts))
            if shapely.within(centres[b], districts[d])}
    assert set(zip(which.tolist(), district.tolist(), strict=True)) == want
    assert list(zip(district, which, strict=True)) == sorted(zip(district, which, strict=True))
    first = first_district((which, district), len(buildings))
    for b in range(len(buildings)):
        holding = sorted(d for bb, d in want if bb == b)
        assert first[b] == (holding[0] if holding else -1)
    assert first[0] == 4  # not in either quarter, whose shared edge it sits on
    assert (first == -1).any() and (first >= 0).any()
