"""When a pixel changed: sequential detectors over a post-event series of change magnitudes.

Both detectors walk the post-event dates in time order and keep a small per-pixel STATE, so a
series that grows (monitoring: new acquisitions appended) continues from the state instead of
starting over; `update(z_new, state, offset)` after `update(z_old, state, 0)` equals one
update over the whole series. Dates are indices into the post-event series; NaN observations
are skipped (the state does not move), so "consecutive" means consecutive valid observations
of that pixel, as in the source, whose sampled time series have no rows for masked pixels.

Status codes (`STATUS_*`): 0 never significant, 1 uncertain, 2 confirmed. `date` is the index
of the acquisition the change is dated to and `earliest` the pixel's valid acquisition before
it (the bracket: the change happened after `earliest` and by `date`); -1 where there is none
(`earliest` = -1 with a date: the bracket opens at the last pre-event acquisition).

Sources (github.com/oballinger/PWTT at e116b6b16768127fce2f5fd0d05a4dd9693f30cf):

- two-consecutive-exceedance rule, code/estimate_damage_date.py:331-356: z_max =
  max(|z_VV|, |z_VH|) of orbit-normalised z-scores (each orbit against its own pre-event mean
  and standard deviation, :55-70), above = z_max > z_crit (default 2.576, the two-sided 99 %
  normal quantile, :122-125); the damage date is the FIRST of the first two consecutive
  exceedances (:342-347); a single exceedance only dates it at that exceedance, flagged
  uncertain (:349-353); none: no date (:354-356).
- Page CUSUM, code/cusum_damage_detector.py: S_t = max(0, S_{t-1} + m_t - k) (:69-73) with
  reference value k = 2.0 and decision interval h = 5.0 (:30-31); the alarm is the first t with
  S_t > h whose next `persistence` (3) observations m all exceed k (:32, :92-99); the change
  point is Page's estimate, the first index after the last S = 0 before the alarm (:101-106).
  The baseline (median / MAD robust z, :47-52) is the caller's (`ruinmap.cluster.methods.
  dating`). One difference: the source's S_0 is 0 whatever m_0 (its series starts in the
  pre-event reference); here the series is post-event only and the state starts at S = 0
  before it, so the first post-event date counts.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ruinmap.errors import InputError

__all__ = ["STATUS_CONFIRMED", "STATUS_NONE", "STATUS_UNCERTAIN", "CusumState",
           "ExceedanceState", "cusum_init", "cusum_reference", "cusum_update",
           "two_exceedance_init", "two_exceedance_reference", "two_exceedance_update"]

STATUS_NONE = 0
STATUS_UNCERTAIN = 1
STATUS_CONFIRMED = 2


class ExceedanceState(NamedTuple):
    """Per pixel (y, x) state of the two-consecutive-exceedance rule."""

    last: np.ndarray  # int32: index of the last valid observation, -1 none
    before_last: np.ndarray  # int32: the valid observation before `last`, -1 none
    last_above: np.ndarray  # uint8: 1 when `last` exceeded z_crit
    date: np.ndarray  # int32
    earliest: np.ndarray  # int32
    status: np.ndarray  # uint8


class CusumState(NamedTuple):
    """Per pixel (y, x) state of Page's CUSUM with a persistence guard."""

    s: np.ndarray  # float64: the CUSUM statistic after the last valid observation
    last: np.ndarray  # int32
    rise: np.ndarray  # int32: first observation after the last S = 0 (Page's estimate)
    rise_before: np.ndarray  # int32: the valid observation before `rise`
    cand: np.ndarray  # int32: the alarm candidate (S > h, m > k) of the current run, -1 none
    cand_date: np.ndarray  # int32: `rise` when the candidate was set
    cand_earliest: np.ndarray  # int32
    run: np.ndarray  # int32: valid observations with m > k since the candidate
    date: np.ndarray  # int32
    earliest: np.ndarray  # int32
    status: np.ndarray  # uint8


def _check_series(z: np.ndarray, shape: tuple[int, ...], offset: int) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 3:
        raise InputError(f"the series must be (time, y, x), got shape {z.shape}")
    if z.shape[1:] != shape:
        raise InputError(f"series of pixels {z.shape[1:]} does not match the state {shape}")
    if offset < 0:
        raise InputError(f"offset must be >= 0 (the index of the first new date), got {offset}")
    return np.ascontiguousarray(z, dtype=np.float32)


