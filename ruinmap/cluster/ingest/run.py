"""Ingest: pre- and post-event GeoTIFFs into one aligned, sharded Zarr v3 store.

`ingest(pre, post, out)` inspects every file (headers only, `plan.plan_inputs`), decides the
store's layout (`layout.StoreLayout`), creates the store's metadata, then writes it shard by
shard on a Dask cluster (`shards.write_unit`): each task reads one window of one acquisition
from its source file(s) (directly when the source is on the grid, else through a WarpedVRT),
writes exactly one shard, makes it durable and records it in the store's ledger with the
shard file's sha256. A resumed ingest verifies every recorded shard against it and rewrites
the ones that do not match (or whose entry is garbage), so the store is marked complete, only
after every shard is recorded, never on top of a corrupted one. Source checksums (provenance) are
computed in this process's threads while the workers write.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from distributed import Client

from ruinmap.cluster.compute.connect import client_for
from ruinmap.cluster.compute.phases import phase
from ruinmap.cluster.compute.portable import portable_errors
from ruinmap.cluster.compute.progress import track
from ruinmap.cluster.geo.grid import Grid, pixel_offset
from ruinmap.cluster.ingest.inplace import plan_in_place
from ruinmap.cluster.ingest.layout import (
    StoreLayout,
    Unit,
    content_checksums,
    differences,
    iso_date,
    recorded_checksums,
    unit_key,
)
from ruinmap.cluster.ingest.mosaic import mosaic_read
from ruinmap.cluster.ingest.options import IngestOptions, choose_shard
from ruinmap.cluster.ingest.plan import (
    InputPlan,
    Patterns,
    file_band_names,
    plan_inputs,
    source_read,
)
from ruinmap.cluster.ingest.shards import ShardTask, write_unit
from ruinmap.cluster.ingest.sources import Acquisition, SourceFile, sha256_of
from ruinmap.cluster.ingest.warp import SourceRead
from ruinmap.cluster.storage.arrays import (
    Compression,
    clean_partial_writes,
    create_store,
    is_unfinished_template,
    open_array,
    shard_file,
)
from ruinmap.cluster.storage.checksums import verified_units
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import Location, ObjectURL, as_location, is_url
from ruinmap.cluster.storage.s3 import gdal_options
from ruinmap.cluster.storage.store import (
    SIDES,
    is_ruinmap_store,
    ledger_of,
    read_store_attrs,
    remove_store,
    update_store_attrs,
)
from ruinmap.errors import InputError, RuinmapError, StoreError

__all__ = ["IngestReport", "check_recorded", "ingest", "shard_task", "write_shards"]

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What an ingest did."""

    out: Location  # a local path, or an s3:// URL
    grid: Grid
    bands: tuple[str, ...]
    times: dict[str, list[str | None]]
    units_total: int
    units_written: int
    units_skipped: int
    was_noop: bool
    seconds: float
    bytes_written: int = 0  # float32 bytes written by this run (uncompressed)
    stored_bytes: int = 0  # bytes of the data arrays on disk
    notes: list[str] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # inspect, checksums, write
    dates_in_place: int = 0  # dates the tiles read from their files (`ingest.inplace`)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_written / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def lap(self, phase: str, started: float) -> None:
        """Record the seconds since `started` not yet counted in another phase as `phase`."""
        self.phase_seconds[phase] = (
            time.perf_counter() - started - sum(self.phase_seconds.values())
        )


def _check_out_url(out: ObjectURL) -> None:
    if not out.bucket_exists():
        raise StoreError(f"--out {out}: the bucket does not exist (or these credentials cannot "
                         "see it); create it first")
    if is_ruinmap_store(out) or not out.list_names() or is_unfinished_template(out):
        return
    raise StoreError(
        f"--out {out}: holds objects and is not a ruinmap store; choose a new prefix or remove "
        "them (ruinmap only ever replaces its own stores)"
    )


def _check_out(out: Location) -> None:
    """StoreError unless `out` is a ruinmap store, an empty folder or prefix, or absent."""
    if isinstance(out, ObjectURL):
        _check_out_url(out)
        return
    if not out.exists():
        if not out.parent.is_dir():
            raise StoreError(f"--out {out}: its parent directory does not exist")
        return
    if is_ruinmap_store(out):
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    raise StoreError(
        f"--out {out}: exists and is not a ruinmap store; choose a new path or remove it "
        "(ruinmap only ever replaces its own stores)"
    )


