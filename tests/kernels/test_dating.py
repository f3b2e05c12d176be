"""The dating detectors against plain NumPy transcriptions of their source, and the sequential
state: appending dates continues exactly where a whole-series run would be."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ruinmap.errors import InputError
from ruinmap.kernels.dating import (
    STATUS_CONFIRMED,
    STATUS_NONE,
    STATUS_UNCERTAIN,
    cusum_init,
    cusum_reference,
    cusum_update,
    two_exceedance_init,
    two_exceedance_reference,
    two_exceedance_update,
)

SETTINGS = settings(max_examples=80, deadline=None)

# magnitudes around the thresholds, NaN (no observation) among them
series = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=7),
    elements=st.one_of(st.floats(0.0, 8.0, width=32), st.sampled_from([np.nan, 2.576, 2.0])),
)


def _result(state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return state.date, state.earliest, state.status  # type: ignore[attr-defined]


@SETTINGS
@given(series, st.floats(0.5, 5.0))
def test_two_exceedance_equals_numpy_transcription(z: np.ndarray, z_crit: float) -> None:
    state = two_exceedance_update(z, two_exceedance_init(z.shape[1:]), 0, z_crit)
    for got, want in zip(_result(state), two_exceedance_reference(z, z_crit), strict=True):
        np.testing.assert_array_equal(got, want)


@SETTINGS
@given(series, st.floats(0.5, 3.0), st.floats(0.0, 8.0), st.integers(1, 4))
def test_cusum_equals_numpy_transcription(m: np.ndarray, k: float, h: float,
                                          persistence: int) -> None:
    state = cusum_update(m, cusum_init(m.shape[1:]), 0, k, h, persistence)
    for got, want in zip(_result(state), cusum_reference(m, k, h, persistence), strict=True):
        np.testing.assert_array_equal(got, want)


@SETTINGS
@given(series, st.data())
def test_appending_dates_equals_whole_series(z: np.ndarray, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, z.shape[0]))
    whole = two_exceedance_update(z, two_exceedance_init(z.shape[1:]), 0)
    parts = two_exceedance_init(z.shape[1:])
    two_exceedance_update(z[:cut], parts, 0)
    two_exceedance_update(z[cut:], parts, cut)
    for got, want in zip(parts, whole, strict=True):
        np.testing.assert_array_equal(got, want)
    whole_c = cusum_update(z, cusum_init(z.shape[1:]), 0, 2.0, 5.0, 2)
    parts_c = cusum_init(z.shape[1:])
    cusum_update(z[:cut], parts_c, 0, 2.0, 5.0, 2)
    cusum_update(z[cut:], parts_c, cut, 2.0, 5.0, 2)
    for got, want in zip(parts_c, whole_c, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("values", "date", "earliest", "status"), [
    ([0.0, 3.0, 3.0, 0.0], 1, 0, STATUS_CONFIRMED),
    ([3.0, 3.0, 0.0], 0, -1, STATUS_CONFIRMED),  # bracket opens at the last pre date
    ([0.0, 3.0, 0.0, 0.0], 1, 0, STATUS_UNCERTAIN),
    ([3.0, 0.0, 0.0, 3.0, np.nan, 3.0], 3, 2, STATUS_CONFIRMED),  # NaN: no observation
    ([0.0, 1.0, 2.5], -1, -1, STATUS_NONE),
])
def test_two_exceedance_cases(values: list[float], date: int, earliest: int,
                              status: int) -> None:
    z = np.array(values, np.float32)[:, None, None]
    state = two_exceedance_update(z, two_exceedance_init((1, 1)), 0)
    assert (state.date[0, 0], state.earliest[0, 0], state.status[0, 0]) == (
        date, earliest, status)


def test_cusum_dates_to_change_point_not_alarm() -> None:
    # S: 0, 0, 1.5, 3, 4.5, 6 (alarm at 5 with persistence), the change began at index 2
    m = np.array([1.0, 0.5, 3.5, 3.5, 3.5, 3.5, 3.5, 3.5], np.float32)[:, None, None]
    state = cusum_update(m, cusum_init((1, 1)), 0, k=2.0, h=5.0, persistence=3)
    assert (state.date[0, 0], state.earliest[0, 0], state.status[0, 0]) == (
        2, 1, STATUS_CONFIRMED)


@pytest.mark.parametrize("bad", [np.zeros((3, 3)), np.zeros((2, 3, 4))])
def test_series_must_match_the_state(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        two_exceedance_update(bad, two_exceedance_init((3, 3)), 0)


@pytest.mark.parametrize(("z_crit", "status"), [(2.5759999, STATUS_CONFIRMED),
                                                (2.576, STATUS_NONE)])
def test_exceedance_compares_in_float64(z_crit: float, status: int) -> None:
    # float32(2.576) = 2.5759999752...: above 2.5759999, not above 2.576
    z = np.full((2, 1, 1), 2.576, np.float32)
    state = two_exceedance_update(z, two_exceedance_init((1, 1)), 0, z_crit)
    assert state.status[0, 0] == status
    assert two_exceedance_reference(z, z_crit)[2][0, 0] == status
