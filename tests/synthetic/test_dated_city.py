"""A synthetic city destroyed over several post-event dates (`dated_destruction`): each
building falls on its truth date, and everything else is the undated city's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize

from ruinmap.synthetic import City, make_city

SIZE = 96
ARGS = {"size": SIZE, "n_pre": 3, "n_post": 4, "seed": 7, "destroyed_fraction": 0.3}


@pytest.fixture(scope="module")
def cities(tmp_path_factory: pytest.TempPathFactory) -> tuple[City, City]:
    root = tmp_path_factory.mktemp("dated")
    return (make_city(root / "dated", dated_destruction=True, **ARGS),
            make_city(root / "plain", **ARGS))


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_truth_dates_every_destroyed_building_to_a_post_date(cities: tuple[City, City]) -> None:
    dated, plain = cities
    truth = dated.buildings
    destroyed = truth["destroyed"].to_numpy(bool)
    index = truth["destroyed_index"].to_numpy()
    assert destroyed.any()
    assert np.all(index[~destroyed] == -1)
    assert set(index[destroyed]) <= set(range(len(dated.post_dates)))
    assert len(set(index[destroyed])) > 1  # spread over the series, not one date
    days = truth.loc[destroyed, "destroyed_date"].dt.date.to_numpy()
    assert all(d == dated.post_dates[i] for d, i in zip(days, index[destroyed], strict=True))
    # the same buildings are destroyed; the undated truth has no date columns
    np.testing.assert_array_equal(destroyed, plain.buildings["destroyed"].to_numpy(bool))
    assert "destroyed_index" not in plain.buildings


def test_pre_images_and_the_last_post_image_equal_the_undated_city(
        cities: tuple[City, City]) -> None:
    dated, plain = cities
    for a, b in zip(dated.pre_files, plain.pre_files, strict=True):
        np.testing.assert_array_equal(_read(a), _read(b))
    # by the last date every building is down: the undated city's post image
    np.testing.assert_array_equal(_read(dated.post_files[-1]), _read(plain.post_files[-1]))


def test_a_building_darkens_from_its_own_date_on(cities: tuple[City, City]) -> None:
    dated, _ = cities
    truth = dated.buildings
    post = np.stack([_read(p)[0] for p in dated.post_files])  # VV
    pre = np.nanmean(np.stack([_read(p)[0] for p in dated.pre_files]), axis=0)
    before, after = [], []
    for _, row in truth[truth["destroyed"] & (truth["area_m2"] > 150)].iterrows():
        mask = rasterize([row.geometry], out_shape=(SIZE, SIZE), transform=dated.transform,
                         fill=0, dtype=np.uint8).astype(bool)
        if mask.sum() < 2:
            continue
        ratio = np.nanmean(post[:, mask], axis=1) / np.nanmean(pre[mask])
        k = int(row["destroyed_index"])
        before += list(ratio[:k])
        after += list(ratio[k:])
    assert before and after
    assert np.median(after) < 0.6 * np.median(before)
