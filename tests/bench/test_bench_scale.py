"""benchmarks/bench_scale.py at a tiny scale: its synthetic partials go through the real
merge and come back as each footprint's whole values, and its scheduling model adds up."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.support.repo import REPO


@pytest.fixture(name="bench_scale", scope="module")
def bench_scale_fixture() -> ModuleType:
    path = REPO / "benchmarks" / "bench_scale.py"
    spec = importlib.util.spec_from_file_location("bench_scale", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_footprints_split_over_tiles_keep_their_pixel_centres(bench_scale: ModuleType) -> None:
    country = bench_scale.SCALES["small"]
    rng = np.random.default_rng(5)
    cells = bench_scale.district_cells(country, rng)
    fp = bench_scale.make_footprints(country, cells, 0.0, rng)
    tile, which, members = bench_scale.tile_entries(country, fp)
    assert np.all(np.diff(tile) >= 0)
    assert len(which) > country.n_buildings  # some cross a tile edge
    np.testing.assert_array_equal(np.bincount(which, weights=members,
                                              minlength=country.n_buildings), fp.members)


def test_dry_run_merge_gives_every_footprint_its_whole_score(
    bench_scale: ModuleType, tmp_path: Path
) -> None:
    country = bench_scale.SCALES["small"]
    plan = bench_scale.country_plan(country, tmp_path)
    written = bench_scale.write_partials(country, plan, tmp_path)
    assert written["tiles"] == len(plan.tiles) == 12
    assert written["footprint_tile_entries"] > written["footprints_scored"]
    merged = bench_scale.measure_merge(country, tmp_path)  # raises if a footprint is off
    assert merged["checked"] and merged["building_rows"] == country.n_buildings
    assert merged["grid_shape"] == list(plan.cell_grid.shape)


def test_simulated_tiles_add_up(bench_scale: ModuleType) -> None:
    durations = np.full(8, 2.0)
    assert bench_scale.simulate_tiles(durations, 1, 0.0) == pytest.approx(16.0)
    assert bench_scale.simulate_tiles(durations, 2, 0.0) == pytest.approx(8.0)
    assert bench_scale.simulate_tiles(durations, 8, 0.0) == pytest.approx(2.0)
    # a scheduler handing out 8 tasks at 1 s each is the bound with many workers
    assert bench_scale.simulate_tiles(durations, 8, 1.0) == pytest.approx(8.0 + 2.0)
