"""The damage-mapping job: a job spec in, the score, classes, tables and grids out.

`run_job(spec)`:

1. checks every file the spec names (`validate_spec_files`) and reads the district and
   building polygons, so a bad spec fails before any work starts;
2. ingests the imagery into `output.dir/store.zarr` (or uses `inputs.store`), resuming an
   unfinished ingest;
3. plans one tile per store shard (smaller ones for small scenes, `tiles.tile_size`) and
   sends each pending tile to the cluster with the polygons it needs (`tiles.run_tile`): each
   writes `score` and `damage` into the store, saves its partial aggregates and records
   itself in the job's ledger (`<output.dir>/.ruinmap-job/`);
4. merges the partials of every tile (this run's and earlier runs') into the per-district
   table, per-building scores and the damage grid, and writes the products (`products`).

A re-run with the same spec resumes: recorded tiles are skipped. Changing the method, its
parameters, the imagery, the polygons or the grid starts the tiles over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import zarr
from distributed import Client

from ruinmap.cluster import objectstore
from ruinmap.cluster.aggregate import (
    building_scores,
    district_table,
    grid_layers,
    merge_partials,
    score_edges,
)
from ruinmap.cluster.config import resolve_address
from ruinmap.cluster.connect import open_client
from ruinmap.cluster.grid import Grid
from ruinmap.cluster.ingest import DEFAULT_CHUNK, IngestOptions, ingest, plan_inputs
from ruinmap.cluster.methods import ScoreContext, check_bands, halo_px
from ruinmap.cluster.progress import track
from ruinmap.cluster.rasterize import (
    metres_per_unit,
    prepare_job,
    read_inputs,
    tile_vectors,
)
from ruinmap.cluster.spec import CvaParams, JobSpec, PwttParams
from ruinmap.cluster.spec_files import SpecFiles, validate_spec_files
from ruinmap.cluster.store import open_store, read_store_attrs, time_dim, validate_store
from ruinmap.cluster.stragglers import wait_for_stragglers
from ruinmap.cluster.tiles import TileJob, load_tile_partial, plan_tiles, run_tile, tile_size

log = logging.getLogger(__name__)

__all__ = ["STORE_NAME", "WORK_DIR", "JobResult", "date_orbits", "run_job"]

STORE_NAME = "store.zarr"
WORK_DIR = ".ruinmap-job"
OUTPUT_ARRAYS = {"score": (np.float32, np.nan), "damage": (np.uint8, 255)}


@dataclass
class JobResult:
    """What a run did and produced."""

    spec: JobSpec
    store: Path | str  # a local path, or an s3:// URL
    districts: pd.DataFrame
    buildings: gpd.GeoDataFrame | None
    grid_fraction: np.ndarray
    grid_mean: np.ndarray
    tiles_total: int
    tiles_run: int
    files: dict[str, Path | str] = field(default_factory=dict)  # s3:// URLs for s3 outputs
    timings: dict[str, float] = field(default_factory=dict)
    dashboard: str | None = None


# ---------------------------------------------------------------------------------------------
# the store


def _ensure_store(
    spec: JobSpec, files: SpecFiles, client: Client, ingest_options: IngestOptions | None,
    progress: bool | None,
) -> Path | str:
    if files.store is not None:
        validate_store(files.store)
        return files.store
    out = objectstore.join(objectstore.as_location(spec.output.dir), STORE_NAME)
    ingest([str(p) for p in files.pre], [str(p) for p in files.post], out,
           ingest_options or IngestOptions(), client=client, progress=progress)
    return out


def _orbit_of_file(path: str, params: PwttParams) -> int | None:
    orbit = params.orbit_from_spec(path)
    if orbit is not None or not objectstore.is_file(path):
        return orbit
    remote = objectstore.is_url(path)
    try:
        with rasterio.Env(**objectstore.gdal_options()) if remote else contextlib.nullcontext():
            with rasterio.open(path) as src:
                tags = src.tags()
    except rasterio.errors.RasterioIOError:
        return None
    for name in params.orbit_tags:
        with contextlib.suppress(KeyError, ValueError):
            return int(float(tags[name]))
    return None


def date_orbits(attrs: Mapping[str, Any], side: str, count: int, params: Any) -> tuple[int, ...]:
    """Relative orbit of each date of a side: spec globs, else file tags, else 0 (one orbit)."""
    orbits = [0] * count
    if not isinstance(params, PwttParams):
        return tuple(orbits)
    found: dict[int, int] = {}
    for source in attrs.get("sources", []):
        if source.get("side") != side or source.get("time_index") in found:
            continue
        orbit = source.get("orbit")
        if orbit is None:
            orbit = _orbit_of_file(str(source.get("path", "")), params)
        if orbit is not None:
            found[int(source["time_index"])] = int(orbit)
    for t, orbit in found.items():
        if 0 <= t < count:
            orbits[t] = orbit
    return tuple(orbits)


def _band_scale(store: Path | str, n_bands: int, shard: int) -> tuple[float, ...]:
    """Pooled (pre and post) standard deviation of each band over the whole image."""
    import dask
    import dask.array as da

    stds = []
    for band in range(n_bands):
        parts = [da.from_zarr(objectstore.zarr_store(store), component=side,
                              chunks=(1, 1, shard, shard))[:, band]
                 .ravel() for side in ("pre", "post")]
        stds.append(da.nanstd(da.concatenate(parts)))
    return tuple(float(v) for v in dask.compute(*stds))


def _consolidate(store: Path | str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(objectstore.zarr_store(store), zarr_format=3)


def _create_outputs(store: Path | str, grid: Grid, chunk: int, shard: int) -> None:
    """(Re)create the empty `score` and `damage` arrays: dims (y, x), the input's shards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (dtype, fill) in OUTPUT_ARRAYS.items():
            if isinstance(store, str):
                objectstore.remove_prefix(f"{store}/{name}")
            else:
                shutil.rmtree(store / name, ignore_errors=True)
            zarr.create_array(
                store=objectstore.zarr_store(store), name=name,
                shape=(grid.height, grid.width), dtype=dtype,
                chunks=(chunk, chunk), shards=(shard, shard), fill_value=fill,
                dimension_names=("y", "x"), attributes={"grid_mapping": "spatial_ref"},
                compressors=[zarr.codecs.ZstdCodec(level=1)], overwrite=True,
            )  # fmt: skip
    _consolidate(store)


