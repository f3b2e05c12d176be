"""What a class raster and a damage grid carry inside the TIFF itself: a copy of the .tif alone
(as a download without side-cars) still names and colours its classes, and the grid's bands
are measurements with names, units, statistics and no RGB reading."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp

from ruinmap.cluster.outputs import write_bands_cog, write_cog
from ruinmap.cluster.outputs.palette import class_colormap
from tests.support.tiff_tags import first_ifd_tags

GDAL_METADATA, PHOTOMETRIC, MINISBLACK = 42112, 262, 1
CLASSES = ("possible", "likely", "high-confidence", "severe")
TRANSFORM = Affine(10, 0, 300_000, 0, -10, 4_000_000)


@pytest.fixture(name="lone_damage_tif")
def lone_damage_tif_fixture(tmp_path: Path) -> Path:
    classes = np.random.default_rng(0).integers(0, 5, (96, 80)).astype(np.uint8)
    classes[:10] = 255
    written = write_cog(classes, tmp_path / "job" / "damage.tif", transform=TRANSFORM,
                        crs="EPSG:32636", nodata=255, dtype=np.uint8, block=32,
                        description="damage class", class_names=CLASSES)
    assert (tmp_path / "job" / "damage.tif.aux.xml").is_file()  # the side-car exists...
    lone = tmp_path / "downloaded" / "damage.tif"
    lone.parent.mkdir()
    shutil.copy(written, lone)  # ...but only the .tif travels
    return lone


def test_a_lone_damage_tif_names_its_classes(lone_damage_tif: Path) -> None:
    assert sorted(p.name for p in lone_damage_tif.parent.iterdir()) == ["damage.tif"]
    with rasterio.open(lone_damage_tif) as src:
        names = src.tags(1)
        assert src.descriptions == ("damage class",)
    assert {k: v for k, v in names.items() if k.startswith("CLASS_")} == {
        "CLASS_0": "none", "CLASS_1": "possible", "CLASS_2": "likely",
        "CLASS_3": "high-confidence", "CLASS_4": "severe", "CLASS_255": "nodata"}
    # in the file's own GDAL_METADATA tag, not a side-car
    assert "high-confidence" in str(first_ifd_tags(lone_damage_tif)[GDAL_METADATA])


def test_a_lone_damage_tif_keeps_its_colours(lone_damage_tif: Path) -> None:
    with rasterio.open(lone_damage_tif) as src:
        colormap = src.colormap(1)
    for value, rgba in class_colormap(CLASSES).items():
        assert colormap[value] == rgba


@pytest.fixture(name="grid_tif")
def grid_tif_fixture(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    fraction = rng.random((40, 30)).astype(np.float32)
    mean = rng.normal(2, 1, (40, 30)).astype(np.float32)
    fraction[:3, :] = np.nan
    mean[:3, :] = np.nan
    path = write_bands_cog(tmp_path / "grid.tif", [fraction, mean],
                           ("damaged_fraction", "mean_score"), units=("1", "1"),
                           transform=TRANSFORM @ Affine.scale(10), crs="EPSG:32636",
                           tags={"method": "pwtt"})
    return path, fraction, mean


def test_grid_bands_are_named_float_measurements_not_rgb(grid_tif: tuple) -> None:
    path, _, _ = grid_tif
    with rasterio.open(path) as src:
        assert src.dtypes == ("float32", "float32")
        assert src.descriptions == ("damaged_fraction", "mean_score")
        assert np.isnan(src.nodata)
        assert src.units == ("1", "1")
        assert src.colorinterp == (ColorInterp.gray, ColorInterp.undefined)
    assert first_ifd_tags(path)[PHOTOMETRIC] == MINISBLACK


@pytest.mark.parametrize("band", [1, 2])
def test_grid_band_statistics_match_numpy(grid_tif: tuple, band: int) -> None:
    path, fraction, mean = grid_tif
    values = (fraction, mean)[band - 1]
    valid = values[np.isfinite(values)]
    with rasterio.open(path) as src:
        stats = src.tags(band)
    assert float(stats["STATISTICS_MINIMUM"]) == pytest.approx(valid.min())
    assert float(stats["STATISTICS_MAXIMUM"]) == pytest.approx(valid.max())
    assert float(stats["STATISTICS_MEAN"]) == pytest.approx(valid.mean(), rel=1e-6)
    assert float(stats["STATISTICS_STDDEV"]) == pytest.approx(valid.std(), rel=1e-5)
    assert float(stats["STATISTICS_VALID_PERCENT"]) == pytest.approx(100 * 37 / 40)


def test_grid_style_draws_the_damaged_fraction_as_pseudocolour(grid_tif: tuple) -> None:
    path, _, _ = grid_tif
    renderer = ET.parse(path.with_suffix(".qml")).find("pipe/rasterrenderer")
    assert renderer is not None
    assert (renderer.get("type"), renderer.get("band")) == ("singlebandpseudocolor", "1")
    items = renderer.findall("rastershader/colorrampshader/item")
    assert [float(i.get("value", "nan")) for i in items] == [0.0, 0.25, 0.5, 0.75, 1.0]
