"""A killed ingest (SIGKILL to the whole process group, mid-write) resumes correctly."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from rasterio.transform import from_origin

from ruinmap.cluster.ingest import IngestOptions, ingest, unit_key
from ruinmap.cluster.storage.arrays import shard_file
from ruinmap.cluster.storage.store import is_complete, is_ruinmap_store, ledger_of, open_store
from tests.support.rasters import write_geotiff
from tests.support.repo import REPO

N = 128  # image side (px): 64 units of 32 px, enough that a kill after 1 or 2 lands mid-ingest
SHARD = 32
OPTIONS = IngestOptions(chunk=SHARD, shard=SHARD)
TOTAL_UNITS = 4 * (N // SHARD) ** 2  # 2 pre + 2 post dates
DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    """The GeoTIFFs every test ingests (read only): 2 pre dates, 2 post, one off the grid."""
    tmp_path = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(2)
    pre = [
        write_geotiff(
            tmp_path / "in" / f"pre_2021-03-0{d + 1}.tif", rng.random((2, N, N), dtype=np.float32)
        )
        for d in range(2)
    ]
    post = [
        write_geotiff(
            tmp_path / "in" / "post_2021-05-01.tif", rng.random((2, N, N), dtype=np.float32)
        ),
        # a second post date off the grid: resumed units include warped reads
        write_geotiff(
            tmp_path / "in" / "post_2021-05-13.tif",
            rng.random((2, N // 2 + 4, N // 2 + 4), dtype=np.float32),
            transform=from_origin(499980.0, 4000020.0, 20.0, 20.0),
        ),
    ]
    return pre, post


@pytest.fixture(scope="module")
def reference(inputs: tuple[list[Path], list[Path]], tmp_path_factory: pytest.TempPathFactory,
              dask_client) -> Path:
    """The inputs ingested in one uninterrupted run: what a resumed store must equal."""
    out = tmp_path_factory.mktemp("resume_reference") / "reference.zarr"
    ingest(*inputs, out, OPTIONS, client=dask_client)
    return out


def _wait_for(condition, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"ingest exited ({proc.returncode}) before {what}: {err.decode()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE_S:.0f} s")
        time.sleep(0.005)  # polling interval, not a wait for an outcome


def _kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=DEADLINE_S)

    def group_gone() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    _wait_for(group_gone, "exit of every worker process")


def _arrays(out: Path) -> dict[str, zarr.Array]:
    # opened as members of the store, so `shard_file` gives their real paths
    return {side: zarr.open_array(store=str(out), path=side, mode="r") for side in ("pre", "post")}


def _shard_stats(out: Path, keys: set[str]) -> dict[str, tuple[int, int]]:
    stats = {}
    arrays = _arrays(out)
    for key in keys:
        side, t, iy, ix = key.split("/")
        path = shard_file(out, arrays[side], (int(t), 0, int(iy), int(ix)))
        if path.exists():  # an all-nodata shard has no file
            st = path.stat()
            stats[key] = (st.st_ino, st.st_mtime_ns)
    return stats


def _killed_ingest(pre: list[Path], post: list[Path], out: Path, recorded: int) -> None:
    """Run `ruinmap ingest` and SIGKILL it (and its workers) once `recorded` shards are."""
    command = [
        sys.executable,
        "-m",
        "ruinmap",
        "ingest",
        "--pre",
        *map(str, pre),
        "--post",
        *map(str, post),
        "--out",
        str(out),
        "--chunk",
        str(SHARD),
        "--shard",
        str(SHARD),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
        cwd=REPO,
    )
    ledger = ledger_of(out)
    try:
        _wait_for(lambda: len(ledger.done()) >= recorded, f"{recorded} finished shard(s)", proc)
    finally:
        _kill_group(proc)


def test_ingest_killed_mid_write_resumes_without_redoing_finished_shards(
    tmp_path, dask_client, inputs, reference
):
    pre, post = inputs
    out = tmp_path / "killed.zarr"
    _killed_ingest(pre, post, out, 1)
    ledger = ledger_of(out)

    done = ledger.done()
    assert 0 < len(done) < TOTAL_UNITS, "the kill must land mid-ingest"
    assert is_ruinmap_store(out) and not is_complete(out)
    finished = _shard_stats(out, done)
    assert finished, "no recorded shard has a file to compare"

    # an unrecorded shard holding garbage (a write cut short) must be rewritten, not trusted
    arrays = _arrays(out)
    victim = next(
        unit_key(side, t, iy, ix)
        for side in ("post", "pre")
        for t in (1, 0)
        for iy in range(N // SHARD)
        for ix in range(N // SHARD)
        if unit_key(side, t, iy, ix) not in done
    )
    side, t, iy, ix = victim.split("/")
    garbage = shard_file(out, arrays[side], (int(t), 0, int(iy), int(ix)))
    garbage.parent.mkdir(parents=True, exist_ok=True)
    garbage.write_bytes(b"\x00half a shard")

    report = ingest(pre, post, out, OPTIONS, client=dask_client)
    assert "resumed an unfinished store" in report.notes
    assert report.units_skipped == len(done)
    assert report.units_written == TOTAL_UNITS - len(done)
    assert is_complete(out)
    assert not ledger.path.exists()
    assert not list(out.rglob("*.partial"))
    assert _shard_stats(out, done) == finished, "finished shards were rewritten"

    got, want = open_store(out), open_store(reference)
    for name in ("pre", "post"):
        np.testing.assert_array_equal(got[name].values, want[name].values)
    for coord in ("x", "y", "band", "pre_time", "post_time"):
        np.testing.assert_array_equal(got[coord].values, want[coord].values)
    assert np.isfinite(got["post"].values[int(t) if side == "post" else 0]).any()


def test_a_resumed_ingest_rewrites_recorded_shards_that_are_corrupted(
    tmp_path, dask_client, caplog, inputs, reference
):
    pre, post = inputs
    out = tmp_path / "killed.zarr"
    _killed_ingest(pre, post, out, 2)
    ledger = ledger_of(out)
    done = sorted(ledger.done())
    assert 2 <= len(done) < TOTAL_UNITS, "the kill must land mid-ingest"
    arrays = _arrays(out)

    def shard_of(key: str) -> Path:
        side, t, iy, ix = key.split("/")
        return shard_file(out, arrays[side], (int(t), 0, int(iy), int(ix)))

    # flipped bytes in one recorded shard, a garbage ledger entry for another
    flipped = next(key for key in done if shard_of(key).exists())  # all-nodata: no file
    garbled = next(key for key in done if key != flipped)
    data = bytearray(shard_of(flipped).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    shard_of(flipped).write_bytes(bytes(data))
    entry = ledger.entry_location(garbled)
    entry.write_bytes(b"garbage")
    untouched = set(done) - {flipped, garbled}
    finished = _shard_stats(out, untouched)

    with caplog.at_level(logging.WARNING, logger="ruinmap"):
        report = ingest(pre, post, out, OPTIONS, client=dask_client)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"shard {flipped}:" in m and str(shard_of(flipped)) in m
               and "does not match its checksum" in m for m in warnings), warnings
    assert any(f"shard {garbled}:" in m and str(entry) in m and "unreadable" in m
               for m in warnings), warnings
    assert report.units_skipped == len(done) - 2
    assert report.units_written == TOTAL_UNITS - len(done) + 2
    assert is_complete(out)
    assert _shard_stats(out, untouched) == finished, "sound shards were rewritten"

    got, want = open_store(out), open_store(reference)
    for name in ("pre", "post"):
        np.testing.assert_array_equal(got[name].values, want[name].values)
