"""`ruinmap bench`: the JSON and table it prints, its errors, and the strip harness it times."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ruinmap.bench import (
    CASES,
    KERNEL_NAMES,
    Case,
    concat_strips,
    map_strips,
    print_results,
    run_benchmarks,
    strip_bounds,
)
from ruinmap.bench.inputs import Inputs
from ruinmap.cli import main
from tests.support.repo import REPO

REQUIRED = ("mpx_per_s", "gb_per_s", "bandwidth_fraction", "speedup_vs_numpy")
ROOT = REPO


def test_bench_json_has_every_kernel_with_finite_positive_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "--size", "64", "--repeat", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)  # stdout is nothing but the JSON list
    assert isinstance(rows, list)
    assert [r["kernel"] for r in rows] == [c.kernel for c in CASES]
    assert set(KERNEL_NAMES) == {r["kernel"] for r in rows}
    for row in rows:
        for key in (*REQUIRED, "median_s", "bound_s", "reference_median_s"):
            value = row[key]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, row)
        assert row["size"] == 64 and row["threads"] == (os.cpu_count() or 1)
    progress = [line for line in err.splitlines() if line.startswith("bench: ")]
    assert len(progress) == len(CASES) + 1  # the triad bound, then one line per kernel row


def test_python_m_ruinmap_bench_runs_one_kernel() -> None:
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba-cache"))
    done = subprocess.run(
        [sys.executable, "-m", "ruinmap", "bench", "--size", "32", "--json", "--kernel", "to_db"],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["kernel"] for r in rows] == ["to_db"]
    assert all(rows[0][k] > 0 for k in REQUIRED)
    assert "bench: to_db" in done.stderr


def test_bench_table_names_every_selected_row(capsys: pytest.CaptureFixture[str]) -> None:
    results = run_benchmarks(size=32, repeat=1, kernels=["focal_mean", "classify"])
    print_results(results, as_json=False)
    out = capsys.readouterr().out
    assert "triad bound" in out
    for radius in (2, 5, 10, 15):
        assert f"focal_mean radius={radius}" in out
    assert "classify thresholds=4" in out


def test_bench_unknown_kernel_is_an_error_listing_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "--kernel", "no_such_kernel", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no_such_kernel" in captured.err and "welch_t" in captured.err


@pytest.mark.parametrize(("flag", "value"), [("--size", "8"), ("--repeat", "0")])
def test_bench_bad_size_or_repeat_is_an_error(
    capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    assert main(["bench", flag, value]) == 1
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rows", "n_strips", "quantum"),
    [(1, 4, 1), (7, 3, 1), (64, 2, 1), (100, 16, 1), (4096, 3, 10), (33, 4, 10), (5, 2, 10)],
)
def test_strip_bounds_cover_rows_once_with_aligned_starts(
    rows: int, n_strips: int, quantum: int
) -> None:
    bounds = strip_bounds(rows, n_strips, quantum)
    assert 1 <= len(bounds) <= n_strips
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(a < b for a, b in bounds)
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(bounds))
    assert all(a % quantum == 0 for a, _ in bounds)


def _assert_same_result(got: object, want: object) -> None:
    if isinstance(want, np.ndarray):
        np.testing.assert_array_equal(got, want)
        return
    for name in want.__dataclass_fields__:  # type: ignore[attr-defined]
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_strip_harness_equals_one_whole_image_call(case: Case) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        inputs = Inputs(67, pool, 3)  # odd size: uneven strips, a ragged last block
        arrays = case.inputs(inputs)
        kernel, _, combine = case.functions()
        parts = map_strips(pool, 3, kernel, arrays, halo=case.halo, quantum=case.quantum)
    got = combine(parts) if combine is not None else concat_strips(parts)
    _assert_same_result(got, kernel(*arrays))