def ingest(
    pre: Patterns,
    post: Patterns,
    out: str | os.PathLike[str],
    options: IngestOptions | None = None,
    *,
    client: Client | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
    inputs: InputPlan | None = None,
) -> IngestReport:
    """Ingest pre- and post-event rasters (paths or globs, local or s3://) into the ruinmap
    store `out` (a local path or an s3:// URL).

    Uses `client` when given, else opens one for `scheduler` (a profile such as "local" or
    "slurm", or "tcp://host:port"; None: the Dask config `ruinmap.cluster.address`).
    `inputs`: the `plan_inputs(pre, post, options)` a caller already made (headers are read
    once). Resumes an unfinished store made from the same inputs and settings; does nothing to
    a complete one unless `options.overwrite`. Raises InputError/SpecError for bad inputs
    (before writing anything), StoreError for an output path that is not a ruinmap store or
    a store made from other inputs, ClusterError when the cluster cannot be used.
    """
    options = options or IngestOptions()
    started = time.perf_counter()
    location = as_location(out)
    compression = Compression.parse(options.compression)
    _check_out(location)
    if inputs is None:
        with phase("reading the inputs' headers", enabled=progress):
            inputs = plan_inputs(pre, post, options)
    layout = StoreLayout(inputs, options.chunk, choose_shard(options.chunk, options.shard,
                                                             len(inputs.bands)),
                         compression, options,
                         plan_in_place(inputs, options.ingest, options.confine_to))
    units = layout.units()
    times = {side: [iso_date(a.date) for a in inputs.acquisitions[side]] for side in SIDES}
    report = IngestReport(location, inputs.grid, inputs.bands, times, len(units), 0, 0, False,
                          0.0)
    report.lap("inspect", started)
    if layout.in_place:
        report.dates_in_place = layout.in_place.count()
        report.notes.append(f"{report.dates_in_place} date(s) read in place by the tiles, "
                            "not copied (on the grid, tiled; --ingest always copies them)")
    existing = read_store_attrs(location) if is_ruinmap_store(location) else None
    if existing is not None and existing.get("complete") and not options.overwrite:
        _check_complete_is_same(location, existing, layout)
        report.was_noop = True
        report.units_skipped = len(units)
        report.seconds = time.perf_counter() - started
        report.notes.append("store already complete; nothing to do (--overwrite redoes it)")
        return report

    if existing is not None and options.overwrite:
        existing = None  # removed below, once the cluster is up
    # Checksums are provenance, not needed to write: hash in this process's threads while the
    # workers write, except files an unfinished store must be compared with first.
    recorded = recorded_checksums(existing) if existing is not None else {}
    checksums: dict[str, str | None] = {}
    for f in inputs.files:
        stat_key = (f.path, f.size_bytes, f.mtime_ns)
        if stat_key in recorded:
            checksums[f.path] = recorded[stat_key]  # unchanged since recorded (None: not yet)
    for f in inputs.files:
        if f.item is not None:
            # a STAC asset: its item and href are its provenance; hashing it would download
            # every scene once more (and http(s):// assets have no stat to reuse a hash by)
            checksums[f.path] = None
    changed = [f.path for f in inputs.files if f.path not in checksums]
    if existing is not None:
        checksums.update(_hash_all(changed, options.confine_to))
    hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ruinmap-sha256")
    background = {
        f.path: hashing.submit(sha256_of, f.path, options.confine_to)
        for f in inputs.files if not checksums.get(f.path) and f.item is None
    }
    try:
        with client_for(client, scheduler) as cl:
            _write_store(cl, location, existing, layout, report, checksums, background,
                         progress=progress, started=started)
    finally:
        hashing.shutdown(wait=False, cancel_futures=True)
    report.stored_bytes = sum(location.join(side).total_bytes() for side in SIDES)
    report.seconds = time.perf_counter() - started
    report.phase_seconds["finish"] = report.seconds - sum(report.phase_seconds.values())
    return report


def _check_complete_is_same(out: Location, existing: dict[str, Any],
                            layout: StoreLayout) -> None:
    """StoreError unless the complete store at `out` was made from these inputs and settings."""
    differs = differences(existing, layout.attrs(checksums={}), False)
    if differs == ["sources"]:
        # touched or copied files: compare their contents before calling them different
        sums = content_checksums(existing, layout.inputs.files)
        differs = differences(existing, layout.attrs(checksums=sums), True)
    if differs:
        raise StoreError(
            f"{out}: a complete store made from other inputs or settings (differs in: "
            f"{', '.join(differs)}); pass --overwrite to replace it (`ruinmap ingest` or "
            "`ruinmap run`), or write elsewhere (another --out or output.dir)"
        )


def _hash_all(paths: Sequence[str], confine_to: tuple[str, ...] | None
              ) -> dict[str, str | None]:
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ruinmap-sha256") as pool:
        hashes = pool.map(sha256_of, paths, [confine_to] * len(paths))
        return dict(zip(paths, hashes, strict=True))


def _verified_shards(out: Location, store_id: str, units: Sequence[Unit]) -> set[str]:
    """The recorded shards whose file matches the checksum recorded with it; any other is
    logged, forgotten and so written again (`storage.checksums`)."""
    ledger = ledger_of(out)
    recorded = ledger.done()
    arrays = {side: open_array(out, side, "r", store_id) for side in SIDES}
    files = {
        unit_key(*u): {"shard": shard_file(out, arrays[u[0]], (u[1], 0, u[2], u[3]))}
        for u in units if unit_key(*u) in recorded
    }
    return verified_units(ledger, files, kind="shard") if files else set()


