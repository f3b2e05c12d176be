"""The damage-mapping job specification, split by table (see `job` for the file format).

`load_spec(path)` / `parse_spec(data, base_dir)` give a `JobSpec`; `files.validate_spec_files`
then checks the files it names before any work starts.
"""

from __future__ import annotations

from ruinmap.cluster.job.spec.cluster import CLUSTER_ADDRESS_FORMS, ClusterSpec
from ruinmap.cluster.job.spec.inputs import InputsSpec
from ruinmap.cluster.job.spec.job import JobSpec, load_spec, parse_spec
from ruinmap.cluster.job.spec.mask import MaskSpec
from ruinmap.cluster.job.spec.messages import join_problems
from ruinmap.cluster.job.spec.output import GridSpec, OutputSpec
from ruinmap.cluster.job.spec.polygons import BuildingsSpec, DistrictsSpec
from ruinmap.cluster.job.spec.toml import dump_toml

__all__ = [
    "CLUSTER_ADDRESS_FORMS", "BuildingsSpec", "ClusterSpec", "DistrictsSpec", "GridSpec",
    "InputsSpec", "JobSpec", "MaskSpec", "OutputSpec", "dump_toml", "join_problems", "load_spec",
    "parse_spec",
]
