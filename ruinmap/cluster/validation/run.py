"""`ruinmap validate`: hold a finished job's results against ground-truth labels.

Writes into `out_dir` (default: the results folder):
- validation.json: the labels read (and every assumption made reading them), the join rule,
  per-unit accuracy (AUC, precision/recall/F1 at the job's and each class threshold, the
  F1-maximising threshold labelled as optimistic), the same weighted by footprint area, the
  per-district labelled vs predicted counts, and the calibration behind the count intervals;
- validation.csv: one row per district (labelled and predicted damaged counts, their error,
  the calibrated interval on the damaged-building count);
- validation.png: ROC, precision-recall and the score histogram by label;
- districts.parquet/.geojson/.csv again, their `buildings_damaged_low/high` now calibrated
  on the labels (`buildings_damaged_interval` = "calibrated").
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ruinmap.cluster.outputs.charts import render_district_chart
from ruinmap.cluster.outputs.stac import refresh_file_checksums
from ruinmap.cluster.outputs.tables import write_district_tables
from ruinmap.cluster.storage.confined import open_input
from ruinmap.cluster.storage.durable import atomic_path
from ruinmap.cluster.validation.config import ValidationSpec
from ruinmap.cluster.validation.counts import (
    add_count_intervals,
    calibrated_intervals,
    district_members,
)
from ruinmap.cluster.validation.figure import draw_validation_figure
from ruinmap.cluster.validation.join import Marked, mark_at_labels, mark_footprints
from ruinmap.cluster.validation.labels import Labels, read_labels
from ruinmap.cluster.validation.metrics import curves, score_accuracy
from ruinmap.cluster.validation.results import Results, read_results
from ruinmap.errors import InputError

__all__ = ["ValidationReport", "validate"]

log = logging.getLogger(__name__)

FORMAT = "ruinmap-validation"


@dataclass
class ValidationReport:
    """What `validate` measured and wrote."""

    report: dict[str, Any]
    districts: pd.DataFrame | None  # the district table with calibrated intervals
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def auc(self) -> float | None:
        return self.report["accuracy"]["buildings"]["auc"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open_input(file) as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _labels_record(labels: Labels, spec: ValidationSpec) -> dict[str, Any]:
    frame = labels.frame
    return {
        "path": labels.path, "layer": labels.layer, "kind": labels.kind,
        "class_field": labels.class_field, "damaged_classes": list(labels.damaged_classes),
        "undamaged_classes": list(labels.undamaged_classes),
        "epoch": None if labels.epoch is None else labels.epoch.isoformat(),
        "n_labels": len(frame), "n_damaged": int(frame["damaged"].sum()),
        "classes": {str(k): int(v) for k, v in frame["label_class"].value_counts().items()},
        "notes": list(labels.notes), "sha256": _sha256(Path(spec.labels))
        if Path(spec.labels).exists() else None,
    }


def _check_overlap(labels: Labels, results: Results) -> None:
    x0, y0, x1, y1 = results.bounds
    inside = labels.frame.geometry.intersects(shapely.box(x0, y0, x1, y1))
    if not inside.any():
        lb = labels.frame.total_bounds
        raise InputError(
            f"{labels.path}: no label lies within the results' extent ({x0:.1f}, {y0:.1f}, "
            f"{x1:.1f}, {y1:.1f}; labels span {lb[0]:.1f}, {lb[1]:.1f}, {lb[2]:.1f}, "
            f"{lb[3]:.1f}, both in the results' CRS); do they cover the same place? if the "
            "file's CRS is wrong, pass --labels-crs")


def _district_counts(marked: Marked, threshold: float,
                     districts: gpd.GeoDataFrame | None) -> pd.DataFrame:
    units = marked.frame
    ids = units["district_id"].astype(object)
    district_ids = ids.to_numpy(object)
    rows = np.arange(len(units))
    if districts is not None and "district_id" in districts:
        # every district holding a unit counts it (districts may overlap)
        order = {str(d): i for i, d in enumerate(districts["district_id"])}
        first = np.array([order.get(str(d), -1) if d is not None and d == d else -1
                          for d in ids], np.int64)
        rows, which = district_members(units, districts, first,
                                       centroid=marked.unit == "footprints")
        district_ids = districts["district_id"].astype(object).to_numpy()[which]
    frame = pd.DataFrame({"district_id": district_ids,
                          "damaged": units["damaged"].to_numpy(bool)[rows],
                          "predicted": units["score"].to_numpy()[rows] > threshold})
    frame = frame[frame["district_id"].notna()]
    grouped = frame.groupby("district_id", sort=False)
    table = pd.DataFrame({
        "labelled_units": grouped.size(),
        "labelled_damaged": grouped["damaged"].sum().astype(np.int64),
        "predicted_damaged": grouped["predicted"].sum().astype(np.int64),
    })
    table["count_error"] = table["predicted_damaged"] - table["labelled_damaged"]
    return table.reset_index()


def validate(results_dir: str | Path, spec: ValidationSpec, *,
             out_dir: str | Path | None = None) -> ValidationReport:
    """Validate the results in `results_dir` against `spec.labels` (module doc)."""
    results = read_results(results_dir)
    out = Path(out_dir) if out_dir is not None else results.folder
    out.mkdir(parents=True, exist_ok=True)
    labels = read_labels(
        spec.labels, layer=spec.layer, class_field=spec.class_field,
        damaged_classes=spec.damaged_classes, date_field=spec.date_field, date=spec.date,
        post_end=results.post_end, labels_crs=spec.labels_crs, results_crs=results.crs,
        results_bounds=results.bounds,
    )  # fmt: skip
    # the notes go into validation.json; `ruinmap validate` prints them (print_validation)
    _check_overlap(labels, results)
    if results.buildings is not None:
        marked = mark_footprints(results.buildings, labels, spec.buffer_m)
    else:
        marked = mark_at_labels(str(results.score_tif), labels, results.districts)
    scores = marked.frame["score"].to_numpy(np.float64)
    damaged = marked.frame["damaged"].to_numpy(bool)
    if not damaged.any():
        raise InputError(
            f"{labels.path}: none of the {len(damaged)} scored {marked.unit} the labels speak "
            f"for is damaged ({marked.rule}); nothing to validate against")
    thresholds = [(results.threshold, "job threshold")] + [
        (t, f"class {k} ({name})") for k, (t, name)
        in enumerate(zip(results.class_thresholds, results.class_names, strict=True), 1)]
    by_building = score_accuracy(scores, damaged, thresholds)
    area = marked.frame["area_m2"].to_numpy(np.float64)
    by_area = (score_accuracy(scores, damaged, thresholds, weighting="area", weights=area)
               if np.isfinite(area).all() else None)
    accuracy = {"buildings": by_building.as_dict(),
                "area": None if by_area is None else by_area.as_dict()}
    if not (~damaged).any():
        log.warning("%s: no undamaged %s among the labels: AUC and precision cannot be "
                    "measured, only recall", labels.path, marked.unit)
    per_district = _district_counts(marked, results.threshold, results.districts)
    intervals, calibration = calibrated_intervals(results, marked.frame, spec)
    report: dict[str, Any] = {
        "format": FORMAT, "format_version": 1,
        "results": str(results.folder), "method": results.method,
        "threshold": results.threshold, "post_end": None if results.post_end is None
        else results.post_end.isoformat(),
        "spec": spec.model_dump(mode="json"),
        "labels": _labels_record(labels, spec),
        "join": {"unit": marked.unit, "rule": marked.rule, "buffer_m": spec.buffer_m,
                 "n_scored": len(marked.frame), "n_damaged": int(damaged.sum()),
                 "n_undamaged": int((~damaged).sum()), "n_not_covered": marked.n_unlabelled},
        "accuracy": accuracy,
        "count_intervals": calibration,
        "districts": json.loads(per_district.to_json(orient="records")),
    }
    table = None
    files: dict[str, Path] = {}
    if results.districts is not None and intervals is not None:
        table = add_count_intervals(pd.DataFrame(results.districts), intervals)
        wanted = ["district_id", "buildings", "buildings_damaged", "buildings_damaged_low",
                  "buildings_damaged_high"]
        per_district = per_district.merge(table[[c for c in wanted if c in table]],
                                          on="district_id", how="outer")
        counts = ["labelled_units", "labelled_damaged", "predicted_damaged", "count_error"]
        per_district[counts] = per_district[counts].astype("Int64")  # NA: no labels there
        districts = gpd.GeoDataFrame(table, geometry="geometry", crs=results.districts.crs)
        # the HXL key tag at the job's own admin level (`[districts] admin_level`)
        level = int(results.report["spec"].get("districts", {}).get("admin_level", 2))
        files.update({k: Path(v) for k, v in
                      write_district_tables(districts, out, admin_level=level).items()})
        # the chart's error bars become the calibrated intervals
        files["districts_png"] = render_district_chart(
            out / "districts.png", table,
            title=f"Damage by district ({results.method}), calibrated against "
                  f"{Path(labels.path).name}")
        refresh_file_checksums(out)  # the catalog describes the tables as they now are
    files["validation_csv"] = out / "validation.csv"
    with atomic_path(files["validation_csv"]) as tmp:
        per_district.to_csv(tmp, index=False, lineterminator="\n")
    files["validation_png"] = draw_validation_figure(
        out / "validation.png", curves=curves(scores, damaged), scores=scores, damaged=damaged,
        auc=by_building.auc, job=by_building.at[0], best=by_building.best,
        title=f"{results.method} vs {Path(labels.path).name} ({len(scores):,} {marked.unit}, "
              f"epoch {report['labels']['epoch'] or 'undated'})",
    )  # fmt: skip
    files["validation_json"] = out / "validation.json"
    with atomic_path(files["validation_json"]) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n",
                             encoding="utf-8")
    return ValidationReport(report=report, districts=table, files=files)

