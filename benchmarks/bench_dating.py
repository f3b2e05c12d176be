"""Benchmark damage dating's monitoring update: appending one post-event date against dating
the whole series again.

Generates a SAR-like series in memory, strip by strip (gamma speckle on a smooth field, VV and
VH, `--n-pre` pre and `--n-post` post dates, a block darkening from a middle date on), and
for every strip of `--strip` rows times, for the rule (`--rule`):

- full: `date_window` over pre + all post dates (magnitudes of every post date, then the
  sequential detector from its empty state) -- what a re-run without the state costs;
- append: the magnitude of the last post date only against the kept pre-event baseline
  (`dating_baseline`, computed with the earlier dates) and `advance_dates` from the state
  after the first n_post - 1 dates.

It checks that both end in the same dates and prints the summed seconds and their ratio
(the issue's target: append < 0.25 x full). Reading the dates from a store is not timed
(both would read the pre dates; the full recompute also reads every post date).

    python benchmarks/bench_dating.py --size 4096 --n-post 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ruinmap.cluster.methods import PwttParams, ScoreContext
from ruinmap.cluster.methods.dating import (
    advance_dates,
    date_window,
    dating_baseline,
    dating_magnitude,
    dating_state,
)


def _strip(rng: np.random.Generator, n: int, rows: int, cols: int, drop_from: int | None
           ) -> np.ndarray:
    field = np.float32(0.05) * (1.0 + 0.5 * np.sin(np.arange(cols, dtype=np.float32) / 40.0))
    stack = rng.gamma(4.4, 1.0 / 4.4, (n, 2, rows, cols)).astype(np.float32) * field
    if drop_from is not None:
        stack[drop_from:, :, rows // 4: rows // 2, cols // 4: cols // 2] *= np.float32(0.2)
    return stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--n-pre", type=int, default=10)
    parser.add_argument("--n-post", type=int, default=30)
    parser.add_argument("--strip", type=int, default=256, help="rows dated at a time")
    parser.add_argument("--rule", choices=["two_exceedance", "cusum"], default="two_exceedance")
    args = parser.parse_args()
    params = PwttParams(dating=True, dating_rule=args.rule)
    rng = np.random.default_rng(0)
    full_s = append_s = 0.0
    for r0 in range(0, args.size, args.strip):
        rows = min(args.strip, args.size - r0)
        pre = _strip(rng, args.n_pre, rows, args.size, None)
        post = _strip(rng, args.n_post, rows, args.size, args.n_post // 2)
        context = ScoreContext(bands=("VV", "VH"), pre_orbits=(0,) * args.n_pre,
                               post_orbits=(0,) * args.n_post, pixel_size_m=10.0)
        started = time.perf_counter()
        whole = date_window(pre, post, params, context)
        full_s += time.perf_counter() - started

        earlier = ScoreContext(bands=("VV", "VH"), pre_orbits=(0,) * args.n_pre,
                               post_orbits=(0,) * (args.n_post - 1), pixel_size_m=10.0)
        state = dating_state(params, (rows, args.size))
        baseline = dating_baseline(pre, params, earlier)  # kept with the state
        advance_dates(dating_magnitude(pre, post[:-1], params, earlier, baseline), state,
                      params, 0)
        newest = ScoreContext(bands=("VV", "VH"), pre_orbits=(0,) * args.n_pre,
                              post_orbits=(0,), pixel_size_m=10.0)
        started = time.perf_counter()
        advance_dates(dating_magnitude(pre, post[-1:], params, newest, baseline), state,
                      params, args.n_post - 1)
        append_s += time.perf_counter() - started
        for got, want in zip((state.date, state.earliest, state.status), whole, strict=True):
            np.testing.assert_array_equal(got, want)
    print(f"{args.size}^2, {args.n_pre} pre + {args.n_post} post dates, {args.rule}: full "
          f"{full_s:.2f} s, append one date {append_s:.2f} s, ratio {append_s / full_s:.3f}")


if __name__ == "__main__":
    main()
