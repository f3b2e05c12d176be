"""A job whose tiles read the imagery in place (`inputs.ingest = "never"`) gives the results of
one that copies it (`job_run`, "always"), byte for byte, and says so in job.json; methods
that read the whole store first refuse "never"."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import zarr
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions
from ruinmap.cluster.job.run import JobResult, ingest_mode_for, run_job
from ruinmap.cluster.job.spec import JobSpec, parse_spec
from ruinmap.errors import SpecError
from ruinmap.synthetic import City
from tests.support.jobs import SHARD, make_job_spec


def _with_ingest(spec: JobSpec, mode: str) -> JobSpec:
    return spec.model_copy(update={"inputs": spec.inputs.model_copy(update={"ingest": mode})})


def test_in_place_and_copied_jobs_give_byte_identical_results(
        job_city: City, job_run: JobResult, dask_client: Client, tmp_path: Path) -> None:
    spec = _with_ingest(make_job_spec(job_city, tmp_path / "in_place"), "never")
    result = run_job(spec, client=dask_client, progress=False,
                     ingest_options=IngestOptions(chunk=64, shard=SHARD))
    for layer in ("score", "damage"):
        copied = zarr.open_array(store=str(job_run.store), path=layer, mode="r")[...]
        in_place = zarr.open_array(store=str(result.store), path=layer, mode="r")[...]
        assert copied.tobytes() == in_place.tobytes(), layer
    pd.testing.assert_frame_equal(result.districts, job_run.districts)
    assert result.buildings is not None and job_run.buildings is not None
    pd.testing.assert_frame_equal(result.buildings.drop(columns="geometry"),
                                  job_run.buildings.drop(columns="geometry"))
    # no copy of the imagery: the store holds the job's layers, no input shard
    assert not (Path(str(result.store)) / "pre" / "c").exists()
    report = json.loads((tmp_path / "in_place" / "job.json").read_text())
    imagery = [r for r in report["inputs"] if r.get("side")]
    assert imagery and all(r["read_in_place"] for r in imagery)


def test_a_method_reading_the_whole_store_first_copies_under_auto_and_refuses_never(
        job_city: City, tmp_path: Path) -> None:
    spec = make_job_spec(job_city, tmp_path / "cva")
    data = spec.to_json_dict()
    data.update(method="cva", method_params={"standardize": True})
    standardized = parse_spec(data, tmp_path)
    assert ingest_mode_for(_with_ingest(standardized, "auto")) == "always"
    with pytest.raises(SpecError, match=r"\"never\".*cva"):
        ingest_mode_for(_with_ingest(standardized, "never"))
    data["method_params"] = {"standardize": False}
    assert ingest_mode_for(_with_ingest(parse_spec(data, tmp_path), "never")) == "never"


def test_an_unknown_ingest_mode_is_a_spec_error(job_city: City, tmp_path: Path) -> None:
    spec = make_job_spec(job_city, tmp_path / "x")
    data = spec.to_json_dict()
    data["inputs"]["ingest"] = "sometimes"
    with pytest.raises(SpecError, match=r"inputs\.ingest.*auto, always, never"):
        parse_spec(data, tmp_path)
