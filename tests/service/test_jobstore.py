"""The SQLite job store: committed state changes, guarded transitions, queue order."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ruinmap.cluster.service.jobstore import JobStore
from ruinmap.errors import StoreError


def test_every_change_is_visible_to_another_connection_at_once(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create("damage-map", {"method": "pwtt"}, tmp_path / "out" / "a")
    store.mark_running(job.id)
    store.set_progress(job.id, 40, "8 of 16 tiles done")
    with sqlite3.connect(tmp_path / "jobs.sqlite") as other:  # as a restarted service would
        row = other.execute("SELECT status, progress, message, runs FROM jobs").fetchone()
        assert row == ("running", 40, "8 of 16 tiles done", 1)
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_a_dismissed_job_never_becomes_successful_or_failed(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create("damage-map", {}, tmp_path / "a")
    assert store.mark_running(job.id)
    assert store.mark_dismissed(job.id, "dismissed on request")
    assert not store.mark_successful(job.id, {}, 4, 4, "done")
    assert not store.mark_failed(job.id, "boom")
    assert not store.set_progress(job.id, 50, "late")
    assert not store.mark_running(job.id)
    final = store.get(job.id)
    assert final is not None and final.status == "dismissed" and final.progress == 0


def test_successful_jobs_keep_their_files_and_tile_counts(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create("damage-map", {}, tmp_path / "a")
    store.mark_running(job.id)
    assert store.mark_successful(job.id, {"map_png": "map.png"}, 16, 9, "9 of 16 tiles")
    record = store.get(job.id)
    assert record is not None
    assert (record.status, record.progress, record.files) == ("successful", 100,
                                                              {"map_png": "map.png"})
    assert (record.tiles_total, record.tiles_run) == (16, 9)
    assert record.created <= str(record.started) <= str(record.finished)


def test_an_output_folder_takes_one_active_job(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    first = store.create("damage-map", {}, tmp_path / "same")
    with pytest.raises(StoreError, match="in use by job"):
        store.create("damage-map", {}, tmp_path / "same")
    store.mark_running(first.id)
    store.mark_failed(first.id, "bad input")
    store.create("damage-map", {}, tmp_path / "same")  # free again once finished


def test_jobs_list_in_submission_order_and_filter_by_status(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    ids = [store.create("damage-map", {}, tmp_path / f"j{i}").id for i in range(5)]
    store.mark_running(ids[1])
    assert [j.id for j in store.list(newest_first=False)] == ids
    assert [j.id for j in store.list(statuses=["accepted"], newest_first=False)] == [
        ids[0], *ids[2:]]
    assert store.count(statuses=["running"]) == 1


def test_each_job_owns_its_folder(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    spec = {"method": "pwtt", "output": {"dir": str(tmp_path / "shared")}}
    first = store.create("damage-map", spec, tmp_path / "shared")
    store.mark_running(first.id)
    store.mark_successful(first.id, {}, 1, 1, "done")
    # another job may not replace a finished job's results, nor nest in or around its folder
    with pytest.raises(StoreError, match="holds the results of job"):
        store.create("damage-map", {**spec, "method": "cva"}, tmp_path / "shared")
    with pytest.raises(StoreError, match="lies inside the folder 'shared'"):
        store.create("damage-map", {}, tmp_path / "shared" / "a")
    with pytest.raises(StoreError, match="lies inside the folder 'shared'"):
        store.create("damage-map", {}, tmp_path / "shared" / "store.zarr" / "x")
    with pytest.raises(StoreError, match="lies around the folder 'shared'"):
        store.create("damage-map", {}, tmp_path)
    again = store.create("damage-map", spec, tmp_path / "shared")  # the same job, resubmitted
    for job in (first, again):
        assert store.mark_dismissed(job.id, "dismissed")
    store.create("damage-map", {}, tmp_path / "shared" / "a")  # dismissed: the folder is free


@pytest.mark.parametrize("status", ["accepted", "running", "failed"])
def test_a_store_is_read_only_once_its_job_has_succeeded(tmp_path: Path, status: str) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    maker = store.create("damage-map", {}, tmp_path / "maker")
    reads = {"inputs": {"store": str(tmp_path / "maker" / "store.zarr")}}
    if status != "accepted":
        store.mark_running(maker.id)
    if status == "failed":
        store.mark_failed(maker.id, "bad input")
    with pytest.raises(StoreError, match=f"job {maker.id}, which is {status}"):
        store.create("damage-map", reads, tmp_path / "reader")
    assert store.readers_of(tmp_path / "maker") == []


def test_the_readers_of_a_finished_store_are_known(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    maker = store.create("damage-map", {}, tmp_path / "maker")
    store.mark_running(maker.id)
    store.mark_successful(maker.id, {}, 1, 1, "done")
    reads = {"inputs": {"store": str(tmp_path / "maker" / "store.zarr")}}
    readers = [store.create("damage-map", reads, tmp_path / f"reader{i}") for i in range(2)]
    assert {j.id for j in store.readers_of(tmp_path / "maker")} == {j.id for j in readers}
    assert store.readers_of(tmp_path / "reader0") == []
    store.mark_running(readers[0].id)
    store.mark_failed(readers[0].id, "stopped")
    assert [j.id for j in store.readers_of(tmp_path / "maker")] == [readers[1].id]
