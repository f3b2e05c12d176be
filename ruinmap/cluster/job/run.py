"""The damage-mapping job: a job spec in, the score, classes, tables and grids out.

`run_job(spec)` reads top-down:

1. `_check`: every file the spec names (`validate_spec_files`), the polygons (both opened
   confined to `ingest_options.confine_to` when given), the bands
   the method needs and what the headers say (`preflight.check_job_fits`: dates, cell size,
   focal reach, districts over the imagery), so a bad spec fails before any work starts;
2. `_ensure_store`: ingests the imagery into `output.dir/store.zarr` (or uses `inputs.store`),
   resuming an unfinished ingest; its metadata is read once (`StoreInfo`);
3. `plan_job`: grid, tiles (one per store shard, smaller for small scenes), halo, the
   method's pre-pass and the job's signature, in one `JobPlan`;
4. `_run_tiles`: sends each tile not in the ledger to the cluster (`task.run_tile`), its
   polygons in a file of the work folder rather than in the task (`vector_files`): each
   writes `score` and `damage` into the job's own store (`output.dir/store.zarr`, also when
   the imagery comes from `inputs.store`, which is only read), saves its partial and records
   itself in the job's ledger (`<output.dir>/.ruinmap-job/`, see `workdir`);
   With an automatic threshold (`threshold = "otsu"`, ...) the tiles write no classes; the
   client adds their score histograms, chooses the threshold (`thresholds`), and a second,
   cheap pass (`_run_class_tiles`, `classes.run_class_tile`) classifies the stored score,
   with its own ledger, so it resumes too;
5. `_merge`: the partials of every tile (this run's and earlier runs') into the per-district
   table, per-building scores and the damage grid;
6. `_write`: the grid layers and the products (`products`); then a result without a valid
   score in any district is an InputError naming the likely cause
   (`preflight.check_result_not_empty`; the products are kept).

A re-run with the same spec resumes: recorded tiles are skipped. Changing the method, its
parameters, the imagery, the polygons or the grid starts the tiles over; post-event dates
appended to the inputs grow the store by those dates only and run every tile again with the
dating state kept (monitoring, `ingest.append`, `monitor`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable

import geopandas as gpd
import numpy as np
from distributed import Client

from ruinmap.cluster.compute.connect import client_for, dashboard_link
from ruinmap.cluster.compute.phases import phase
from ruinmap.cluster.compute.portable import portable_errors
from ruinmap.cluster.compute.progress import track
from ruinmap.cluster.compute.stragglers import wait_for_stragglers
from ruinmap.cluster.ingest import IngestOptions, plan_inputs
from ruinmap.cluster.ingest.append import ingest_or_append
from ruinmap.cluster.ingest.inplace import InPlaceDates, check_in_place_unchanged
from ruinmap.cluster.ingest.stac import plan_stac_inputs
from ruinmap.cluster.job.budget import JobBudget, check_budget
from ruinmap.cluster.job.builtup import check_mask_covers, check_mask_not_empty, mask_choice
from ruinmap.cluster.job.classes import (
    class_ledger,
    class_task_prefix,
    job_histogram,
    merge_class_partials,
    run_class_tile,
    verified_class_tiles,
)
from ruinmap.cluster.job.dating import dated_series, dating_enabled, prepare_dating_arrays
from ruinmap.cluster.job.dating_state import states_hold, verify_states
from ruinmap.cluster.job.integrity import load_verified_partial, verified_tiles
from ruinmap.cluster.job.layers import describe_layers, write_grid_layers
from ruinmap.cluster.job.masked import district_masked_fraction
from ruinmap.cluster.job.merge import building_scores, district_table, grid_layers, merge_partials
from ruinmap.cluster.job.monitor import prepare_job_folder
from ruinmap.cluster.job.outdir import claim_output_dir
from ruinmap.cluster.job.plan import JobPlan, pixel_sides_m, plan_job
from ruinmap.cluster.job.polygons import Polygons, polygons_on_grid, read_polygons, tile_vectors
from ruinmap.cluster.job.preflight import (
    ImageryHeader,
    check_job_fits,
    check_result_not_empty,
    imagery_header,
    sparse_district_warning,
)
from ruinmap.cluster.job.products import write_products as write_all_products
from ruinmap.cluster.job.result import JobResult
from ruinmap.cluster.job.score_state import (
    MomentsBase,
    keeps_moments,
    moments_base,
    prepare_moment_arrays,
)
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.job.spec.files import SpecFiles, validate_spec_files
from ruinmap.cluster.job.task import run_tile
from ruinmap.cluster.job.thresholds import ThresholdChoice, threshold_choice
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.job.vector_files import (
    VectorsFile,
    load_tile_vectors,
    remove_vector_files,
    write_vector_files,
)
from ruinmap.cluster.job.warmup import start_kernel_warmup
from ruinmap.cluster.job.workdir import STORE_NAME, products_are_current
from ruinmap.cluster.methods import check_bands, extra_layers
from ruinmap.cluster.methods.registry import scorer_for
from ruinmap.cluster.settings import resolve_address
from ruinmap.cluster.storage.confined import confinement
from ruinmap.cluster.storage.location import as_location
from ruinmap.cluster.storage.store import StoreInfo
from ruinmap.cluster.validation.counts import add_count_intervals, unvalidated_intervals
from ruinmap.cluster.validation.run import validate
from ruinmap.errors import RuinmapError, SpecError

log = logging.getLogger(__name__)

__all__ = ["STORE_NAME", "JobResult", "run_job"]


Frames = tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None]


def run_job(
    spec: JobSpec,
    *,
    client: Client | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
    ingest_options: IngestOptions | None = None,
    write_products: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    budget: JobBudget | None = None,
) -> JobResult:
    """Run (or resume) the job `spec` on `client`, or on `scheduler` / the spec's cluster.

    `on_progress(done, total)` is called with the tiles finished (recorded ones included) once
    the tiles are planned and again as each tile finishes; an exception it raises stops the
    job (the job service uses this to dismiss a running job). `budget` bounds the pixels,
    dates and tasks the job may ask for (`job.budget`), checked on the headers.

    Raises SpecError / InputError for a bad spec or inputs (before any work), StoreError for
    an unusable store, ClusterError when the cluster cannot be used.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    options = _with_spec_inputs(ingest_options or IngestOptions(), spec)
    # every file the job opens in this thread is confined like the workers' reads
    with confinement(options.confine_to):
        with phase("checking the job and reading the inputs' headers", enabled=progress):
            files, frames, header = _check(spec, options, budget)
        claim_output_dir(as_location(spec.output.dir))  # never into a folder of the user's files
        # --scheduler, else the job's [cluster] address, else Dask config ruinmap.cluster.address
        address = resolve_address(scheduler, spec.cluster.given_address)
        with contextlib.ExitStack() as cluster:
            with phase("connecting to the Dask cluster", enabled=progress):
                cl = cluster.enter_context(client_for(client, address))
            dashboard = dashboard_link(cl)
            # the workers load the tile kernels while they ingest (`warmup`)
            start_kernel_warmup(cl, spec.method_params, header.bands, header.n_dates["pre"],
                                header.n_dates["post"], pixel_sides_m(header.grid),
                                masked=mask_choice(spec).is_applied)
            store = _ensure_store(spec, files, cl, options, progress)
            timings["ingest_s"] = time.perf_counter() - started
            with phase("planning the tiles", enabled=progress):
                polygons = polygons_on_grid(spec, frames, store.grid)
                plan = plan_job(spec, files, store, n_districts=len(polygons.district_ids))
                # the same job over appended post dates keeps its dating state (`monitor`)
                prepare_job_folder(plan, store.chunk)
                if dating_enabled(plan.params):
                    dated_series(plan)  # undated or too few post dates: before any work
                    prepare_dating_arrays(plan, store.chunk)
                if keeps_moments(plan):  # the score's moments, for monitoring (`score_state`)
                    prepare_moment_arrays(plan, store.chunk)
            t0 = time.perf_counter()
            pending = _run_tiles(cl, plan, polygons, progress, on_progress)
            choice, classes_run = None, []
            if plan.params.is_automatic:
                with phase("choosing the threshold from the score's histogram",
                           enabled=progress):
                    choice = threshold_choice(plan.params, job_histogram(plan))
                plan = dataclasses.replace(plan, chosen=plan.params.with_threshold(
                    choice.threshold, choice.class_thresholds))
                log.info("threshold %s: %g, class edges %s", choice.rule, choice.threshold,
                         choice.class_thresholds)
                classes_run = _run_class_tiles(cl, plan, polygons, pending, progress)
            timings["tiles_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with phase("merging the tiles' results", enabled=progress):
                result = _merge(plan, polygons, pending, timings, dashboard, choice)
                result.classes_run = len(classes_run)
            timings["merge_s"] = time.perf_counter() - t0
            masked = district_masked_fraction(plan.store.sources, plan.grid,
                                              polygons.district_geoms)
            if masked is not None:  # only where the imagery came with layover/shadow masks
                result.districts["masked_fraction"] = masked
            # nodata over most of a district with imagery is never a silent empty row
            sparse = sparse_district_warning(spec, result.districts, polygons.district_geoms,
                                             plan.grid, plan.store.sources, plan.store.n_times)
            if sparse is not None:
                log.warning("%s", sparse)
                result.warnings.append(sparse)
            if write_products:
                t0 = time.perf_counter()
                with phase("writing the products (COGs, tables, figures, STAC)", enabled=progress):
                    _write(result, plan, polygons, cl)
                result.timings["products_s"] = time.perf_counter() - t0
            # after the products: their COGs are written on the workers (`products`)
            with phase("closing the Dask cluster", enabled=progress):
                cluster.close()  # a local cluster takes a second or two to stop
        check_result_not_empty(spec, result.districts, (plan.context.pre_orbits,
                               plan.context.post_orbits), plan.store.n_times)
        check_mask_not_empty(plan.mask, result.districts, spec.output.dir)
        if write_products:
            if spec.validation is not None:
                with phase("validating against the labels", enabled=progress):
                    _validate(result)
        timings["total_s"] = time.perf_counter() - started
        return result


def _with_spec_inputs(options: IngestOptions, spec: JobSpec) -> IngestOptions:
    """`options` with the spec's `inputs.scale`, `inputs.bands` and `inputs.ingest` (the
    spec wins where it sets them)."""
    changes: dict[str, object] = {}
    if spec.inputs.scale != "auto":
        changes["scale"] = spec.inputs.scale
    if spec.inputs.bands is not None:
        changes["bands"] = tuple(spec.inputs.bands)
    if spec.inputs.ingest != "always":
        changes["ingest"] = ingest_mode_for(spec)
    return dataclasses.replace(options, **changes) if changes else options  # type: ignore[arg-type]


def ingest_mode_for(spec: JobSpec) -> str:
    """The spec's `inputs.ingest`, unless its method reads the whole store before the tiles
    (cva with standardize): then "auto" copies every date, and "never" is a SpecError."""
    mode = spec.inputs.ingest
    if mode == "always" or not scorer_for(spec.method_params).reads_whole_store(
            spec.method_params):
        return mode
    if mode == "never":
        raise SpecError(
            f'inputs.ingest = "never": method {spec.method!r} reads every date from the store '
            "before the tiles (its whole-image pre-pass, e.g. cva's standardize), so the "
            'dates must be copied; use ingest = "auto" or "always"')
    log.info("inputs.ingest = \"auto\": method %s reads the whole store first; every date "
             "is copied", spec.method)
    return "always"


def _check(spec: JobSpec, options: IngestOptions,
           budget: JobBudget | None) -> tuple[SpecFiles, Frames, ImageryHeader]:
    """The spec's files and polygons, and the bands the method needs, checked before work;
    also the imagery's header."""
    files = validate_spec_files(spec, options.confine_to)
    frames = read_polygons(spec, files, options.confine_to)
    header = imagery_header(files, options)
    if budget is not None:
        check_budget(budget, header)
    check_bands(spec.method_params, header.bands)
    check_job_fits(spec, header, frames[0], frames[1])
    mask = mask_choice(spec)
    check_mask_covers(mask, header.grid, frames[1], options.confine_to)
    log.info("%s", mask.describe())
    return files, frames, header


def _ensure_store(spec: JobSpec, files: SpecFiles, client: Client, options: IngestOptions,
                  progress: bool | None) -> StoreInfo:
    if files.store is not None:
        store = StoreInfo.read(files.store)
    else:
        out = as_location(spec.output.dir).join(STORE_NAME)
        # a STAC source is planned from its items (`ingest.stac`); files from their headers
        with phase("reading the inputs' headers", enabled=progress):
            inputs = (plan_stac_inputs(files.stac, options) if files.stac is not None
                      else plan_inputs(list(files.pre), list(files.post), options))
        # monitoring: post dates that arrived since the store was made are appended to it
        ingest_or_append(list(files.pre), list(files.post), out, options, client=client,
                         progress=progress, inputs=inputs)
        store = StoreInfo.read(out)
    # the tiles read these files: they must still be the ones the store was planned from
    check_in_place_unchanged(store.location, store.attrs)
    if InPlaceDates.from_store_attrs(store.attrs) and scorer_for(
            spec.method_params).reads_whole_store(spec.method_params):
        raise SpecError(
            f"{store.location}: reads some dates in place, but method {spec.method!r} reads "
            "every date from the store before the tiles (cva's standardize); ingest it with "
            "--ingest always")
    return store


def _run_tiles(client: Client, plan: JobPlan, polygons: Polygons, progress: bool | None,
               on_progress: Callable[[int, int], None] | None) -> list[Tile]:
    """Run every tile the ledger does not hold whole (`integrity`); returns those it ran."""
    wait_for_stragglers(client, plan.task_prefix)  # a crashed run's tiles must not race ours
    plan.ledger.clean()
    done = verified_tiles(plan)  # a recorded tile whose files changed is run again
    if dating_enabled(plan.params):  # a damaged dating state is forgotten: dated afresh
        done &= verify_states(plan)
    pending = [t for t in plan.tiles if t.key not in done]
    finished = len(plan.tiles) - len(pending)
    if on_progress is not None:
        on_progress(finished, len(plan.tiles))
    if not pending:
        return pending
    moments = _moments_base(plan) if keeps_moments(plan) else None
    with phase("starting the tiles on the workers", enabled=progress):
        files = write_vector_files(plan.work_dir, "tile", pending, tile_vectors(
            pending, plan.grid, polygons, plan.mask_margin))
        [plan_future] = client.scatter([plan], broadcast=True)
        futures = [
            client.submit(portable_errors, _tile_task, plan_future, tile, file, moments,
                          key=plan.task_key(tile),
                          pure=False, retries=1)
            for tile, file in zip(pending, files, strict=True)
        ]
    kept = {"mask": 0, "labels": 0}
    for future in track(futures, "tiles", enabled=progress):
        timings = future.result()
        log.debug("tile timings %s", timings)
        for role in kept:
            kept[role] += int(timings.get(f"{role}_kept", 0))
        finished += 1
        if on_progress is not None:
            on_progress(finished, len(plan.tiles))
    remove_vector_files(plan.work_dir)
    if any(kept.values()):
        log.info("%d of %d tiles read their kept built-up mask, %d their kept footprint labels "
                 "(`tile_inputs`)", kept["mask"], len(pending), kept["labels"])
    return pending


def _tile_task(plan: JobPlan, tile: Tile, vectors: VectorsFile,
               moments: MomentsBase | None) -> dict[str, float]:
    """`run_tile` on a worker, with the tile's polygons read from their file."""
    return run_tile(plan, tile, load_tile_vectors(vectors), moments)


def _class_task(plan: JobPlan, tile: Tile, vectors: VectorsFile) -> float:
    """`run_class_tile` on a worker, with the tile's polygons read from their file."""
    return run_class_tile(plan, tile, load_tile_vectors(vectors))


def _moments_base(plan: JobPlan) -> MomentsBase:
    """Whether this run's tiles continue from kept moments (`score_state.moments_base`); a
    job that dates also needs every tile's dating state to hold the same dates."""
    holds = None
    if dating_enabled(plan.params):
        dates = tuple(d.isoformat() for d in dated_series(plan).post_dates)
        holds = functools.partial(states_hold, plan, dates)
    base = moments_base(plan, holds)
    if base.held:
        log.info("continuing every tile from its kept moments of %d post dates", base.held)
    return base


def _run_class_tiles(client: Client, plan: JobPlan, polygons: Polygons,
                     recomputed: list[Tile], progress: bool | None) -> list[Tile]:
    """The second pass of an automatic threshold: classes of every tile the class ledger
    does not hold whole with `plan`'s chosen edges (`classes`); returns those it ran."""
    wait_for_stragglers(client, class_task_prefix(plan))
    class_ledger(plan.work_dir).clean()
    done = verified_class_tiles(plan, recomputed)
    pending = [t for t in plan.tiles if t.key not in done]
    if not pending:
        return pending
    with phase("starting the classes on the workers", enabled=progress):
        files = write_vector_files(plan.work_dir, "classes", pending,
                                   tile_vectors(pending, plan.grid, polygons))
        [plan_future] = client.scatter([plan], broadcast=True)
        futures = [
            client.submit(portable_errors, _class_task, plan_future, tile, file,
                          key=f"{class_task_prefix(plan)}{tile.iy}-{tile.ix}",
                          pure=False, retries=1)
            for tile, file in zip(pending, files, strict=True)
        ]
    for future in track(futures, "classes", enabled=progress):
        future.result()
    remove_vector_files(plan.work_dir)
    return pending


def _merge(plan: JobPlan, polygons: Polygons, pending: list[Tile], timings: dict[str, float],
           dashboard: str | None, choice: ThresholdChoice | None = None) -> JobResult:
    params = plan.params
    n_buildings = 0 if polygons.building_geoms is None else len(polygons.building_geoms)
    merged = merge_partials(
        (load_verified_partial(plan, t) for t in plan.tiles),
        n_districts=plan.n_districts, n_classes=len(params.class_thresholds) + 1,
        edges=plan.edges, n_buildings=n_buildings, grid_shape=plan.cell_grid.shape,
    )  # fmt: skip
    if choice is not None:  # the classes come from the second pass
        totals = merge_class_partials(plan, plan.cell_grid.shape)
        merged = dataclasses.replace(
            merged, district_classes=totals.classes, district_damaged=totals.damaged,
            district_class_area=totals.class_area, district_damaged_area=totals.damaged_area,
            g_damaged=totals.g_damaged)
    buildings = None
    b_scores = None
    if polygons.building_frame is not None and polygons.building_scored is not None:
        b_scores = building_scores(merged, threshold=params.fixed_threshold,
                                   class_thresholds=params.class_thresholds,
                                   scored=polygons.building_scored)
        buildings = polygons.building_frame.copy()
        for column in b_scores.columns:
            buildings[column] = b_scores[column].array
        district_of = polygons.building_district
        assert district_of is not None
        buildings["district_id"] = np.where(
            district_of >= 0, polygons.district_ids[np.maximum(district_of, 0)], None)
    table = district_table(
        merged, has_n_post=any(layer.name == "n_post" for layer in extra_layers(params)),
        ids=polygons.district_ids, names=polygons.district_names,
        area_km2=polygons.district_area_km2, pixel_area_m2=plan.pixel_size_m**2,
        class_labels=params.class_labels,
        building_district=polygons.building_district,
        building_damaged=None if b_scores is None else b_scores["damaged"],
        building_pairs=polygons.building_pairs,
        masked=plan.mask.is_applied,
    )  # fmt: skip
    intervals = None
    if b_scores is not None and polygons.building_district is not None:
        found = unvalidated_intervals(
            b_scores["mean_score"].to_numpy(np.float64), polygons.building_district,
            len(polygons.district_ids), method=plan.spec.method,
            threshold=params.fixed_threshold, members=polygons.building_pairs)
        table = add_count_intervals(table, found)
        intervals = {"method": found.method, "level": found.level,
                     "assumptions": found.assumptions}
    fraction, mean = grid_layers(merged)
    return JobResult(
        spec=plan.spec, store=plan.store.location, districts=table, buildings=buildings,
        grid_fraction=fraction, grid_mean=mean, tiles_total=len(plan.tiles),
        tiles_run=len(pending), timings=timings, dashboard=dashboard,
        count_intervals=intervals,
        threshold_choice=None if choice is None else choice.report(),
        mask={**plan.mask.to_json(), "description": plan.mask.describe()},
    )  # fmt: skip


def _validate(result: JobResult) -> None:
    """The spec's [validation], on the results just written: validation.* and the district
    tables with calibrated intervals (these replace the unvalidated ones in `result`)."""
    assert result.spec.validation is not None
    t0 = time.perf_counter()
    try:
        report = validate(result.spec.output.dir, result.spec.validation)
    except RuinmapError as exc:
        raise type(exc)(f"the job's results in {result.spec.output.dir} are complete, but its "
                        f"[validation] failed: {exc}") from exc
    if report.districts is not None:
        result.districts = report.districts.drop(columns="geometry", errors="ignore")
    result.validation = report.report
    result.files.update({k: as_location(v) for k, v in report.files.items()})
    result.timings["validation_s"] = time.perf_counter() - t0


def _write(result: JobResult, plan: JobPlan, polygons: Polygons, client: Client) -> None:
    # a re-run of a finished job whose products are all written rewrites nothing
    store = plan.layers
    rewrite = (result.tiles_run > 0 or result.classes_run > 0
               or not products_are_current(plan.work_dir, plan.signature))
    if rewrite or not store.join("grid_mean_score", "zarr.json").is_file():
        write_grid_layers(store, plan.grid, plan.cell_px, result.grid_fraction,
                          result.grid_mean)
        describe_layers(store, plan.grid, plan.spec.method, plan.params.class_labels,
                        extra_layers(plan.params))
    result.files = write_all_products(result, plan, polygons, rewrite=rewrite, client=client)
