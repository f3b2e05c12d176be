"""The damage-mapping job specification: one TOML (or JSON) file, parsed once into pydantic models.

A job file names the method, the imagery, the district polygons, optional building footprints,
the output grid, the output folder and the cluster::

    method = "pwtt"                      # pwtt | log-ratio | nd-change | cva
    [inputs]
    pre  = ["data/pre/*.tif"]            # globs or files; OR store = "existing.zarr"
    post = ["data/post/*.tif"]
    [districts]
    path = "data/districts.geojson"      # GeoJSON, GeoPackage, GeoParquet, (zipped) Shapefile
    id = "district_id"                   # key field; name = "name" optional
    [buildings]                          # optional building footprints
    path = "data/buildings.gpkg"
    [mask]                               # optional built-up mask (default: the footprints)
    source = "buildings"                 # "buildings" | "none" | a raster path
    [grid]
    cell_size = 100                      # metres, default 500
    [output]
    dir = "out/aleppo"
    [cluster]
    address = "local"                    # embedded LocalCluster, or "tcp://host:8786"
    [method_params]                      # optional; checked against the method's own model
    threshold = 3.3
    [validation]                         # optional: ground truth, checked after the run
    labels = "truth/unosat_points.gpkg"  # see ruinmap.cluster.validation.config

`load_spec` reads a file (relative paths resolve against the file's folder), `parse_spec` takes
the same structure as a mapping (the JSON body of a service request). Unknown keys are refused
with the key, its table and the valid keys. `files.validate_spec_files` then checks,
before any work starts, that every file the spec names exists and has what the job needs.

The models are frozen pydantic v2 models, so the service can reuse them for JSON bodies and its
OpenAPI schema; `JobSpec.to_json_dict()` round-trips through `parse_spec`.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, PrivateAttr, ValidationError, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails

from ruinmap.cluster.job.spec.cluster import ClusterSpec
from ruinmap.cluster.job.spec.inputs import InputsSpec
from ruinmap.cluster.job.spec.mask import MaskSpec
from ruinmap.cluster.job.spec.messages import describe_error, join_problems
from ruinmap.cluster.job.spec.output import GridSpec, OutputSpec
from ruinmap.cluster.job.spec.polygons import BuildingsSpec, DistrictsSpec
from ruinmap.cluster.job.spec.toml import dump_toml
from ruinmap.cluster.methods.params import SpecModel
from ruinmap.cluster.methods.registry import METHODS, PARAMS_BY_METHOD, Method, MethodParams
from ruinmap.cluster.storage.location import URL_SCHEMES
from ruinmap.cluster.validation.config import ValidationSpec
from ruinmap.errors import SpecError

__all__ = ["JobSpec", "load_spec", "parse_spec"]


class JobSpec(SpecModel):
    """A whole damage-mapping job. Paths are absolute once parsed."""

    method: Method = Field(description="pwtt | log-ratio | nd-change | cva")
    inputs: InputsSpec
    districts: DistrictsSpec
    buildings: BuildingsSpec | None = None
    mask: MaskSpec | None = Field(
        default=None, description="built-up mask; default: the footprints when the job has "
                                  "them, else none")
    grid: GridSpec = Field(default_factory=GridSpec)
    output: OutputSpec
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    method_params: Annotated[MethodParams, Field(description="the method's parameters")]
    validation: ValidationSpec | None = Field(
        default=None, description="ground-truth labels to validate the results against")

    _source: str = PrivateAttr(default="<job spec>")

    @model_validator(mode="before")
    @classmethod
    def _params_of_the_method(cls, data: Any, info: ValidationInfo) -> Any:
        # [method_params] is checked against the chosen method's model only, so an unknown
        # key is reported for that method rather than as four union mismatches
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        params = data.get("method_params", {})
        model = PARAMS_BY_METHOD.get(data.get("method"))
        if model is None:
            # the method error is what the user must fix; params cannot be judged without it
            data["method_params"] = PARAMS_BY_METHOD[METHODS[0]].model_construct()
            return data
        if isinstance(params, BaseModel):
            return data
        if not isinstance(params, Mapping):
            raise ValueError("method_params must be a table of parameters")
        try:
            data["method_params"] = model.model_validate(params, context=info.context)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(
                cls.__name__, [_prefixed(error, "method_params") for error in exc.errors()]
            ) from None
        return data

    @model_validator(mode="after")
    def _params_match_method(self) -> JobSpec:
        expected = PARAMS_BY_METHOD[self.method]
        if type(self.method_params) is not expected:
            raise ValueError(
                f"method_params are {type(self.method_params).__name__} but method "
                f"'{self.method}' takes {expected.__name__}"
            )
        return self

    @model_validator(mode="after")
    def _building_mask_needs_buildings(self) -> JobSpec:
        if self.mask is not None and self.mask.source == "buildings" and self.buildings is None:
            raise ValueError('mask.source = "buildings" needs building footprints: add a '
                             '[buildings] table, or give a mask raster or "none"')
        return self

    @model_validator(mode="after")
    def _validation_needs_local_output(self) -> JobSpec:
        if self.validation is not None and self.output.dir.startswith(URL_SCHEMES):
            raise ValueError(
                "[validation] reads the results back from output.dir, which must be a local "
                f"folder (got {self.output.dir}); run `ruinmap validate` on a local copy")
        return self

    def __eq__(self, other: object) -> bool:
        # the same job read from another file (or a JSON body) is the same job
        return type(other) is type(self) and self.__dict__ == other.__dict__

    @property
    def source(self) -> str:
        """Where the spec came from (a file name), for error messages."""
        return self._source

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (absolute paths, None left out) that `parse_spec` reads back.

        A cluster address the job did not set is left out too, so the re-read job still
        leaves it to the Dask config.
        """
        data = self.model_dump(mode="json", exclude_none=True)
        if self.cluster.given_address is None:
            data.pop("cluster", None)
        return data

    def to_toml(self) -> str:
        """The spec as TOML text (absolute paths)."""
        return dump_toml(self.to_json_dict())