def two_exceedance_init(shape: tuple[int, int]) -> ExceedanceState:
    """The state before any post-event observation: nothing seen, never significant."""
    def minus_one() -> np.ndarray:
        return np.full(shape, -1, np.int32)
    return ExceedanceState(minus_one(), minus_one(), np.zeros(shape, np.uint8), minus_one(),
                           minus_one(), np.zeros(shape, np.uint8))


@njit(cache=True, nogil=True, error_model="numpy")
def _two_exceedance_2d(z: np.ndarray, offset: int, z_crit: float, last: np.ndarray,
                       before_last: np.ndarray, last_above: np.ndarray, date: np.ndarray,
                       earliest: np.ndarray, status: np.ndarray) -> None:
    # time outer, pixels inner: every step reads one contiguous image
    for k in range(z.shape[0]):
        t = offset + k
        for i in range(z.shape[1]):
            for j in range(z.shape[2]):
                v = z[k, i, j]
                if v != v or status[i, j] == STATUS_CONFIRMED:
                    continue
                above = v > z_crit
                if above:
                    if last_above[i, j]:
                        status[i, j] = STATUS_CONFIRMED
                        date[i, j] = last[i, j]
                        earliest[i, j] = before_last[i, j]
                    elif status[i, j] == STATUS_NONE:
                        status[i, j] = STATUS_UNCERTAIN
                        date[i, j] = t
                        earliest[i, j] = last[i, j]
                before_last[i, j] = last[i, j]
                last[i, j] = t
                last_above[i, j] = 1 if above else 0


def two_exceedance_update(z: np.ndarray, state: ExceedanceState, offset: int,
                          z_crit: float = 2.576) -> ExceedanceState:
    """Advance `state` (in place, and returned) over `z` (time, y, x): the magnitudes of the
    post-event dates `offset`, `offset + 1`, ... (z_max = max over polarisations of |z|).

    Dated to the first of the first two consecutive valid exceedances (z > z_crit),
    confirmed; a lone exceedance dates it uncertain until a pair confirms (possibly later).
    """
    z = _check_series(z, state.status.shape, offset)
    if not np.isfinite(z_crit):
        raise InputError(f"z_crit must be a finite number, got {z_crit}")
    _two_exceedance_2d(z, int(offset), float(z_crit), *state)
    return state


