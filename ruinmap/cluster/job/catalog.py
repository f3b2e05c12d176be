"""The job's STAC catalog (`output.dir/stac/`): what `outputs.stac` is told about a job.

The Collection is named after the output folder, its one Item `<folder>-damage` holds every
product file as an asset (media type, title, roles; raster bands for the GeoTIFFs), the grid,
the method and its parameters, the inputs with their checksums and the imagery dates of
both sides (the store's sources' dates; undated ones are left out).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ruinmap.cluster.job.plan import JobPlan
from ruinmap.cluster.methods import extra_layers
from ruinmap.cluster.outputs.stac import (
    STAC_DIR,
    StacAsset,
    StacBand,
    StacRecord,
    write_stac,
)
from ruinmap.cluster.storage.location import Location, as_location

__all__ = ["stac_names", "write_catalog"]

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
PARQUET = "application/vnd.apache.parquet"
GPKG = "application/geopackage+sqlite3"
#: product key -> (media type, title, roles)
_ASSETS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "score_tif": (COG, "Damage score per pixel", ("data",)),
    "damage_tif": (COG, "Damage class per pixel (255 = nodata)", ("data",)),
    "grid_tif": (COG, "Damage grid: damaged fraction and mean score per cell", ("data",)),
    "layers_tif": (COG, "Per-pixel layers of the method besides the score (pwtt: p_value, "
                   "n_pre, n_post bands)", ("data",)),
    "districts_parquet": (PARQUET, "Per-district table (GeoParquet)", ("data",)),
    "districts_geojson": ("application/geo+json", "Per-district table (GeoJSON)", ("data",)),
    "districts_csv": ("text/csv", "Per-district table (CSV)", ("data",)),
    "districts_gpkg": (GPKG, "Per-district table (GeoPackage)", ("data",)),
    "districts_hxl": ("text/csv", "Per-district table, HXL-tagged (CSV)", ("data",)),
    "buildings_parquet": (PARQUET, "Per-building scores (GeoParquet)", ("data",)),
    "buildings_gpkg": (GPKG, "Per-building scores (GeoPackage)", ("data",)),
    "grid_h3_gpkg": (GPKG, "Damage per H3 cell (GeoPackage)", ("data",)),
    "grid_h3_parquet": (PARQUET, "Damage per H3 cell (GeoParquet)", ("data",)),
    "map_png": ("image/png", "Map of damage by district", ("overview", "visual")),
    "districts_png": ("image/png", "Damage per district (bar chart)", ("visual",)),
    "score_hist_png": ("image/png", "Histogram of the damage score", ("visual",)),
    "damage_aux_xml": ("application/xml", "Class names of damage.tif (GDAL side-car)",
                       ("metadata",)),
    "damage_qml": ("text/xml", "QGIS style of damage.tif", ("style",)),
    "grid_qml": ("text/xml", "QGIS style of grid.tif", ("style",)),
    "damage_date_tif": (COG, "Damage date and earliest date of its bracket per pixel (days "
                        "since 1970-01-01, -9999 = never)", ("data",)),
    "districts_timeseries_csv": ("text/csv", "Damage per district by post-event date (CSV)",
                                 ("data",)),
    "districts_timeseries_png": ("image/png", "Damage per district by date (line chart)",
                                 ("visual",)),
    "job_json": ("application/json", "What was run: spec, inputs, timings", ("metadata",)),
}


def _collection_id(plan: JobPlan) -> str:
    name = as_location(plan.spec.output.dir).name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "ruinmap"


def stac_names(plan: JobPlan) -> dict[str, str]:
    """{product key: path under output.dir} of the catalog's two files."""
    item = f"{_collection_id(plan)}-damage"
    return {"stac_collection": f"{STAC_DIR}/collection.json",
            "stac_item": f"{STAC_DIR}/{item}/{item}.json"}


def _dates(plan: JobPlan, side: str) -> list[Any]:
    dates = []
    for source in plan.store.sources:
        time = source.get("time")
        value = pd.Timestamp(str(time)) if time else pd.NaT
        if source.get("side") == side and not pd.isna(value):
            dates.append(value.to_pydatetime())
    return dates


def _bands(key: str, plan: JobPlan) -> tuple[StacBand, ...]:
    if key == "layers_tif":
        return (StacBand("float32", float("nan")),) * len(extra_layers(plan.params))
    if key == "score_tif":
        return (StacBand("float32", float("nan")),)
    if key == "damage_tif":
        return (StacBand("uint8", 255),)
    if key == "damage_date_tif":
        return (StacBand("int32", -9999),) * 2
    if key == "grid_tif":
        return (StacBand("float32", float("nan")),) * 2
    return ()


def _local_copy(location: Location, out: Path) -> Path:
    # an s3:// product not rewritten in this run is not in the staging folder: its bytes are
    # needed for the checksum
    local = out / location.name
    if not local.is_file():
        with location.open_binary() as remote, open(local, "wb") as copy:
            shutil.copyfileobj(remote, copy)
    return local


def write_catalog(plan: JobPlan, written: Mapping[str, Location],
                  inputs: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    """Write `out/stac/` for the products in `written` (all in `out` or at their location);
    returns the catalog's files."""
    spec, grid, cells = plan.spec, plan.grid, plan.cell_grid
    assets = []
    for key, location in written.items():
        if key not in _ASSETS:
            continue
        media, title, roles = _ASSETS[key]
        own_grid = key == "grid_tif"
        assets.append(StacAsset(
            path=_local_copy(location, out), media_type=media, title=title, roles=roles,
            bands=_bands(key, plan), shape=cells.shape if own_grid else None,
            transform=cells.affine if own_grid else None))
    collection = _collection_id(plan)
    record = StacRecord(
        collection_id=collection, item_id=f"{collection}-damage",
        title=f"Damage ({spec.method}) - {collection}",
        description=f"Damage mapped by ruinmap with the {spec.method} method from pre- and "
                    "post-event imagery: per-pixel score and classes, per-district and "
                    "per-building tables, damage grids.",
        crs_wkt=grid.crs_wkt, shape=grid.shape, transform=grid.affine, method=spec.method,
        parameters=spec.method_params.model_dump(mode="json"), inputs=inputs,
        pre_dates=_dates(plan, "pre"), post_dates=_dates(plan, "post"),
    )
    return write_stac(out, record, assets)
