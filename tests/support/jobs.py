"""Job specs for the synthetic cities of the job tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruinmap.cluster.job.spec import JobSpec, load_spec, parse_spec
from ruinmap.synthetic import City, write_job_spec

CITY_SIZE = 320


SHARD = 128




def make_job_spec(city: City, out_dir: Path, **changes: Any) -> JobSpec:
    """The city's pwtt job with results in `out_dir`; `changes` replace top-level tables."""
    base = load_spec(write_job_spec(city, out_dir.parent, name=f"{out_dir.name}.toml"))
    data = base.to_json_dict()
    data["output"] = {"dir": str(out_dir)}
    data.update(changes)
    return parse_spec(data, out_dir.parent)

