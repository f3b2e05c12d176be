"""Files opened confined to data roots (`storage.confined`): real GeoTIFFs and vector files,
real symlinks, and a folder swapped for a link by a separate process while files are opened."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely

from ruinmap.cluster.geo.vectors import read_vector
from ruinmap.cluster.storage.confined import (
    confined_raster_path,
    confined_vector_path,
    open_confined,
)
from ruinmap.errors import ConfinementError, InputError
from tests.support.rasters import write_geotiff


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def _raster(path: Path, dtype: str, value: int = 0) -> np.ndarray:
    data = (np.arange(3 * 40 * 50).reshape(3, 40, 50) % 251 + value).astype(dtype)
    write_geotiff(path, data, block=16 if dtype != "int16" else None)
    return data


def _read(name: str) -> np.ndarray:
    with rasterio.open(name) as src:
        return src.read()


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32", "float64"])
def test_a_raster_inside_the_root_reads_bit_identical_through_its_open_file(
        root: Path, dtype: str) -> None:
    path = root / "sub" / "image.tif"
    path.parent.mkdir()
    data = _raster(path, dtype)
    with confined_raster_path(path, (str(root),)) as name:
        assert name.startswith("/proc/self/fd/")  # GDAL reads the checked file, not the name
        confined = _read(name)
    assert confined.dtype == data.dtype
    np.testing.assert_array_equal(confined, _read(str(path)))


def test_a_link_inside_the_root_to_a_file_inside_it_is_read(root: Path) -> None:
    data = _raster(root / "real.tif", "uint16")
    (root / "link.tif").symlink_to(root / "real.tif")
    with confined_raster_path(root / "link.tif", (str(root),)) as name:
        np.testing.assert_array_equal(_read(name), data)


@pytest.mark.parametrize("how", ["outside file", "final link to outside",
                                 "folder link to outside", "root is a prefix"])
def test_a_raster_resolving_outside_the_roots_is_refused(root: Path, outside: Path,
                                                         how: str) -> None:
    _raster(outside / "secret.tif", "uint8")
    if how == "outside file":
        path = outside / "secret.tif"
    elif how == "final link to outside":
        path = root / "image.tif"
        path.symlink_to(outside / "secret.tif")
    elif how == "folder link to outside":
        (root / "deep").mkdir()
        (root / "deep" / "a").symlink_to(outside)
        path = root / "deep" / "a" / "secret.tif"
    else:  # /x/root must not admit /x/root-other
        sibling = root.parent / (root.name + "-other")
        sibling.mkdir()
        path = sibling / "secret.tif"
        _raster(path, "uint8")
    with pytest.raises(ConfinementError) as caught, confined_raster_path(path, (str(root),)):
        pytest.fail("an outside file was opened")
    message = str(caught.value)
    assert str(path) in message and str(root) in message and "outside the data roots" in message
    assert os.path.realpath(path) in message
    assert isinstance(caught.value, InputError)


@pytest.mark.parametrize(("kind", "text"), [
    ("gdal", '<VRTDataset rasterXSize="4" rasterYSize="4"></VRTDataset>'),
    ("xml prolog", '\ufeff<?xml version="1.0"?>\n<VRTDataset rasterXSize="4"/>'),
    ("ogr", "<OGRVRTDataSource><OGRVRTLayer name='d'/></OGRVRTDataSource>"),
])  # fmt: skip
def test_a_vrt_inside_the_root_is_refused(root: Path, kind: str, text: str) -> None:
    path = root / "sneaky.tif"  # the suffix does not matter: the first bytes do
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfinementError, match="is a VRT"), open_confined(path, (str(root),)):
        pytest.fail("a VRT was opened")


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_what_is_not_a_regular_file_is_refused_without_blocking(root: Path, kind: str) -> None:
    path = root / "thing.tif"
    if kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)  # no writer: a blocking open would hang here
    with pytest.raises(ConfinementError, match="not a regular file"), \
            open_confined(path, (str(root),)):
        pytest.fail("a non-file was opened")


@pytest.mark.parametrize("path", ["s3://bucket/scene.tif", "/vsis3/bucket/scene.tif",
                                  "/vsicurl/https://example.org/a.tif"])
def test_remote_paths_and_no_roots_pass_through_unchanged(root: Path, path: str) -> None:
    with confined_raster_path(path, (str(root),)) as name:
        assert name == path
    with confined_vector_path(path, (str(root),)) as name:
        assert name == path
    with confined_raster_path("/etc/hostname", None) as name:
        assert name == "/etc/hostname"


def _frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"did": ["a", "b", "c"], "name": ["Al", "Bé", "Cü"]},
        geometry=[shapely.box(i, i, i + 1.5, i + 1) for i in range(3)], crs="EPSG:32637")


_DRIVERS = {"gpkg": "GPKG", "geojson": "GeoJSON", "fgb": "FlatGeobuf", "shp": "ESRI Shapefile",
            "parquet": None}


def _write_vector(path: Path) -> None:
    suffix = path.suffix[1:]
    if _DRIVERS[suffix] is None:
        _frame().to_parquet(path)
    else:
        _frame().to_file(path, driver=_DRIVERS[suffix])


@pytest.mark.parametrize("suffix", list(_DRIVERS))
def test_a_vector_file_inside_the_root_reads_the_same_as_by_name(root: Path,
                                                                 suffix: str) -> None:
    path = root / f"districts.{suffix}"
    _write_vector(path)
    with confined_vector_path(path, (str(root),)) as name:
        confined = read_vector(name)
        folder = Path(name).parent
    assert not folder.exists()  # the private folder of links is removed
    pd.testing.assert_frame_equal(pd.DataFrame(confined), pd.DataFrame(read_vector(path)))
    assert confined.crs == _frame().crs


@pytest.mark.parametrize("sidecar", [".dbf", ".shx", ".prj"])
def test_a_shapefile_sidecar_linked_outside_is_refused(root: Path, outside: Path,
                                                       sidecar: str) -> None:
    path = root / "districts.shp"
    _write_vector(path)
    moved = outside / ("districts" + sidecar)
    (root / ("districts" + sidecar)).rename(moved)
    (root / ("districts" + sidecar)).symlink_to(moved)
    with pytest.raises(ConfinementError, match=f"districts\\{sidecar}"), \
            confined_vector_path(path, (str(root),)):
        pytest.fail("an outside sidecar was opened")


@pytest.mark.parametrize("suffix", ["geojson", "gpkg"])
def test_a_vector_file_linked_outside_is_refused(root: Path, outside: Path,
                                                 suffix: str) -> None:
    _write_vector(outside / f"secret.{suffix}")
    (root / f"districts.{suffix}").symlink_to(outside / f"secret.{suffix}")
    with pytest.raises(ConfinementError, match="outside the data roots"), \
            confined_vector_path(root / f"districts.{suffix}", (str(root),)):
        pytest.fail("an outside vector file was opened")


# Exchanges `d` (a real folder) and `d-link` (a link to the outside folder) atomically,
# as fast as it can: renameat2(RENAME_EXCHANGE), in its own process (no GIL shared).
_SWAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (os.fsencode(p) for p in sys.argv[1:3])
print("ready", flush=True)
while True:
    if libc.renameat2(-100, a, -100, b, 2) != 0:
        sys.exit(f"renameat2: {os.strerror(ctypes.get_errno())}")
"""


