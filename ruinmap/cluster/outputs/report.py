"""job.json: what a damage-mapping run did, so anyone can check and repeat it.

One JSON object (UTF-8, indent 2), written atomically:

    {"format": "ruinmap-job-report", "format_version": 1, "created": "2026-...Z",
     "spec": {...},          # the job specification as given (JobSpec.to_json_dict())
     "parameters": {...},    # the method parameters actually used, defaults filled in
     "inputs": [{"path", "size", "sha256"}, ...],
     "versions": {"ruinmap", "python", "numpy", ..., "GDAL", "PROJ"},
     "timings": {"<step>": seconds, ...},
     "outputs": {"<name>": "<path>", ...},
     "cluster": {...}}       # scheduler address, workers, threads, memory

Values are made JSON-safe on the way (`to_jsonable`): NumPy scalars and arrays become numbers
and lists, paths strings, datetimes ISO 8601, NaN and infinities null (JSON has none).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from ruinmap.cluster.storage.confined import open_input
from ruinmap.cluster.storage.durable import write_text_atomic
from ruinmap.errors import InputError

REPORT_FORMAT = "ruinmap-job-report"
REPORT_FORMAT_VERSION = 1
REPORT_KEYS = ("spec", "parameters", "inputs", "versions", "timings", "outputs", "cluster")
# Distribution names, in the order a reader looks for them.
_PACKAGES = (
    "ruinmap",
    "numpy",
    "numba",
    "dask",
    "distributed",
    "xarray",
    "zarr",
    "rasterio",
    "geopandas",
    "shapely",
    "pyogrio",
    "pyproj",
    "pyarrow",
    "matplotlib",
)
_HASH_BLOCK = 4 * 2**20


def software_versions() -> dict[str, str]:
    """Versions of Python, ruinmap, its main libraries and the GDAL and PROJ they use."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    try:
        import rasterio

        versions["GDAL"] = str(rasterio.__gdal_version__)
    except ImportError:
        versions["GDAL"] = "not installed"
    try:
        import pyproj

        versions["PROJ"] = str(pyproj.proj_version_str)
    except ImportError:
        versions["PROJ"] = "not installed"
    versions["platform"] = platform.platform()
    return versions


def input_record(path: str | os.PathLike[str], *, checksum: bool = True) -> dict[str, Any]:
    """{"path", "size", "sha256"} of an input file (sha256 None when `checksum` is False).

    Hashing reads the whole file (about 1 GB/s); a folder (a Zarr store) gets size = total
    bytes of its files and no hash.
    """
    p = Path(path)
    if p.is_dir():
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return {"path": str(p), "size": size, "sha256": None}
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{p}: input file not found for the job report") from None
    digest = None
    if checksum:
        hasher = hashlib.sha256()
        with open_input(p) as handle:  # confined to the data roots in the service
            while chunk := handle.read(_HASH_BLOCK):
                hasher.update(chunk)
        digest = hasher.hexdigest()
    return {"path": str(p), "size": size, "sha256": digest}


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON types (dict with str keys, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(np.datetime_as_string(value, unit="auto"))
    if isinstance(value, np.timedelta64):
        return None if np.isnat(value) else float(value / np.timedelta64(1, "s"))
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v) for v in items]
    if hasattr(value, "model_dump"):  # pydantic models (the job spec)
        return to_jsonable(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if hasattr(value, "item") and callable(value.item):  # 0-d arrays, other array scalars
        try:
            return to_jsonable(value.item())
        except (TypeError, ValueError):
            pass
    # A report must not fail a finished job over one odd value: keep it readable instead.
    return str(value)


def write_job_report(
    dst: str | os.PathLike[str],
    *,
    spec: Mapping[str, Any],
    parameters: Mapping[str, Any],
    inputs: Sequence[Mapping[str, Any]],
    versions: Mapping[str, str] | None = None,
    timings: Mapping[str, float],
    outputs: Mapping[str, str | os.PathLike[str]],
    cluster: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write job.json at `dst` (atomically); returns its path.

    versions: default `software_versions()`. timings: seconds per step. outputs: name ->
    path (written relative to job.json's folder when inside it, so the folder can be moved).
    extra: more top-level keys (e.g. "summary"); may not replace the standard ones.
    """
    dst = Path(dst)
    for i, record in enumerate(inputs):
        missing = [k for k in ("path", "size", "sha256") if k not in record]
        if missing:
            raise InputError(f"job report: inputs[{i}] lacks {missing}; use input_record(path)")
    clash = sorted(set(extra or {}) & {*REPORT_KEYS, "format", "format_version", "created"})
    if clash:
        raise InputError(f"job report: extra keys {clash} would replace standard keys")
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_FORMAT_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "spec": spec,
        "parameters": parameters,
        "inputs": list(inputs),
        "versions": software_versions() if versions is None else versions,
        "timings": {str(k): round(float(v), 3) for k, v in timings.items()},
        "outputs": {str(k): _relative(v, dst.parent) for k, v in outputs.items()},
        "cluster": cluster,
        **(extra or {}),
    }
    text = json.dumps(to_jsonable(report), indent=2, ensure_ascii=False, allow_nan=False)
    return write_text_atomic(dst, text + "\n")


def _relative(path: str | os.PathLike[str], base: Path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(p)
