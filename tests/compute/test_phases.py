"""Phase lines: on a terminal every phase of a command says what it is doing (a spinner, then
one line with its time); elsewhere nothing is drawn."""

from __future__ import annotations

import re

import pytest

from ruinmap.cluster.compute.phases import phase, progress_enabled


@pytest.mark.parametrize("requested", [True, False])
def test_progress_enabled_obeys_a_request(requested: bool) -> None:
    assert progress_enabled(requested) is requested


def test_a_finished_phase_leaves_one_line_with_its_time(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    with phase("writing the products", enabled=True):
        pass
    err = capsys.readouterr().err
    assert re.search(r"✓ writing the products +\d+\.\d s", err), err


def test_a_failed_phase_leaves_no_tick(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError), phase("merging", enabled=True):
        raise ValueError("bad")
    assert "✓" not in capsys.readouterr().err


def test_a_disabled_phase_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with phase("planning the tiles", enabled=False):
        pass
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