def write_shards(client: Client, task: object, pending: Sequence[Unit], starting: str,
                 progress: bool | None) -> Iterator[int]:
    """Write the `pending` shards, one `write_unit` task each on the workers (`starting`: the
    phase line), yielding each one's bytes as it finishes; on any error or interrupt the
    rest are cancelled."""
    if not pending:
        return
    with phase(starting, enabled=progress):
        [task_future] = client.scatter([task], broadcast=True, hash=False)
        futures = [
            client.submit(portable_errors, write_unit, task_future, *u,
                          key=f"ingest-{unit_key(*u)}-{uuid.uuid4().hex[:8]}", pure=False)
            for u in pending
        ]
    try:
        for future in track(futures, "ingest", enabled=progress):
            yield future.result()
    except BaseException:
        client.cancel(futures)
        raise


def check_recorded(out: Location, ledger: Ledger, units: Sequence[Unit]) -> None:
    """RuinmapError unless the ledger records every one of `units`."""
    missing = ledger.pending(unit_key(*u) for u in units)
    if missing:
        raise RuinmapError(f"{out}: {len(missing)} shard(s) not recorded, e.g. {missing[0]}")


def shard_task(out: Location, store_id: str, layout: StoreLayout) -> ShardTask:
    """What every shard task of `layout` writing into `out` needs (scattered once): how each
    acquisition's files are read onto the grid, mosaics included."""
    options, inputs = layout.options, layout.inputs
    remote_inputs = any(is_url(f.path) or "://" in f.path for f in inputs.files)

    def reader_of(acq: Acquisition) -> Callable[[SourceFile], SourceRead]:
        names = {f.path: n for f, n in file_band_names(acq, inputs.bands)}

        def read(f: SourceFile) -> SourceRead:
            if f.path not in names:  # a member's class mask (SCL): its values as they are
                return SourceRead(f.read_path or f.path, f.count, f.dtype, f.nodata, f.grid,
                                  pixel_offset(f.grid, inputs.grid))
            return source_read(f, names[f.path], inputs.grid)

        return read

    return ShardTask(
        store=out,
        store_id=store_id,
        grid=inputs.grid,
        shard=layout.shard,
        resampling=options.resampling,
        nodata=options.nodata,
        reads={
            side: tuple(
                tuple(source_read(f, names, inputs.grid)
                      for f, names in file_band_names(acq, inputs.bands))
                for acq in inputs.acquisitions[side]
            )
            for side in SIDES
        },
        durable=options.durable,
        gdal_options=gdal_options() if remote_inputs or out.is_remote else {},
        confine_to=options.confine_to,
        mosaics={
            side: {t: mosaic_read(acq, inputs.grid, reader_of(acq))
                   for t, acq in enumerate(inputs.acquisitions[side]) if acq.members}
            for side in SIDES
        },
    )


def _write_store(
    client: Client,
    out: Location,
    existing: dict[str, Any] | None,
    layout: StoreLayout,
    report: IngestReport,
    checksums: dict[str, str | None],
    background: dict[str, Future[str]],
    *,
    progress: bool | None,
    started: float,
) -> None:
    """Create or resume the store, write every pending unit, then mark the store complete."""
    options, inputs = layout.options, layout.inputs
    attrs = layout.attrs(checksums)
    report.lap("checksums", started)
    if options.overwrite and is_ruinmap_store(out):
        remove_store(out)
    if existing is not None:
        differs = differences(existing, attrs, True)
        if differs:
            raise StoreError(
                f"{out}: an unfinished ingest of other inputs or settings (differs in: "
                f"{', '.join(differs)}); re-run it with its own arguments, or pass "
                "--overwrite (`ruinmap ingest` or `ruinmap run`) to start over"
            )
        attrs = existing
        report.notes.append("resumed an unfinished store")
    else:
        create_store(out, **layout.template(attrs))

    units = layout.units()
    ledger = ledger_of(out)
    ledger.clean()
    clean_partial_writes(out)
    done = _verified_shards(out, str(attrs["store_id"]), units)
    pending = [u for u in units if unit_key(*u) not in done]
    report.units_skipped = len(units) - len(pending)
    task = shard_task(out, str(attrs["store_id"]), layout)
    rows, cols = layout.shards_per_date
    log.info(
        "ingest %s: grid %dx%d, %d shard(s) per date, %d to write, %d already done",
        out, inputs.grid.width, inputs.grid.height, rows * cols, len(pending),
        report.units_skipped,
    )
    for written in write_shards(client, task, pending, "starting the ingest on the workers",
                                progress):
        report.bytes_written += written
        report.units_written += 1
    check_recorded(out, ledger, units)
    report.lap("write", started)
    final = dict(checksums)
    for path, job in background.items():
        try:
            final[path] = job.result()
        except OSError as exc:
            raise InputError(f"{path}: cannot be read to checksum it ({exc})") from None
    update_store_attrs(out, sources=layout.attrs(final)["sources"], complete=True)
    ledger.remove()
