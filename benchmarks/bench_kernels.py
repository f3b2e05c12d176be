"""Our kernels and their peers side by side, one pytest-benchmark group per comparison.

Run with `.venv/bin/pytest benchmarks/ --benchmark-only`; the groups and the ratios printed at
the end are defined in `suite_groups.py` (targets in benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from suite_groups import GROUPS

CASES = [(g.name, c) for g in GROUPS for c in g.contenders]


@pytest.mark.parametrize(("group", "contender"), CASES, ids=[f"{g} | {c}" for g, c in CASES])
def test_contender(
    benchmark: Any,
    built: Callable[[str], Mapping[str, Any]],
    record_median: Callable[[str, str, Any], None],
    group: str,
    contender: str,
) -> None:
    timed = built(group)[contender]
    benchmark.group = group
    benchmark.extra_info["contender"] = contender
    benchmark.pedantic(timed.call, rounds=timed.rounds, warmup_rounds=1, iterations=1)
    record_median(group, contender, benchmark)
