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

`--job` measures the same at the job level, through `run_job` (`ruinmap run`) on a dated
synthetic city (`make_city(..., dated_destruction=True)`, GeoTIFFs in `--workdir`) on a
local cluster of `--workers` processes: full = a new job over all `--n-post` dates (ingest,
tiles, products), append = the same spec run again after the last date arrived, on a job
finished over the first n_post - 1 dates (only that date ingested, every tile re-scored,
the dating state advanced by one date, products rewritten). Each repeat runs both side by
side on fresh output folders (the n_post - 1 job first, untimed) and checks that the two
end in the same date layers; it prints the medians of the totals and of the phases.

    python benchmarks/bench_dating.py --job --size 1024 --n-post 30 --repeat 3
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

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


def _job_spec(city: Any, out: Path, n_post: int, rule: str) -> Any:
    from ruinmap.cluster.job.spec import load_spec, parse_spec
    from ruinmap.synthetic import write_job_spec

    data = load_spec(write_job_spec(city, out.parent, name=f"{out.name}.toml")).to_json_dict()
    data["output"] = {"dir": str(out)}
    data["inputs"] = {**data["inputs"], "post": [str(p) for p in city.post_files[:n_post]]}
    data["method_params"] = {**data["method_params"], "dating": True, "dating_rule": rule}
    return parse_spec(data, out.parent)


def job_level(args: argparse.Namespace) -> None:
    """The `--job` mode (module doc)."""
    from distributed import Client, LocalCluster

    from ruinmap.cluster.job.run import run_job
    from ruinmap.cluster.storage.arrays import open_array
    from ruinmap.cluster.storage.location import LocalPath
    from ruinmap.synthetic import make_city

    work = Path(args.workdir)
    started = time.perf_counter()
    # a 4096^2 x 40-date city is 5.4 GB: --keep keeps it (and its description) for a re-run
    described = work / f"city-{args.size}-{args.n_pre}-{args.n_post}.pickle"
    if args.keep and described.is_file():
        city = pickle.loads(described.read_bytes())
        print(f"city {args.size}^2, {args.n_pre} pre + {args.n_post} post dates reused")
    else:
        city = make_city(work / "city", size=args.size, n_pre=args.n_pre, n_post=args.n_post,
                         seed=5, destroyed_fraction=0.2, dated_destruction=True)
        described.write_bytes(pickle.dumps(city))
        print(f"city {args.size}^2, {args.n_pre} pre + {args.n_post} post dates written in "
              f"{time.perf_counter() - started:.1f} s", flush=True)

    def layer(out: Path, name: str) -> np.ndarray:
        return np.asarray(open_array(LocalPath(out / "store.zarr"), name, "r", str(out))[...])

    totals: dict[str, list[float]] = {"full": [], "append": []}
    phases: dict[str, dict[str, list[float]]] = {"full": {}, "append": {}}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        for k in range(args.repeat):
            full_out, append_out = work / f"full_{k}", work / f"append_{k}"
            for out in (full_out, append_out):
                shutil.rmtree(out, ignore_errors=True)
            run_job(_job_spec(city, append_out, args.n_post - 1, args.rule), client=client,
                    progress=False)  # the job before the last date arrived: untimed
            for mode, out in (("full", full_out), ("append", append_out)):
                t0 = time.perf_counter()
                result = run_job(_job_spec(city, out, args.n_post, args.rule), client=client,
                                 progress=False)
                totals[mode].append(time.perf_counter() - t0)
                for phase in ("ingest_s", "tiles_s", "products_s"):
                    phases[mode].setdefault(phase, []).append(result.timings.get(phase, 0.0))
            for name in ("damage_date_index", "score", "damage"):  # the same results
                np.testing.assert_array_equal(layer(append_out, name), layer(full_out, name))
            print(f"repeat {k}: full {totals['full'][-1]:.2f} s, append "
                  f"{totals['append'][-1]:.2f} s", flush=True)
            if not args.keep:  # a 4096^2 x 40-date job is 10+ GB a folder
                for out in (full_out, append_out):
                    shutil.rmtree(out, ignore_errors=True)
    full, append = np.median(totals["full"]), np.median(totals["append"])
    detail = "; ".join(
        f"{phase[:-2]} {np.median(phases['full'][phase]):.2f} vs "
        f"{np.median(phases['append'][phase]):.2f} s" for phase in phases["full"])
    print(f"job level, {args.size}^2, {args.n_pre} pre + {args.n_post} post dates, "
          f"{args.rule}, {args.workers} workers, medians of {args.repeat}: full {full:.2f} s, "
          f"append one date {append:.2f} s, ratio {append / full:.3f} ({detail})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--n-pre", type=int, default=10)
    parser.add_argument("--n-post", type=int, default=30)
    parser.add_argument("--strip", type=int, default=256, help="rows dated at a time")
    parser.add_argument("--rule", choices=["two_exceedance", "cusum"], default="two_exceedance")
    parser.add_argument("--job", action="store_true",
                        help="time `run_job`: a full run against an append run (module doc)")
    parser.add_argument("--workdir", default="bench-dating-job",
                        help="--job: folder of the city and the jobs' outputs")
    parser.add_argument("--workers", type=int, default=2, help="--job: local workers")
    parser.add_argument("--repeat", type=int, default=3, help="--job: repeats (medians)")
    parser.add_argument("--keep", action="store_true",
                        help="--job: keep the city for a re-run with the same shape, and each "
                             "repeat's job folders (default: removed)")
    args = parser.parse_args()
    if args.job:
        job_level(args)
        return
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
