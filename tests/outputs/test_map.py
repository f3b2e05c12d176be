"""map.png and the raster preview behind it: real PNGs, real zarr sources, real CRSs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import shapely
import zarr
from affine import Affine
from matplotlib.image import imread
from zarr.storage import LocalStore

from ruinmap.cluster.geo.units import ground_metres_per_unit
from ruinmap.cluster.outputs import downsample_for_preview, preview_transform, render_map
from ruinmap.cluster.outputs.mapping import nice_scale_length
from ruinmap.errors import InputError

CLASS_NAMES = ("possible", "likely", "high confidence", "severe")


def _classes(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 5, shape).astype(np.uint8)
    classes[rng.random(shape) < 0.1] = 255
    return classes


def _zarr(tmp_path: Path, data: np.ndarray, chunks: tuple[int, int]) -> zarr.Array:
    array = zarr.create_array(
        store=LocalStore(str(tmp_path / "preview.zarr")),
        shape=data.shape,
        chunks=chunks,
        dtype=data.dtype,
        fill_value=255 if data.dtype.kind == "u" else np.nan,
        zarr_format=3,
    )
    array[...] = data
    return array


def _block_max_reference(data: np.ndarray, factor: int, nodata: int = 255) -> np.ndarray:
    rows, cols = -(-data.shape[0] // factor), -(-data.shape[1] // factor)
    out = np.empty((rows, cols), data.dtype)
    for i in range(rows):
        for j in range(cols):
            block = data[i * factor : (i + 1) * factor, j * factor : (j + 1) * factor]
            valid = block[block != nodata]
            out[i, j] = valid.max() if valid.size else nodata
    return out


@pytest.mark.parametrize(("shape", "max_px"), [((1, 1), 10), ((7, 5), 3), ((1000, 700), 128)])
def test_downsample_for_preview_block_max_matches_reference(
    tmp_path: Path, shape: tuple[int, int], max_px: int
) -> None:
    data = _classes(shape)
    preview, factor = downsample_for_preview(_zarr(tmp_path, data, (96, 80)), max_px)
    assert factor == max(1, -(-max(shape) // max_px))
    assert max(preview.shape) <= max_px
    np.testing.assert_array_equal(preview, _block_max_reference(data, factor))


def test_downsample_for_preview_mean_ignores_nan() -> None:
    data = np.array([[1.0, np.nan, 5.0, 7.0], [3.0, np.nan, np.nan, np.nan]], np.float32)
    preview, factor = downsample_for_preview(data, 2)
    assert factor == 2
    np.testing.assert_allclose(preview, [[2.0, 6.0]])


def test_downsample_for_preview_nearest_takes_block_corners() -> None:
    data = np.arange(36, dtype=np.uint8).reshape(6, 6)
    preview, factor = downsample_for_preview(data, 3, how="nearest")
    np.testing.assert_array_equal(preview, data[::2, ::2])
    assert factor == 2


def test_downsample_for_preview_refuses_empty_raster() -> None:
    with pytest.raises(InputError, match="non-empty"):
        downsample_for_preview(np.zeros((0, 4), np.uint8), 10)


def test_preview_transform_scales_pixels_and_keeps_origin() -> None:
    t = preview_transform(Affine(10, 0, 300000, 0, -10, 4000000), 4)
    assert tuple(t)[:6] == (40, 0, 300000, 0, -40, 4000000)


@pytest.mark.parametrize(
    ("crs", "x", "y", "expected", "rel"),
    [
        ("EPSG:32636", 500000.0, 4000000.0, 0.9996, 1e-3),  # UTM central meridian, k0
        ("EPSG:4326", 36.0, 0.0, 111_319.5, 1e-3),  # a degree of longitude at the equator
        ("EPSG:4326", 36.0, 60.0, 55_800.0, 1e-2),  # ... shrinks with cos(latitude)
        ("EPSG:2263", 990000.0, 200000.0, 0.3048, 1e-2),  # New York: US survey feet
        ("EPSG:3857", 0.0, 8_399_737.9, 0.5, 1e-2),  # Web Mercator stretches 2x at 60 N
    ],
)
def test_ground_metres_per_unit_in_projected_and_geographic_crs(
    crs: str, x: float, y: float, expected: float, rel: float
) -> None:
    assert ground_metres_per_unit(crs, x, y) == pytest.approx(expected, rel=rel)


@pytest.mark.parametrize(
    ("limit", "expected"), [(1.0, 1.0), (240.0, 200.0), (999.0, 500.0), (12_500.0, 10_000.0)]
)
def test_nice_scale_length_is_largest_round_length_within_limit(
    limit: float, expected: float
) -> None:
    assert nice_scale_length(limit) == expected


def _grid_districts(bounds: tuple[float, float, float, float], crs: str, n: int = 3) -> Any:
    left, bottom, right, top = bounds
    dx, dy = (right - left) / n, (top - bottom) / n
    boxes = [
        shapely.box(left + i * dx, bottom + j * dy, left + (i + 1) * dx, bottom + (j + 1) * dy)
        for i in range(n)
        for j in range(n)
    ]
    return gpd.GeoDataFrame(
        {
            "district_id": [f"D{k}" for k in range(n * n)],
            "name": [f"Quarter {k}" for k in range(n * n)],
            "damaged_fraction": np.linspace(0, 0.8, n * n),
        },
        geometry=boxes,
        crs=crs,
    )


CASES = {
    "utm": ("EPSG:32636", Affine(20.0, 0, 300000.0, 0, -20.0, 4000000.0)),
    "lonlat": ("EPSG:4326", Affine(0.0002, 0, 36.0, 0, -0.0002, 32.6)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["classes", "score"])
def test_render_map_writes_a_readable_png(tmp_path: Path, case: str, kind: str) -> None:
    crs, transform = CASES[case]
    preview = (
        _classes((300, 400))
        if kind == "classes"
        else (np.random.default_rng(0).normal(2, 1, (300, 400)).astype(np.float32))
    )
    bounds = (
        transform.c,
        transform.f + transform.e * 300,
        transform.c + transform.a * 400,
        transform.f,
    )
    dst = render_map(
        tmp_path / "map.png",
        score_preview=preview,
        preview_transform=transform,
        crs=crs,
        districts=_grid_districts(bounds, crs),
        class_names=CLASS_NAMES,
        title="Damage classes, test city",
        caption="Method: test. Pre 2024-01-01..2024-01-31, post 2024-02-01..2024-02-28.",
    )
    assert dst == tmp_path / "map.png"
    image = imread(dst)
    height, width = image.shape[:2]
    assert width == 1800 and 900 <= height <= 2000
    assert image[..., :3].std() > 0.05  # something was drawn
    assert [p.name for p in tmp_path.iterdir()] == ["map.png"]


@pytest.mark.parametrize("masked", [False, True])
def test_render_map_greys_the_pixels_a_built_up_mask_leaves_out(tmp_path: Path,
                                                                masked: bool) -> None:
    crs, transform = CASES["utm"]
    preview = _classes((300, 400))
    preview[:, :200] = 255  # outside the mask (or nodata): the left half
    dst = render_map(tmp_path / "map.png", score_preview=preview, preview_transform=transform,
                     crs=crs, districts=None, class_names=CLASS_NAMES, title="t",
                     masked=masked)
    rgb = (imread(dst)[..., :3] * 255).round().astype(int)
    grey = (np.abs(rgb - 166) <= 1).all(axis=-1).mean()  # MASKED_COLOR #a6a6a6
    assert (grey > 0.1) == masked


def test_render_map_reprojects_districts_given_in_another_crs(tmp_path: Path) -> None:
    crs, transform = CASES["utm"]
    districts = _grid_districts((300000, 3994000, 308000, 4000000), crs).to_crs(4326)
    dst = render_map(
        tmp_path / "map.png",
        score_preview=_classes((300, 400)),
        preview_transform=transform,
        crs=crs,
        districts=districts,
        class_names=CLASS_NAMES,
        title="t",
    )
    assert dst.stat().st_size > 10_000


def test_render_map_without_districts(tmp_path: Path) -> None:
    crs, transform = CASES["utm"]
    dst = render_map(
        tmp_path / "map.png",
        score_preview=_classes((1, 1)),
        preview_transform=transform,
        crs=crs,
        districts=None,
        class_names=CLASS_NAMES,
        title="t",
    )
    assert dst.is_file()


def test_render_map_refuses_a_rotated_transform(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="north-up"):
        render_map(
            tmp_path / "map.png",
            score_preview=_classes((5, 5)),
            preview_transform=Affine(10, 1, 0, 0, -10, 0),
            crs="EPSG:32636",
            districts=None,
            class_names=CLASS_NAMES,
            title="t",
        )
    assert list(tmp_path.iterdir()) == []
