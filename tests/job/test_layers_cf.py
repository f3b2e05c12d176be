"""The job's Zarr store as xarray users read it: CF attributes, GeoZarr attributes, masked
nodata under `decode_cf`, and the score's overview levels."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from ruinmap.cluster.job.overviews import OVERVIEW_FACTORS, OVERVIEWS_GROUP
from ruinmap.cluster.job.run import JobResult
from ruinmap.cluster.storage.cf import SIGMA0_STANDARD_NAME


def _open(store: Path, group: str | None = None) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(store, group=group, decode_cf=True)


@pytest.fixture(name="store")
def store_fixture(job_run: JobResult) -> Path:
    return Path(str(job_run.store))


def test_damage_mean_under_decode_cf_is_the_class_mean_of_valid_pixels(store: Path) -> None:
    raw = zarr.open_array(store=str(store), path="damage", mode="r")[:]
    assert (raw == 255).any()  # the test means something only with nodata in the layer
    expected = raw[raw != 255].astype(np.float64).mean()
    assert float(_open(store).damage.mean()) == pytest.approx(expected, rel=1e-6)


def test_every_layer_has_units_or_flags_and_a_long_name(store: Path) -> None:
    ds = _open(store)
    for name in ("score", "grid_damaged_fraction", "grid_mean_score", "pre", "post"):
        assert ds[name].attrs["units"] == "1", name
        assert ds[name].attrs["long_name"], name
    for name in ("pre", "post"):
        assert ds[name].attrs["standard_name"] == SIGMA0_STANDARD_NAME
    damage = ds.damage.attrs
    assert damage["flag_values"] == [0, 1, 2, 3, 4]
    assert damage["flag_meanings"].split() == [
        "none", "possible", "likely", "high-confidence", "severe"]
    for axis in ("x", "y"):
        assert ds[axis].attrs["standard_name"] == f"projection_{axis}_coordinate"
        assert ds[axis].attrs["units"] == "m"


def test_fill_values_are_declared_for_score_and_damage(store: Path) -> None:
    ds = _open(store)
    assert ds.damage.encoding["_FillValue"] == 255
    assert np.isnan(ds.score.encoding["_FillValue"])


def test_geozarr_attributes_give_crs_and_transform(store: Path, job_run: JobResult) -> None:
    attrs = json.loads((store / "score" / "zarr.json").read_text())["attributes"]
    spec_grid = _open(store)
    assert attrs["proj:code"].startswith("EPSG:")
    assert "PROJCRS" in attrs["proj:wkt2"]
    assert attrs["spatial:dimensions"] == ["y", "x"]
    a, _, c, _, e, f = attrs["spatial:transform"]
    x, y = spec_grid.x.values, spec_grid.y.values
    assert (c + a / 2, f + e / 2) == pytest.approx((x[0], y[0]))
    assert attrs["spatial:shape"] == [len(y), len(x)]
    assert {c["name"] for c in attrs["zarr_conventions"]} == {"proj", "spatial"}


def _block_mean_reference(x: np.ndarray, factor: int) -> np.ndarray:
    rows, cols = -(-x.shape[0] // factor), -(-x.shape[1] // factor)
    padded = np.full((rows * factor, cols * factor), np.nan)
    padded[: x.shape[0], : x.shape[1]] = x
    blocks = padded.reshape(rows, factor, cols, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        return np.nanmean(blocks, axis=(1, 3))


@pytest.mark.parametrize("level", [1, 2, 3])
def test_score_overview_levels_are_block_means_of_valid_pixels(store: Path, level: int) -> None:
    factor = OVERVIEW_FACTORS[level - 1]
    full = zarr.open_array(store=str(store), path="score", mode="r")[:].astype(np.float64)
    overview = _open(store, f"{OVERVIEWS_GROUP}/{level}")
    expected = _block_mean_reference(full, factor)
    assert overview.score.shape == expected.shape
    np.testing.assert_allclose(overview.score.values, expected, rtol=1e-5, equal_nan=True)
    # cell centres of the coarser grid
    base = _open(store)
    step = float(base.x[1] - base.x[0])
    assert float(overview.x[0]) == pytest.approx(float(base.x[0]) - step / 2 + factor * step / 2)


def test_multiscales_lists_every_level(store: Path) -> None:
    group = json.loads((store / OVERVIEWS_GROUP / "zarr.json").read_text())["attributes"]
    layout = group["multiscales"]["layout"]
    assert [entry["asset"] for entry in layout] == [
        "../score", *(f"{level}/score" for level in range(1, len(OVERVIEW_FACTORS) + 1))]
    assert [entry["transform"]["scale"][0] for entry in layout[1:]] == list(OVERVIEW_FACTORS)
