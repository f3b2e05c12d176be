"""The resumable-work ledger: durable, atomic records from many processes."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.errors import StoreError


def _record_many(path: str, worker: int, count: int) -> None:
    ledger = Ledger(path)
    for i in range(count):
        ledger.record(f"pre/{worker}/{i}", {"worker": worker})


def test_recorded_keys_are_done_and_others_pending(tmp_path):
    ledger = Ledger(tmp_path / "ledger")
    assert ledger.done() == set()
    ledger.record("pre/0/1/2", {"bytes": 10})
    assert ledger.is_done("pre/0/1/2")
    assert not ledger.is_done("pre/0/1/3")
    assert ledger.done() == {"pre/0/1/2"}
    assert ledger.pending(["pre/0/1/3", "pre/0/1/2", "post/0/0/0"]) == ["pre/0/1/3", "post/0/0/0"]
    assert ledger.info("pre/0/1/2")["bytes"] == 10


def test_recording_twice_is_harmless(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.record("a")
    ledger.record("a")
    assert ledger.done() == {"a"}


def test_many_processes_record_concurrently(tmp_path):
    path = str(tmp_path / "ledger")
    with ProcessPoolExecutor(max_workers=4) as pool:
        list(pool.map(_record_many, [path] * 4, range(4), [40] * 4))
    ledger = Ledger(path)
    assert ledger.done() == {f"pre/{w}/{i}" for w in range(4) for i in range(40)}
    assert ledger.clean() == 0  # no temporary file left behind


def test_leftover_temporary_files_are_ignored_and_cleaned(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.record("done")
    (tmp_path / ".half+written.0123.tmp").write_text('{"key": "half')
    assert ledger.done() == {"done"}
    assert ledger.clean() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done"]


@pytest.mark.parametrize("key", ["", ".hidden", "a b", "a+b", "../up"])
def test_bad_keys_are_refused(tmp_path, key):
    with pytest.raises(StoreError, match="ledger key"):
        Ledger(tmp_path).record(key)


def test_ledger_pickles_to_the_same_path(tmp_path):
    ledger = pickle.loads(pickle.dumps(Ledger(tmp_path / "l")))
    assert ledger.path == tmp_path / "l"


def test_remove_deletes_the_ledger(tmp_path):
    ledger = Ledger(tmp_path / "l")
    ledger.record("x")
    ledger.remove()
    assert not ledger.path.exists() and ledger.done() == set()
