"""Tile partials merged across any tiling equal the whole image's aggregates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ruinmap.cluster.job.merge import building_scores, district_table, grid_layers, merge_partials
from ruinmap.cluster.job.partials import (
    TilePartial,
    load_partial,
    save_partial,
    score_edges,
    tile_partial,
)
from ruinmap.kernels import classify

THRESHOLDS = (2.0, 3.3, 4.0, 5.0)
EDGES = score_edges(THRESHOLDS)


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    score = rng.gamma(2.0, 1.2, size=(50, 43)).astype(np.float32)
    score[rng.random(score.shape) < 0.1] = np.nan
    districts = rng.integers(0, 4, size=score.shape).astype(np.int32)
    buildings = np.zeros(score.shape, np.int32)
    buildings[5:9, 5:30] = 1  # crosses tile edges
    buildings[20:22, 40:43] = 2
    buildings[30:45, 10:12] = 3
    return score, classify(score, THRESHOLDS), districts, buildings


def _partials(tile: int, cell: int) -> list[TilePartial]:
    score, classes, districts, buildings = _scene()
    parts = []
    for r0 in range(0, score.shape[0], tile):
        for c0 in range(0, score.shape[1], tile):
            win = (slice(r0, r0 + tile), slice(c0, c0 + tile))
            present = np.unique(buildings[win])
            present = present[present > 0]
            local = np.zeros_like(buildings[win])
            for j, b in enumerate(present):
                local[buildings[win] == b] = j + 1
            parts.append(tile_partial(
                score[win], classes[win], threshold=3.3, n_classes=5, edges=EDGES,
                district_labels=districts[win], n_districts=3, building_labels=local,
                building_index=present - 1, centroid_index=np.empty(0, np.int64),
                centroid_rc=np.empty((0, 2), np.int64), origin=(r0, c0), cell_px=cell,
            ))  # fmt: skip
    return parts


@pytest.mark.parametrize(("tile", "cell"), [(16, 5), (7, 3), (64, 10)])
def test_merged_partials_equal_whole_array_numpy(tile: int, cell: int) -> None:
    score, classes, districts, buildings = _scene()
    merged = merge_partials(_partials(tile, cell), n_districts=3, n_classes=5, edges=EDGES,
                            n_buildings=3, grid_shape=(-(-50 // cell), -(-43 // cell)))
    valid = np.isfinite(score)
    np.testing.assert_array_equal(merged.districts.count,
                                  np.bincount(districts[valid], minlength=4)[1:])
    np.testing.assert_allclose(
        merged.districts.sum,
        np.bincount(districts[valid], weights=score[valid], minlength=4)[1:], rtol=1e-12)
    np.testing.assert_array_equal(merged.district_damaged,
                                  np.bincount(districts[score > 3.3], minlength=4)[1:])
    for k in range(5):
        np.testing.assert_array_equal(merged.district_classes[:, k],
                                      np.bincount(districts[classes == k], minlength=4)[1:])
    np.testing.assert_array_equal(merged.b_count,
                                  np.bincount(buildings[valid], minlength=4)[1:])
    peak = [np.nanmax(np.where(buildings == b, score, np.nan)) for b in (1, 2, 3)]
    np.testing.assert_array_equal(merged.b_max, peak)
    fraction, mean = grid_layers(merged)
    rows, cols = merged.g_count.shape
    padded = np.full((rows * cell, cols * cell), np.nan)
    padded[:50, :43] = score
    blocks = padded.reshape(rows, cell, cols, cell)
    with np.errstate(invalid="ignore", divide="ignore"):
        want_mean = np.nansum(blocks, axis=(1, 3)) / np.isfinite(blocks).sum(axis=(1, 3))
    np.testing.assert_allclose(mean, want_mean, rtol=1e-5, equal_nan=True)
    assert np.nanmax(fraction) <= 1.0


def test_partial_round_trips_through_npz(tmp_path: Path) -> None:
    part = _partials(16, 5)[3]
    checksum = save_partial(part, tmp_path / "p" / "tile.npz", "tile/1/2")
    back = load_partial(tmp_path / "p" / "tile.npz", "tile/1/2", checksum)
    for name in TilePartial.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(back, name), getattr(part, name))
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["tile.npz"]


def test_footprint_without_pixel_centre_takes_its_centroid_pixel() -> None:
    score = np.array([[1.0, 5.0], [2.0, np.nan]], np.float32)
    part = tile_partial(
        score, classify(score, THRESHOLDS), threshold=3.3, n_classes=5, edges=EDGES,
        district_labels=np.zeros((2, 2), np.int32), n_districts=1,
        building_labels=np.array([[1, 0], [0, 0]], np.int32),
        building_index=np.array([0]), centroid_index=np.array([1, 2]),
        centroid_rc=np.array([[0, 1], [1, 1]]), origin=(0, 0), cell_px=2,
    )  # fmt: skip
    merged = merge_partials([part], n_districts=1, n_classes=5, edges=EDGES, n_buildings=3,
                            grid_shape=(1, 1))
    table = building_scores(merged, threshold=3.3, class_thresholds=THRESHOLDS,
                            scored=np.array([True, True, True]))
    assert table["mean_score"].tolist()[:2] == [1.0, 5.0]
    assert np.isnan(table["mean_score"].iloc[2])  # its centroid pixel is nodata
    assert table["damaged"].tolist()[:2] == [False, True]
    assert table["damaged"].isna().tolist() == [False, False, True]
    assert table["damage_class"].tolist()[:2] == [0, 3]  # 5.0 is not above 5


def test_district_table_counts_buildings_by_centroid_district() -> None:
    merged = merge_partials(_partials(16, 5), n_districts=3, n_classes=5, edges=EDGES,
                            n_buildings=3, grid_shape=(10, 9))
    scores = building_scores(merged, threshold=3.3, class_thresholds=THRESHOLDS,
                             scored=np.array([True, True, False]))
    table = district_table(
        merged, ids=np.array(["a", "b", "c"]), names=np.array(["A", "B", "C"]),
        area_km2=np.ones(3), pixel_area_m2=100.0, class_labels=("p", "l", "h", "s"),
        building_district=np.array([0, 0, 2]), building_damaged=scores["damaged"],
    )  # fmt: skip
    assert table["buildings"].tolist() == [2, 0, 0]  # the third is not scored
    assert list(table.columns[:11]) == ["district_id", "name", "area_km2", "valid_km2",
                                        "built_km2", "damaged_km2", "damaged_fraction",
                                        "damaged_built_km2", "damaged_built_fraction",
                                        "mean_score", "p90_score"]
    # without a built-up mask the built-up figures are missing, not zero
    assert table[["built_km2", "damaged_built_km2", "damaged_built_fraction"]].isna().all().all()
    assert [c for c in table.columns if c.startswith("class_")] == [
        "class_1_km2", "class_2_km2", "class_3_km2", "class_4_km2"]
