"""Tile partials merged across any tiling equal the whole image's aggregates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ruinmap.cluster.job.merge import building_scores, district_table, grid_layers, merge_partials
from ruinmap.cluster.job.partials import (
    DISTRICT_ROWS,
    TilePartial,
    district_fields,
    load_partial,
    save_partial,
    score_edges,
    tile_partial,
)
from ruinmap.errors import InputError
from ruinmap.kernels import LabelStats, classify, merge_label_stats

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


def _partials(tile: int, cell: int, row_area: np.ndarray | None = None,
              layers: np.ndarray | None = None) -> list[TilePartial]:
    """Partials of `_scene` on tile x tile windows; `layers`: extra label images stacked
    under the scene's (overlapping districts), `row_area`: each row's pixel area."""
    score, classes, districts, buildings = _scene()
    labels = districts[np.newaxis] if layers is None else np.concatenate([districts[None],
                                                                           layers])
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
                district_labels=labels[(slice(None), *win)], n_districts=3 + len(labels) - 1,
                building_labels=local,
                building_index=present - 1, centroid_index=np.empty(0, np.int64),
                centroid_rc=np.empty((0, 2), np.int64), origin=(r0, c0), cell_px=cell,
                row_area=None if row_area is None else row_area[r0 : r0 + tile],
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


@pytest.mark.parametrize("tile", [16, 7])
def test_district_areas_add_each_rows_pixel_area(tile: int) -> None:
    # a lon/lat grid's pixels shrink with latitude: areas are per row, counts stay counts
    score, classes, districts, _ = _scene()
    row_area = np.linspace(1.02, 0.98, score.shape[0])
    merged = merge_partials(_partials(tile, 5, row_area), n_districts=3, n_classes=5,
                            edges=EDGES, n_buildings=3, grid_shape=(10, 9))
    area = np.broadcast_to(row_area[:, None], score.shape)
    valid, damaged = np.isfinite(score), score > 3.3
    np.testing.assert_allclose(
        merged.district_valid_area,
        np.bincount(districts[valid], weights=area[valid], minlength=4)[1:], rtol=1e-12)
    np.testing.assert_allclose(
        merged.district_damaged_area,
        np.bincount(districts[damaged], weights=area[damaged], minlength=4)[1:], rtol=1e-12)
    for k in range(5):
        np.testing.assert_allclose(
            merged.district_class_area[:, k],
            np.bincount(districts[classes == k], weights=area[classes == k], minlength=4)[1:],
            rtol=1e-12)
    np.testing.assert_array_equal(merged.districts.count,
                                  np.bincount(districts[valid], minlength=4)[1:])
    table = district_table(merged, ids=np.arange(3), names=np.array(["a", "b", "c"]),
                           area_km2=np.ones(3), pixel_area_m2=100.0,
                           class_labels=("p", "l", "h", "s"))
    np.testing.assert_allclose(table["valid_km2"], merged.district_valid_area * 1e-4)


@pytest.mark.parametrize("tile", [16, 7, 64])
def test_overlapping_layers_give_each_district_its_own_pixels(tile: int) -> None:
    # district 4 (a second layer) covers rows 10..29 of every district of the first layer
    score, _, districts, _ = _scene()
    extra = np.zeros_like(districts)
    extra[10:30] = 4
    merged = merge_partials(_partials(tile, 5, layers=extra[None]), n_districts=4,
                            n_classes=5, edges=EDGES, n_buildings=3, grid_shape=(10, 9))
    alone = merge_partials(_partials(tile, 5), n_districts=3, n_classes=5, edges=EDGES,
                           n_buildings=3, grid_shape=(10, 9))
    for name in ("count", "sum", "min", "max", "hist"):
        np.testing.assert_array_equal(getattr(merged.districts, name)[:3],
                                      getattr(alone.districts, name))
    np.testing.assert_array_equal(merged.district_classes[:3], alone.district_classes)
    np.testing.assert_array_equal(merged.district_damaged[:3], alone.district_damaged)
    valid = np.isfinite(score)
    assert merged.districts.count[3] == valid[10:30].sum()
    assert merged.district_damaged[3] == (score[10:30] > 3.3).sum()
    assert merged.districts.max[3] == np.nanmax(score[10:30])


def test_running_merge_equals_merging_every_partial_at_once() -> None:
    # the running total is added in place; merge_label_stats over all parts is the old way
    parts = _partials(7, 3)
    merged = merge_partials(parts, n_districts=3, n_classes=5, edges=EDGES, n_buildings=3,
                            grid_shape=(17, 15))
    at_once = merge_label_stats([LabelStats.empty(3, EDGES)] + [
        LabelStats(p.d_count, p.d_sum, p.d_sum_sq, p.d_min, p.d_max, p.d_hist, EDGES)
        for p in parts])
    for name in ("count", "sum", "sum_sq", "min", "max", "hist"):
        np.testing.assert_array_equal(getattr(merged.districts, name),
                                      getattr(at_once, name))


def test_partial_of_another_district_count_is_refused() -> None:
    parts = _partials(16, 5)
    with pytest.raises(InputError, match="not this job's"):
        merge_partials(parts, n_districts=4, n_classes=5, edges=EDGES, n_buildings=3,
                       grid_shape=(10, 9))


def test_partial_stores_only_touched_district_rows(tmp_path: Path) -> None:
    # a tile inside one district: the other rows are empty and are not written
    score, classes, _, _ = _scene()
    labels = np.zeros(score.shape, np.int32)
    labels[:10, :10] = 2
    labels[0, 0] = 7
    part = tile_partial(
        score, classes, threshold=3.3, n_classes=5, edges=EDGES, district_labels=labels,
        n_districts=9, building_labels=np.zeros(score.shape, np.int32),
        building_index=np.empty(0, np.int64), centroid_index=np.empty(0, np.int64),
        centroid_rc=np.empty((0, 2), np.int64), origin=(0, 0), cell_px=5,
    )  # fmt: skip
    save_partial(part, tmp_path / "tile.npz", "tile/0/0")
    with np.load(tmp_path / "tile.npz") as npz:
        np.testing.assert_array_equal(npz[DISTRICT_ROWS], [1, 6])
        assert npz["d_hist"].shape == (2, len(EDGES) - 1)
    back = load_partial(tmp_path / "tile.npz", "tile/0/0")
    for name in TilePartial.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(back, name), getattr(part, name))
    assert back.d_min[0] == np.inf and back.d_max[0] == -np.inf


def test_partial_saved_with_every_district_row_still_loads(tmp_path: Path) -> None:
    # partials written before empty rows were dropped, by an earlier run of a resumed job
    part = _partials(16, 5)[3]
    members = {name: getattr(part, name) for name in TilePartial.__dataclass_fields__}
    np.savez(tmp_path / "old.npz", **members, tile_key=np.array("tile/1/2"))
    back = load_partial(tmp_path / "old.npz", "tile/1/2")
    for name in TilePartial.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(back, name), getattr(part, name))


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


@pytest.mark.parametrize("n_layers", [1, 2])
def test_district_fields_of_a_projected_grid_equal_unit_row_areas(n_layers: int) -> None:
    """Without row areas (a projected grid) the areas are counted, not weighted: the same
    fields, to the bit and dtype, as weighting every pixel by 1."""
    rng = np.random.default_rng(5)
    shape = (37, 41)
    score = rng.normal(0.0, 3.0, shape).astype(np.float32)
    score[rng.random(shape) < 0.2] = np.nan
    score[rng.random(shape) < 0.03] = np.inf
    classes = np.where(np.isnan(score), 255, rng.integers(0, 4, shape)).astype(np.uint8)
    labels = rng.integers(0, 6, (n_layers, *shape)).astype(np.int32)
    if n_layers == 2:  # each district in one layer: 1-3 in the first, 4-5 in the second
        labels[0][labels[0] > 3] = 0
        labels[1][labels[1] <= 3] = 0
    n_post = rng.integers(0, 4, shape).astype(np.float32)
    kwargs = dict(observed=rng.random(shape) < 0.7, threshold=1.0, n_classes=4,
                  edges=np.linspace(-6.0, 6.0, 13), n_districts=5)
    counted = district_fields(score, classes, labels, None, n_post, **kwargs)
    weighted = district_fields(score, classes, labels, np.ones(shape[0]), n_post, **kwargs)
    assert counted.keys() == weighted.keys()
    for name, values in counted.items():
        assert values.dtype == weighted[name].dtype, name
        np.testing.assert_array_equal(values, weighted[name], err_msg=name)
