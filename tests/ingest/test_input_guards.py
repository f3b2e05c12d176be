"""Guards of the ingest plan, from the headers alone: the grid-size limit, one file given
twice, a file without a geotransform, and extents printed with every digit."""

from __future__ import annotations

import os
from pathlib import Path

import dask.config
import numpy as np
import pytest
from affine import Affine
from rasterio.transform import from_origin

from ruinmap.cluster.ingest import IngestOptions, ingest, plan_inputs
from ruinmap.cluster.methods.base import band_indices
from ruinmap.errors import ClusterError, InputError, SpecError
from tests.support.rasters import DEFAULT_TRANSFORM, write_geotiff

SMALL = IngestOptions(chunk=32, shard=64)
HUGE = 1_000_000


def huge_vrt(folder: Path, name: str = "huge.vrt") -> Path:
    """A VRT whose header claims HUGE x HUGE float32 pixels (a 64 px GeoTIFF in one corner)."""
    small = write_geotiff(folder / f"{name}-corner.tif", np.ones((64, 64), np.float32))
    t = DEFAULT_TRANSFORM
    vrt = folder / name
    vrt.write_text(f"""<VRTDataset rasterXSize="{HUGE}" rasterYSize="{HUGE}">
  <SRS>EPSG:32636</SRS>
  <GeoTransform>{t.c}, {t.a}, 0.0, {t.f}, 0.0, {t.e}</GeoTransform>
  <VRTRasterBand dataType="Float32" band="1">
    <SimpleSource>
      <SourceFilename relativeToVRT="1">{small.name}</SourceFilename>
      <SourceBand>1</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="64" ySize="64"/>
      <DstRect xOff="0" yOff="0" xSize="64" ySize="64"/>
    </SimpleSource>
  </VRTRasterBand>
</VRTDataset>
""")
    return vrt


def test_grid_over_the_pixel_limit_is_refused_naming_its_size_and_the_setting(
    tmp_path: Path
) -> None:
    pre, post = huge_vrt(tmp_path, "pre.vrt"), huge_vrt(tmp_path, "post.vrt")
    out = tmp_path / "store.zarr"
    with pytest.raises(SpecError, match=r"1000000 x 1000000 px \(1,000,000,000,000 pixels a "
                       r"date\), more than the limit of 10,000,000,000 \(Dask config "
                       r"ruinmap\.limits\.max-pixels\).*DASK_RUINMAP__LIMITS__MAX_PIXELS="):
        ingest([pre], [post], out, SMALL)
    assert not out.exists()


def test_the_pixel_limit_is_a_setting(tmp_path: Path) -> None:
    pre, post = huge_vrt(tmp_path, "pre.vrt"), huge_vrt(tmp_path, "post.vrt")
    with dask.config.set({"ruinmap.limits.max-pixels": HUGE * HUGE}):
        plan = plan_inputs([pre], [post], SMALL)
    assert plan.grid.shape == (HUGE, HUGE)
    small = write_geotiff(tmp_path / "a.tif", np.ones((64, 64), np.float32))
    other = write_geotiff(tmp_path / "b.tif", np.ones((64, 64), np.float32))
    with dask.config.set({"ruinmap.limits.max-pixels": 64 * 64 - 1}), \
            pytest.raises(SpecError, match=r"64 x 64 px"):
        plan_inputs([small], [other], SMALL)
    with dask.config.set({"ruinmap.limits.max-pixels": "many"}), \
            pytest.raises(ClusterError, match=r"ruinmap\.limits\.max-pixels = 'many'"):
        plan_inputs([small], [other], SMALL)


@pytest.mark.parametrize("how", ["same-path", "symlink", "hard-link"])
def test_ingest_refuses_one_file_as_pre_and_post(how: str, tmp_path: Path) -> None:
    pre = write_geotiff(tmp_path / "pre.tif", np.ones((64, 64), np.float32))
    post = pre
    if how == "symlink":
        post = tmp_path / "post.tif"
        os.symlink(pre, post)
    elif how == "hard-link":
        post = tmp_path / "post.tif"
        os.link(pre, post)
    with pytest.raises(InputError, match=r"given as --post and already as --pre"):
        plan_inputs([pre], [post], SMALL)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_file_without_geotransform_is_named_as_such(tmp_path: Path) -> None:
    pre = write_geotiff(tmp_path / "pre.tif", np.ones((64, 64), np.float32))
    bare = write_geotiff(tmp_path / "bare.tif", np.ones((64, 64), np.float32),
                         transform=Affine.identity())
    with pytest.raises(InputError, match=r"bare\.tif: no geotransform; .*gdal_edit\.py -a_ullr"):
        plan_inputs([pre], [bare], SMALL)
    neither = write_geotiff(tmp_path / "neither.tif", np.ones((64, 64), np.float32), crs=None,
                            transform=Affine.identity())
    with pytest.raises(InputError, match=r"neither\.tif: no CRS and no geotransform; assign a CRS"):
        plan_inputs([pre], [neither], SMALL)


def test_no_overlap_message_prints_bounds_in_full(tmp_path: Path) -> None:
    pre = write_geotiff(tmp_path / "pre.tif", np.ones((64, 64), np.float32),
                        transform=from_origin(500000.123456789, 4000000.0, 10.0, 10.0))
    far = write_geotiff(tmp_path / "far.tif", np.ones((64, 64), np.float32),
                        transform=from_origin(600000.0, 4000000.987654321, 10.0, 10.0))
    # %g would print 500000 and 4e+06: neither the offsets nor the gap would show
    with pytest.raises(InputError, match=r"far\.tif: its footprint \(600000\.0, "
                       r"3999360\.987654321, 600640\.0, 4000000\.987654321\) .*common footprint "
                       r"\(500000\.123456789, 3999360\.0, 500640\.123456789, 4000000\.0\)"):
        plan_inputs([pre], [far], SMALL)


def test_missing_band_error_says_unnamed_bands_are_b1_to_bn() -> None:
    with pytest.raises(SpecError, match=r"band\(s\) VV not in the imagery \(bands: b1, b2 "
                       r"\(bands without names in the files are called b1\.\.bN\)\)"):
        band_indices(("b1", "b2"), ["VV"], "polarisations")
