"""An OGC execute request for `damage-map` checked into a job spec the service may run.

The body is `{"inputs": <job spec as JSON>, "outputs"?: {...}, "response"?: "document"}`;
the job spec is that of `ruinmap run` (`ruinmap.cluster.spec`). Its `cluster` table, if any,
is ignored: the service runs every job on its own cluster. `output.dir` is optional and
relative to the output root (default: a folder named by the job id). Input paths are relative
to the first data root, except `inputs.store` (an ingested store, e.g. an earlier job's
`<dir>/store.zarr`), which is relative to the output root, where jobs make their stores; a
job only reads it (its own layers go to its own folder's store), and only once the job that
made it has succeeded (`jobstore`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruinmap.cluster.job.budget import check_budget
from ruinmap.cluster.job.preflight import imagery_header
from ruinmap.cluster.job.spec import JobSpec, parse_spec
from ruinmap.cluster.job.spec.files import validate_spec_files
from ruinmap.cluster.job.spec.mask import MASK_KEYWORDS
from ruinmap.cluster.service.config import ServiceConfig
from ruinmap.cluster.service.paths import PathPolicy
from ruinmap.cluster.service.problems import RequestError
from ruinmap.errors import InputError, SpecError

__all__ = ["OUTPUTS", "PROCESS_ID", "RESULT_RELS", "Submission", "check_execute_request",
           "check_spec_paths"]

PROCESS_ID = "damage-map"

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
#: Output id -> (file name, media type, title); the ids are JobResult.files' keys.
#: The results document links the STAC files with rel `collection` / `item` (`RESULT_RELS`).
OUTPUTS: dict[str, tuple[str, str, str]] = {
    "score_tif": ("score.tif", COG, "Damage score per pixel (COG, float32)"),
    "damage_tif": ("damage.tif", COG, "Damage class per pixel (COG, uint8)"),
    "damage_aux_xml": ("damage.tif.aux.xml", "application/xml",
                       "Class names of damage.tif (GDAL PAM side-car; save beside it)"),
    "damage_qml": ("damage.qml", "application/xml",
                   "QGIS style of damage.tif (save beside it)"),
    "grid_tif": ("grid.tif", COG, "Damage grid: damaged fraction and mean score per cell (COG)"),
    "grid_qml": ("grid.qml", "application/xml", "QGIS style of grid.tif (save beside it)"),
    "layers_tif": ("pwtt_layers.tif", COG,
                   "pwtt's p_value, n_pre, n_post per pixel (COG, named float32 bands)"),
    "districts_parquet": ("districts.parquet", "application/vnd.apache.parquet",
                          "Per-district table with polygons (GeoParquet)"),
    "districts_geojson": ("districts.geojson", "application/geo+json",
                          "Per-district table with polygons (GeoJSON)"),
    "districts_csv": ("districts.csv", "text/csv", "Per-district table (CSV)"),
    "buildings_parquet": ("buildings.parquet", "application/vnd.apache.parquet",
                          "Per-building scores (GeoParquet), when footprints were given"),
    "districts_gpkg": ("districts.gpkg", "application/geopackage+sqlite3",
                       "Per-district table with polygons (GeoPackage)"),
    "districts_hxl": ("districts_hxl.csv", "text/csv", "Per-district table, HXL-tagged (CSV)"),
    "buildings_gpkg": ("buildings.gpkg", "application/geopackage+sqlite3",
                       "Per-building scores (GeoPackage), when footprints were given"),
    "grid_h3_gpkg": ("grid_h3.gpkg", "application/geopackage+sqlite3",
                     "Damage per H3 cell (GeoPackage), with grid.h3_resolution"),
    "grid_h3_parquet": ("grid_h3.parquet", "application/vnd.apache.parquet",
                        "Damage per H3 cell (GeoParquet), with grid.h3_resolution"),
    "map_png": ("map.png", "image/png", "Map of damage by district (PNG)"),
    "districts_png": ("districts.png", "image/png", "Damage per district, bar chart (PNG)"),
    "score_hist_png": ("score_hist.png", "image/png",
                       "Histogram of the damage score with threshold and classes (PNG)"),
    "damage_date_tif": ("damage_date.tif", COG,
                        "Damage date and earliest date of its bracket per pixel (COG, int32 "
                        "days since 1970-01-01), with method_params.dating"),
    "districts_timeseries_csv": ("districts_timeseries.csv", "text/csv",
                                 "Damage per district by post-event date (CSV), with dating"),
    "districts_timeseries_png": ("districts_timeseries.png", "image/png",
                                 "Damage per district by date, line chart (PNG), with dating"),
    "job_json": ("job.json", "application/json", "What was run: spec, inputs, timings"),
    "stac_collection": ("stac/collection.json", "application/json",
                        "STAC Collection of the results (self-contained)"),
    "stac_item": ("stac/<item>/<item>.json", "application/geo+json",
                  "STAC Item of the results: every file with its checksum"),
    "validation_json": ("validation.json", "application/json",
                        "Accuracy against the [validation] labels, when given"),
    "validation_csv": ("validation.csv", "text/csv",
                       "Per-district labelled vs predicted counts, when labels were given"),
    "validation_png": ("validation.png", "image/png",
                       "ROC, precision-recall and score histogram, when labels were given"),
}

RESULT_RELS = {"stac_collection": "collection", "stac_item": "item"}

_REQUEST_KEYS = {"inputs", "outputs", "response", "subscriber"}
_SPEC_KEYS = set(JobSpec.model_fields)


@dataclass(frozen=True)
class Submission:
    """A checked request: the spec (absolute paths) and its output folder."""

    spec: JobSpec
    output_dir: Path


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _table(spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = spec.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RequestError(400, "Invalid input", f"inputs.{key}: expected an object, got "
                           f"{type(value).__name__}")
    return value


def _check_outputs(outputs: Any) -> None:
    if not isinstance(outputs, Mapping):
        raise RequestError(400, "Invalid request", "outputs: expected an object")
    for name, wanted in outputs.items():
        if name not in OUTPUTS:
            raise RequestError(400, "Invalid request", f"outputs: no output '{name}'; outputs "
                               f"are {', '.join(OUTPUTS)}")
        if not isinstance(wanted, Mapping):
            raise RequestError(400, "Invalid request", f"outputs.{name}: expected an object")
        mode = wanted.get("transmissionMode", "reference")
        if mode != "reference":
            raise RequestError(400, "Invalid request", f"outputs.{name}.transmissionMode: "
                               f"'{mode}' is not supported; outputs are sent by reference")


def check_spec_paths(spec: JobSpec, policy: PathPolicy) -> None:
    """The real paths of a parsed spec: every input under a data root (globs expanded as the
    ingest expands them, no VRT); an ingested store under the output root, where the jobs
    that make stores put them. RequestError 403 otherwise. Called when a
    job is submitted and again when it starts, so a file swapped in between is caught."""
    if spec.inputs.stac is not None:
        # a catalog's asset hrefs may name any local file or URL, beyond the data roots
        raise RequestError(403, "Forbidden input", "inputs.inputs.stac: STAC inputs are not "
                           "accepted by the job service (their assets could lie outside the "
                           "data roots); run such jobs with `ruinmap run`")
    if spec.inputs.store is not None:
        policy.check_output(spec.inputs.store, "inputs.inputs.store")
    for side, patterns in (("pre", spec.inputs.pre), ("post", spec.inputs.post)):
        for pattern in patterns or ():
            policy.check_input_glob(pattern, f"inputs.inputs.{side}")
    policy.check_input(spec.districts.path, "inputs.districts.path")
    if spec.buildings is not None:
        policy.check_input(spec.buildings.path, "inputs.buildings.path")
    if spec.validation is not None:  # labels may be an xBD folder or glob
        policy.check_input_glob(spec.validation.labels, "inputs.validation.labels")
    if spec.mask is not None and spec.mask.is_raster:
        policy.check_input(spec.mask.source, "inputs.mask.source")
    policy.check_output(spec.output.dir, "inputs.output.dir")


def check_execute_request(body: Any, policy: PathPolicy, job_id: str,
                          config: ServiceConfig | None = None,
                          store_check: Callable[[Path], None] | None = None) -> Submission:
    """Check an execute request; raise RequestError (400/403) naming the problem. With
    `config`, the imagery's headers are read too and held to its per-job budget;
    `store_check(inputs.store)` runs before the store's files are looked at (the job service
    answers 409 there for the store of a job that has not succeeded)."""
    try:
        return _check(body, policy, job_id, config, store_check)
    except (OSError, UnicodeError) as exc:  # a path the OS cannot take (bad bytes, ...)
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RequestError(400, "Bad path", f"inputs: a path cannot be used: {detail}") \
            from None


def _check(body: Any, policy: PathPolicy, job_id: str, config: ServiceConfig | None,
           store_check: Callable[[Path], None] | None) -> Submission:
    if not isinstance(body, Mapping):
        raise RequestError(400, "Invalid request",
                           f"the body must be a JSON object, not {type(body).__name__}")
    unknown = sorted(set(body) - _REQUEST_KEYS)
    if unknown:
        raise RequestError(400, "Invalid request", f"unknown key(s) {', '.join(unknown)}; an "
                           "execute request has inputs, outputs and response")
    if "subscriber" in body:
        raise RequestError(400, "Invalid request",
                           "subscriber: callbacks are not supported; poll /jobs/{jobId}")
    if body.get("response", "document") not in ("document", "raw"):
        raise RequestError(400, "Invalid request", "response: expected 'document' or 'raw'")
    if "outputs" in body:
        _check_outputs(body["outputs"])
    spec_in = body.get("inputs")
    if not isinstance(spec_in, Mapping):
        raise RequestError(400, "Invalid request", "inputs: expected an object holding the job "
                           "spec (method, inputs, districts, ...)")
    unknown = sorted(set(spec_in) - _SPEC_KEYS)
    if unknown:
        raise RequestError(400, "Invalid input", f"inputs: unknown key(s) {', '.join(unknown)}; "
                           f"valid keys: {', '.join(sorted(_SPEC_KEYS))}")

    # the paths as sent, before anything resolves them
    images = _table(spec_in, "inputs")
    texts: list[tuple[str, str]] = []
    for side in ("pre", "post"):
        texts += [(f"inputs.inputs.{side}", t) for t in _strings(images.get(side))]
    for key, table in (("inputs.store", images), ("districts.path", _table(spec_in, "districts")),
                       ("buildings.path", _table(spec_in, "buildings"))):
        value = table.get(key.rsplit(".", 1)[1])
        if isinstance(value, str):
            texts.append((f"inputs.{key}" if key != "inputs.store" else "inputs.inputs.store",
                          value))
    labels = _table(spec_in, "validation").get("labels")
    if isinstance(labels, str):
        texts.append(("inputs.validation.labels", labels))
    mask_source = _table(spec_in, "mask").get("source")
    if isinstance(mask_source, str) and mask_source.strip().lower() not in MASK_KEYWORDS:
        texts.append(("inputs.mask.source", mask_source))
    output = _table(spec_in, "output")
    out_text = output.get("dir")
    if out_text is not None and not isinstance(out_text, str):
        raise RequestError(400, "Invalid input", "inputs.output.dir: expected a string")
    for key, text in [*texts, *([("inputs.output.dir", out_text)] if out_text else [])]:
        PathPolicy.check_text(text, key)

    output_dir = policy.output_dir(out_text, job_id)
    data = {k: v for k, v in spec_in.items() if k != "cluster"}
    data["output"] = {**output, "dir": str(output_dir)}
    store = images.get("store")
    if isinstance(store, str) and not Path(store).is_absolute():
        # a store must lie under the output root (the job writes into it): relative to it
        data["inputs"] = {**images, "store": str(policy.output_root / store)}
    try:
        spec = parse_spec(data, policy.input_base(), source="inputs")
    except SpecError as exc:
        raise RequestError(400, "Invalid input", str(exc)) from None

    check_spec_paths(spec, policy)
    if store_check is not None and spec.inputs.store is not None:
        store_check(Path(spec.inputs.store))
    try:
        files = validate_spec_files(spec)
        if config is not None:
            check_budget(config.budget, imagery_header(files, config.ingest_options))
    except (SpecError, InputError) as exc:
        raise RequestError(400, "Invalid input", str(exc)) from None
    return Submission(spec=spec, output_dir=output_dir)

