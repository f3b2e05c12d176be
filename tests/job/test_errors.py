"""Each bad job spec fails with a clear message before any work starts (nothing is written)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest

from ruinmap.cli import main
from ruinmap.cluster.job.spec import dump_toml, load_spec
from ruinmap.synthetic import City, write_job_spec


def _duplicate_ids(data: dict[str, Any], folder: Path) -> None:
    frame = gpd.read_file(data["districts"]["path"])
    frame["district_id"] = "D001"
    path = folder / "dupes.geojson"
    frame.to_file(path, driver="GeoJSON")
    data["districts"]["path"] = str(path)


CASES: dict[str, tuple[Callable[[dict[str, Any], Path], None], str]] = {
    "unknown-param": (lambda d, f: d["method_params"].update(lee_sise=3),
                      r"unknown key 'lee_sise'.*did you mean 'lee_size'"),
    "missing-images": (lambda d, f: d["inputs"].update(pre=[str(f / "nope" / "*.tif")]),
                       r"inputs\.pre"),
    "missing-district-file": (lambda d, f: d["districts"].update(path=str(f / "no.geojson")),
                              r"districts\.path: .*does not exist"),
    "missing-key-field": (lambda d, f: d["districts"].update(id="quarter"),
                          r"districts\.id: field 'quarter' is not in"),
    "duplicate-district-ids": (_duplicate_ids, r"districts\.id: .*must be unique"),
    "unknown-polarisation": (lambda d, f: d["method_params"].update(polarisations=["HH", "HV"]),
                             r"method_params\.polarisations: band\(s\) HH, HV not in"),
    "bad-cluster": (lambda d, f: d["cluster"].update(address="htp://x"), r"cluster\.address"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_fails_before_any_work(
    case: str, job_city: City, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change, message = CASES[case]
    data = load_spec(write_job_spec(job_city, tmp_path)).to_json_dict()
    change(data, tmp_path)
    job = tmp_path / "bad.toml"
    job.write_text(dump_toml(data))
    assert main(["run", str(job), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ruinmap run: error:")
    assert __import__("re").search(message, err), err
    out = Path(data["output"]["dir"])
    assert not (out / "store.zarr").exists() and not (out / ".ruinmap-job").exists()
