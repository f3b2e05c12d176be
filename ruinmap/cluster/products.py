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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.shutil
import zarr
from affine import Affine
from rasterio.io import MemoryFile

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
from ruinmap.cluster.spec import SpecFiles
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


def are_current(work_dir: Path, signature: str) -> bool:
    """Whether the products were last written, completely, by the job with `signature`."""
    try:
        return bool(json.loads((work_dir / PRODUCTS_MARKER).read_text())["signature"] == signature)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_products(
    result: JobResult, *, inputs: JobInputs, grid: Grid, cell_px: int, files: SpecFiles,
    work_dir: Path, signature: str, rewrite: bool,
) -> dict[str, Path]:
    """Write every product of `result`; return {name: path}.

    With `rewrite` every file is written; otherwise only missing ones (see `are_current`).
    The job's `signature` is recorded in `work_dir` once all are written.
    """
    started = time.perf_counter()
    marker = work_dir / PRODUCTS_MARKER
    spec = result.spec
    params = spec.method_params
    out = Path(spec.output.dir)
    store = result.store
    written: dict[str, Path] = {}
    transform = Affine(*grid.transform)
    tags = {"method": spec.method, "threshold": params.threshold,
            "class_thresholds": ",".join(f"{t:g}" for t in params.class_thresholds)}

    # a raster no larger than one block trips the COG check of `write_cog`: use smaller blocks
    block = 512
    while block > 16 and block >= min(grid.height, grid.width):
        block //= 2

    def due(path: Path) -> bool:
        return rewrite or not path.exists()

    score = zarr.open_array(store=str(store), path="score", mode="r")
    damage = zarr.open_array(store=str(store), path="damage", mode="r")
    if due(out / "score.tif"):
        write_cog(score, out / "score.tif", transform=transform, crs=grid.crs_wkt,
                  nodata=float("nan"), dtype=np.float32, description="damage score", tags=tags,
                  block=block)
    written["score_tif"] = out / "score.tif"
    if due(out / "damage.tif"):
        write_cog(damage, out / "damage.tif", transform=transform, crs=grid.crs_wkt,
                  nodata=255, dtype=np.uint8, description="damage class",
                  class_names=params.class_labels, tags=tags, block=block)
    written["damage_tif"] = out / "damage.tif"
    if due(out / "grid.tif"):
        cell_transform = transform @ Affine.scale(cell_px)
        write_grid_cog(out / "grid.tif", result.grid_fraction, result.grid_mean, cell_transform,
                       grid.crs_wkt, {**tags, "cell_px": cell_px,
                                      "cell_size_m": spec.grid.cell_size})
    written["grid_tif"] = out / "grid.tif"

    districts = gpd.GeoDataFrame(
        result.districts.copy(), geometry=inputs.district_frame.geometry.to_numpy(),
        crs=inputs.district_frame.crs,
    )
    if due(out / "districts.parquet"):
        written.update(write_district_tables(districts, out))
    else:
        written.update({f"districts_{ext}": out / f"districts.{ext}"
                        for ext in ("parquet", "geojson", "csv")})
    if result.buildings is not None:
        if due(out / "buildings.parquet"):
            write_building_table(result.buildings, out)
        written["buildings_parquet"] = out / "buildings.parquet"

    if due(out / "map.png"):
        preview, factor = downsample_for_preview(damage)
        render_map(
            out / "map.png", score_preview=preview,
            preview_transform=preview_transform(transform, factor), crs=grid.crs_wkt,
            districts=districts, class_names=params.class_labels,
            title=f"Damage ({spec.method}) - {Path(spec.output.dir).name}",
            caption=f"method {spec.method}, damaged where score > {params.threshold:g}; "
                    f"districts from {files.districts.path.name}",
        )  # fmt: skip
    written["map_png"] = out / "map.png"

    result.timings["products_s"] = time.perf_counter() - started
    if due(out / "job.json"):
        _write_report(result, files, written, out)
    written["job_json"] = out / "job.json"
    write_text_atomic(marker, json.dumps({"signature": signature}))  # last: all are current
    return written


def _write_report(result: JobResult, files: SpecFiles, written: dict[str, Path],
                  out: Path) -> None:
    spec = result.spec
    attrs = read_store_attrs(result.store)
    records = []
    for source in attrs.get("sources", []):
        path = Path(str(source.get("path")))
        records.append({"path": str(path), "size": source.get("size_bytes"),
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
