"""Atomic output writes: whole or nothing, never a half-written file under the final name."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruinmap.cluster.storage.durable import (
    atomic_path,
    remove_stale_temporaries,
    temp_sibling,
    write_bytes_atomic,
    write_text_atomic,
)
from ruinmap.errors import RuinmapError


class Boom(Exception):
    pass


def test_atomic_path_renames_temporary_onto_destination(tmp_path: Path) -> None:
    dst = tmp_path / "result.txt"
    with atomic_path(dst) as tmp:
        assert tmp.parent == tmp_path and tmp != dst
        tmp.write_text("done")
        assert not dst.exists()
    assert dst.read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]


def test_atomic_path_keeps_the_extension_for_format_detection(tmp_path: Path) -> None:
    tmp = temp_sibling(tmp_path / "districts.geojson")
    assert tmp.name.startswith(".districts.tmp-") and tmp.suffix == ".geojson"


def test_atomic_path_error_leaves_no_destination_and_no_temporary(tmp_path: Path) -> None:
    dst = tmp_path / "result.bin"
    with pytest.raises(Boom), atomic_path(dst) as tmp:
        tmp.write_bytes(b"half")
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_error_keeps_existing_destination_intact(tmp_path: Path) -> None:
    dst = write_text_atomic(tmp_path / "result.txt", "old")
    with pytest.raises(Boom), atomic_path(dst) as tmp:
        tmp.write_text("new, half")
        raise Boom
    assert dst.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_atomic_path_replaces_existing_file(tmp_path: Path) -> None:
    dst = write_text_atomic(tmp_path / "result.txt", "old")
    write_text_atomic(dst, "new")
    assert dst.read_text() == "new"


def test_atomic_path_writes_a_folder(tmp_path: Path) -> None:
    dst = tmp_path / "tiles"
    for content in ("first", "second"):
        with atomic_path(dst) as tmp:
            tmp.mkdir()
            (tmp / "a.txt").write_text(content)
    assert (dst / "a.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiles"]


def test_atomic_path_refuses_when_writer_created_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuinmapError, match="created nothing"), atomic_path(tmp_path / "x.txt"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_creates_missing_parent_folder(tmp_path: Path) -> None:
    dst = write_bytes_atomic(tmp_path / "new" / "deep" / "x.bin", b"\x00\x01")
    assert dst.read_bytes() == b"\x00\x01"


def test_write_text_atomic_round_trips_unicode(tmp_path: Path) -> None:
    text = "Dar'a — درعا ✓\n"
    assert write_text_atomic(tmp_path / "t.txt", text).read_text(encoding="utf-8") == text


def test_remove_stale_temporaries_removes_only_temporaries(tmp_path: Path) -> None:
    keep = write_text_atomic(tmp_path / "keep.txt", "x")
    temp_sibling(keep).write_text("stale")
    (tmp_path / ".hidden").write_text("not ours")
    assert remove_stale_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "keep.txt"]
