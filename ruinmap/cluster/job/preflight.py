"""What the imagery's headers tell about a job before any pixel moves (`check_job_fits`), and
what its merged result tells after (`check_result_not_empty`).

Before work (from the files' headers, or an ingested store's metadata):

- each side has at least `min_pre` / `min_post` dates (otherwise no pixel can be scored);
- `grid.cell_size` fits inside the imagery;
- the method's focal reach (its halo) is at most `MAX_HALO_PX` pixels at the imagery's pixel
  size;
- at least one district overlaps the imagery's footprint.

After the merge: a job in which no district got a single valid score is an InputError naming
the likely cause (all-nodata imagery over the districts, too few valid dates per pixel, no
relative orbit with both pre and post dates). `run_job` writes the products first, so that
the finished (empty) tables and the store are kept for a look, and the re-run of a finished
job writes nothing and fails the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.ingest import IngestOptions, InputPlan, plan_inputs
from ruinmap.cluster.ingest.options import DEFAULT_CHUNK, choose_shard
from ruinmap.cluster.ingest.stac import plan_stac_inputs
from ruinmap.cluster.job.plan import pixel_size_m
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.job.spec.files import SpecFiles
from ruinmap.cluster.methods import scorer_for
from ruinmap.cluster.storage.store import SIDES, read_store_attrs
from ruinmap.errors import InputError, SpecError

__all__ = ["MAX_HALO_PX", "ImageryHeader", "check_job_fits", "check_result_not_empty",
           "imagery_header"]

#: The largest focal reach a tile reads around itself, pixels: a 2048 px tile then reads at
#: most a 10240 px square per band and date
MAX_HALO_PX = 4096


@dataclass(frozen=True)
class ImageryHeader:
    """The job's imagery as its headers describe it: the grid, the dates a side, the bands,
    and the store's chunk and shard sides (px), as ingested or as the ingest will make them."""

    grid: Grid
    n_dates: dict[str, int]
    bands: tuple[str, ...]
    chunk: int
    shard: int
    ingested: bool  # read from an ingested store (no ingest tasks to run)

    @classmethod
    def of_plan(cls, plan: InputPlan, options: IngestOptions) -> ImageryHeader:
        shard = choose_shard(options.chunk, options.shard, len(plan.bands))
        return cls(plan.grid, {side: len(plan.acquisitions[side]) for side in SIDES},
                   tuple(plan.bands), options.chunk, shard, ingested=False)

    @classmethod
    def of_store_attrs(cls, attrs: Mapping[str, Any]) -> ImageryHeader:
        counts = {side: 0 for side in SIDES}
        for source in attrs.get("sources", []):
            side = source.get("side")
            if side in counts:
                counts[side] = max(counts[side], int(source.get("time_index", 0)) + 1)
        chunk = int(attrs.get("chunks", [DEFAULT_CHUNK])[-1])
        return cls(Grid.from_attrs(attrs["grid"]), counts, tuple(attrs.get("bands", ())),
                   chunk, int(attrs.get("shards", [chunk])[-1]), ingested=True)


def imagery_header(files: SpecFiles, options: IngestOptions) -> ImageryHeader:
    """The header of the job's imagery: the ingested store's metadata, or the files' headers
    planned as the ingest will plan them (no pixel read)."""
    if files.store is not None:
        return ImageryHeader.of_store_attrs(read_store_attrs(files.store))
    inputs = (plan_stac_inputs(files.stac, options) if files.stac is not None
              else plan_inputs(list(files.pre), list(files.post), options))
    return ImageryHeader.of_plan(inputs, options)


def _full(bounds: Any) -> str:
    # every digit: a %g-rounded bound hides how far apart two extents are
    return "(" + ", ".join(repr(float(v)) for v in bounds) + ")"


