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
    [grid]
    cell_size = 100                      # metres, default 500
    [output]
    dir = "out/aleppo"
    [cluster]
    address = "local"                    # embedded LocalCluster, or "tcp://host:8786"
    [method_params]                      # optional; checked against the method's own model
    threshold = 3.0

`load_spec` reads a file (relative paths resolve against the file's folder), `parse_spec` takes
the same structure as a mapping (the JSON body of a service request). Unknown keys are refused
with the key, its table and the valid keys. `spec_files.validate_spec_files` then checks,
before any work starts, that every file the spec names exists and has what the job needs.

The models are frozen pydantic v2 models, so the service can reuse them for JSON bodies and its
OpenAPI schema; `JobSpec.to_json_dict()` round-trips through `parse_spec`.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from ruinmap.cluster import objectstore
from ruinmap.errors import SpecError

__all__ = [
    "CLUSTER_ADDRESS_FORMS",
    "DEFAULT_CLASS_NAMES",
    "METHODS",
    "ND_PRESETS",
    "PARAMS_BY_METHOD",
    "BuildingsSpec",
    "ClusterSpec",
    "CvaParams",
    "DistrictsSpec",
    "GridSpec",
    "InputsSpec",
    "JobSpec",
    "LogRatioParams",
    "MethodParams",
    "NdChangeParams",
    "OutputSpec",
    "PwttParams",
    "dump_toml",
    "load_spec",
    "metres_to_px",
    "parse_spec",
]

Method = Literal["pwtt", "log-ratio", "nd-change", "cva"]
METHODS: tuple[str, ...] = get_args(Method)

Direction = Literal["decrease", "increase", "both"]

#: Names of the four default damage classes, lowest score first (Ballinger 2024 uses 3.3 as
#: the damaged/intact cut; the others bracket it).
DEFAULT_CLASS_NAMES: tuple[str, ...] = ("possible", "likely", "high-confidence", "severe")


# ---------------------------------------------------------------------------------------------
# helpers


def metres_to_px(metres: float, pixel_size_m: float) -> int:
    """A radius in metres as whole pixels: round(metres / pixel_size_m), never negative.

    10 m at 10 m pixels is radius 1 (a 3x3 window); 50 m is radius 5.
    """
    if not (pixel_size_m > 0 and math.isfinite(pixel_size_m)):
        raise SpecError(f"pixel size must be a positive number of metres, got {pixel_size_m!r}")
    if not (metres >= 0 and math.isfinite(metres)):
        raise SpecError(f"radius must be a non-negative number of metres, got {metres!r}")
    return math.floor(metres / pixel_size_m + 0.5)


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir") or Path.cwd())


def _resolve(text: str, info: ValidationInfo, *, allow_url: bool = False) -> str:
    """A user path made absolute against the spec's folder; globs keep their magic.

    With `allow_url`, an s3:// URL is kept as given (imagery, stores and outputs may live in
    object storage; polygons are read locally)."""
    if "://" in text:
        if allow_url and text.startswith(objectstore.URL_SCHEMES):
            return text.rstrip("/")
        where = "s3:// URLs" if allow_url else "URLs for imagery, stores and output only"
        raise ValueError(f"'{text}' is a URL; only local paths are supported here ({where})")
    expanded = os.path.expanduser(text)
    if not os.path.isabs(expanded):
        expanded = os.path.join(_base_dir(info), expanded)
    return os.path.normpath(expanded)


def _strictly_ascending(values: Sequence[float]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


class _Model(BaseModel):
    # frozen: the spec is parsed once and then only read, by many tasks
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# tables


class InputsSpec(_Model):
    """Imagery: `pre` and `post` globs/files (as for `ruinmap ingest`), or an existing `store`."""

    pre: tuple[str, ...] | None = Field(
        default=None, description="globs or files of the pre-event images"
    )
    post: tuple[str, ...] | None = Field(
        default=None, description="globs or files of the post-event images"
    )
    store: str | None = Field(
        default=None,
        description="an existing store written by `ruinmap ingest`, instead of pre/post",
    )

    @field_validator("pre", "post", mode="before")
    @classmethod
    def _one_string_is_a_list(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("pre", "post")
    @classmethod
    def _resolve_patterns(
        cls, value: tuple[str, ...] | None, info: ValidationInfo
    ) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("empty list; give at least one glob or file")
        return tuple(_resolve(pattern, info, allow_url=True) for pattern in value)

    @field_validator("store")
    @classmethod
    def _resolve_store(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve(value, info, allow_url=True)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> InputsSpec:
        has_images = self.pre is not None or self.post is not None
        if has_images and self.store is not None:
            raise ValueError(
                "give either pre and post (image files) or store (an ingested store), not both"
            )
        if not has_images and self.store is None:
            raise ValueError("give pre and post (image files), or store (an ingested store)")
        if has_images and (self.pre is None or self.post is None):
            missing = "post" if self.post is None else "pre"
            raise ValueError(f"{missing} is missing; pre and post go together")
        return self


class DistrictsSpec(_Model):
    """District polygons, any CRS; `id` is the key field, `name` an optional label field."""

    path: str = Field(description="GeoJSON, GeoPackage, GeoParquet or (zipped) Shapefile")
    id: str = Field(description="field holding each district's unique key")
    name: str | None = Field(default=None, description="field holding a readable name")
    layer: str | None = Field(default=None, description="layer, for multi-layer files")

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, value: str, info: ValidationInfo) -> str:
        return _resolve(value, info)


class BuildingsSpec(_Model):
    """Optional building footprints (polygons, any CRS) for per-building scores."""

    path: str = Field(description="GeoJSON, GeoPackage, GeoParquet or (zipped) Shapefile")
    id: str | None = Field(default=None, description="key field; default: row number")
    layer: str | None = Field(default=None, description="layer, for multi-layer files")

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, value: str, info: ValidationInfo) -> str:
        return _resolve(value, info)


class GridSpec(_Model):
    """The regular damage grid."""

    cell_size: float = Field(default=500.0, gt=0, allow_inf_nan=False, description="metres")


class OutputSpec(_Model):
    """Where results go."""

    dir: str = Field(description="output folder (or s3:// prefix); created if absent")

    @field_validator("dir")
    @classmethod
    def _resolve_dir(cls, value: str, info: ValidationInfo) -> str:
        return _resolve(value, info, allow_url=True)


_TCP_ADDRESS = re.compile(r"^(?P<scheme>tcp|tls)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\s\[\]]+)"
                          r":(?P<port>\d{1,5})$")
#: Accepted cluster address forms (profiles: `ruinmap.cluster.connect.PROFILES`).
CLUSTER_ADDRESS_FORMS: dict[str, str] = {
    "local": "an embedded dask LocalCluster on this machine",
    "tcp://host:port": "a running dask scheduler",
    "tls://host:port": "a running dask scheduler with TLS",
    "slurm": "workers as SLURM jobs (dask-jobqueue, Dask config jobqueue.slurm)",
    "pbs": "workers as PBS jobs (dask-jobqueue, Dask config jobqueue.pbs)",
    "kubernetes": "a DaskCluster through the Dask operator (Dask config ruinmap.kubernetes)",
}
_PROFILE_NAMES = ("local", "slurm", "pbs", "kubernetes")


class ClusterSpec(_Model):
    """Where the work runs: a profile ("local", "slurm", "pbs", "kubernetes") or a scheduler
    address. Left out of the job file, the Dask config `ruinmap.cluster.address` decides
    (`ruinmap.cluster.config.resolve_address`)."""

    address: str = Field(
        default="local", description="'local', 'slurm', 'pbs', 'kubernetes' or 'tcp://host:port'"
    )

    @field_validator("address")
    @classmethod
    def _known_form(cls, value: str) -> str:
        if value in _PROFILE_NAMES:
            return value
        match = _TCP_ADDRESS.match(value)
        if match and 1 <= int(match["port"]) <= 65535:
            return value
        forms = "; ".join(f"'{form}' ({what})" for form, what in CLUSTER_ADDRESS_FORMS.items())
        raise ValueError(f"'{value}' is not a cluster address; use {forms}")

    @property
    def is_local(self) -> bool:
        return self.address == "local"

    @property
    def given_address(self) -> str | None:
        """The address the job file set, or None when it left it to the Dask config."""
        return self.address if "address" in self.model_fields_set else None


# ---------------------------------------------------------------------------------------------
# method parameters


class _MethodParams(_Model):
    """What every method shares: a damage threshold and ascending class thresholds."""

    method: ClassVar[str]
    threshold: float
    class_thresholds: tuple[float, ...]
    class_names: tuple[str, ...] | None = Field(
        default=None,
        description="one name per class threshold; default possible/likely/high-confidence/"
        "severe for four classes, else 'class 1'...",
    )
    min_building_m2: float = Field(
        default=50.0, ge=0, allow_inf_nan=False,
        description="buildings smaller than this (m^2) get no per-building score",
    )

    @field_validator("threshold")
    @classmethod
    def _finite_threshold(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        return value

    @field_validator("class_thresholds")
    @classmethod
    def _ascending(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("empty; give at least one class threshold")
        if not all(math.isfinite(v) for v in value):
            raise ValueError(f"must be finite numbers, got {list(value)}")
        if not _strictly_ascending(value):
            raise ValueError(f"must be strictly ascending, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _names_match_thresholds(self) -> _MethodParams:
        if self.class_names is not None and len(self.class_names) != len(self.class_thresholds):
            raise ValueError(
                f"class_names has {len(self.class_names)} names but class_thresholds has "
                f"{len(self.class_thresholds)} values; give one name per threshold"
            )
        return self

    @property
    def class_labels(self) -> tuple[str, ...]:
        """The class names actually used: `class_names`, or the defaults."""
        if self.class_names is not None:
            return self.class_names
        if len(self.class_thresholds) == len(DEFAULT_CLASS_NAMES):
            return DEFAULT_CLASS_NAMES
        return tuple(f"class {i + 1}" for i in range(len(self.class_thresholds)))


class PwttParams(_MethodParams):
    """Pixel-wise t-test on Sentinel-1 (Ballinger 2024, "Open access battle damage detection via
    pixel-wise t-test on Sentinel-1 imagery", arXiv:2405.06323).

    Per relative orbit and polarisation: Lee filter (`lee_size` window, `lee_enl` looks) of
    linear sigma0, natural log, then Welch's t between the pre and post stacks
    (pixels with fewer than `min_pre` / `min_post` valid dates are NaN), |t|. The maximum over
    orbits and polarisations, a focal median of radius `focal_median_m`, circular means of that
    median at each of `radii_m`, and the score = weights . (median, mean_r1, mean_r2, ...)
    (default: the plain mean of the four, as in the paper). Pixels with score > `threshold`
    are damaged; `class_thresholds` cut the score into `class_names`.

    Orbits: a file's relative orbit comes from `orbits` (file glob -> orbit; globs without a
    folder match the file name, the first matching glob wins), else from the first of
    `orbit_tags` found in the file's metadata, else every file is one orbit.
    """

    method: ClassVar[str] = "pwtt"
    polarisations: tuple[str, ...] = Field(default=("VV", "VH"), description="bands to test")
    lee_size: int = Field(default=3, ge=1, description="Lee filter window side, pixels (odd)")
    lee_enl: float = Field(default=5.0, gt=0, allow_inf_nan=False,
                           description="equivalent number of looks of the input")
    min_pre: int = Field(default=3, ge=2, description="fewest valid pre dates per pixel")
    min_post: int = Field(default=2, ge=2, description="fewest valid post dates per pixel")
    focal_median_m: float = Field(default=10.0, ge=0, allow_inf_nan=False,
                                  description="focal median radius, metres (10 m = 3x3 at 10 m)")
    radii_m: tuple[float, ...] = Field(default=(50.0, 100.0, 150.0),
                                       description="radii of the circular means, metres")
    weights: tuple[float, ...] = Field(
        default=(0.25, 0.25, 0.25, 0.25),
        description="weights of (median, mean at each radius) in the score",
    )
    threshold: float = Field(default=3.3, description="score above which a pixel is damaged")
    class_thresholds: tuple[float, ...] = Field(
        default=(2.0, 3.3, 4.0, 5.0),
        description="possible, likely (damaged), high confidence, severe",
    )
    orbits: dict[str, int] = Field(default_factory=dict,
                                   description="file glob -> Sentinel-1 relative orbit")
    orbit_tags: tuple[str, ...] = Field(
        default=("RELATIVE_ORBIT", "relativeOrbitNumber_start"),
        description="metadata tags read for a file's relative orbit, first found wins",
    )

    @field_validator("polarisations", "orbit_tags")
    @classmethod
    def _unique_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("empty; give at least one name")
        if len(set(value)) != len(value):
            raise ValueError(f"names repeat: {list(value)}")
        return value

    @field_validator("lee_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 != 1:
            raise ValueError(f"must be odd (a centred window), got {value}")
        return value

    @field_validator("radii_m")
    @classmethod
    def _positive_radii(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not all(math.isfinite(r) and r > 0 for r in value):
            raise ValueError(f"radii must be positive metres, got {list(value)}")
        return value

    @field_validator("weights")
    @classmethod
    def _usable_weights(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not all(math.isfinite(w) and w >= 0 for w in value) or sum(value) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {list(value)}")
        return value

    @field_validator("orbits")
    @classmethod
    def _resolve_orbit_globs(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        resolved: dict[str, int] = {}
        for pattern, orbit in value.items():
            if orbit < 1:
                raise ValueError(f"orbit of '{pattern}' must be a positive integer, got {orbit}")
            # a bare file-name glob matches names anywhere; one with a folder is a path
            has_folder = "/" in pattern or os.sep in pattern
            resolved[_resolve(pattern, info) if has_folder else pattern] = orbit
        return resolved

    @model_validator(mode="after")
    def _one_weight_per_layer(self) -> PwttParams:
        if len(self.weights) != 1 + len(self.radii_m):
            raise ValueError(
                f"weights has {len(self.weights)} values but the score combines "
                f"{1 + len(self.radii_m)} layers (the median and one mean per radius in radii_m)"
            )
        return self

    def orbit_from_spec(self, path: str | Path) -> int | None:
        """The relative orbit `orbits` gives `path`, or None when no glob matches it."""
        path = Path(path)
        for pattern, orbit in self.orbits.items():
            if os.path.isabs(pattern):
                if fnmatch(os.path.normpath(os.path.abspath(path)), pattern):
                    return orbit
            elif fnmatch(path.name, pattern):
                return orbit
        return None


class LogRatioParams(_MethodParams):
    """Log ratio of mean post to mean pre backscatter, in dB: r = 10 log10(mean_post / mean_pre).

    The score is -r (`direction = "decrease"`), r ("increase") or |r| ("both"), focal-mean
    smoothed over `radius_m`. `band` is the band (polarisation) used; default the first band.
    """

    method: ClassVar[str] = "log-ratio"
    band: str | None = Field(default=None, description="band name; default the first band")
    radius_m: float = Field(default=30.0, ge=0, allow_inf_nan=False,
                            description="focal mean radius of the ratio, metres")
    direction: Direction = Field(default="both", description="which change counts as damage")
    min_pre: int = Field(default=1, ge=1, description="fewest valid pre dates per pixel")
    min_post: int = Field(default=1, ge=1, description="fewest valid post dates per pixel")
    threshold: float = Field(default=3.0, description="dB")
    class_thresholds: tuple[float, ...] = Field(default=(1.5, 3.0, 4.5, 6.0), description="dB")


#: Normalized-difference presets: (a, b, damage direction). nd = (a - b) / (a + b).
ND_PRESETS: dict[str, tuple[str, str, Direction]] = {
    # vegetation loss (burnt, felled or buried under rubble) lowers NDVI
    "ndvi": ("B08", "B04", "decrease"),
    # rubble and bare soil raise SWIR, roofs differ: the sign is not fixed, so both count
    "ndbi": ("B11", "B08", "both"),
}


class NdChangeParams(_MethodParams):
    """Change of a normalized difference nd = (a - b) / (a + b) between mean pre and mean post.

    d = nd_post - nd_pre; the score is -d for `direction = "decrease"` (e.g. NDVI loss:
    vegetation destroyed), d for "increase", |d| for "both". Presets (Sentinel-2 band names):
    "ndvi": a=B08 (NIR), b=B04 (red), damage = decrease; "ndbi": a=B11 (SWIR), b=B08 (NIR),
    damage = both. Giving `a` and `b` without `preset` defines a custom index.
    """

    method: ClassVar[str] = "nd-change"
    preset: Literal["ndvi", "ndbi"] | None = Field(default="ndvi", description="ndvi or ndbi")
    a: str | None = Field(default=None, description="first band name (set by the preset)")
    b: str | None = Field(default=None, description="second band name (set by the preset)")
    direction: Direction | None = Field(default=None, description="default: the preset's")
    radius_m: float = Field(default=20.0, ge=0, allow_inf_nan=False,
                            description="focal mean radius of the change, metres")
    min_pre: int = Field(default=1, ge=1, description="fewest valid pre dates per pixel")
    min_post: int = Field(default=1, ge=1, description="fewest valid post dates per pixel")
    threshold: float = Field(default=0.2, description="normalized-difference units")
    class_thresholds: tuple[float, ...] = Field(default=(0.1, 0.2, 0.3, 0.4))

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if "preset" not in data and ("a" in data or "b" in data):
            data["preset"] = None  # explicit bands: a custom index
        preset = data.get("preset", "ndvi")
        if preset is None:
            data.setdefault("direction", "both")
            return data
        if preset not in ND_PRESETS:
            return data  # the Literal check reports it
        a, b, direction = ND_PRESETS[preset]
        for key, value in (("a", a), ("b", b)):
            given = data.get(key)
            if given is not None and given != value:
                raise ValueError(
                    f"{key} = '{given}' contradicts preset '{preset}' ({key} = '{value}'); "
                    "drop the preset to define a custom index"
                )
        data.update(a=a, b=b)
        data.setdefault("direction", direction)
        return data

    @model_validator(mode="after")
    def _bands_known(self) -> NdChangeParams:
        if self.a is None or self.b is None:
            raise ValueError("a custom index needs both a and b (band names), or a preset")
        if self.a == self.b:
            raise ValueError(f"a and b are the same band '{self.a}'")
        return self


class CvaParams(_MethodParams):
    """Change vector analysis: m = sqrt(sum_k ((mean_post_k - mean_pre_k) / s_k)^2) over `bands`.

    With `standardize`, s_k is band k's pooled standard deviation (pre and post pixels
    together), so m is in standard deviations; otherwise s_k = 1 (raw units).
    """

    method: ClassVar[str] = "cva"
    bands: tuple[str, ...] | None = Field(default=None, description="bands; default all")
    standardize: bool = Field(default=True, description="divide each band by its pooled std")
    radius_m: float = Field(default=20.0, ge=0, allow_inf_nan=False,
                            description="focal mean radius of the magnitude, metres")
    min_pre: int = Field(default=1, ge=1, description="fewest valid pre dates per pixel")
    min_post: int = Field(default=1, ge=1, description="fewest valid post dates per pixel")
    threshold: float = Field(default=2.0, description="standard deviations when standardized")
    class_thresholds: tuple[float, ...] = Field(default=(1.5, 2.0, 3.0, 4.0))

    @field_validator("bands")
    @classmethod
    def _unique_bands(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError(f"give distinct band names, got {list(value)}")
        return value


MethodParams = PwttParams | LogRatioParams | NdChangeParams | CvaParams
PARAMS_BY_METHOD: dict[str, type[_MethodParams]] = {
    cls.method: cls for cls in (PwttParams, LogRatioParams, NdChangeParams, CvaParams)
}


# ---------------------------------------------------------------------------------------------
# the job


class JobSpec(_Model):
    """A whole damage-mapping job. Paths are absolute once parsed."""

    method: Method = Field(description="pwtt | log-ratio | nd-change | cva")
    inputs: InputsSpec
    districts: DistrictsSpec
    buildings: BuildingsSpec | None = None
    grid: GridSpec = Field(default_factory=GridSpec)
    output: OutputSpec
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    method_params: Annotated[MethodParams, Field(description="the method's parameters")]

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
            data["method_params"] = PwttParams.model_construct()
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
                _describe({**e, "loc": ("method_params", *e["loc"])}, data) for e in exc.errors()
            ]
            raw["method_params"] = model.model_validate({})
    try:
        spec = JobSpec.model_validate(raw, context=context)
    except ValidationError as exc:
        problems += [_describe(error, data) for error in exc.errors()]
    if problems:
        raise SpecError(join_problems(source, problems))
    spec._source = source
    return spec


def join_problems(source: str, problems: Sequence[str]) -> str:
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        return f"{source}: {unique[0]}"
    return f"{source}: {len(unique)} problems:\n  " + "\n  ".join(unique)


def _key_path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _model_at(loc: Sequence[str | int], data: Mapping[str, Any]) -> type[BaseModel] | None:
    """The model class that validates the table at `loc`, for listing its valid keys."""
    model: type[BaseModel] | None = JobSpec
    for part in loc:
        if model is None or isinstance(part, int):
            return None
        if model is JobSpec and part == "method_params":
            model = PARAMS_BY_METHOD.get(data.get("method"))  # type: ignore[arg-type]
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _model_in(field.annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for m in map(_model_in, typing.get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def _describe(error: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    path = _key_path(loc)
    if kind == "extra_forbidden":
        *parent, key = loc
        model = _model_at(parent, data)
        where = f"in [{_key_path(parent)}]" if parent else "at the top level"
        if tuple(parent) == ("method_params",):
            where = f"in [method_params] for method '{data.get('method')}'"
        message = f"{path}: unknown key '{key}' {where}"
        if model is not None:
            valid = list(model.model_fields)
            close = difflib.get_close_matches(str(key), valid, n=1)
            if close:
                message += f" (did you mean '{close[0]}'?)"
            message += f"; valid keys: {', '.join(valid)}"
        return message
    if loc == ("method",) and kind in ("literal_error", "missing"):
        given = "missing" if kind == "missing" else f"'{error.get('input')}' is not a method"
        return f"method: {given}; choose one of {', '.join(METHODS)}"
    if kind == "missing":
        return f"{path}: missing; this key is required"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind not in ("value_error", "assertion_error") and "input" in error:
        given = error["input"]
        if not isinstance(given, Mapping):
            message += f" (got {given!r})"
    return f"{path}: {message}" if path else message


# ---------------------------------------------------------------------------------------------
# TOML output (tomllib reads only)


def dump_toml(data: Mapping[str, Any]) -> str:
    """A JSON-like mapping (str keys; str, bool, int, float, lists, nested mappings) as TOML."""
    lines: list[str] = []
    _dump_table(data, (), lines)
    return "\n".join(lines).strip() + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _dump_table(table: Mapping[str, Any], prefix: tuple[str, ...], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping) and v is not None}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if prefix:
        lines.append("")
        lines.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables.items():
        _dump_table(value, (*prefix, key), lines)
