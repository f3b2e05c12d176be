"""Cloud-Optimized GeoTIFF writes from numpy, zarr v3 and dask sources, read back with GDAL."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import rasterio
import rasterio.shutil
import zarr
from affine import Affine
from rasterio.crs import CRS
from zarr.storage import LocalStore

from ruinmap.cluster.outputs import cog_problems, write_cog, write_layers_cog
from ruinmap.cluster.outputs.cog import window_rows
from ruinmap.cluster.outputs.cog_staging import cog_overview_factors
from ruinmap.cluster.outputs.palette import class_colormap
from ruinmap.errors import InputError

TRANSFORM = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 4000000.0)
CRS_UTM = "EPSG:32636"
CLASS_NAMES = ("possible", "likely", "high confidence", "severe")
SIZES = [((1, 1), 512), ((7, 5), 512), ((1000, 700), 256)]


def _score(shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(sum(shape))
    values = rng.normal(2.0, 1.5, shape).astype(np.float32)
    values[rng.random(shape) < 0.1] = np.nan
    return values


def _classes(shape: tuple[int, int]) -> np.ndarray:
    score = _score(shape)
    classes = np.digitize(score, [2.0, 3.3, 4.0, 5.0]).astype(np.uint8)
    classes[np.isnan(score)] = 255
    return classes


KINDS: dict[str, dict[str, Any]] = {
    "score": {"make": _score, "dtype": "float32", "nodata": np.nan, "class_names": None},
    "classes": {"make": _classes, "dtype": "uint8", "nodata": 255, "class_names": CLASS_NAMES},
}


def _zarr(tmp_path: Path, data: np.ndarray, chunks: tuple[int, int]) -> zarr.Array:
    fill = np.nan if data.dtype.kind == "f" else 255
    array = zarr.create_array(
        store=LocalStore(str(tmp_path / "source.zarr")),
        shape=data.shape,
        chunks=tuple(min(c, s) for c, s in zip(chunks, data.shape, strict=True)),
        dtype=data.dtype,
        fill_value=fill,
        zarr_format=3,
    )
    array[...] = data
    return array


def _write(data_source: Any, dst: Path, kind: str, block: int, **kwargs: Any) -> Path:
    spec = KINDS[kind]
    return write_cog(
        data_source,
        dst,
        transform=TRANSFORM,
        crs=CRS_UTM,
        nodata=spec["nodata"],
        dtype=spec["dtype"],
        block=block,
        description="score" if kind == "score" else "damage class",
        class_names=spec["class_names"],
        **kwargs,
    )


@pytest.mark.parametrize("kind", ["score", "classes"])
@pytest.mark.parametrize(("shape", "block"), SIZES, ids=["1x1", "7x5", "1000x700"])
@pytest.mark.parametrize("source", ["numpy", "zarr", "dask"])
def test_write_cog_round_trips_values_and_georeferencing(
    tmp_path: Path, kind: str, shape: tuple[int, int], block: int, source: str
) -> None:
    data = KINDS[kind]["make"](shape)
    if source == "zarr":
        src: Any = _zarr(tmp_path, data, (100, 100))
    elif source == "dask":
        src = da.from_array(data, chunks=(300, 300))
    else:
        src = data
    dst = _write(src, tmp_path / "out" / f"{kind}.tif", kind, block)
    with rasterio.open(dst) as cog:
        np.testing.assert_array_equal(cog.read(1), data)
        assert cog.transform == TRANSFORM
        assert cog.crs == CRS.from_user_input(CRS_UTM)
        assert cog.dtypes[0] == KINDS[kind]["dtype"]
        assert cog.count == 1


@pytest.mark.parametrize("kind", ["score", "classes"])
@pytest.mark.parametrize(("shape", "block"), SIZES, ids=["1x1", "7x5", "1000x700"])
def test_write_cog_output_is_a_cog_with_overviews_when_larger_than_a_tile(
    tmp_path: Path, kind: str, shape: tuple[int, int], block: int
) -> None:
    dst = _write(KINDS[kind]["make"](shape), tmp_path / f"{kind}.tif", kind, block)
    assert cog_problems(dst, block=block) == []
    with rasterio.open(dst) as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert cog.profile["tiled"] and cog.block_shapes[0] == (block, block)
        if max(shape) > block:
            assert cog.overviews(1) == [2, 4]


def test_write_cog_reads_in_many_windows_from_zarr(tmp_path: Path) -> None:
    data = _score((1000, 700))
    source = _zarr(tmp_path, data, (128, 96))
    # A budget of one tile row forces a window per 256 rows: 4 windows, the last partial.
    dst = _write(source, tmp_path / "s.tif", "score", 256, max_window_bytes=256 * 700 * 4)
    with rasterio.open(dst) as cog:
        np.testing.assert_array_equal(cog.read(1), data)


def _layer_bands(shape: tuple[int, int]) -> list[np.ndarray]:
    """A noisy p-value-like band and two date counts, with NaN in scattered 3 x 3 patches
    (so 2 x 2 and 4 x 4 overview windows are partly NaN: there an average of averages
    differs from the average of the full resolution)."""
    rng = np.random.default_rng(sum(shape))
    holes = np.kron(rng.random((shape[0] // 3 + 2, shape[1] // 3 + 2)) < 0.2,
                    np.ones((3, 3), bool))[1:shape[0] + 1, 2:shape[1] + 2]
    bands = [rng.random(shape).astype(np.float32),
             rng.integers(3, 8, shape).astype(np.float32),
             rng.integers(1, 4, shape).astype(np.float32)]
    for band in bands:
        band[holes] = np.nan
    return bands


def _valid_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Each factor x factor block's mean over its non-NaN pixels (NaN when it has none)."""
    rows, cols = values.shape
    blocks = values.astype(np.float64).reshape(rows // factor, factor, cols // factor, factor)
    valid = np.isfinite(blocks)
    count = valid.sum(axis=(1, 3))
    total = np.where(valid, blocks, 0.0).sum(axis=(1, 3))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@pytest.mark.parametrize("shape", [(1024, 512), (2048, 768)])
def test_layers_cog_overviews_average_the_valid_full_resolution_pixels(
    tmp_path: Path, shape: tuple[int, int]
) -> None:
    bands = _layer_bands(shape)
    dst = write_layers_cog(bands, tmp_path / "layers.tif", names=["p", "a", "b"],
                           units=["1"] * 3, transform=TRANSFORM, crs=CRS_UTM, block=256)
    assert cog_problems(dst, block=256) == []
    factors = cog_overview_factors(shape, 256)
    with rasterio.open(dst) as cog:
        assert cog.overviews(1) == cog.overviews(3) == factors
        np.testing.assert_array_equal(cog.read(), np.stack(bands))
    for level, factor in enumerate(factors):
        with rasterio.open(dst, overview_level=level) as cog:
            for index, band in enumerate(bands, start=1):
                np.testing.assert_allclose(cog.read(index), _valid_mean(band, factor),
                                           rtol=1e-6, equal_nan=True,
                                           err_msg=f"band {index}, factor {factor}")


def _valid_mean_padded(values: np.ndarray, factor: int) -> np.ndarray:
    """`_valid_mean` with the edge blocks cut by the raster's end (their pixels only)."""
    rows, cols = values.shape
    padded = np.full((-(-rows // factor) * factor, -(-cols // factor) * factor), np.nan)
    padded[:rows, :cols] = values
    return _valid_mean(padded, factor)


def test_layers_cog_of_an_uneven_shape_keeps_every_pixel(tmp_path: Path) -> None:
    bands = _layer_bands((701, 903))
    dst = write_layers_cog(bands, tmp_path / "layers.tif", names=["p", "a", "b"],
                           units=["1"] * 3, transform=TRANSFORM, crs=CRS_UTM, block=256)
    assert cog_problems(dst, block=256) == []
    with rasterio.open(dst) as cog:
        assert cog.overviews(2) == [2, 4]
        np.testing.assert_array_equal(cog.read(), np.stack(bands))
    for level, factor in enumerate([2, 4]):
        with rasterio.open(dst, overview_level=level) as cog:
            np.testing.assert_allclose(cog.read(3), _valid_mean_padded(bands[2], factor),
                                       rtol=1e-6, equal_nan=True)


def test_write_cog_score_overviews_average_the_valid_full_resolution_pixels(
        tmp_path: Path) -> None:
    score = _layer_bands((1024, 768))[0]
    store = zarr.create_array(LocalStore(tmp_path / "s.zarr"), shape=score.shape,
                              chunks=(128, 768), dtype="float32", fill_value=np.nan)
    store[:] = score
    dst = _write(store, tmp_path / "score.tif", "score", 256, max_window_bytes=256 * 768 * 4)
    assert cog_problems(dst, block=256) == []
    with rasterio.open(dst) as cog:
        assert cog.overviews(1) == [2, 4]
        np.testing.assert_array_equal(cog.read(1), score)
    for level, factor in enumerate([2, 4]):
        with rasterio.open(dst, overview_level=level) as cog:
            np.testing.assert_allclose(cog.read(1), _valid_mean(score, factor), rtol=1e-6,
                                       equal_nan=True, err_msg=f"factor {factor}")


def test_layers_cog_writes_integer_layers_as_the_same_float32_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    p_value = _layer_bands((600, 520))[0]
    n_pre = rng.integers(0, 40, p_value.shape).astype(np.uint8)
    n_post = rng.integers(0, 9, p_value.shape).astype(np.int16)
    dst = write_layers_cog([p_value, n_pre, n_post], tmp_path / "layers.tif",
                           names=["p_value", "n_pre", "n_post"], units=["1", "1", "1"],
                           transform=TRANSFORM, crs=CRS_UTM, block=256)
    assert cog_problems(dst, block=256) == []
    with rasterio.open(dst) as cog:
        assert cog.dtypes == ("float32",) * 3
        np.testing.assert_array_equal(cog.read(2), n_pre.astype(np.float32))
        np.testing.assert_array_equal(cog.read(3), n_post.astype(np.float32))
    with rasterio.open(dst, overview_level=0) as cog:
        np.testing.assert_allclose(cog.read(2), _valid_mean(n_pre, 2), rtol=1e-6)


class _FailingFrom512:
    """An array source whose reads from row 512 on fail, as a lost disk would."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype = data, data.shape, data.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        if key[0].start >= 512:
            raise OSError("disk gone")
        return np.asarray(self.data[key])


def test_layers_cog_leaves_nothing_when_a_layer_fails(tmp_path: Path) -> None:
    good = _layer_bands((1000, 300))[0]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match="disk gone"):
        write_layers_cog([good, _FailingFrom512(good)], out / "layers.tif", names=["a", "b"],
                         units=["1", "1"], transform=TRANSFORM, crs=CRS_UTM, block=256,
                         max_window_bytes=256 * 300 * 8)
    assert list(out.iterdir()) == []


def test_cog_overview_factors_halve_until_one_tile_holds_the_level() -> None:
    assert cog_overview_factors((2048, 2048), 512) == [2, 4]
    assert cog_overview_factors((513, 10), 512) == [2]
    assert cog_overview_factors((512, 512), 512) == []
    assert cog_overview_factors((1025, 300), 256) == [2, 4, 8]


def test_window_rows_are_whole_tiles_and_whole_chunks_within_budget() -> None:
    rows = window_rows((10_000, 4000), 4, block=512, chunk_rows=768, max_window_bytes=64 * 2**20)
    assert rows % 512 == 0 and rows % 768 == 0
    assert rows * 4000 * 4 <= 2 * 64 * 2**20
    assert window_rows((10, 10), 4, block=512) == 512


def test_write_cog_float_score_has_nan_nodata_and_description(tmp_path: Path) -> None:
    dst = _write(_score((7, 5)), tmp_path / "score.tif", "score", 512, tags={"units": "t"})
    with rasterio.open(dst) as cog:
        assert np.isnan(cog.nodata)
        assert cog.descriptions == ("score",)
        assert cog.tags()["units"] == "t"


def test_write_cog_class_raster_has_colour_table_and_category_names(tmp_path: Path) -> None:
    dst = _write(_classes((7, 5)), tmp_path / "damage_class.tif", "classes", 512)
    with rasterio.open(dst) as cog:
        colormap = cog.colormap(1)
        assert cog.nodata == 255
        assert cog.descriptions == ("damage class",)
    for value, rgba in class_colormap(CLASS_NAMES).items():
        assert colormap[value] == rgba
    # GDAL itself reads the category names: a VRT copy carries what GDAL parsed.
    vrt = tmp_path / "copy.vrt"
    rasterio.shutil.copy(dst, vrt, driver="VRT")
    names = [c.text or "" for c in ET.parse(vrt).getroot().iter("Category")]
    assert names[:5] == ["none", *CLASS_NAMES]
    assert names[255] == "nodata"


def test_write_cog_class_raster_has_qgis_style_with_labels(tmp_path: Path) -> None:
    dst = _write(_classes((7, 5)), tmp_path / "damage_class.tif", "classes", 512)
    style = ET.parse(dst.with_suffix(".qml")).getroot()
    renderer = style.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "paletted"
    labels = {int(e.get("value", -1)): e.get("label") for e in renderer.iter("paletteEntry")}
    assert labels == {0: "none", 1: "possible", 2: "likely", 3: "high confidence", 4: "severe"}


def test_write_cog_over_a_class_raster_removes_its_stale_labels(tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    _write(_classes((7, 5)), dst, "classes", 512)
    _write(_score((7, 5)), dst, "score", 512)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_write_cog_leaves_nothing_when_the_source_fails(tmp_path: Path) -> None:
    data = _score((1000, 700))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match="disk gone"):
        _write(_FailingFrom512(data), out / "s.tif", "score", 256, max_window_bytes=256 * 700 * 4)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_write_cog_refuses_an_empty_raster(tmp_path: Path, shape: tuple[int, int]) -> None:
    with pytest.raises(InputError, match="empty"):
        _write(np.zeros(shape, np.float32), tmp_path / "e.tif", "score", 512)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block": 100}, "multiple of 16"),
        ({"compress": "jpeg"}, "compress"),
        ({"overview_resampling": "max"}, "overview_resampling"),
    ],
)
def test_write_cog_refuses_bad_options(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    block = kwargs.pop("block", 512)
    with pytest.raises(InputError, match=match):
        _write(_score((7, 5)), tmp_path / "e.tif", "score", block, **kwargs)


def test_write_cog_refuses_a_3d_source(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="2-D"):
        _write(np.zeros((2, 3, 4), np.float32), tmp_path / "e.tif", "score", 512)


def test_write_cog_refuses_casting_float_scores_to_classes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="classify first"):
        _write(_score((7, 5)), tmp_path / "e.tif", "classes", 512)


def test_write_cog_keeps_geographic_georeferencing(tmp_path: Path) -> None:
    transform = Affine(0.0001, 0.0, 36.1, 0.0, -0.0001, 32.62)
    data = _score((7, 5))
    dst = write_cog(
        data,
        tmp_path / "s.tif",
        transform=transform,
        crs="EPSG:4326",
        nodata=np.nan,
        dtype="float32",
    )
    with rasterio.open(dst) as cog:
        assert cog.crs == CRS.from_epsg(4326)
        assert cog.transform.almost_equals(transform)
        np.testing.assert_array_equal(cog.read(1), data)


@pytest.mark.parametrize("compress", ["deflate", "zstd", "lzw"])
def test_write_cog_compresses_with_the_chosen_codec(tmp_path: Path, compress: str) -> None:
    dst = _write(_classes((300, 200)), tmp_path / "c.tif", "classes", 256, compress=compress)
    with rasterio.open(dst) as cog:
        assert cog.compression is not None
        assert cog.compression.name.lower() == compress


def test_write_cog_refuses_an_unknown_crs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a CRS"):
        write_cog(
            _score((7, 5)),
            tmp_path / "s.tif",
            transform=TRANSFORM,
            crs="EPSG:999999",
            nodata=np.nan,
            dtype="float32",
        )
