"""Which files a finished job leaves in `output.dir`, written with the format writers of
`ruinmap.cluster.outputs`.

score.tif, damage.tif with damage.tif.aux.xml and damage.qml (COGs read window by window from
the store; one task each on the cluster's workers when the job gives a client, while this
process draws the figures), `<method>_layers.tif` for a method with extra per-pixel layers
(pwtt_layers.tif: bands p_value, n_pre, n_post, named in the band descriptions), grid.tif
with grid.qml (float32 bands: damaged fraction and mean score per cell),
districts.parquet/.geojson/.csv/.gpkg and districts_hxl.csv, buildings.parquet/.gpkg (when
footprints were given), grid_h3.gpkg/.parquet (with `[grid] h3_resolution`), map.png (title
`output.title`, the imagery dates, the credit line `output.credit`, building outlines, an
overview inset), districts.png (damage per district), score_hist.png (the score's histogram),
job.json, and last the STAC catalog of them all (`stac/`, after job.json so that its checksum
is in the catalog: `job.catalog`). Every file is written atomically (a reader never sees half
of one); for an s3:// output.dir each is written in a local staging folder, then uploaded in
one PUT. When a run computed no tile (a re-run of a finished job) and the files were last
written for this same job, files that exist are left alone, so the re-run rewrites nothing
(the catalog too, unless a file changed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

import geopandas as gpd
import numpy as np
from distributed import Client

from ruinmap.cluster.compute.portable import portable_errors
from ruinmap.cluster.job.catalog import stac_names, write_catalog
from ruinmap.cluster.job.dating import dating_enabled, dating_products
from ruinmap.cluster.job.monitor import job_runs
from ruinmap.cluster.job.plan import JobPlan
from ruinmap.cluster.job.polygons import Polygons
from ruinmap.cluster.job.result import JobResult
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.job.workdir import mark_products_current
from ruinmap.cluster.methods import extra_layers
from ruinmap.cluster.outputs import (
    default_credit,
    downsample_for_preview,
    imagery_dates,
    imagery_dates_text,
    input_record,
    preview_transform,
    render_district_chart,
    render_map,
    render_score_histogram,
    score_histogram,
    write_bands_cog,
    write_building_geopackage,
    write_building_table,
    write_cog,
    write_district_tables,
    write_job_report,
    write_layers_cog,
)
from ruinmap.cluster.outputs.h3grid import GRID_H3_GPKG, h3_grid, write_h3_grid
from ruinmap.cluster.storage.arrays import open_array
from ruinmap.cluster.storage.location import LocalPath, Location, as_location

__all__ = ["GRID_BANDS", "figure_credit", "figure_title", "layers_tif_name", "write_products"]

GRID_BANDS = ("damaged_fraction", "mean_score")
FIGURES = {"map_png": "map.png", "districts_png": "districts.png",
           "score_hist_png": "score_hist.png"}
DAMAGE_SIDECARS = {"damage_aux_xml": "damage.tif.aux.xml", "damage_qml": "damage.qml"}
GRID_UNITS = ("1", "1")  # a fraction of the cell's valid pixels; the method's score


def layers_tif_name(method: str) -> str:
    """The COG of a method's extra layers (`<method>_layers.tif`: pwtt_layers.tif)."""
    return f"{method.replace('-', '_')}_layers.tif"


