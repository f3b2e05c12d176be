"""districts.png, score_hist.png and the figures' captions: real zarr sources, real PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr
from matplotlib.image import imread

from ruinmap.cluster.outputs import charts
from ruinmap.cluster.outputs.captions import default_credit, imagery_dates, imagery_dates_text
from ruinmap.cluster.outputs.charts import (
    district_bars,
    render_district_chart,
    render_score_histogram,
    score_histogram,
)


class _RecordingRows:
    """A zarr array that remembers the most rows one read asked for."""

    def __init__(self, array: zarr.Array) -> None:
        self.array, self.most_rows = array, 0
        self.shape, self.chunks = array.shape, array.chunks

    def __getitem__(self, key: Any) -> Any:
        rows = key[0]
        self.most_rows = max(self.most_rows, rows.stop - rows.start)
        return self.array[key]


@pytest.mark.parametrize("nan_share", [0.0, 0.3, 1.0])
def test_score_histogram_counts_valid_pixels_strip_by_strip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nan_share: float) -> None:
    rng = np.random.default_rng(0)
    score = rng.normal(1.5, 1.0, (300, 200)).astype(np.float32)
    score[rng.random(score.shape) < nan_share] = np.nan
    array = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=score.shape,
                              dtype="float32", chunks=(32, 200), fill_value=np.nan)
    array[...] = score
    monkeypatch.setattr(charts, "_STRIP_BYTES", 64 * 200 * 4)  # two chunks a strip
    source = _RecordingRows(array)
    hist = score_histogram(source, bins=50)
    assert source.most_rows == 64
    valid = score[np.isfinite(score)]
    assert hist.total == valid.size
    if valid.size:
        np.testing.assert_array_equal(hist.counts, np.histogram(valid, bins=hist.edges)[0])
        assert (hist.edges[0], hist.edges[-1]) == (valid.min(), valid.max())


def _table(with_buildings: bool, n: int = 50) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"district_id": [f"D{i:03d}" for i in range(n)],
                          "name": [f"district {i}" for i in range(n)],
                          "damaged_km2": rng.random(n)})
    if with_buildings:
        damaged = rng.integers(0, 100, n)
        table["buildings_damaged"] = damaged
        table["buildings_damaged_low"] = pd.array(damaged - 5, dtype="Int64")
        table["buildings_damaged_high"] = pd.array(damaged + 10, dtype="Int64")
        table["buildings_damaged_level"] = 0.9
        table["buildings_damaged_interval"] = "calibrated"
    return table


def test_district_bars_show_the_most_damaged_buildings_with_intervals() -> None:
    table = _table(with_buildings=True)
    bars = district_bars(table, max_bars=10)
    top = table.sort_values("buildings_damaged", ascending=False, kind="stable").head(10)
    assert list(bars.names) == list(top["name"])[::-1]  # most damaged drawn last, on top
    assert bars.is_buildings and bars.left_out == 40
    assert bars.errors is not None
    np.testing.assert_array_equal(bars.errors, np.vstack([np.full(10, 5), np.full(10, 10)]))
    assert "90 % interval" in bars.interval_note and "calibrated" in bars.interval_note


def test_district_bars_fall_back_to_damaged_area_without_buildings() -> None:
    bars = district_bars(_table(with_buildings=False), max_bars=60)
    assert not bars.is_buildings and bars.errors is None and bars.left_out == 0
    assert np.all(np.diff(bars.values) >= 0)


@pytest.mark.parametrize("with_buildings", [True, False])
def test_district_chart_is_a_png(tmp_path: Path, with_buildings: bool) -> None:
    path = render_district_chart(tmp_path / "districts.png", _table(with_buildings),
                                 title="Damage by district", credit="Imagery: a.tif")
    assert imread(path).shape[0] > 400


def test_score_histogram_png(tmp_path: Path) -> None:
    hist = score_histogram(np.random.default_rng(2).normal(2, 1, (50, 50)))
    path = render_score_histogram(tmp_path / "score_hist.png", hist, threshold=3.3,
                                  class_edges=(2.0, 3.3, 4.0, 5.0),
                                  class_names=("a", "b", "c", "d"), score_label="t",
                                  title="Score")
    assert imread(path).shape[:2] == (750, 1350)


SOURCES = [
    {"path": "/data/S1A_IW_GRDH_1SDV_20221123.tif", "side": "pre", "time": "2022-11-23T00:00:00"},
    {"path": "/data/S1A_IW_GRDH_1SDV_20221205.tif", "side": "pre", "time": "2022-12-05T00:00:00"},
    {"path": "s3://b/S1C_IW_GRDH_1SDV_20230122.tif", "side": "post",
     "time": "2023-01-22T00:00:00"},
]


def test_imagery_dates_per_side() -> None:
    dates = imagery_dates(SOURCES)
    assert (dates["pre"].first, dates["pre"].last, dates["pre"].count) == (
        "2022-11-23", "2022-12-05", 2)
    assert imagery_dates_text(SOURCES) == (
        "Imagery: before 2022-11-23 to 2022-12-05 (2 dates); after 2023-01-22 (1 date)")
    assert imagery_dates_text([{"path": "a.tif", "side": "pre"}]) is None


def test_sentinel_files_credit_copernicus_with_the_years() -> None:
    assert default_credit(SOURCES) == "Contains modified Copernicus Sentinel data [2022-2023]"


@pytest.mark.parametrize("names, expected", [
    (["a.tif"], "Imagery: a.tif"),
    (["S1A_x.tif", "mine.tif"], "Imagery: S1A_x.tif, mine.tif"),  # not all Sentinel
    ([f"f{i}.tif" for i in range(6)], "Imagery: f0.tif, f1.tif, f2.tif, f3.tif and 2 more files"),
])
def test_other_files_are_credited_by_name(names: list[str], expected: str) -> None:
    assert default_credit([{"path": f"/d/{n}", "side": "pre"} for n in names]) == expected
