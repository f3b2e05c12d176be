"""job.json: valid JSON with every key, JSON-safe values, real file checksums."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from ruinmap.cluster.outputs.report import (
    REPORT_KEYS,
    input_record,
    software_versions,
    to_jsonable,
    write_job_report,
)
from ruinmap.errors import InputError

VERSION_KEYS = (
    "ruinmap",
    "numpy",
    "numba",
    "dask",
    "distributed",
    "xarray",
    "zarr",
    "rasterio",
    "GDAL",
    "geopandas",
    "python",
)


def _report(tmp_path: Path, **overrides: object) -> Path:
    image = tmp_path / "in" / "pre.tif"
    image.parent.mkdir(exist_ok=True)
    image.write_bytes(b"not really a tiff" * 100)
    kwargs: dict[str, object] = {
        "spec": {"method": "pwtt", "inputs": {"pre": [str(image)]}},
        "parameters": {"threshold": np.float32(3.3), "class_thresholds": (2.0, 3.3, 4.0, 5.0)},
        "inputs": [input_record(image)],
        "timings": {"ingest": 12.3456789, "score": np.float64(4.0)},
        "outputs": {"score": tmp_path / "out" / "score.tif", "elsewhere": "/data/x.tif"},
        "cluster": {"address": "local", "workers": np.int64(2), "memory_bytes": 2**34},
    }
    kwargs.update(overrides)
    return write_job_report(tmp_path / "out" / "job.json", **kwargs)  # type: ignore[arg-type]


def test_write_job_report_is_valid_json_with_every_key(tmp_path: Path) -> None:
    report = json.loads(_report(tmp_path).read_text(encoding="utf-8"))
    for key in (*REPORT_KEYS, "format", "format_version", "created"):
        assert key in report
    assert report["format"] == "ruinmap-job-report"
    for key in VERSION_KEYS:
        assert report["versions"][key]
    assert report["cluster"]["workers"] == 2
    assert report["parameters"]["threshold"] == pytest.approx(3.3, rel=1e-6)
    assert report["timings"] == {"ingest": 12.346, "score": 4.0}


def test_write_job_report_writes_outputs_relative_to_its_folder(tmp_path: Path) -> None:
    report = json.loads(_report(tmp_path).read_text())
    assert report["outputs"] == {"score": "score.tif", "elsewhere": "/data/x.tif"}


def test_write_job_report_is_indented_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = _report(tmp_path)
    assert path.read_text().startswith('{\n  "format"')
    assert [p.name for p in path.parent.iterdir()] == ["job.json"]


def test_write_job_report_refuses_inputs_without_checksum_fields(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input_record"):
        _report(tmp_path, inputs=[{"path": "x"}])


def test_input_record_has_size_and_sha256_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    record = input_record(path)
    assert record == {
        "path": str(path),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_input_record_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.tif"):
        input_record(tmp_path / "missing.tif")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.float32(1.5), 1.5),
        (np.int16(-3), -3),
        (np.bool_(True), True),
        (float("nan"), None),
        (np.float64("inf"), None),
        (np.array([[1, 2], [3, 4]], np.uint8), [[1, 2], [3, 4]]),
        (Path("/a/b"), "/a/b"),
        (dt.datetime(2024, 2, 1, 12, 0, tzinfo=dt.UTC), "2024-02-01T12:00:00+00:00"),
        (dt.date(2024, 2, 1), "2024-02-01"),
        (np.datetime64("2024-02-01"), "2024-02-01"),
        (np.datetime64("NaT"), None),
        ({1: (2, 3)}, {"1": [2, 3]}),
        ({"b", "a"}, ["a", "b"]),
    ],
)
def test_to_jsonable_converts_numpy_paths_and_dates(value: object, expected: object) -> None:
    converted = to_jsonable(value)
    assert converted == expected
    json.dumps(converted, allow_nan=False)


def test_software_versions_names_every_library_and_gdal() -> None:
    versions = software_versions()
    for key in VERSION_KEYS:
        assert isinstance(versions[key], str) and versions[key]
    assert versions["GDAL"][0].isdigit()