def check_job_fits(spec: JobSpec, header: ImageryHeader, districts: gpd.GeoDataFrame) -> None:
    """SpecError / InputError when the imagery cannot give the job a result (module docstring)."""
    params = spec.method_params
    where = {"pre": "inputs.pre", "post": "inputs.post"}
    if spec.inputs.stac is not None:
        where = {side: f"inputs.stac.{side}_datetime" for side in SIDES}
    if spec.inputs.store is not None:
        where = {side: f"inputs.store '{spec.inputs.store}'" for side in SIDES}
    for side in SIDES:
        needed = int(getattr(params, f"min_{side}"))
        have = header.n_dates[side]
        if have < needed:
            raise SpecError(
                f"method_params.min_{side} = {needed}, but the imagery has {have} {side}-event "
                f"date(s) ({where[side]}); no pixel could be scored: give at least {needed} "
                f"{side}-event images, or lower min_{side}"
            )
    grid = header.grid
    pixel_m = pixel_size_m(grid)
    width_m, height_m = grid.width * pixel_m, grid.height * pixel_m
    if spec.grid.cell_size > max(width_m, height_m):
        raise SpecError(
            f"grid.cell_size = {spec.grid.cell_size!r} m is larger than the imagery "
            f"({width_m!r} x {height_m!r} m, {grid.width} x {grid.height} px of {pixel_m!r} m); "
            f"give at most {max(width_m, height_m)!r}"
        )
    halo = scorer_for(params).halo_px(params, pixel_m)
    if halo > MAX_HALO_PX:
        raise SpecError(
            f"method_params: the method's filters reach {halo} px around each pixel at the "
            f"imagery's {pixel_m!r} m pixels, more than {MAX_HALO_PX}; lower its radii "
            "(radius_m, radii_m, focal_median_m, lee_size)"
        )
    _check_districts_overlap(districts, grid, spec.districts.path)


def _check_districts_overlap(districts: gpd.GeoDataFrame, grid: Grid, path: str) -> None:
    footprint = grid.footprint()
    if districts.crs is None:
        return  # validate_spec_files reports it
    raster = districts.to_crs(grid.crs_wkt)
    geoms = raster.geometry.to_numpy()
    if shapely.intersects(geoms, shapely.box(*footprint)).any():
        return
    raise InputError(
        f"districts.path: none of the {len(districts)} districts of '{path}' overlaps the "
        f"imagery: the districts span {_full(raster.total_bounds)}, the imagery "
        f"{_full(footprint)} (minx, miny, maxx, maxy in {grid.crs.to_string()}); check the "
        "district file and its CRS (districts.crs), or the images"
    )


def check_result_not_empty(spec: JobSpec, districts: pd.DataFrame,
                           orbits: tuple[tuple[int, ...], tuple[int, ...]],
                           n_dates: Mapping[str, int]) -> None:
    """InputError when no district has a valid score, naming the likely cause.

    `orbits` are the relative orbits of the pre and post dates (`ScoreContext`), `n_dates`
    the dates a side.
    """
    valid = np.asarray(districts["valid_km2"], np.float64)
    if (valid > 0).any():
        return
    params = spec.method_params
    pre_orbits, post_orbits = orbits
    if spec.method == "pwtt" and not set(pre_orbits) & set(post_orbits):
        cause = (f"no relative orbit has both pre and post dates (pre orbits "
                 f"{sorted(set(pre_orbits))}, post orbits {sorted(set(post_orbits))}): check "
                 "method_params.orbits or the files' orbit tags")
    else:
        cause = (f"the imagery over the districts is nodata (NaN, or the files' nodata value) "
                 f"on every pixel, or no pixel has min_pre = {params.min_pre!r} valid pre "
                 f"and min_post = {params.min_post!r} valid post dates (the imagery has "
                 f"{n_dates['pre']} pre and {n_dates['post']} post dates); check the images")
    raise InputError(
        f"no district of {len(districts)} has a valid score (valid_km2 is 0 everywhere): "
        f"{cause}. The (empty) products are in {spec.output.dir}"
    )
