"""Monitoring: a complete store grown along post_time by the post-event dates that arrived
since it was ingested, writing only their shards.

`appended_post_dates(existing, layout)` decides whether `layout` (the inputs of this run) is
the store's own inputs plus later post-event dates: every other attribute (grid, bands,
chunks, codec, scale, the pre-event sources and the post-event sources already in the store)
must be the same, and every new date later than the store's last one, since the job's dating
state advances in time order (`job.monitor`). `grow_store` then resizes `post` and its
`post_time` coordinate (metadata only: a shard holds one date, so no existing shard is
touched), writes the new dates' shards on the cluster (one task each, recorded in the store's
ledger, so a killed append resumes and verifies what it wrote), and only then records the new
sources in the store's attributes: until that last step the store is still the complete
store of the old dates, and a re-run appends again from there. `ingest_or_append` is the
ingest both `ruinmap ingest` and a job's own store run: the same store grows whether the
job made it or a user did (and names it in `inputs.store`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from distributed import Client

from ruinmap.cluster.compute.connect import client_for
from ruinmap.cluster.compute.phases import phase
from ruinmap.cluster.ingest.layout import (
    StoreLayout,
    content_checksums,
    differences,
    iso_date,
    unit_key,
)
from ruinmap.cluster.ingest.options import IngestOptions, choose_shard
from ruinmap.cluster.ingest.plan import InputPlan, Patterns, plan_inputs
from ruinmap.cluster.ingest.run import (
    IngestReport,
    _verified_shards,
    check_recorded,
    ingest,
    shard_task,
    write_shards,
)
from ruinmap.cluster.ingest.sources import sha256_of
from ruinmap.cluster.storage.arrays import Compression, consolidate, quiet_zarr
from ruinmap.cluster.storage.location import Location, as_location
from ruinmap.cluster.storage.store import (
    is_ruinmap_store,
    ledger_of,
    read_store_attrs,
    update_store_attrs,
)
from ruinmap.errors import StoreError

__all__ = ["PostAppend", "appended_post_dates", "grow_store", "ingest_or_append"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostAppend:
    """The post-event dates a run appends to a complete store: store indices `first`, ...
    `first + len(dates) - 1`, and their dates (ISO)."""

    first: int
    dates: tuple[str, ...]

    @property
    def n_post(self) -> int:
        return self.first + len(self.dates)


def _post_count(attrs: dict[str, Any]) -> int:
    indices = [int(s["time_index"]) for s in attrs.get("sources", []) if s.get("side") == "post"]
    return max(indices, default=-1) + 1


def _without_post_from(attrs: dict[str, Any], first: int) -> dict[str, Any]:
    sources = [s for s in attrs.get("sources", [])
               if s.get("side") != "post" or int(s["time_index"]) < first]
    return {**attrs, "sources": sources}


def _same_contents(existing: dict[str, Any], trimmed: dict[str, Any],
                   layout: StoreLayout) -> bool:
    """Whether the store's sources are `trimmed`'s by content (touched or copied files)."""
    sums = content_checksums(existing, layout.inputs.files)
    by_content = {**trimmed, "sources": [{**s, "sha256": sums.get(s["path"], s.get("sha256"))}
                                         for s in trimmed["sources"]]}
    return not differences(existing, by_content, True)


def _differs(existing: dict[str, Any], new: dict[str, Any], layout: StoreLayout) -> bool:
    differs = differences(existing, new, False)
    return bool(differs) and (differs != ["sources"]
                              or not _same_contents(existing, new, layout))


def _post_paths(attrs: dict[str, Any]) -> set[str]:
    return {str(s["path"]) for s in attrs.get("sources", []) if s.get("side") == "post"}


def appended_post_dates(existing: dict[str, Any], layout: StoreLayout) -> PostAppend | None:
    """The post dates `layout` adds to the complete store whose attributes are `existing`,
    or None when it adds none or differs otherwise (then the ingest's own check decides:
    nothing to do, or a StoreError naming what differs).

    StoreError when the new dates are not all dated and later than the store's last one:
    the job's dating state can only move forward in time.
    """
    first = _post_count(existing)
    new = layout.attrs(checksums={})
    added_paths = _post_paths(new) - _post_paths(existing)
    if added_paths and existing.get("in_place"):
        # an in-place date has no shards to grow from; the copy is what monitoring appends to
        raise StoreError(
            f"{sorted(added_paths)[0]}: the store reads some dates in place from their files "
            "(inputs.ingest auto/never), so later post dates cannot be appended to it; "
            "monitor a store ingested with inputs.ingest = \"always\" (the default), or write "
            "the job to a new output.dir")
    if (_post_count(new) <= first or not added_paths
            or not _post_paths(existing) <= _post_paths(new)
            or _differs(_without_post_from(existing, 0), _without_post_from(new, 0), layout)):
        return None
    last = max((str(s["time"]) for s in existing["sources"]
                if s.get("side") == "post" and s.get("time")), default=None)
    added = layout.inputs.acquisitions["post"][first:]
    dates = [iso_date(a.date) for a in added]
    known = [d for d in dates if d is not None]
    if (_differs(existing, _without_post_from(new, first), layout) or len(known) < len(dates)
            or (last is not None and min(known) <= last)):
        raise StoreError(
            f"{sorted(added_paths)[0]}: the post-event files given since the store was made "
            f"must all be dated and later than its last date ({last}) to be appended "
            "(monitoring); write the job to a new output.dir, or pass --overwrite to ingest "
            "everything again")
    return PostAppend(first, tuple(str(d) for d in dates))


def _resize_post(out: Location, append: PostAppend, layout: StoreLayout) -> None:
    """`post` and `post_time` grown to `append.n_post` dates (metadata; idempotent)."""
    # as `storage.arrays.write_template` encodes them: int64 nanoseconds since 1970
    stamps = np.array([a.date for a in layout.inputs.acquisitions["post"][append.first:]],
                      dtype="datetime64[ns]")
    with quiet_zarr():
        group = zarr.open_group(out.zarr_store(), mode="r+", zarr_format=3,
                                use_consolidated=False)
        post = group["post"]
        assert isinstance(post, zarr.Array)
        post.resize((append.n_post, *post.shape[1:]))
        times = group["post_time"]
        assert isinstance(times, zarr.Array)
        times.resize((append.n_post,))
        times[append.first:] = stamps.astype("int64")
    consolidate(out)


def grow_store(out: Location, existing: dict[str, Any], layout: StoreLayout,
               append: PostAppend, client: Client, progress: bool | None) -> int:
    """Append the dates of `append` to the complete store at `out` (module doc); returns
    the number of shards written."""
    store_id = str(existing["store_id"])
    _resize_post(out, append, layout)
    rows, cols = layout.shards_per_date
    units = [("post", t, iy, ix) for t in range(append.first, append.n_post)
             for iy in range(rows) for ix in range(cols)]
    ledger = ledger_of(out)
    ledger.clean()
    done = _verified_shards(out, store_id, units)
    pending = [u for u in units if unit_key(*u) not in done]
    log.info("appending %d post-event date(s) to %s: %d shard(s) to write, %d already done",
             len(append.dates), out, len(pending), len(units) - len(pending))
    for _ in write_shards(client, shard_task(out, store_id, layout), pending,
                          "starting the appended dates' ingest on the workers", progress):
        pass
    check_recorded(out, ledger, units)
    # as the ingest: a STAC asset's item is its provenance (hashing it would download it)
    new_files = {f.path: f for a in layout.inputs.acquisitions["post"][append.first:]
                 for f in a.files}
    sums = {path: None if f.item is not None else sha256_of(path, layout.options.confine_to)
            for path, f in new_files.items()}
    added = [s for s in layout.attrs(sums)["sources"]
             if s.get("side") == "post" and int(s["time_index"]) >= append.first]
    # last: from here on the store is the complete store of every date
    update_store_attrs(out, sources=[*existing["sources"], *added], complete=True)
    ledger.remove()
    return len(pending)


def _pending_append(out: Location, inputs: InputPlan, options: IngestOptions
                    ) -> tuple[dict[str, Any], StoreLayout, PostAppend] | None:
    """The complete store's attributes, the layout of `inputs` and the post dates it adds to
    the store at `out`; None when there is no such store or no later dates."""
    if options.overwrite or not is_ruinmap_store(out):
        return None
    existing = read_store_attrs(out)
    if not existing.get("complete"):
        return None
    layout = StoreLayout(inputs, options.chunk,
                         choose_shard(options.chunk, options.shard, len(inputs.bands)),
                         Compression.parse(options.compression), options)
    append = appended_post_dates(existing, layout)
    return None if append is None else (existing, layout, append)


def ingest_or_append(pre: Patterns, post: Patterns, out: str | os.PathLike[str],
                     options: IngestOptions | None = None, *, client: Client | None = None,
                     scheduler: str | None = None, progress: bool | None = None,
                     inputs: InputPlan | None = None) -> IngestReport:
    """`ingest`, except that a complete store made from these inputs but for post-event
    dates given since is grown by those dates (`grow_store`: their shards only) where
    `ingest` would refuse it; what `ruinmap ingest` and the job's own store run, so a
    monitored store (the job's, or one a user ingests and names in `inputs.store`) grows
    the same way. A cluster is opened (`client`, else `scheduler`) only to write shards."""
    options = options or IngestOptions()
    location = as_location(out)
    if inputs is None:
        with phase("reading the inputs' headers", enabled=progress):
            inputs = plan_inputs(pre, post, options)
    pending = _pending_append(location, inputs, options)
    if pending is None:
        return ingest(pre, post, location, options, client=client, scheduler=scheduler,
                      progress=progress, inputs=inputs)
    started = time.perf_counter()
    with client_for(client, scheduler) as cl:
        written = grow_store(location, *pending, cl, progress)
        report = ingest(pre, post, location, options, client=cl, progress=progress,
                        inputs=inputs)
    _, layout, append = pending
    rows, cols = layout.shards_per_date
    grid = inputs.grid
    report.was_noop = False
    report.units_written, report.units_skipped = written, report.units_total - written
    report.bytes_written = (grid.width * grid.height * len(inputs.bands) * 4 * written
                            // (rows * cols))  # float32, as `ingest` counts it
    report.stored_bytes = sum(location.join(side).total_bytes() for side in ("pre", "post"))
    report.seconds = time.perf_counter() - started
    report.notes = [f"appended {len(append.dates)} post-event date(s) "
                    f"({', '.join(append.dates)}) to the complete store: their shards only"]
    return report
