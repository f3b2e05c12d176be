"""Bad input to ingest: a clear error naming the file and the problem, and no complete store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from ruinmap.cli import main
from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.storage.store import is_complete, is_ruinmap_store
from ruinmap.errors import InputError, SpecError, StoreError
from tests.support.rasters import write_geotiff

H, W = 200, 300
SMALL = IngestOptions(chunk=64, shard=128)


def _good(tmp_path: Path, name: str, bands: int = 2, **kwargs) -> Path:
    return write_geotiff(
        tmp_path / name,
        np.ones((bands, H, W), np.float32),
        descriptions=["VV", "VH", "X"][:bands],
        **kwargs,
    )


def _assert_nothing_complete(out: Path) -> None:
    assert not is_complete(out)
    assert not out.exists() or not is_ruinmap_store(out) or not is_complete(out)


def test_glob_matching_no_file_is_named(tmp_path):
    post = _good(tmp_path, "post.tif")
    out = tmp_path / "store.zarr"
    with pytest.raises(InputError, match=r"--pre '.*nothing-\*\.tif': no files match"):
        ingest([str(tmp_path / "nothing-*.tif")], [post], out, SMALL)
    assert not out.exists()


def test_file_that_is_not_a_raster_is_named(tmp_path):
    bad = tmp_path / "notes.tif"
    bad.write_text("this is not a GeoTIFF\n")
    out = tmp_path / "store.zarr"
    with pytest.raises(InputError, match=r"notes\.tif: not a readable raster"):
        ingest([_good(tmp_path, "pre.tif")], [bad], out, SMALL)
    assert not out.exists()


@pytest.mark.parametrize("directory_at_end", [True, False])
def test_truncated_file_is_named(tmp_path, directory_at_end):
    # setting descriptions after the pixels moves the TIFF directory to the end of the file
    descriptions = ["VV", "VH"] if directory_at_end else None
    whole = write_geotiff(
        tmp_path / "whole.tif", np.ones((2, H, W), np.float32), descriptions=descriptions
    )
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "store.zarr"
    with pytest.raises(InputError, match=r"cut\.tif: .*truncated"):
        ingest([whole], [cut], out, SMALL)
    assert not out.exists()


def test_file_without_crs_is_named(tmp_path):
    bare = write_geotiff(tmp_path / "bare.tif", np.ones((2, H, W), np.float32), crs=None)
    out = tmp_path / "store.zarr"
    with pytest.raises(InputError, match=r"bare\.tif: no CRS; .*rio edit-info"):
        ingest([_good(tmp_path, "pre.tif")], [bare], out, SMALL)
    assert not out.exists()


def test_pre_and_post_that_do_not_overlap_are_named(tmp_path):
    pre = _good(tmp_path, "pre.tif")
    far = _good(tmp_path, "far.tif", transform=from_origin(600000.0, 4000000.0, 10.0, 10.0))
    out = tmp_path / "store.zarr"
    with pytest.raises(InputError, match=r"far\.tif: its footprint .* does not overlap .*pre\.tif"):
        ingest([pre], [far], out, SMALL)
    assert not out.exists()


def test_different_band_counts_are_named(tmp_path):
    out = tmp_path / "store.zarr"
    with pytest.raises(InputError, match=r"post\.tif: 3 band\(s\), but .*pre\.tif has 2"):
        ingest([_good(tmp_path, "pre.tif")], [_good(tmp_path, "post.tif", bands=3)], out, SMALL)
    assert not out.exists()


def test_different_band_names_are_named(tmp_path):
    post = write_geotiff(
        tmp_path / "post.tif", np.ones((2, H, W), np.float32), descriptions=["HH", "HV"]
    )
    out = tmp_path / "store.zarr"
    with pytest.raises(InputError, match=r"post\.tif: bands \(HH, HV\) differ from \(VV, VH\)"):
        ingest([_good(tmp_path, "pre.tif")], [post], out, SMALL)
    assert not out.exists()


def test_unsupported_dtype_is_named(tmp_path):
    cplx = write_geotiff(tmp_path / "cplx.tif", np.ones((2, H, W), np.complex64), block=None)
    out = tmp_path / "store.zarr"
    with pytest.raises(InputError, match=r"cplx\.tif: data type complex64 is not supported"):
        ingest([_good(tmp_path, "pre.tif")], [cplx], out, SMALL)
    assert not out.exists()


def test_user_nodata_that_overflows_the_integer_type_is_named(tmp_path):
    small = write_geotiff(tmp_path / "small.tif", np.ones((1, H, W), np.uint8))
    out = tmp_path / "store.zarr"
    with pytest.raises(
        InputError, match=r"small\.tif: --nodata -1 does not fit its uint8.*overflow"
    ):
        ingest([small], [small], out, IngestOptions(chunk=64, shard=128, nodata=-1))
    assert not out.exists()


def test_integer_values_that_overflow_float32_are_named_and_leave_store_incomplete(
    tmp_path, dask_client
):
    values = np.ones((1, H, W), np.int32)
    values[0, 150, 250] = 2**24 + 1
    big = write_geotiff(tmp_path / "big.tif", values)
    pre = write_geotiff(tmp_path / "pre.tif", np.ones((1, H, W), np.int32))
    out = tmp_path / "store.zarr"
    with pytest.raises(
        InputError,
        match=r"big\.tif .*rows 128:200, cols 128:256\): integer overflow: value 16777217",
    ):
        ingest([pre], [big], out, SMALL, client=dask_client)
    _assert_nothing_complete(out)


def test_output_that_exists_and_is_not_a_store_is_refused(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("do not delete")
    pre, post = _good(tmp_path, "pre.tif"), _good(tmp_path, "post.tif")
    for options in (SMALL, IngestOptions(chunk=64, shard=128, overwrite=True)):
        with pytest.raises(StoreError, match=r"precious: exists and is not a ruinmap store"):
            ingest([pre], [post], out, options)
    assert (out / "thesis.txt").read_text() == "do not delete"
    plain = tmp_path / "plain.zarr"
    plain.write_text("a file")
    with pytest.raises(StoreError, match=r"plain\.zarr: exists and is not a ruinmap store"):
        ingest([pre], [post], plain, SMALL)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (IngestOptions(chunk=0), r"--chunk 0"),
        (IngestOptions(chunk=64, shard=100), r"--shard 100: must be a multiple of --chunk 64"),
        (IngestOptions(compression="lzma"), r"--compression 'lzma'"),
        (IngestOptions(resampling="magic"), r"--resampling 'magic'"),
        (IngestOptions(crs="EPSG:999999"), r"--crs 'EPSG:999999': not a CRS"),
        (IngestOptions(bands=("VV",)), r"--bands VV: 1 name\(s\) for 2 band\(s\)"),
    ],
)
def test_bad_settings_are_spec_errors(tmp_path, options, message):
    pre, post = _good(tmp_path, "pre.tif"), _good(tmp_path, "post.tif")
    out = tmp_path / "store.zarr"
    with pytest.raises(SpecError, match=message):
        ingest([pre], [post], out, options)
    assert not out.exists()


def test_cli_reports_bad_input_as_one_line_and_exit_code_1(tmp_path, capsys):
    out = tmp_path / "store.zarr"
    code = main(
        ["ingest", "--pre", str(tmp_path / "none*.tif"), "--post", "x.tif", "--out", str(out)]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("ruinmap ingest: error: --pre") and "no files match" in err
