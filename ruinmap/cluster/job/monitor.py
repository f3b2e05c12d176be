"""Monitoring: the same job run again after new post-event dates arrived.

`ruinmap run` on the same spec after new post files (or STAC items) appear grows the store
along post_time (`ingest.append`: only the new dates are ingested). The job's base signature
(`JobPlan.base_signature`: method, parameters, store, polygons, grid, tiles) is then the
same and its post-event series grows: the old series is a prefix of the new one. Such a run
is an append (`prepare_job_folder`):

- every tile runs again: the score (pwtt's t-test, log-ratio's mean) and its classes,
  tables and products depend on every post date, so they are recomputed for the grown
  series, as a whole-series run makes them;
- the per-pixel sequential dating state (`job.dating_state`) and the date layers are kept:
  each tile advances its state over the new dates only (their magnitudes and one detector
  step each); the pre-event baseline is the pre dates', which cannot change;
- `job.json` in the work folder (and the job's `job.json` product, `runs`) lists every run
  that changed the series: when it ran, the post dates it added and how many there are.

Anything else changed (pre dates, a post date replaced or removed, parameters, polygons) is
a new job, as before: its folder starts over, or the store refuses other inputs
(`ingest.run`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ruinmap.cluster.job.layers import output_arrays_exist
from ruinmap.cluster.job.plan import JobPlan, post_series
from ruinmap.cluster.job.workdir import prepare_work_dir, read_job_marker
from ruinmap.cluster.methods import extra_layers

__all__ = ["job_runs", "prepare_job_folder"]


def _added_dates(old: list[list[Any]], new: list[list[Any]]) -> list[str | None]:
    """The dates of the store indices `new` holds beyond `old`, in store order."""
    first = max((entry[0] for entry in old), default=-1) + 1
    dates = {entry[0]: entry[1] for entry in new if entry[0] >= first}
    return [dates[t] for t in sorted(dates)]


def _is_append(marker: dict[str, Any], plan: JobPlan, series: list[list[Any]]) -> bool:
    old = marker.get("post_series")
    return (marker.get("base_signature") == plan.base_signature and isinstance(old, list)
            and len(old) < len(series) and series[:len(old)] == old)


def prepare_job_folder(plan: JobPlan, chunk: int) -> bool:
    """The work folder and layers of `plan` (`workdir.prepare_work_dir`): resumed for the
    same job, kept but for the tiles' ledger and partials when it appends post dates (module
    doc), else started over. Records the run in `job.json` when it changes the series.
    Returns whether this run appends dates to an earlier one."""
    marker = read_job_marker(plan.work_dir)
    series = post_series(plan.store)
    # without the arrays (removed by hand) there is nothing to append to: start over
    is_append = (_is_append(marker, plan, series)
                 and output_arrays_exist(plan.layers, extra_layers(plan.params)))
    old: list[list[Any]] = marker.get("post_series", []) if is_append else []
    runs: list[dict[str, Any]] = list(marker.get("runs", [])) if is_append else []
    runs.append({"run": len(runs) + 1,
                 "time": datetime.now(UTC).isoformat(timespec="seconds"),
                 "added_post_dates": _added_dates(old, series),
                 "post_dates": len({entry[0] for entry in series}),
                 "appended": is_append})
    started = prepare_work_dir(
        plan.work_dir, plan.signature, plan.layers, plan.grid, chunk, plan.tile_px,
        extra_layers(plan.params), is_append=is_append,
        marker={"base_signature": plan.base_signature, "post_series": series, "runs": runs})
    return started and is_append


def job_runs(plan: JobPlan) -> list[dict[str, Any]]:
    """The runs that made the job's post-event series (`prepare_job_folder`), oldest first."""
    runs = read_job_marker(plan.work_dir).get("runs", [])
    return list(runs) if isinstance(runs, list) else []