class _Products:
    """Files written in a local folder (`out`) that end up in `target` (the same folder, or
    the s3:// prefix they are uploaded to)."""

    def __init__(self, target: Location, out: LocalPath, rewrite: bool) -> None:
        self.target, self.out, self.rewrite = target, out, rewrite
        self.written: dict[str, Location] = {}
        self.changed = False  # a file was (re)written: the catalog's checksums are due

    def final(self, path: Path) -> Location:
        return self.target.join(path.name)

    def publish(self, path: Path) -> None:
        self.final(path).upload_from(path)

    def publish_as(self, path: Path, relative: str) -> None:
        """Upload `path` to `relative` under the target (a file in a subfolder: stac/)."""
        if self.target.is_remote:
            self.target.join(relative).upload_from(path)

    def due(self, path: Path) -> bool:
        return self.rewrite or not self.final(path).exists()

    def write(self, key: str, path: Path, write: Callable[[], object],
              sidecars: dict[str, str] | None = None) -> None:
        """Write `path` (and the `sidecars` {key: file name} its writer leaves beside it)."""
        files = self._files(key, path, sidecars)
        if self.due(path):
            write()
            self._published(files)
        self.written.update({k: self.final(file) for k, file in files.items()})

    def start_on(self, client: Client | None, key: str, path: Path,
                 write: Callable[[], object], sidecars: dict[str, str] | None = None
                 ) -> Callable[[], None]:
        """`write` as a task on a worker of `client` when one is given and the files stay
        where they are written (a local output.dir, which the workers share: they wrote the
        layers there); else at once, as `write`. Returns the function that waits for it (and
        raises its error)."""
        if client is None or self.target.is_remote or not self.due(path):
            self.write(key, path, write, sidecars)
            return lambda: None
        files = self._files(key, path, sidecars)
        future = client.submit(portable_errors, write, pure=False,
                               key=f"ruinmap-product-{path.name}-{uuid4().hex}")

        def finish() -> None:
            future.result()
            self._published(files)
            self.written.update({k: self.final(file) for k, file in files.items()})

        return finish

    def _files(self, key: str, path: Path, sidecars: dict[str, str] | None) -> dict[str, Path]:
        return {key: path, **{k: path.with_name(n) for k, n in (sidecars or {}).items()}}

    def _published(self, files: dict[str, Path]) -> None:
        for file in files.values():
            self.publish(file)
        self.changed = True


def write_products(result: JobResult, plan: JobPlan, polygons: Polygons, *,
                   rewrite: bool, client: Client | None = None) -> dict[str, Location]:
    """Write every product of `result`; return {name: local path or s3:// URL}.

    With `rewrite` every file is written; otherwise only missing ones. The job's signature is
    recorded in its work folder once all are written (`workdir.products_are_current`).
    With `client`, the full-size COGs (score, damage, the method's layers) are written by
    tasks on its workers, one each, while this process draws the figures (a local output.dir
    only: an s3:// one is staged here).
    """
    target = as_location(plan.spec.output.dir)
    with target.staging() as out:
        products = _Products(target, out, rewrite)
        _write_all(result, plan, polygons, products, client)
    return products.written


def _block_side(plan: JobPlan) -> int:
    # a raster no larger than one block trips the COG check of `write_cog`: use smaller blocks
    block = 512
    while block > 16 and block >= min(plan.grid.height, plan.grid.width):
        block //= 2
    return block


