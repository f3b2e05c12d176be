"""`output.dir` holds only ruinmap's files: a folder of the user's own files is refused before
any work, a file the user put in the work folder is never deleted, and the temporaries a
killed run left are removed by the next run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.outdir import OUTPUT_MARKER, claim_output_dir
from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.job.workdir import JOB_MARKER, WORK_DIR
from ruinmap.cluster.storage.durable import temp_sibling
from ruinmap.cluster.storage.location import LocalPath
from ruinmap.errors import SpecError
from ruinmap.synthetic import City
from tests.support.jobs import SHARD

OPTIONS = IngestOptions(chunk=64, shard=SHARD)


@pytest.mark.parametrize("name", ["map.png", "districts.csv", "job.json", "score.tif"])
def test_folder_of_user_files_is_refused_before_any_work(
    name: str, job_city: City, tmp_path: Path, dask_client: Client,
    job_spec_for: Callable[..., JobSpec],
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_bytes(b"the user's own file")
    with pytest.raises(SpecError, match=rf"output\.dir {out}: the folder is not empty and was "
                                        rf"not made by ruinmap \(it holds {name}\)"):
        run_job(job_spec_for(job_city, out), client=dask_client, progress=False,
                ingest_options=OPTIONS)
    assert sorted(p.name for p in out.iterdir()) == [name]
    assert (out / name).read_bytes() == b"the user's own file"


def test_new_folder_is_marked_first_and_a_marked_one_is_claimed_again(tmp_path: Path) -> None:
    out = LocalPath(tmp_path / "new" / "out")
    claim_output_dir(out)
    assert [p.name for p in out.iterdir()] == [OUTPUT_MARKER]
    (out / "score.tif").write_bytes(b"ruinmap's, from the run before")
    claim_output_dir(out)  # a ruinmap folder: no error
    assert (out / "score.tif").exists()


def test_folder_of_a_job_from_before_the_marker_is_accepted(tmp_path: Path) -> None:
    out = LocalPath(tmp_path)
    (out / WORK_DIR).mkdir()
    (out / WORK_DIR / JOB_MARKER).write_text(json.dumps({"signature": "abc"}))
    (out / "score.tif").write_bytes(b"x")
    claim_output_dir(out)
    assert (out / OUTPUT_MARKER).is_file()


def test_user_file_in_the_work_folder_is_an_error_and_kept(
    job_city: City, tmp_path: Path, dask_client: Client, job_spec_for: Callable[..., JobSpec],
) -> None:
    out = tmp_path / "out"
    spec = job_spec_for(job_city, out)
    run_job(spec, client=dask_client, progress=False, ingest_options=OPTIONS,
            write_products=False)
    mine = out / WORK_DIR / "my-notes.txt"
    mine.write_text("keep me")
    other = job_spec_for(job_city, out, grid={"cell_size": 200})  # would start the tiles over
    with pytest.raises(SpecError, match=rf"{WORK_DIR}/ holds my-notes\.txt, which ruinmap "
                                        "did not write; move them out"):
        run_job(other, client=dask_client, progress=False, ingest_options=OPTIONS)
    assert mine.read_text() == "keep me"


def test_rerun_removes_temporaries_a_killed_run_left_and_keeps_other_files(
    job_city: City, tmp_path: Path, dask_client: Client, job_spec_for: Callable[..., JobSpec],
) -> None:
    out = tmp_path / "out"
    spec = job_spec_for(job_city, out)
    first = run_job(spec, client=dask_client, progress=False, ingest_options=OPTIONS)
    # what a run killed while writing score.tif and a partial leaves: atomic_path temporaries
    stale = [temp_sibling(out / "score.tif"), temp_sibling(out / "districts.geojson"),
             temp_sibling(out / WORK_DIR / "partials" / "tile_0_0.npz"),
             temp_sibling(out / WORK_DIR / JOB_MARKER)]
    for path in stale:
        path.write_bytes(b"half a file")
    aside = out / "notes.txt"  # the user's, in ruinmap's folder: not ruinmap's to delete
    aside.write_text("mine")
    again = run_job(spec, client=dask_client, progress=False, ingest_options=OPTIONS)
    assert [p.name for p in stale if p.exists()] == []
    assert aside.read_text() == "mine"
    assert again.tiles_run == 0 and first.tiles_run == first.tiles_total
