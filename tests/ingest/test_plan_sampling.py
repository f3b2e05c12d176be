"""`ruinmap run` plans its inputs twice (the checks, then the ingest): the second plan reuses
the first's value samples (keyed by path, size and mtime), also for files whose nodata is NaN
(NaN != NaN made every header's NaN a new key, and every file was read again)."""

from __future__ import annotations

import math
from pathlib import Path

import rasterio

from ruinmap.cluster.ingest import IngestOptions, plan_inputs
from ruinmap.cluster.ingest.plan import _cached_sample
from ruinmap.synthetic import make_city


def test_planning_the_same_files_again_samples_none_of_them(tmp_path: Path) -> None:
    city = make_city(tmp_path / "city", size=64, n_pre=3, n_post=2, seed=1)
    with rasterio.open(city.pre_files[0]) as src:
        assert src.nodata is not None and math.isnan(src.nodata)
    plan_inputs(city.pre_files, city.post_files, IngestOptions())
    before = _cached_sample.cache_info()
    plan_inputs(city.pre_files, city.post_files, IngestOptions())
    after = _cached_sample.cache_info()
    assert after.misses == before.misses
    assert after.hits - before.hits == len(city.pre_files) + len(city.post_files)
