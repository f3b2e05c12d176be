"""The files a finished job leaves in `output.dir`, written with `ruinmap.cluster.outputs`.

score.tif, damage.tif (COGs read window by window from the store), grid.tif (a two-band COG:
damaged fraction and mean score per cell), districts.parquet/.geojson/.csv, buildings.parquet
(when footprints were given), map.png and job.json. Every file is written atomically (a reader
never sees half of one). When a run computed no tile (a re-run of a finished job) and the
files were last written for this same job, files that exist are left alone, so the re-run
rewrites nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.shutil
import zarr
from affine import Affine
from rasterio.io import MemoryFile

from ruinmap.cluster import objectstore
from ruinmap.cluster.grid import Grid
from ruinmap.cluster.outputs import (
    atomic_path,
    downsample_for_preview,
    input_record,
    preview_transform,
    render_map,
    write_building_table,
    write_cog,
    write_district_tables,
    write_job_report,
    write_text_atomic,
)
from ruinmap.cluster.spec_files import SpecFiles
from ruinmap.cluster.store import read_store_attrs

if TYPE_CHECKING:
    from ruinmap.cluster.pipeline import JobResult
    from ruinmap.cluster.rasterize import JobInputs

__all__ = ["PRODUCTS_MARKER", "are_current", "write_grid_cog", "write_products"]

PRODUCTS_MARKER = "products.json"

_GRID_BANDS = ("damaged_fraction", "mean_score")


def write_grid_cog(dst: Path, fraction: np.ndarray, mean: np.ndarray, transform: Affine,
                   crs_wkt: str, tags: dict[str, Any]) -> Path:
    """grid.tif: band 1 damaged fraction, band 2 mean score (float32, NaN nodata), a COG."""
    rows, cols = fraction.shape
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": 2, "dtype": "float32",
               "crs": crs_wkt, "transform": transform, "nodata": float("nan")}
    with MemoryFile() as memory, memory.open(**profile) as mem:
        mem.write(np.stack([fraction, mean]).astype(np.float32))
        mem.descriptions = _GRID_BANDS
        mem.update_tags(**{k: str(v) for k, v in tags.items()})
        with atomic_path(dst) as tmp:
            rasterio.shutil.copy(mem, tmp, driver="COG", compress="deflate",
                                 predictor="3", blocksize="256")
    return dst


def are_current(work_dir: Path | str, signature: str) -> bool:
    """Whether the products were last written, completely, by the job with `signature`."""
    try:
        marker = objectstore.read_bytes(objectstore.join(work_dir, PRODUCTS_MARKER))
        return bool(json.loads(marker)["signature"] == signature)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_products(
    result: JobResult, *, inputs: JobInputs, grid: Grid, cell_px: int, files: SpecFiles,
    work_dir: Path | str, signature: str, rewrite: bool,
) -> dict[str, Path | str]:
    """Write every product of `result`; return {name: path or s3:// URL}.

    With `rewrite` every file is written; otherwise only missing ones (see `are_current`).
    The job's `signature` is recorded in `work_dir` once all are written. For an s3://
    output.dir each file is written (atomically) to a local temporary folder, then uploaded
    in one PUT, so a reader sees a whole file or none.
    """
    target = objectstore.as_location(result.spec.output.dir)
    if isinstance(target, Path):
        return _write_products(result, inputs=inputs, grid=grid, cell_px=cell_px, files=files,
                               work_dir=work_dir, signature=signature, rewrite=rewrite,
                               out=target, remote=None)
    with objectstore.local_staging("ruinmap-products-") as staging:
        return _write_products(result, inputs=inputs, grid=grid, cell_px=cell_px, files=files,
                               work_dir=work_dir, signature=signature, rewrite=rewrite,
                               out=staging, remote=target)


def _write_products(
    result: JobResult, *, inputs: JobInputs, grid: Grid, cell_px: int, files: SpecFiles,
    work_dir: Path | str, signature: str, rewrite: bool, out: Path, remote: str | None,
) -> dict[str, Path | str]:
    started = time.perf_counter()
    marker = objectstore.join(work_dir, PRODUCTS_MARKER)
    spec = result.spec
    params = spec.method_params
    store = result.store
    written: dict[str, Path | str] = {}

    def final(path: Path) -> Path | str:
        """Where a file written in `out` ends up: itself, or its object under `remote`."""
        return path if remote is None else f"{remote}/{path.name}"

    def publish(path: Path) -> None:
        if remote is not None:
            objectstore.put_file(path, f"{remote}/{path.name}")
    transform = Affine(*grid.transform)
    tags = {"method": spec.method, "threshold": params.threshold,
            "class_thresholds": ",".join(f"{t:g}" for t in params.class_thresholds)}

    # a raster no larger than one block trips the COG check of `write_cog`: use smaller blocks
    block = 512
    while block > 16 and block >= min(grid.height, grid.width):
        block //= 2

    def due(path: Path) -> bool:
        return rewrite or not objectstore.exists(final(path))

    def product(key: str, path: Path, write: Callable[[], object]) -> None:
        if due(path):
            write()
            publish(path)
        written[key] = final(path)

    score = zarr.open_array(store=objectstore.zarr_store(store), path="score", mode="r")
    damage = zarr.open_array(store=objectstore.zarr_store(store), path="damage", mode="r")
    districts = gpd.GeoDataFrame(
        result.districts.copy(), geometry=inputs.district_frame.geometry.to_numpy(),
        crs=inputs.district_frame.crs,
    )

    def draw_map() -> None:
        preview, factor = downsample_for_preview(damage)
        render_map(
            out / "map.png", score_preview=preview,
            preview_transform=preview_transform(transform, factor), crs=grid.crs_wkt,
            districts=districts, class_names=params.class_labels,
            title=f"Damage ({spec.method}) - {objectstore.name_of(spec.output.dir)}",
            caption=f"method {spec.method}, damaged where score > {params.threshold:g}; "
                    f"districts from {files.districts.path.name}",
        )  # fmt: skip

    # The map (matplotlib, mostly holding the GIL) is drawn on a thread of its own while the
    # COGs are written (GDAL and the Zarr codecs release the GIL): the products cost about
    # the longer of the two instead of their sum (2.6 -> 1.6 s at 4096^2).
    drawing = ThreadPoolExecutor(1, thread_name_prefix="ruinmap-map")
    map_drawn = drawing.submit(draw_map) if due(out / "map.png") else None
    drawing.shutdown(wait=False)
    product("score_tif", out / "score.tif", lambda: write_cog(
        score, out / "score.tif", transform=transform, crs=grid.crs_wkt, nodata=float("nan"),
        dtype=np.float32, description="damage score", tags=tags, block=block))
    product("damage_tif", out / "damage.tif", lambda: write_cog(
        damage, out / "damage.tif", transform=transform, crs=grid.crs_wkt, nodata=255,
        dtype=np.uint8, description="damage class", class_names=params.class_labels, tags=tags,
        block=block))
    cell_transform = transform @ Affine.scale(cell_px)
    product("grid_tif", out / "grid.tif", lambda: write_grid_cog(
        out / "grid.tif", result.grid_fraction, result.grid_mean, cell_transform, grid.crs_wkt,
        {**tags, "cell_px": cell_px, "cell_size_m": spec.grid.cell_size}))

    if due(out / "districts.parquet"):
        tables = write_district_tables(districts, out)
        for path in tables.values():
            publish(Path(path))
        written.update({key: final(Path(path)) for key, path in tables.items()})
    else:
        written.update({f"districts_{ext}": final(out / f"districts.{ext}")
                        for ext in ("parquet", "geojson", "csv")})
    if result.buildings is not None:
        buildings = result.buildings
        product("buildings_parquet", out / "buildings.parquet",
                lambda: write_building_table(buildings, out))

    if map_drawn is not None:
        map_drawn.result()
        publish(out / "map.png")
    written["map_png"] = final(out / "map.png")

    result.timings["products_s"] = time.perf_counter() - started
    written["job_json"] = final(out / "job.json")
    if due(out / "job.json"):
        _write_report(result, files, written, out)
        publish(out / "job.json")
    body = json.dumps({"signature": signature})  # last: all are current
    if isinstance(marker, str):
        objectstore.put_bytes(marker, body.encode())
    else:
        write_text_atomic(marker, body)
    return written


def _write_report(result: JobResult, files: SpecFiles, written: dict[str, Path | str],
                  out: Path) -> None:
    spec = result.spec
    attrs = read_store_attrs(result.store)
    records = []
    for source in attrs.get("sources", []):
        path = str(source.get("path"))  # a local path or an s3:// URL, as ingested
        records.append({"path": path, "size": source.get("size_bytes"),
                        "sha256": source.get("sha256"), "side": source.get("side")})
    records.append(input_record(files.districts.path))
    if files.buildings is not None:
        records.append(input_record(files.buildings.path))
    table = result.districts
    write_job_report(
        out / "job.json",
        spec=spec.to_json_dict(),
        parameters=spec.method_params.model_dump(mode="json"),
        inputs=records,
        timings=result.timings,
        outputs={**{k: str(v) for k, v in written.items()}, "store": str(result.store)},
        cluster={"address": spec.cluster.address, "dashboard": result.dashboard},
        extra={"summary": {
            "tiles": result.tiles_total,
            "tiles_run": result.tiles_run,
            "valid_km2": float(np.nansum(table["valid_km2"])),
            "damaged_km2": float(np.nansum(table["damaged_km2"])),
        }},
    )