def _write_grid(store: Path | str, grid: Grid, cell_px: int, fraction: np.ndarray,
                mean: np.ndarray) -> None:
    """The damage grid as arrays grid_damaged_fraction and grid_mean_score (grid_y, grid_x),
    with cell-centre coordinates and a `grid_spatial_ref` holding the cells' GeoTransform.

    Written with zarr directly: xarray's append mode would replace the root attributes.
    """
    a, b, c, d, e, f = grid.transform
    rows, cols = fraction.shape
    arrays: dict[str, tuple[np.ndarray, tuple[str, ...], dict[str, Any]]] = {
        "grid_x": (c + (np.arange(cols) + 0.5) * a * cell_px, ("grid_x",), {}),
        "grid_y": (f + (np.arange(rows) + 0.5) * e * cell_px, ("grid_y",), {}),
        "grid_spatial_ref": (np.array(0, np.int64), (), {
            "crs_wkt": grid.crs_wkt, "spatial_ref": grid.crs_wkt,
            "GeoTransform": " ".join(repr(float(v))
                                     for v in (c, a * cell_px, b, f, d, e * cell_px)),
        }),
    }  # fmt: skip
    layer_attrs = {"grid_mapping": "grid_spatial_ref", "cell_px": cell_px,
                   "coordinates": "grid_spatial_ref"}
    arrays["grid_damaged_fraction"] = (fraction, ("grid_y", "grid_x"), layer_attrs)
    arrays["grid_mean_score"] = (mean, ("grid_y", "grid_x"), layer_attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (data, dims, attrs) in arrays.items():
            fill = np.nan if data.dtype.kind == "f" else 0
            array = zarr.create_array(
                store=objectstore.zarr_store(store), name=name, shape=data.shape,
                dtype=data.dtype,
                fill_value=fill, dimension_names=dims, attributes=attrs, overwrite=True,
            )
            array[...] = data
    _consolidate(store)


# ---------------------------------------------------------------------------------------------
# the run


def _signature(spec: JobSpec, files: SpecFiles, attrs: Mapping[str, Any], tile_px: int) -> str:
    def stat(path: Path | None) -> list[Any]:
        if path is None:
            return []
        info = path.stat()
        return [str(path), info.st_size, info.st_mtime_ns]

    body = {
        "method": spec.method,
        "params": spec.method_params.model_dump(mode="json"),
        "store_id": attrs.get("store_id"),
        "districts": [stat(files.districts.path), spec.districts.model_dump(mode="json")],
        "buildings": [stat(files.buildings.path if files.buildings else None),
                      spec.buildings.model_dump(mode="json") if spec.buildings else None],
        "cell_size": spec.grid.cell_size,
        "tile_px": tile_px,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _prepare_work_dir(work_dir: Path | str, signature: str, store: Path | str, grid: Grid,
                      chunk: int, shard: int) -> None:
    """Keep the ledger and partials of the same job; start over for any other."""
    marker = objectstore.join(work_dir, "job.json")
    same = False
    with contextlib.suppress(OSError, ValueError):
        same = json.loads(objectstore.read_bytes(marker)).get("signature") == signature
    arrays_exist = all(objectstore.is_file(objectstore.join(store, name, "zarr.json"))
                       for name in OUTPUT_ARRAYS)
    if same and arrays_exist:
        return
    body = json.dumps({"signature": signature})
    if isinstance(work_dir, str):
        objectstore.remove_prefix(work_dir)
        _create_outputs(store, grid, chunk, shard)
        objectstore.put_bytes(str(marker), body.encode())
        return
    shutil.rmtree(work_dir, ignore_errors=True)
    _create_outputs(store, grid, chunk, shard)
    (work_dir / "partials").mkdir(parents=True)
    Path(marker).write_text(body)


@contextlib.contextmanager
def _client(client: Client | None, address: str) -> Iterator[Client]:
    if client is not None:
        yield client
    else:
        with open_client(address) as own:
            yield own


def _pixel_size_m(grid: Grid) -> float:
    _, bottom, _, top = grid.bounds
    scale = metres_per_unit(grid.crs_wkt, (bottom + top) / 2)
    res_x, res_y = grid.resolution
    return float(np.sqrt(res_x * res_y)) * scale


def run_job(
    spec: JobSpec,
    *,
    client: Client | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
    ingest_options: IngestOptions | None = None,
    write_products: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> JobResult:
    """Run (or resume) the job `spec` on `client`, or on `scheduler` / the spec's cluster.

    `on_progress(done, total)` is called with the tiles finished (recorded ones included) once
    the tiles are planned and again as each tile finishes; an exception it raises stops the
    job (the job service uses this to dismiss a running job).

    Raises SpecError / InputError for a bad spec or inputs (before any work), StoreError for
    an unusable store, ClusterError when the cluster cannot be used.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    files = validate_spec_files(spec)
    frames = read_inputs(spec, files)  # bad polygons fail before any work
    if files.store is not None:
        bands = tuple(read_store_attrs(files.store).get("bands", ()))
    else:  # headers only: the bands the ingest will write
        _, bands, _ = plan_inputs([str(p) for p in files.pre], [str(p) for p in files.post],
                                  ingest_options or IngestOptions())
    check_bands(spec.method_params, bands)
    output_dir = objectstore.as_location(spec.output.dir)
    if isinstance(output_dir, Path):
        output_dir.mkdir(parents=True, exist_ok=True)
    # --scheduler, else the job's [cluster] address, else Dask config ruinmap.cluster.address
    address = resolve_address(scheduler, spec.cluster.given_address)
    with _client(client, address) as cl:
        dashboard = None
        with contextlib.suppress(Exception):
            dashboard = str(cl.dashboard_link) if cl.dashboard_link else None
        store = _ensure_store(spec, files, cl, ingest_options, progress)
        timings["ingest_s"] = time.perf_counter() - started
        attrs = read_store_attrs(store)
        grid = Grid.from_attrs(attrs["grid"])
        inputs = prepare_job(spec, frames, grid)
        params = spec.method_params
        chunk = int(attrs.get("chunks", [1, 1, DEFAULT_CHUNK])[-1])
        shard = int(attrs.get("shards", [1, 1, chunk])[-1])
        pixel_m = _pixel_size_m(grid)
        ds = open_store(store)
        bands = tuple(str(b) for b in ds["band"].values)
        n_pre, n_post = ds.sizes[time_dim("pre")], ds.sizes[time_dim("post")]
        ds.close()
        context = ScoreContext(
            bands=bands, pre_orbits=date_orbits(attrs, "pre", n_pre, params),
            post_orbits=date_orbits(attrs, "post", n_post, params), pixel_size_m=pixel_m,
        )  # fmt: skip
        if isinstance(params, CvaParams) and params.standardize:
            scale = _band_scale(store, len(bands), shard)
            context = ScoreContext(**{**context.__dict__, "band_scale": scale})
        cell_px = max(1, round(spec.grid.cell_size / pixel_m))
        # the output arrays are sharded by tile, so no two tasks write the same shard
        tile_px = tile_size(grid.height, grid.width, chunk, shard)
        signature = _signature(spec, files, attrs, tile_px)
        work_dir = objectstore.join(output_dir, WORK_DIR)
        _prepare_work_dir(work_dir, signature, store, grid, chunk, tile_px)
        edges = score_edges(params.class_thresholds)
        remote = objectstore.is_url(store) or objectstore.is_url(work_dir)
        job = TileJob(
            store=str(store), work_dir=str(work_dir), grid=grid, params=params, context=context,
            halo=halo_px(params, pixel_m), cell_px=cell_px,
            n_districts=len(inputs.district_ids), edges=edges, signature=signature,
            storage_options=objectstore.storage_options() if remote else {},
        )  # fmt: skip
        tiles = plan_tiles(grid.height, grid.width, tile_px)
        key_prefix = f"ruinmap-tile-{signature}-"
        wait_for_stragglers(cl, key_prefix)  # a crashed run's tiles must not race this one's
        ledger = job.ledger
        ledger.clean()
        done = ledger.done()
        pending = [t for t in tiles if t.key not in done]
        t0 = time.perf_counter()
        finished = len(tiles) - len(pending)
        if on_progress is not None:
            on_progress(finished, len(tiles))
        if pending:
            vectors = tile_vectors(pending, grid, inputs)
            [job_future] = cl.scatter([job], broadcast=True)
            futures = [
                cl.submit(run_tile, job_future, tile, vec, key=f"{key_prefix}{tile.iy}-{tile.ix}",
                          pure=False, retries=1)
                for tile, vec in zip(pending, vectors, strict=True)
            ]
            for future in track(futures, "tiles", enabled=progress):
                log.debug("tile timings %s", future.result())
                finished += 1
                if on_progress is not None:
                    on_progress(finished, len(tiles))
        timings["tiles_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_buildings = 0 if inputs.building_geoms is None else len(inputs.building_geoms)
    grid_shape = (-(-grid.height // cell_px), -(-grid.width // cell_px))
    merged = merge_partials(
        (load_tile_partial(job, t) for t in tiles),
        n_districts=len(inputs.district_ids), n_classes=len(params.class_thresholds) + 1,
        edges=edges, n_buildings=n_buildings, grid_shape=grid_shape,
    )  # fmt: skip
    buildings = None
    b_scores = None
    if inputs.building_frame is not None and inputs.building_scored is not None:
        b_scores = building_scores(merged, threshold=params.threshold,
                                   class_thresholds=params.class_thresholds,
                                   scored=inputs.building_scored)
        buildings = inputs.building_frame.copy()
        for column in b_scores.columns:
            buildings[column] = b_scores[column].array
        district_of = inputs.building_district
        assert district_of is not None
        buildings["district_id"] = np.where(
            district_of >= 0, inputs.district_ids[np.maximum(district_of, 0)], None)
    table = district_table(
        merged, ids=inputs.district_ids, names=inputs.district_names,
        area_km2=inputs.district_area_km2, pixel_area_m2=pixel_m**2,
        class_labels=params.class_labels,
        building_district=inputs.building_district,
        building_damaged=None if b_scores is None else b_scores["damaged"],
    )  # fmt: skip
    fraction, mean = grid_layers(merged)
    timings["merge_s"] = time.perf_counter() - t0
    result = JobResult(
        spec=spec, store=store, districts=table, buildings=buildings, grid_fraction=fraction,
        grid_mean=mean, tiles_total=len(tiles), tiles_run=len(pending), timings=timings,
        dashboard=dashboard,
    )  # fmt: skip
    if write_products:
        from ruinmap.cluster.products import are_current
        from ruinmap.cluster.products import write_products as write_all

        # a re-run of a finished job whose products are all written rewrites nothing
        rewrite = bool(pending) or not are_current(work_dir, signature)
        if rewrite or not objectstore.is_file(
                objectstore.join(store, "grid_mean_score", "zarr.json")):
            _write_grid(store, grid, cell_px, fraction, mean)
        result.files = write_all(result, inputs=inputs, grid=grid, cell_px=cell_px,
                                 files=files, work_dir=work_dir, signature=signature,
                                 rewrite=rewrite)
    timings["total_s"] = time.perf_counter() - started
    return result