def two_exceedance_reference(z: np.ndarray, z_crit: float = 2.576
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(date, earliest, status) of the whole series, per pixel, transcribing the source's
    pandas (`above & above.shift(1)`, `idxmax`) on each pixel's valid observations."""
    z = np.asarray(z, dtype=np.float32)
    shape = z.shape[1:]
    date = np.full(shape, -1, np.int32)
    earliest = np.full(shape, -1, np.int32)
    status = np.zeros(shape, np.uint8)
    for i, j in np.ndindex(shape):
        index = np.flatnonzero(~np.isnan(z[:, i, j]))
        above = z[index, i, j].astype(np.float64) > z_crit  # as the kernel: in float64
        consecutive = above & np.concatenate([[False], above[:-1]])
        if consecutive.any():
            first = int(np.argmax(consecutive)) - 1  # the row before the second of the pair
            date[i, j], status[i, j] = index[first], STATUS_CONFIRMED
        elif above.any():
            first = int(np.argmax(above))
            date[i, j], status[i, j] = index[first], STATUS_UNCERTAIN
        else:
            continue
        earliest[i, j] = index[first - 1] if first > 0 else -1
    return date, earliest, status


def cusum_init(shape: tuple[int, int]) -> CusumState:
    """The state before any post-event observation: S = 0, never significant."""
    def minus_one() -> np.ndarray:
        return np.full(shape, -1, np.int32)
    return CusumState(np.zeros(shape, np.float64), minus_one(), minus_one(), minus_one(),
                      minus_one(), minus_one(), minus_one(), np.zeros(shape, np.int32),
                      minus_one(), minus_one(), np.zeros(shape, np.uint8))


@njit(cache=True, nogil=True, error_model="numpy")
def _cusum_2d(m: np.ndarray, offset: int, k_ref: float, h: float, persistence: int,
              s: np.ndarray, last: np.ndarray, rise: np.ndarray, rise_before: np.ndarray,
              cand: np.ndarray, cand_date: np.ndarray, cand_earliest: np.ndarray,
              run: np.ndarray, date: np.ndarray, earliest: np.ndarray,
              status: np.ndarray) -> None:
    for k in range(m.shape[0]):
        t = offset + k
        for i in range(m.shape[1]):
            for j in range(m.shape[2]):
                v = m[k, i, j]
                if v != v or status[i, j] == STATUS_CONFIRMED:
                    continue
                previous = s[i, j]
                now = max(0.0, previous + (v - k_ref))
                if previous == 0.0 and now > 0.0:
                    rise[i, j] = t
                    rise_before[i, j] = last[i, j]
                s[i, j] = now
                if v > k_ref:
                    # the earliest t of a run of m > k with S_t > h: if the run lasts
                    # `persistence` observations from it, it is the source's alarm
                    if cand[i, j] < 0 and now > h:
                        cand[i, j] = t
                        cand_date[i, j] = rise[i, j]
                        cand_earliest[i, j] = rise_before[i, j]
                        run[i, j] = 0
                    if cand[i, j] >= 0:
                        run[i, j] += 1
                else:
                    cand[i, j] = -1
                    run[i, j] = 0
                if status[i, j] == STATUS_NONE and now > h:
                    status[i, j] = STATUS_UNCERTAIN
                    date[i, j] = rise[i, j]
                    earliest[i, j] = rise_before[i, j]
                if cand[i, j] >= 0 and run[i, j] >= persistence:
                    status[i, j] = STATUS_CONFIRMED
                    date[i, j] = cand_date[i, j]
                    earliest[i, j] = cand_earliest[i, j]
                last[i, j] = t


def cusum_update(m: np.ndarray, state: CusumState, offset: int, k: float = 2.0, h: float = 5.0,
                 persistence: int = 3) -> CusumState:
    """Advance `state` (in place, and returned) over the magnitudes `m` (time, y, x) of the
    post-event dates `offset`, `offset + 1`, ...

    S_t = max(0, S_{t-1} + m_t - k); confirmed at the first t with S_t > h and m > k at t and
    the next `persistence - 1` valid observations, dated to Page's change point (the first
    observation after the last S = 0); uncertain where S has passed h without that
    persistence (yet), dated the same way.
    """
    m = _check_series(m, state.status.shape, offset)
    if not (np.isfinite(k) and np.isfinite(h) and h >= 0):
        raise InputError(f"CUSUM k and h must be finite numbers, h >= 0; got k={k}, h={h}")
    if persistence < 1:
        raise InputError(f"CUSUM persistence must be >= 1, got {persistence}")
    _cusum_2d(m, int(offset), float(k), float(h), int(persistence), *state)
    return state


def cusum_reference(m: np.ndarray, k: float = 2.0, h: float = 5.0, persistence: int = 3
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(date, earliest, status) of the whole series, per pixel, transcribing the source's
    batch detector (`cusum`, the alarm loop with its look-ahead window, the last zero before
    the alarm) on each pixel's valid observations, with S = 0 before the first."""
    m = np.asarray(m, dtype=np.float32)
    shape = m.shape[1:]
    date = np.full(shape, -1, np.int32)
    earliest = np.full(shape, -1, np.int32)
    status = np.zeros(shape, np.uint8)
    for i, j in np.ndindex(shape):
        index = np.flatnonzero(~np.isnan(m[:, i, j]))
        series = m[index, i, j].astype(np.float64)
        s = np.zeros(series.size + 1)  # s[0]: before the series
        for t in range(series.size):
            s[t + 1] = max(0.0, s[t] + (series[t] - k))
        alarm = None
        for t in range(series.size):
            window = series[t:t + persistence]
            if s[t + 1] > h and window.size >= persistence and np.all(window > k):
                alarm = t
                break
        crossed = np.flatnonzero(s[1:] > h)
        if alarm is not None:
            at, status[i, j] = alarm, STATUS_CONFIRMED
        elif crossed.size:
            at, status[i, j] = int(crossed[0]), STATUS_UNCERTAIN
        else:
            continue
        tau = int(np.flatnonzero(s[: at + 2] == 0)[-1])  # first observation after that zero
        date[i, j] = index[tau]
        earliest[i, j] = index[tau - 1] if tau > 0 else -1
    return date, earliest, status
