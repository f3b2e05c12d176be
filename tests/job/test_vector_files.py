"""A tile's polygons reach its task through a file of the work folder (`vector_files`): read
back exactly as written, refused with the file's name when missing, changed or another
tile's, and gone once the job's tiles have run."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from ruinmap.cluster.job.plan import plan_job
from ruinmap.cluster.job.polygons import TileVectors, polygons_on_grid, read_polygons, tile_vectors
from ruinmap.cluster.job.result import JobResult
from ruinmap.cluster.job.spec.files import validate_spec_files
from ruinmap.cluster.job.vector_files import (
    VECTORS_DIR,
    load_tile_vectors,
    remove_vector_files,
    write_vector_files,
)
from ruinmap.cluster.job.workdir import WORK_DIR
from ruinmap.cluster.storage.location import LocalPath
from ruinmap.cluster.storage.store import StoreInfo
from ruinmap.errors import StoreError


@pytest.fixture(scope="module")
def plan_and_vectors(job_run: JobResult) -> tuple[object, list[TileVectors]]:
    spec = job_run.spec
    files = validate_spec_files(spec)
    store = StoreInfo.read(job_run.store)
    polygons = polygons_on_grid(spec, read_polygons(spec, files), store.grid)
    plan = plan_job(spec, files, store, n_districts=len(polygons.district_ids))
    return plan, tile_vectors(plan.tiles, plan.grid, polygons, plan.mask_margin)


def _assert_same(got: TileVectors, want: TileVectors) -> None:
    for field in fields(TileVectors):
        a, b = getattr(got, field.name), getattr(want, field.name)
        assert a.dtype == b.dtype and a.shape == b.shape, field.name
        assert list(a.ravel()) == list(b.ravel()), field.name


def test_every_tiles_polygons_read_back_as_written(plan_and_vectors, tmp_path: Path) -> None:
    plan, vectors = plan_and_vectors
    assert sum(len(v.building_wkb) for v in vectors) > 0  # the city has footprints
    assert sum(len(v.mask_wkb) for v in vectors) > 0  # and a footprint mask
    work = LocalPath(tmp_path)
    refs = write_vector_files(work, "tile", plan.tiles, vectors)
    for ref, want in zip(refs, vectors, strict=True):
        _assert_same(load_tile_vectors(ref), want)
    remove_vector_files(work)
    assert not (tmp_path / VECTORS_DIR).exists()


def test_empty_polygons_read_back_empty(plan_and_vectors, tmp_path: Path) -> None:
    plan, vectors = plan_and_vectors
    empty = np.empty(0, object)
    bare = replace(vectors[0], building_wkb=empty, building_index=np.empty(0, np.int64),
                   mask_wkb=empty)
    [ref] = write_vector_files(LocalPath(tmp_path), "classes", plan.tiles[:1], [bare])
    _assert_same(load_tile_vectors(ref), bare)


def test_a_changed_missing_or_swapped_file_is_refused_by_name(plan_and_vectors,
                                                              tmp_path: Path) -> None:
    plan, vectors = plan_and_vectors
    first, second = write_vector_files(LocalPath(tmp_path), "tile", plan.tiles[:2], vectors[:2])
    data = bytearray(Path(first.location).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(first.location).write_bytes(bytes(data))
    with pytest.raises(StoreError, match=rf"{first.location}.*do not match their checksum"):
        load_tile_vectors(first)
    swapped = replace(first, location=second.location, sha256=second.sha256)
    with pytest.raises(StoreError, match=rf"polygons of tile '{second.tile_key}', not of"):
        load_tile_vectors(swapped)
    Path(second.location).unlink()
    with pytest.raises(StoreError, match=rf"{second.location}: .* are missing"):
        load_tile_vectors(second)


def test_a_finished_job_leaves_no_polygon_files(job_run: JobResult) -> None:
    work = Path(job_run.spec.output.dir) / WORK_DIR
    assert (work / "ledger").is_dir()
    assert not (work / VECTORS_DIR).exists()
