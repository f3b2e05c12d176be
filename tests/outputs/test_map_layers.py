"""map.png's building outlines and overview inset."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread
from rasterio.crs import CRS
from shapely.geometry import box

from ruinmap.cluster.outputs import render_map
from ruinmap.cluster.outputs.map_layers import draw_building_outlines, draw_overview_inset

UTM = CRS.from_epsg(32636)


def _footprints(n: int) -> gpd.GeoSeries:
    xs = 300_000 + (np.arange(n) % 100) * 20.0
    ys = 4_000_000 - (np.arange(n) // 100) * 20.0
    return gpd.GeoSeries([box(x, y - 10, x + 10, y) for x, y in zip(xs, ys, strict=True)],
                         crs=UTM)


@pytest.mark.parametrize("n, max_count, drawn", [(0, 10, 0), (10, 10, 10), (11, 10, 0)])
def test_building_outlines_only_when_few_enough(n: int, max_count: int, drawn: int) -> None:
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    assert draw_building_outlines(ax, _footprints(n), UTM, max_count) == drawn
    assert len(ax.collections) == (1 if drawn else 0)


def test_overview_inset_is_in_degrees_around_the_map() -> None:
    fig = Figure()
    FigureCanvasAgg(fig)
    bounds = (300_000.0, 3_990_000.0, 302_000.0, 4_000_000.0)
    ax = draw_overview_inset(fig, (0.7, 0.1, 0.25, 0.25), bounds, UTM, None)
    lon, lat = np.mean(ax.get_xlim()), np.mean(ax.get_ylim())
    assert 30 < lon < 31 and 35 < lat < 37  # UTM 36N, x 300 km, y 4000 km
    assert "N" in ax.get_title() and "E" in ax.get_title()


def test_map_with_buildings_subtitle_credit_and_inset(tmp_path: Path) -> None:
    classes = np.random.default_rng(0).integers(0, 5, (100, 200)).astype(np.uint8)
    path = render_map(tmp_path / "map.png", score_preview=classes,
                      preview_transform=Affine(10, 0, 300_000, 0, -10, 4_000_000), crs=UTM,
                      districts=None, class_names=("a", "b", "c", "d"), title="T",
                      subtitle="Imagery: before 2022-01-01 (1 date)",
                      credit="Contains modified Copernicus Sentinel data [2022]",
                      buildings=_footprints(300))
    assert imread(path).shape[1] == 1800
