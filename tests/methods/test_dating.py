"""The per-date magnitudes the dating rules test, against plain NumPy transcriptions of their
source (oballinger/PWTT), and the dating accuracy of each rule on the dated synthetic city,
whole image, without a cluster (the job's own run: tests/job/test_dating.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

from ruinmap.cluster.geo.rasterize import footprint_labels
from ruinmap.cluster.job.dating import building_dates
from ruinmap.cluster.methods import LogRatioParams, PwttParams, ScoreContext
from ruinmap.cluster.methods.dating import (
    advance_dates,
    date_window,
    dating_baseline,
    dating_magnitude,
    dating_state,
)
from ruinmap.kernels import lee_filter
from ruinmap.kernels.dating import STATUS_NONE
from ruinmap.synthetic import City, make_city

#: (share of destroyed buildings dated to their acquisition, median |error| days) floors,
#: measured on this city: pwtt two_exceedance 0.734 / 0 d, cusum 0.344 / 12 d, log-ratio
#: two_exceedance 0.539 / 0 d (128 destroyed buildings)
FLOORS = {("pwtt", "two_exceedance"): (0.65, 6.0), ("pwtt", "cusum"): (0.3, 12.0),
          ("log-ratio", "two_exceedance"): (0.45, 6.0)}


def _stacks(n_pre: int, n_post: int, shape: tuple[int, int] = (9, 8), seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pre = rng.gamma(5.0, 0.02, (n_pre, 2, *shape)).astype(np.float32)
    post = rng.gamma(5.0, 0.02, (n_post, 2, *shape)).astype(np.float32)
    post[n_post // 2:, :, 2:5, 3:6] *= 0.2
    pre[1, 0, 0, 0] = np.nan
    return pre, post


def _context(pre_orbits: tuple[int, ...], post_orbits: tuple[int, ...]) -> ScoreContext:
    return ScoreContext(bands=("VV", "VH"), pre_orbits=pre_orbits, post_orbits=post_orbits,
                        pixel_size_m=10.0)


def test_two_exceedance_magnitude_is_orbit_normalised_max_abs_z() -> None:
    # estimate_damage_date.py:55-70 (per orbit: (x - pre mean) / max(pre sd, 1e-10)) and :332
    pre, post = _stacks(8, 6)
    pre_orbits, post_orbits = (1, 2) * 4, (2, 1, 2, 1, 2, 1)
    params = PwttParams(dating=True)
    got = dating_magnitude(pre, post, params, _context(pre_orbits, post_orbits))

    def log_lee(stack: np.ndarray) -> np.ndarray:
        return np.stack([np.log(lee_filter(img, size=3, enl=5.0)) for img in stack])

    want = np.full(got.shape, -np.inf)
    for band in (0, 1):
        x_pre, x_post = log_lee(pre[:, band]), log_lee(post[:, band])
        for orbit in (1, 2):
            ref = x_pre[np.array(pre_orbits) == orbit]
            sd = np.maximum(np.nanstd(ref, axis=0, ddof=1), 1e-10)
            z = (x_post[np.array(post_orbits) == orbit] - np.nanmean(ref, axis=0)) / sd
            at = np.array(post_orbits) == orbit
            want[at] = np.fmax(want[at], np.abs(z))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_cusum_magnitude_is_mahalanobis_of_robust_z() -> None:
    # cusum_damage_detector.py:47-66, one orbit, pixel by pixel
    pre, post = _stacks(10, 5, shape=(4, 3))
    pre[1, 0, 0, 0] = 0.1  # no NaN: np.median as in the source
    params = PwttParams(dating=True, dating_rule="cusum")
    got = dating_magnitude(pre, post, params, _context((0,) * 10, (0,) * 5))
    x_pre = np.log(np.stack([[lee_filter(img, size=3, enl=5.0) for img in t] for t in pre]))
    x_post = np.log(np.stack([[lee_filter(img, size=3, enl=5.0) for img in t] for t in post]))
    for i, j in np.ndindex(got.shape[1:]):
        z_pre, z_post = [], []
        for band in (0, 1):
            ref = x_pre[:, band, i, j].astype(np.float64)
            med = np.median(ref)
            mad = np.median(np.abs(ref - med))
            scale = 1.4826 * mad if mad > 0 else np.std(ref) or 1.0
            z_pre.append((ref - med) / scale)
            z_post.append((x_post[:, band, i, j] - med) / scale)
        cov = np.cov(np.array(z_pre)) + 1e-6 * np.eye(2)
        z = np.array(z_post).T
        want = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", z, np.linalg.inv(cov), z), 0, None))
        np.testing.assert_allclose(got[:, i, j], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rule", ["two_exceedance", "cusum"])
def test_tiles_with_the_lee_halo_date_as_the_whole_image(rule: str) -> None:
    pre, post = _stacks(6, 6, shape=(20, 18), seed=3)
    params = PwttParams(dating=True, dating_rule=rule, lee_size=3)
    context = _context((0,) * 6, (0,) * 6)
    whole = date_window(pre, post, params, context)
    halo = 1
    for r0, c0 in ((0, 0), (10, 9), (0, 9), (10, 0)):
        a0, b0 = max(r0 - halo, 0), max(c0 - halo, 0)
        a1, b1 = min(r0 + 10 + halo, 20), min(c0 + 9 + halo, 18)
        part = date_window(pre[..., a0:a1, b0:b1], post[..., a0:a1, b0:b1], params, context)
        for got, want in zip(part, whole, strict=True):
            np.testing.assert_array_equal(got[r0 - a0:r0 - a0 + 10, c0 - b0:c0 - b0 + 9],
                                          want[r0:r0 + 10, c0:c0 + 9])


@pytest.fixture(scope="module")
def dated_city(tmp_path_factory: pytest.TempPathFactory) -> City:
    return make_city(tmp_path_factory.mktemp("dating") / "city", size=192, n_pre=6,
                     n_post=6, seed=5, destroyed_fraction=0.2, dated_destruction=True)


def _read(paths: tuple[Path, ...]) -> np.ndarray:
    out = []
    for path in paths:
        with rasterio.open(path) as src:
            out.append(src.read())
    return np.stack(out).astype(np.float32)


@pytest.mark.parametrize(("method", "rule"), list(FLOORS))
def test_dating_accuracy_on_the_dated_city(dated_city: City, method: str, rule: str) -> None:
    city = dated_city
    params = (PwttParams(dating=True, dating_rule=rule) if method == "pwtt"
              else LogRatioParams(band="VV", dating=True, dating_rule=rule))
    context = _context((0,) * len(city.pre_files), (0,) * len(city.post_files))
    date_idx, earliest, status = date_window(_read(city.pre_files), _read(city.post_files),
                                             params, context)
    truth = city.buildings
    labels = footprint_labels(truth.geometry.to_numpy(), city.transform, city.shape)
    dated = building_dates(labels, date_idx, earliest, status, len(truth))
    has_pixels = np.bincount(labels.ravel(), minlength=len(truth) + 1)[1:] > 0
    destroyed = truth["destroyed"].to_numpy(bool) & has_pixels
    predicted = np.where(dated["status"] != STATUS_NONE, dated["date"], -1)[destroyed]
    actual = truth["destroyed_index"].to_numpy()[destroyed]
    right = float(np.mean(predicted == actual))
    days = np.array([(d - city.post_dates[0]).days for d in city.post_dates])
    errors = np.abs(days[predicted[predicted >= 0]] - days[actual[predicted >= 0]])
    print(f"{method} {rule}: {right:.3f} of {destroyed.sum()} dated right, median error "
          f"{np.median(errors):g} days")
    floor, ceiling = FLOORS[(method, rule)]
    assert destroyed.sum() > 50
    assert right >= floor
    assert float(np.median(errors)) <= ceiling


def test_building_dates_take_the_lower_median_confirmed_first() -> None:
    labels = np.array([[1, 1, 1, 2], [1, 1, 0, 2]])
    date_idx = np.array([[3, 1, 2, 4], [-1, 2, 5, -1]])
    earliest = np.array([[2, 0, 1, 3], [-1, 0, 4, -1]])
    status = np.array([[2, 2, 2, 1], [0, 1, 2, 0]], np.uint8)
    got = building_dates(labels, date_idx, earliest, status, 3)
    # building 1: confirmed 3, 1, 2, never, never (the uncertain 2 counts as never) -> the
    # lower median 3, its pixel's earliest 2; building 2: nothing confirmed; any date: 4 and
    # never -> the lower median 4; building 3: no pixel
    assert got.to_dict("list") == {"date": [3, 4, -1], "earliest": [2, 3, -1],
                                   "status": [2, 1, 0]}
    assert isinstance(got, pd.DataFrame)


def _building_dates_reference(labels: np.ndarray, date_idx: np.ndarray, earliest: np.ndarray,
                              status: np.ndarray, n_buildings: int) -> pd.DataFrame:
    """`building_dates` in pandas, group by group (what it was before sorted arrays)."""
    inside = labels > 0
    frame = pd.DataFrame({"b": labels[inside] - 1, "date": date_idx[inside].astype(np.int64),
                          "earliest": earliest[inside].astype(np.int64),
                          "status": status[inside]})
    never = 2**31
    out = pd.DataFrame({"date": np.full(n_buildings, -1), "earliest": np.full(n_buildings, -1),
                        "status": np.full(n_buildings, STATUS_NONE, np.uint8)})
    for level in (1, 2):
        key = frame["date"].where(frame["status"] >= level, never)
        median = key.groupby(frame["b"]).quantile(0.5, interpolation="lower")
        dated = median[median < never]
        out.loc[dated.index, "date"] = dated.to_numpy()
        out.loc[dated.index, "status"] = level
        same = frame[(frame["status"] >= level)
                     & (frame["date"].to_numpy() == median.reindex(frame["b"]).to_numpy())]
        first = same.groupby("b")["earliest"].min()
        out.loc[first.index.intersection(dated.index), "earliest"] = first
    return out


@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 6))
@settings(max_examples=60, deadline=None)
def test_building_dates_equal_the_pandas_reference(seed: int, n_buildings: int,
                                                   n_dates: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (9, 11)
    labels = rng.integers(0, n_buildings + 1, shape)
    status = rng.integers(0, 3, shape).astype(np.uint8)
    date_idx = np.where(status > 0, rng.integers(0, n_dates, shape), -1)
    earliest = np.where(status > 0, date_idx - rng.integers(1, 3, shape), -1)
    got = building_dates(labels, date_idx, earliest, status, n_buildings + 2)
    want = _building_dates_reference(labels, date_idx, earliest, status, n_buildings + 2)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got["status"].dtype == np.uint8


@pytest.mark.parametrize("rule", ["two_exceedance", "cusum"])
def test_appending_a_date_equals_dating_the_whole_series(rule: str) -> None:
    # monitoring: the new date's magnitude needs only the pre-event baseline and that date
    pre, post = _stacks(6, 7, shape=(12, 10), seed=4)
    params = PwttParams(dating=True, dating_rule=rule, dating_cusum_persistence=2)
    whole = date_window(pre, post, params, _context((0,) * 6, (0,) * 7))
    state = dating_state(params, (12, 10))
    baseline = dating_baseline(pre, params, _context((0,) * 6, ()))
    advance_dates(dating_magnitude(pre, post[:6], params, _context((0,) * 6, (0,) * 6),
                                   baseline), state, params, 0)
    # the new date against the kept baseline: the pre images are not needed again
    advance_dates(dating_magnitude(pre[:0], post[6:], params, _context((), (0,)), baseline),
                  state, params, 6)
    for got, want in zip((state.date, state.earliest, state.status), whole, strict=True):
        np.testing.assert_array_equal(got, want)