def _prefixed(error: Mapping[str, Any], *prefix: str | int) -> InitErrorDetails:
    details: InitErrorDetails = {
        "type": error["type"],
        "loc": (*prefix, *error["loc"]),
        "input": error.get("input"),
    }
    if error.get("ctx"):
        details["ctx"] = error["ctx"]
    return details


# ---------------------------------------------------------------------------------------------


# reading and error messages


def load_spec(path: str | Path) -> JobSpec:
    """Read a job file (.toml or .json) into a `JobSpec`; relative paths resolve against its folder.

    Raises SpecError naming the file and every bad key path.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such job file")
    try:
        if path.suffix.lower() == ".json":
            with path.open("rb") as fh:
                data = json.load(fh)
        else:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a text file ({exc})") from None
    if not isinstance(data, Mapping):
        raise SpecError(f"{path}: the job must be a table (JSON object), not {type(data).__name__}")
    return parse_spec(data, path.parent.absolute(), source=str(path))


def parse_spec(
    data: Mapping[str, Any], base_dir: str | Path, *, source: str = "<job spec>"
) -> JobSpec:
    """Validate a job given as a mapping (TOML tables or a JSON object) into a `JobSpec`.

    Relative paths resolve against `base_dir`. `source` names the spec in error messages.
    Raises SpecError listing every problem with its key path ("districts.id").
    """
    if not isinstance(data, Mapping):
        raise SpecError(
            f"{source}: the job must be a table (JSON object), not {type(data).__name__}"
        )
    context = {"base_dir": Path(base_dir).absolute()}
    raw = dict(data)
    problems: list[str] = []
    model = PARAMS_BY_METHOD.get(raw.get("method"))  # type: ignore[arg-type]
    params = raw.get("method_params", {})
    if model is not None and isinstance(params, Mapping):
        # checked on its own first so its problems and the rest's are reported together
        try:
            raw["method_params"] = model.model_validate(params, context=context)
        except ValidationError as exc:
            problems += [
                describe_error({**e, "loc": ("method_params", *e["loc"])}, data, JobSpec)
                for e in exc.errors()
            ]
            raw["method_params"] = model.model_validate({})
    try:
        spec = JobSpec.model_validate(raw, context=context)
    except ValidationError as exc:
        problems += [describe_error(error, data, JobSpec) for error in exc.errors()]
    if problems:
        raise SpecError(join_problems(source, problems))
    spec._source = source
    return spec