def _write_all(result: JobResult, plan: JobPlan, polygons: Polygons,
               products: _Products, client: Client | None) -> None:
    started = time.perf_counter()
    spec, params, grid, out = plan.spec, plan.params, plan.grid, products.out
    transform = grid.affine
    tags = {"method": spec.method, "threshold": params.threshold,
            "class_thresholds": ",".join(f"{t:g}" for t in params.class_thresholds)}
    block = _block_side(plan)
    score = open_array(plan.layers, "score", "r", plan.signature)
    damage = open_array(plan.layers, "damage", "r", plan.signature)
    districts = gpd.GeoDataFrame(
        result.districts.copy(), geometry=polygons.district_frame.geometry.to_numpy(),
        crs=polygons.district_frame.crs,
    )

    title = figure_title(spec, plan.store.sources)
    credit = figure_credit(spec, plan.store.sources)
    score_label = f"damage score ({spec.method})"

    def draw_map() -> None:
        preview, factor = downsample_for_preview(damage)
        buildings = polygons.building_frame
        render_map(
            out / "map.png", score_preview=preview,
            preview_transform=preview_transform(transform, factor), crs=grid.crs_wkt,
            districts=districts, class_names=params.class_labels, title=title,
            subtitle=imagery_dates_text(plan.store.sources), credit=credit,
            buildings=None if buildings is None else buildings.geometry,
            caption=f"method {spec.method}, damaged where score > {params.threshold:g}; "
                    f"districts from {plan.files.districts.path.name}"
                    + (f"; {plan.mask.describe().split(';')[0]}" if plan.mask.is_applied
                       else ""),
            masked=plan.mask.is_applied,
        )  # fmt: skip

    def draw_figures() -> None:
        if products.due(out / "map.png"):
            draw_map()
        if products.due(out / "districts.png"):
            render_district_chart(out / "districts.png", result.districts,
                                  title=f"{title}: by district", credit=credit)
        if products.due(out / "score_hist.png"):
            render_score_histogram(
                out / "score_hist.png", score_histogram(score), threshold=params.fixed_threshold,
                class_edges=params.class_thresholds, class_names=params.class_labels,
                score_label=score_label, title=f"{title}: score of every pixel",
                credit=credit)

    # The full-size COGs first, on the workers when there are some (each reads its layer
    # window by window from the store), side by side and beside the figures drawn here.
    layers, signature = plan.layers, plan.signature
    cogs_written = [
        products.start_on(client, "score_tif", out / "score.tif", partial(
            _layer_cog, layers, "score", signature, out / "score.tif", transform=transform,
            crs=grid.crs_wkt, nodata=float("nan"), dtype=np.float32,
            description="damage score", tags=tags, block=block)),
        products.start_on(client, "damage_tif", out / "damage.tif", partial(
            _layer_cog, layers, "damage", signature, out / "damage.tif", transform=transform,
            crs=grid.crs_wkt, nodata=255, dtype=np.uint8, description="damage class",
            class_names=params.class_labels, tags=tags, block=block),
            sidecars=DAMAGE_SIDECARS),
    ]
    extra = extra_layers(params)
    if extra:
        layers_tif = out / layers_tif_name(spec.method)
        cogs_written.append(products.start_on(client, "layers_tif", layers_tif, partial(
            _layers_cog, layers, [layer.name for layer in extra], signature, layers_tif,
            names=[layer.name for layer in extra], units=[layer.units for layer in extra],
            transform=transform, crs=grid.crs_wkt,
            tags={**tags, **{f"{layer.name}_description": layer.long_name
                             for layer in extra}}, block=block)))
    # The map (matplotlib, mostly holding the GIL) is drawn on a thread of its own while the
    # COGs are written (GDAL and the Zarr codecs release the GIL): the products cost about
    # the longer of the two instead of their sum (2.6 -> 1.6 s at 4096^2).
    drawing = ThreadPoolExecutor(1, thread_name_prefix="ruinmap-map")
    map_drawn = drawing.submit(draw_figures)
    drawing.shutdown(wait=False)
    # The COGs before the other files, as when they were written here: the larger files are
    # the ones to meet a full disk, and every task is done before an error is raised.
    _finish_all(cogs_written)
    products.write("grid_tif", out / "grid.tif", lambda: write_bands_cog(
        out / "grid.tif", [result.grid_fraction, result.grid_mean], GRID_BANDS,
        units=GRID_UNITS, transform=plan.cell_grid.affine, crs=grid.crs_wkt,
        tags={**tags, "cell_px": plan.cell_px, "cell_size_m": spec.grid.cell_size}),
        sidecars={"grid_qml": "grid.qml"})

    if products.due(out / "districts.parquet") or products.due(out / "districts.gpkg"):
        tables = write_district_tables(districts, out,
                                       admin_level=spec.districts.admin_level)
        for path in tables.values():
            products.publish(Path(path))
        products.written.update({key: products.final(Path(path)) for key, path in tables.items()})
        products.changed = True
    else:
        products.written.update({f"districts_{ext}": products.final(out / f"districts.{ext}")
                                 for ext in ("parquet", "geojson", "csv", "gpkg")})
        products.written["districts_hxl"] = products.final(out / "districts_hxl.csv")
    if dating_enabled(params):
        # before the building tables: they gain the damage_date columns
        for key, path in dating_products(plan, polygons, result.buildings, out).items():
            products.publish(path)
            products.written[key] = products.final(path)
        products.changed = True
    if result.buildings is not None:
        buildings = result.buildings
        products.write("buildings_parquet", out / "buildings.parquet",
                       lambda: write_building_table(buildings, out))
        products.write("buildings_gpkg", out / "buildings.gpkg",
                       lambda: write_building_geopackage(buildings, out))
    if spec.grid.h3_resolution is not None:
        _write_h3(plan, result, products, score)

    map_drawn.result()
    for key, name in FIGURES.items():
        if products.due(out / name):  # due: rewriting, or not yet at the target
            products.publish(out / name)
            products.changed = True
        products.written[key] = products.final(out / name)

    result.timings["products_s"] = time.perf_counter() - started
    products.written["job_json"] = products.final(out / "job.json")
    catalog = {key: products.target.join(name) for key, name in stac_names(plan).items()}
    if products.due(out / "job.json"):
        _write_report(result, plan, {**products.written, **catalog}, out)
        products.publish(out / "job.json")
        products.changed = True
    if products.changed or any(not location.exists() for location in catalog.values()):
        for path in write_catalog(plan, products.written, _input_records(plan), out):
            products.publish_as(path, str(path.relative_to(out)))
    products.written.update(catalog)
    mark_products_current(plan.work_dir, plan.signature)  # last: all are current


