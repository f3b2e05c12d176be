"""A finished job's results folder, as `ruinmap validate` reads it.

Needs job.json (method, threshold, class thresholds, the dated inputs) and score.tif; uses
buildings.parquet (footprints with their scores) and districts.parquet when they are there.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import rasterio

from ruinmap.cluster.methods.params import DEFAULT_CLASS_NAMES
from ruinmap.cluster.outputs.tables import BUILDINGS_PARQUET, DISTRICTS_PARQUET
from ruinmap.errors import InputError

__all__ = ["Results", "read_results"]

JOB_JSON = "job.json"
SCORE_TIF = "score.tif"


@dataclass(frozen=True)
class Results:
    """What validation needs from one results folder."""

    folder: Path
    method: str
    threshold: float
    class_thresholds: tuple[float, ...]
    class_names: tuple[str, ...]
    post_end: dt.date | None  # the last post-event acquisition, when the inputs were dated
    crs: str  # the score grid's CRS (WKT)
    bounds: tuple[float, float, float, float]  # of the score grid, in `crs`
    score_tif: Path
    buildings: gpd.GeoDataFrame | None
    districts: gpd.GeoDataFrame | None
    report: dict[str, Any]


def _date(text: Any) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).date()
    except ValueError:
        return None


def read_results(folder: str | Path) -> Results:
    """Read the results folder of a finished `ruinmap run`; InputError naming what is missing."""
    root = Path(folder)
    job_json = root / JOB_JSON
    if not job_json.is_file():
        raise InputError(f"{root}: not a ruinmap results folder (no {JOB_JSON}); pass the "
                         "output.dir of a finished `ruinmap run`")
    try:
        report = json.loads(job_json.read_text(encoding="utf-8"))
        params = report["parameters"]
        method = str(report["spec"]["method"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{job_json}: not a readable ruinmap job report ({exc})") from None
    score_tif = root / SCORE_TIF
    if not score_tif.is_file():
        raise InputError(f"{root}: no {SCORE_TIF}; the job did not finish, re-run it")
    with rasterio.open(score_tif) as src:
        if src.crs is None:
            raise InputError(f"{score_tif}: has no CRS")
        crs, bounds = src.crs.to_wkt(), tuple(src.bounds)
    dates = [d for d in (_date(r.get("date")) for r in report.get("inputs", [])
                         if r.get("side") == "post") if d is not None]
    buildings = _read_frame(root / BUILDINGS_PARQUET)
    districts = _read_frame(root / DISTRICTS_PARQUET)
    names = params.get("class_names")
    if not names:  # the defaults, as MethodParamsBase.class_labels resolves them
        n = len(params["class_thresholds"])
        names = (DEFAULT_CLASS_NAMES if n == len(DEFAULT_CLASS_NAMES)
                 else [f"class {k}" for k in range(1, n + 1)])
    return Results(
        folder=root, method=method, threshold=float(params["threshold"]),
        class_thresholds=tuple(float(t) for t in params["class_thresholds"]),
        class_names=tuple(str(n) for n in names), post_end=max(dates) if dates else None,
        crs=crs, bounds=(float(bounds[0]), float(bounds[1]), float(bounds[2]),
                         float(bounds[3])),
        score_tif=score_tif, buildings=buildings, districts=districts, report=report,
    )  # fmt: skip


def _read_frame(path: Path) -> gpd.GeoDataFrame | None:
    if not path.is_file():
        return None
    try:
        return gpd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read ({exc}); re-run the job to rewrite it") from None
