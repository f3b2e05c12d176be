"""Verifying ledger units against the checksums recorded with them, on real files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ruinmap.cluster.storage.checksums import file_checksum, verified_units
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import LocalPath, as_location


def _unit(tmp_path: Path, ledger: Ledger, key: str, data: bytes | None) -> LocalPath:
    path = as_location(tmp_path / key.replace("/", "_"))
    assert isinstance(path, LocalPath)
    if data is not None:
        path.write_bytes(data)
    ledger.record(key, checksums={"file": file_checksum(path)})
    return path


def test_whole_units_pass_and_every_damaged_one_is_logged_and_forgotten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger(tmp_path / "ledger")
    whole = _unit(tmp_path, ledger, "u/whole", b"abc" * 1000)
    empty = _unit(tmp_path, ledger, "u/empty", None)  # deliberately not written: no file
    changed = _unit(tmp_path, ledger, "u/changed", b"abc" * 1000)
    changed.write_bytes(b"abd" * 1000)
    appeared = _unit(tmp_path, ledger, "u/appeared", None)
    appeared.write_bytes(b"stale")
    gone = _unit(tmp_path, ledger, "u/gone", b"x")
    gone.unlink()
    old = tmp_path / "old"
    old.write_bytes(b"y")
    ledger.record("u/old")  # an entry without checksums (an older ruinmap)
    files = {"u/whole": whole, "u/empty": empty, "u/changed": changed, "u/appeared": appeared,
             "u/gone": gone, "u/old": as_location(old),
             "u/never": as_location(tmp_path / "never")}
    units = {key: {"file": path} for key, path in files.items()}

    with caplog.at_level(logging.WARNING, logger="ruinmap"):
        good = verified_units(ledger, units, kind="unit")
    assert good == {"u/whole", "u/empty"}
    messages = sorted(r.getMessage() for r in caplog.records)
    assert messages == sorted([
        f"unit u/changed: {changed} does not match its checksum (truncated or changed); "
        "recomputing it",
        f"unit u/appeared: {appeared} exists but was not written by this unit; recomputing it",
        f"unit u/gone: {gone} is missing; recomputing it",
        f"unit u/old: ledger entry {ledger.entry_location('u/old')} holds no checksums for "
        "'u/old'; recomputing it",
    ])
    assert ledger.done() == {"u/whole", "u/empty"}


def test_a_content_check_rejects_a_file_whose_checksum_matches(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    path = _unit(tmp_path, ledger, "u/a", b"belongs to u/b")
    good = verified_units(ledger, {"u/a": {"file": path}}, kind="unit",
                          checks={"file": lambda key, data: None if key.encode() in data
                                  else "belongs to another unit"})
    assert good == set() and ledger.done() == set()