def _finish_all(finishers: list[Callable[[], None]]) -> None:
    """Wait for every started write; then raise the first one's error, if any (a task left
    running could leave its temporary behind when the cluster stops)."""
    errors = []
    for finish in finishers:
        try:
            finish()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def _layer_cog(layers: Location, name: str, signature: str, dst: Path, **options: Any) -> Path:
    """`write_cog` of the layer `name` of the job's store (on a worker or here)."""
    return write_cog(open_array(layers, name, "r", signature), dst, **options)


def _layers_cog(layers: Location, layer_names: list[str], signature: str, dst: Path,
                **options: Any) -> Path:
    """`write_layers_cog` of the layers `layer_names` of the job's store (on a worker or
    here)."""
    return write_layers_cog([open_array(layers, name, "r", signature) for name in layer_names],
                            dst, **options)


def figure_title(spec: JobSpec, sources: list[dict[str, Any]]) -> str:
    """`output.title`, or "Damage detected (<method>)" with the last post-event date."""
    if spec.output.title:
        return spec.output.title
    post = imagery_dates(sources).get("post")
    return f"Damage detected ({spec.method})" + (f" by {post.last}" if post else "")


def figure_credit(spec: JobSpec, sources: list[dict[str, Any]]) -> str:
    """`output.credit`, or the imagery's credit line (`outputs.captions.default_credit`)."""
    return spec.output.credit or default_credit(sources)


def _write_h3(plan: JobPlan, result: JobResult, products: _Products, score: object) -> None:
    out = products.out

    def write() -> None:
        grid = h3_grid(score, plan.grid.affine, plan.grid.crs_wkt,  # type: ignore[arg-type]
                       int(plan.spec.grid.h3_resolution or 0), plan.params.fixed_threshold,
                       buildings=result.buildings)
        write_h3_grid(grid, out)
        products.publish(out / "grid_h3.parquet")

    products.write("grid_h3_gpkg", out / GRID_H3_GPKG, write)
    products.written["grid_h3_parquet"] = products.final(out / "grid_h3.parquet")


_PRODUCT_KEYS = ("product", "polarisation", "scale", "mask", "nodata_fraction",
                 "masked_fraction", "orbit", "pass_direction", "radiometry")


def _input_records(plan: JobPlan) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for source in plan.store.sources:
        path = str(source.get("path"))  # a local path or an s3:// URL, as ingested
        record = {"path": path, "size": source.get("size_bytes"),
                  "sha256": source.get("sha256"), "side": source.get("side"),
                  "date": source.get("time")}
        # what the ingest made of it: product, scale decision and its evidence, mask, shares
        record.update({key: source[key] for key in _PRODUCT_KEYS if key in source})
        if source.get("read_in_place"):  # the tiles read the file itself, never a copy
            record["read_in_place"] = True
        records.append(record)
    records.append(input_record(plan.files.districts.path))
    if plan.files.buildings is not None:
        records.append(input_record(plan.files.buildings.path))
    if plan.mask.kind == "raster" and plan.mask.path is not None:
        records.append(input_record(plan.mask.path))
    return records


def _write_report(result: JobResult, plan: JobPlan, written: dict[str, Location],
                  out: Path) -> None:
    spec = plan.spec
    records = _input_records(plan)
    table = result.districts
    write_job_report(
        out / "job.json",
        spec=spec.to_json_dict(),
        # as applied: an automatic threshold chosen, its class edges (the spec keeps the rule)
        parameters=plan.params.model_dump(mode="json"),
        inputs=records,
        timings=result.timings,
        outputs={**{k: str(v) for k, v in written.items()}, "store": str(result.store),
                 "layers": str(plan.layers)},
        cluster={"address": spec.cluster.address, "dashboard": result.dashboard},
        extra={"summary": {
            "tiles": result.tiles_total,
            "tiles_run": result.tiles_run,
            "valid_km2": float(np.nansum(table["valid_km2"])),
            "damaged_km2": float(np.nansum(table["damaged_km2"])),
            "built_km2": (float(np.nansum(table["built_km2"])) if plan.mask.is_applied
                          else None),
            "post_end": max((str(s.get("time")) for s in plan.store.sources
                             if s.get("side") == "post" and s.get("time")), default=None),
        }, "count_intervals": result.count_intervals, "warnings": result.warnings,
            "threshold_choice": result.threshold_choice,
            "mask": {**plan.mask.to_json(), "description": plan.mask.describe()},
            # monitoring: each run that made the post-event series, the dates it added
            "runs": job_runs(plan)},
    )
