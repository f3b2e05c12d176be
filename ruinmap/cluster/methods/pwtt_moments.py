"""pwtt's t-test from per-pixel moments, which appended post-event dates can continue.

The t of `pwtt_statistic` (statistic 't') needs, per relative orbit and polarisation, only
the count and shifted sums of the log (Lee-filtered) backscatter of each side
(`kernels.moments`). `pwtt_moments` folds a window's dates into them; `advance_post`
folds new post dates into kept ones; `moments_statistic` is then `pwtt_statistic`, bitwise
(the same per-pixel t, the same orbit combination). A monitored job keeps the moments of
its tiles in its store (`job.score_state`), so appending a date costs that date's Lee
filter and one fold, not the whole series.

Layout: `PwttMoments.pre` and `.post` are float64 (orbit, polarisation, quantity, y, x),
quantity = `kernels.moments.Moments` (shift, count, sum1, sum2); orbits are the post dates'
(those `pwtt_statistic` tests), sorted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ruinmap.cluster.methods.base import ScoreContext, band_indices
from ruinmap.cluster.methods.pwtt import (
    OrbitTests,
    PwttParams,
    PwttStatistic,
    combine_orbits,
    dates_of_orbit,
    orbit_logs,
)
from ruinmap.kernels.moments import Moments, accumulate_moments, moments_two_sample_t

__all__ = ["PwttMoments", "advance_post", "blank_outside", "moments_statistic",
           "pwtt_moments"]

QUANTITIES = len(Moments._fields)


@dataclass(frozen=True, eq=False)
class PwttMoments:
    """The moments of a window's pre and post series (module doc for the layout)."""

    orbits: tuple[int, ...]
    pre: np.ndarray
    post: np.ndarray

    def side(self, which: str, orbit_index: int, pol: int) -> Moments:
        block = self.pre if which == "pre" else self.post
        return Moments(*block[orbit_index, pol])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pre.shape[-2]), int(self.pre.shape[-1]))

    @staticmethod
    def empty(orbits: Sequence[int], n_pols: int, shape: tuple[int, int]) -> PwttMoments:
        def block() -> np.ndarray:
            out = np.zeros((len(orbits), n_pols, QUANTITIES, *shape))
            out[:, :, 0] = np.nan  # no shift before the first valid observation
            return out
        return PwttMoments(tuple(orbits), block(), block())


def moment_orbits(context: ScoreContext) -> tuple[int, ...]:
    """The orbits whose moments a job keeps: those of its post dates, sorted."""
    return tuple(sorted(set(int(o) for o in context.post_orbits)))


def _fold(moments: PwttMoments, which: str, stack: np.ndarray, orbits: Sequence[int],
          params: PwttParams, context: ScoreContext) -> None:
    """Fold the dates of `stack` (time, band, y, x), taken in `orbits`, into one side."""
    pols = band_indices(context.bands, params.polarisations, "polarisations")
    logs = orbit_logs(stack, pols, params)  # (time, pol, y, x)
    taken = np.asarray(orbits)
    for index, orbit in enumerate(moments.orbits):
        dates = dates_of_orbit(logs, taken, orbit)
        for k in range(len(pols)):
            if dates.shape[0]:
                accumulate_moments(dates[:, k], moments.side(which, index, k))


def pwtt_moments(pre: np.ndarray, post: np.ndarray, params: PwttParams,
                 context: ScoreContext) -> PwttMoments:
    """The moments of the window's pre and post stacks (time, band, y, x)."""
    orbits = moment_orbits(context)
    moments = PwttMoments.empty(orbits, len(params.polarisations), pre.shape[2:])
    _fold(moments, "pre", pre, context.pre_orbits, params, context)
    _fold(moments, "post", post, context.post_orbits, params, context)
    return moments


def advance_post(moments: PwttMoments, post_new: np.ndarray, new_orbits: Sequence[int],
                 params: PwttParams, context: ScoreContext) -> None:
    """Fold the new post dates `post_new` (time, band, y, x, store order), taken in
    `new_orbits` (each one of `moments.orbits`), into `moments` (in place)."""
    unknown = set(new_orbits) - set(moments.orbits)
    if unknown:
        raise ValueError(f"new post dates of orbits {sorted(unknown)} the moments do not keep")
    _fold(moments, "post", post_new, new_orbits, params, context)


def blank_outside(moments: PwttMoments, rows: slice, cols: slice) -> None:
    """Reset the moments outside the window (rows, cols) to those of an empty series, so
    the statistic is NaN there: the margin a tile's padded window has beyond what its
    focal steps read (the Lee filter's reach), whose values a tile reading kept moments
    cannot know. Both runs of a monitored job blank it, so they smooth the same images."""
    keep = np.zeros(moments.shape, bool)
    keep[rows, cols] = True
    for block in (moments.pre, moments.post):
        block[:, :, 0, ~keep] = np.nan
        block[:, :, 1:, ~keep] = 0.0


def moments_statistic(moments: PwttMoments, params: PwttParams) -> PwttStatistic:
    """`pwtt_statistic` (statistic 't') from the moments of the two series."""
    per_orbit: list[OrbitTests] = []
    for index in range(len(moments.orbits)):
        stats, dofs = [], []
        n_pre = n_post = np.zeros(moments.shape, np.float32)
        for k in range(moments.pre.shape[1]):
            result = moments_two_sample_t(
                moments.side("pre", index, k), moments.side("post", index, k),
                test=params.ttest, ddof=params.ddof, min_pre=params.min_pre,
                min_post=max(2, params.min_post))
            stats.append(np.abs(result.t))
            dofs.append(result.dof)
            if k == 0:
                n_pre, n_post = result.n_pre, result.n_post
        per_orbit.append((np.stack(stats), np.stack(dofs), n_pre, n_post))
    return combine_orbits(per_orbit, params, moments.shape)
