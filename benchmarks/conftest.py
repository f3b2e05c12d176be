"""pytest-benchmark set-up for `pytest benchmarks/ --benchmark-only`.

Benchmark files are named `bench_*.py` so that the default `pytest` run (testpaths = tests)
and any `test_*.py` discovery never pick them up; the hook below collects them when this
directory is given explicitly. At the end of the session the ratios of the groups that ran
are printed, from the medians measured in this run.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".numba-cache")
)

MEDIANS = pytest.StashKey[dict[tuple[str, str], float]]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    # A file named on the command line is collected by pytest itself; do not add it twice.
    if parent.session.isinitpath(file_path):
        return None
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[MEDIANS] = {}


@pytest.fixture(scope="session")
def pool() -> Iterator[ThreadPoolExecutor]:
    from suite_core import THREADS

    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="bench") as executor:
        yield executor


@pytest.fixture(scope="session")
def built(pool: ThreadPoolExecutor) -> Iterator[Callable[[str], Mapping[str, Any]]]:
    """The contenders of a group, built once; only the latest group is kept, to bound memory."""
    from suite_groups import GROUP_BY_NAME

    cache: dict[str, Mapping[str, Any]] = {}

    def get(name: str) -> Mapping[str, Any]:
        if name not in cache:
            cache.clear()
            gc.collect()
            cache[name] = GROUP_BY_NAME[name].build(pool)
        return cache[name]

    yield get
    cache.clear()


@pytest.fixture
def record_median(request: pytest.FixtureRequest) -> Callable[[str, str, Any], None]:
    """Keep a benchmark's median for the ratio summary."""

    def record(group: str, contender: str, benchmark: Any) -> None:
        stats = getattr(benchmark, "stats", None)
        if stats is not None:  # None under --benchmark-disable
            request.config.stash[MEDIANS][(group, contender)] = stats.stats.median

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    medians = config.stash.get(MEDIANS, {})
    if not medians:
        return
    from suite_core import format_ratio_rows, ratio_rows
    from suite_groups import RATIOS

    rows = ratio_rows(RATIOS, medians)
    if rows:
        terminalreporter.section("ruinmap ratios, medians of this run")
        for line in format_ratio_rows(rows):
            terminalreporter.write_line(line)
