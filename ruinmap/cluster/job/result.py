"""What a run of a job did and produced (`run.run_job` returns it, `products` writes it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.storage.location import Location

__all__ = ["JobResult"]


@dataclass
class JobResult:
    """What a run did and produced."""

    spec: JobSpec
    store: Location  # a local path, or an s3:// URL
    districts: pd.DataFrame
    buildings: gpd.GeoDataFrame | None
    grid_fraction: np.ndarray
    grid_mean: np.ndarray
    tiles_total: int
    tiles_run: int
    files: dict[str, Location] = field(default_factory=dict)  # s3:// URLs for s3 outputs
    timings: dict[str, float] = field(default_factory=dict)
    dashboard: str | None = None
    count_intervals: dict[str, Any] | None = None  # method, level, assumptions
    validation: dict[str, Any] | None = None  # validation.json, when the spec had labels
    warnings: list[str] = field(default_factory=list)  # also in job.json
    # an automatic threshold: rule, value, class edges, histogram (`ThresholdChoice.report`)
    threshold_choice: dict[str, Any] | None = None
    classes_run: int = 0  # tiles whose classes the second pass (re)made in this run
    mask: dict[str, Any] | None = None  # the built-up mask used (`builtup.MaskChoice`)
