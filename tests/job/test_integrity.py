"""Corrupted work files of a finished job are found by their checksums and their tiles redone.

Each test copies one finished job's output folder, damages one kind of work file (a partial
swapped with another tile's, missing, truncated; a garbage ledger entry; flipped bytes in a
score shard), re-runs the job and checks that the damaged tile(s), and only those, were
computed again, that a warning names each tile and file, and that every output equals the
undisturbed run's.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.partials import load_partial, save_partial
from ruinmap.cluster.job.run import JobResult, run_job
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.job.workdir import WORK_DIR
from ruinmap.cluster.storage.checksums import file_checksum
from ruinmap.cluster.storage.location import LocalPath
from ruinmap.errors import StoreError
from ruinmap.synthetic import City
from tests.support.jobs import SHARD

OPTIONS = IngestOptions(chunk=64, shard=SHARD)  # as `job_run`: 3 x 3 tiles


@pytest.fixture(scope="module")
def finished(job_city: City, job_spec_for: Callable[..., JobSpec],
             dask_client: Client) -> Path:
    """The output folder of a finished job (the same job as `job_run`), never changed."""
    out = job_city.out_dir.parent / "integrity_finished"
    run_job(job_spec_for(job_city, out), client=dask_client, progress=False,
            ingest_options=OPTIONS)
    return out


def _work(out: Path) -> Path:
    return out / WORK_DIR


def _partial(out: Path, iy: int, ix: int) -> Path:
    return _work(out) / "partials" / f"tile_{iy}_{ix}.npz"


def _entry(out: Path, iy: int, ix: int) -> Path:
    return _work(out) / "ledger" / f"tile+{iy}+{ix}"


def _score_shard(out: Path, iy: int, ix: int) -> Path:
    return out / "store.zarr" / "score" / "c" / str(iy) / str(ix)


def _swap(a: Path, b: Path) -> None:
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)


def _swap_partials(out: Path) -> list[Path]:
    # two whole 128 px tiles: partials of the same size and format
    _swap(_partial(out, 0, 0), _partial(out, 1, 1))
    return [_partial(out, 0, 0), _partial(out, 1, 1)]


def _swap_partials_and_checksums(out: Path) -> list[Path]:
    # the checksums swapped too: only the tile key inside each partial tells them apart
    entries = [_entry(out, 0, 0), _entry(out, 1, 1)]
    bodies = [json.loads(e.read_text()) for e in entries]
    sums = [b["checksums"]["partial"] for b in bodies]
    for entry, body, other in zip(entries, bodies, reversed(sums), strict=True):
        body["checksums"]["partial"] = other
        entry.write_text(json.dumps(body))
    return _swap_partials(out)


def _remove_partial(out: Path) -> list[Path]:
    _partial(out, 1, 2).unlink()
    return [_partial(out, 1, 2)]


def _truncate_partial(out: Path) -> list[Path]:
    path = _partial(out, 2, 0)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return [path]


def _garbage_entry(out: Path) -> list[Path]:
    _entry(out, 0, 1).write_bytes(b"\x00garbage{not json")
    return [_entry(out, 0, 1)]


def _flip_score_bytes(out: Path) -> list[Path]:
    path = _score_shard(out, 1, 1)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))
    return [path]


CORRUPTIONS = {
    "swapped partials": _swap_partials,
    "swapped partials and checksums": _swap_partials_and_checksums,
    "missing partial": _remove_partial,
    "truncated partial": _truncate_partial,
    "garbage ledger entry": _garbage_entry,
    "flipped bytes in a score shard": _flip_score_bytes,
}


def _tile_of(path: Path) -> str:
    name = path.name.removesuffix(".npz")
    if name.startswith("tile_"):
        return "tile/" + name.removeprefix("tile_").replace("_", "/")
    if name.startswith("tile+"):
        return name.replace("+", "/")
    return f"tile/{path.parent.name}/{name}"  # a score shard: c/<iy>/<ix>


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
def test_a_corrupted_work_file_is_logged_and_its_tile_recomputed(
    corrupt: Callable[[Path], list[Path]], finished: Path, job_run: JobResult,
    job_spec_for: Callable[..., JobSpec], job_city: City, dask_client: Client,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    damaged = corrupt(out)
    with caplog.at_level(logging.WARNING, logger="ruinmap"):
        again = run_job(job_spec_for(job_city, out), client=dask_client, progress=False,
                        ingest_options=OPTIONS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for path in damaged:
        tile = _tile_of(path)
        assert any(f"tile {tile}:" in m and str(path) in m and "recomputing" in m
                   for m in warnings), (tile, warnings)
    assert again.tiles_run == len(damaged)

    pd.testing.assert_frame_equal(again.districts, job_run.districts)
    assert again.buildings is not None and job_run.buildings is not None
    pd.testing.assert_frame_equal(again.buildings, job_run.buildings)
    np.testing.assert_array_equal(again.grid_fraction, job_run.grid_fraction)
    for layer in ("score", "damage"):
        got = zarr.open_array(store=str(out / "store.zarr"), path=layer, mode="r")[...]
        want = zarr.open_array(store=str(job_run.store), path=layer, mode="r")[...]
        np.testing.assert_array_equal(got, want)
    products = pd.read_csv(out / "districts.csv")
    pd.testing.assert_frame_equal(products, pd.read_csv(job_run.store.parent / "districts.csv"))


def test_a_rerun_of_an_undamaged_job_logs_no_warning(
    finished: Path, job_spec_for: Callable[..., JobSpec], job_city: City,
    dask_client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    with caplog.at_level(logging.WARNING, logger="ruinmap"):
        again = run_job(job_spec_for(job_city, out), client=dask_client, progress=False,
                        ingest_options=OPTIONS)
    assert again.tiles_run == 0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_loading_a_partial_checks_its_tile_key_and_checksum(finished: Path,
                                                            tmp_path: Path) -> None:
    source = _partial(finished, 0, 0)
    checksum = json.loads(_entry(finished, 0, 0).read_text())["checksums"]["partial"]
    partial = load_partial(source, "tile/0/0", checksum)
    with pytest.raises(StoreError, match=r"tile_0_0\.npz is the partial of tile 'tile/0/0', "
                                         r"not of 'tile/1/1'"):
        load_partial(source, "tile/1/1")
    with pytest.raises(StoreError, match=r"does not match its checksum"):
        load_partial(source, "tile/0/0", "0" * 64)
    with pytest.raises(StoreError, match=r"missing"):
        load_partial(tmp_path / "none.npz", "tile/0/0")
    copy = tmp_path / "copy.npz"
    assert save_partial(partial, copy, "tile/0/0") == file_checksum(LocalPath(copy))
