"""The input checks through the real `ruinmap run` / `ruinmap ingest` executables: exit code 1,
one line on stderr naming the file or key, no traceback, nothing written."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from shapely import affinity

from ruinmap.cluster.job.spec import dump_toml, load_spec
from ruinmap.synthetic import City, write_job_spec
from tests.ingest.test_input_guards import huge_vrt
from tests.support.processes import BIN


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ruinmap"), *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


def _far_districts(data: dict[str, Any], folder: Path, city: City) -> None:
    frame = gpd.read_file(data["districts"]["path"]).to_crs(city.crs)
    frame["geometry"] = frame.geometry.apply(lambda g: affinity.translate(g, yoff=50_000.0))
    path = folder / "far.geojson"
    frame.to_crs("EPSG:4326").to_file(path, driver="GeoJSON")
    data["districts"]["path"] = str(path)


def _metre_districts(data: dict[str, Any], folder: Path, city: City) -> None:
    text = json.loads(gpd.read_file(data["districts"]["path"]).to_crs(city.crs).to_json())
    text.pop("crs", None)
    path = folder / "metres.geojson"
    path.write_text(json.dumps(text))
    data["districts"]["path"] = str(path)


def _symlinked_post(data: dict[str, Any], folder: Path, city: City) -> None:
    link = folder / "post_link.tif"
    os.symlink(city.pre_files[-1], link)
    data["inputs"]["post"] = [str(p) for p in city.post_files] + [str(link)]


def _huge_inputs(data: dict[str, Any], folder: Path, city: City) -> None:
    data["inputs"] = {"pre": [str(huge_vrt(folder, "pre.vrt"))],
                      "post": [str(huge_vrt(folder, "post.vrt"))]}


Change = Callable[[dict[str, Any], Path, City], None]
CASES: dict[str, tuple[Change, str]] = {
    "districts-outside-imagery": (_far_districts, r"districts\.path: none of the 10 districts"),
    "metres-without-crs": (_metre_districts, r"outside longitude/latitude ranges.*districts\.crs"),
    "min-pre-above-dates": (lambda d, f, c: d["method_params"].update(min_pre=9),
                            r"method_params\.min_pre = 9, but the imagery has 5"),
    "same-file-as-pre-and-post": (_symlinked_post,
                                  r"inputs\.post: '.*post_link\.tif' is also in inputs\.pre"),
    "grid-over-the-pixel-limit": (_huge_inputs, r"1000000 x 1000000 px .*max-pixels"),
    "cell-larger-than-scene": (lambda d, f, c: d["grid"].update(cell_size=4000),
                               r"grid\.cell_size = 4000\.0 m is larger than the imagery"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ruinmap_run_prints_one_line_and_exits_1(case: str, job_city: City,
                                                 tmp_path: Path) -> None:
    change, message = CASES[case]
    data = load_spec(write_job_spec(job_city, tmp_path)).to_json_dict()
    change(data, tmp_path, job_city)
    job = tmp_path / "bad.toml"
    job.write_text(dump_toml(data))
    done = _cli("run", str(job), "--no-progress")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ruinmap run: error:"), done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(message, lines[0]), lines[0]
    out = Path(data["output"]["dir"])
    assert not (out / "store.zarr").exists() and not (out / ".ruinmap-job").exists()


def test_ruinmap_ingest_refuses_a_grid_over_the_pixel_limit(tmp_path: Path) -> None:
    pre, post = huge_vrt(tmp_path, "pre.vrt"), huge_vrt(tmp_path, "post.vrt")
    out = tmp_path / "store.zarr"
    done = _cli("ingest", "--pre", str(pre), "--post", str(post), "--out", str(out))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ruinmap.limits.max-pixels" in lines[0], done.stderr
    assert not out.exists()