def test_a_folder_swapped_for_an_outside_link_while_opening_is_never_read(
        root: Path, outside: Path) -> None:
    (root / "d").mkdir()
    (root / "d" / "image.bin").write_bytes(b"inside")
    (outside / "image.bin").write_bytes(b"SECRET")
    (root / "d-link").symlink_to(outside)
    swapper = subprocess.Popen([sys.executable, "-c", _SWAPPER, root / "d", root / "d-link"],
                               stdout=subprocess.PIPE, text=True)
    assert swapper.stdout is not None and swapper.stdout.readline().strip() == "ready"
    caught_after_open = reads = 0
    deadline = time.monotonic() + 60.0
    try:
        # a swap between realpath and open is caught only by the kernel's name of the open
        # file; go on until that has happened a few times (or the deadline)
        while caught_after_open < 3 and time.monotonic() < deadline:
            try:
                with open_confined(root / "d" / "image.bin", (str(root),)) as fd:
                    assert os.pread(fd, 16, 0) == b"inside"
                    reads += 1
            except ConfinementError as exc:
                caught_after_open += "was opened as" in str(exc)
        assert swapper.poll() is None, "the swapper stopped (renameat2 failed)"
    finally:
        swapper.kill()
        swapper.wait()
    assert caught_after_open >= 3, f"the swap never fell between realpath and open ({reads})"
