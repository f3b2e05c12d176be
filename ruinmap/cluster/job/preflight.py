"""What the imagery's headers tell about a job before any pixel moves (`check_job_fits`), and
what its merged result tells after (`check_result_not_empty`).

Before work (from the files' headers, or an ingested store's metadata):

- each side has at least `min_pre` / `min_post` dates (otherwise no pixel can be scored);
- `grid.cell_size` fits inside the imagery;
- the method's focal reach (its halo) is at most `MAX_HALO_PX` pixels at the imagery's pixel
  size;
- at least one district, and one footprint when a footprint file is given, overlaps the
  imagery's footprint.

After the merge: a job in which no district got a single valid score is an InputError naming
the likely cause (all-nodata imagery over the districts, too few valid dates per pixel, no
relative orbit with both pre and post dates). `run_job` writes the products first, so that
the finished (empty) tables and the store are kept for a look, and the re-run of a finished
job writes nothing and fails the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from ruinmap.cluster.job.plan import pixel_sides_m, pixel_size_m
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.job.spec.files import SpecFiles
from ruinmap.cluster.methods import scorer_for
from ruinmap.cluster.storage.store import SIDES, read_store_attrs
from ruinmap.errors import InputError, SpecError

__all__ = ["MAX_HALO_PX", "SPARSE_VALID_SHARE", "ImageryHeader", "check_job_fits",
           "check_result_not_empty", "imagery_header", "sparse_district_warning"]

#: a district whose valid score covers less than this share of its area inside the imagery
#: is warned of after the merge (`sparse_district_warning`)
SPARSE_VALID_SHARE = 0.5

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
    # the ingest plans them again and prints its decisions (scales, nodata shares) then
    inputs = (plan_stac_inputs(files.stac, options) if files.stac is not None
              else plan_inputs(list(files.pre), list(files.post), options, report=False))
    return ImageryHeader.of_plan(inputs, options)


def _full(bounds: Any) -> str:
    # every digit: a %g-rounded bound hides how far apart two extents are
    return "(" + ", ".join(repr(float(v)) for v in bounds) + ")"


def check_job_fits(spec: JobSpec, header: ImageryHeader, districts: gpd.GeoDataFrame,
                   buildings: gpd.GeoDataFrame | None = None) -> None:
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
            # pwtt's t-test cannot go below 2 post dates; its z-test reads one (README, pwtt)
            z_test = (" (at least 2), or with a single post-event image set "
                      "method_params.statistic = 'z'" if spec.method == "pwtt"
                      and side == "post" and have == 1 else "")
            raise SpecError(
                f"method_params.min_{side} = {needed}, but the imagery has {have} {side}-event "
                f"date(s) ({where[side]}); no pixel could be scored: give at least {needed} "
                f"{side}-event images, or lower min_{side}{z_test}"
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
    halo = scorer_for(params).halo_px(params, pixel_sides_m(grid))
    if halo > MAX_HALO_PX:
        raise SpecError(
            f"method_params: the method's filters reach {halo} px around each pixel at the "
            f"imagery's {pixel_m!r} m pixels, more than {MAX_HALO_PX}; lower its radii "
            "(radius_m, radii_m, focal_median_m, lee_size)"
        )
    _check_overlap(districts, grid, spec.districts.path, "districts", "district")
    if buildings is not None and spec.buildings is not None:
        _check_overlap(buildings, grid, spec.buildings.path, "buildings", "footprint")


def _check_overlap(frame: gpd.GeoDataFrame, grid: Grid, path: str, key: str,
                   noun: str) -> None:
    """InputError when no feature of `frame` (the districts or footprints) meets the imagery:
    a file for another city, or one whose CRS is wrong, would score nothing."""
    footprint = grid.footprint()
    if frame.crs is None or frame.empty:
        return  # validate_spec_files reports it
    raster = frame.to_crs(grid.crs_wkt)
    geoms = raster.geometry.to_numpy()
    if shapely.intersects(geoms, shapely.box(*footprint)).any():
        return
    raise InputError(
        f"{key}.path: none of the {len(frame)} {key} of '{path}' overlaps the "
        f"imagery: the {key} span {_full(raster.total_bounds)}, the imagery "
        f"{_full(footprint)} (minx, miny, maxx, maxy in {grid.crs.to_string()}); check the "
        f"{noun} file and its CRS ({key}.crs), or the images"
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


def _likely_causes(spec: JobSpec, sources: Sequence[Mapping[str, Any]],
                   n_dates: Mapping[str, int]) -> list[str]:
    """What the store's provenance says could leave pixels without a score."""
    causes = []
    by_values = sorted({str(s.get("path")) for s in sources
                        if (s.get("scale") or {}).get("decided_by") == "values"})
    if by_values:
        scales = sorted({str((s.get("scale") or {}).get("scale")) for s in sources
                         if str(s.get("path")) in by_values})
        causes.append(f"a wrong scale: {len(by_values)} file(s) read as {'/'.join(scales)} "
                      f"from their values alone (e.g. {by_values[0]}); if that is wrong, set "
                      "inputs.scale")
    params = spec.method_params
    min_pre, min_post = getattr(params, "min_pre", 1), getattr(params, "min_post", 1)
    causes.append(f"too few valid dates per pixel: the method needs {min_pre} pre and "
                  f"{min_post} post dates at each pixel (the imagery has {n_dates['pre']} and "
                  f"{n_dates['post']}, fewer where a date is nodata)")
    masked = [s for s in sources if (s.get("masked_fraction") or 0) > 0]
    if masked:
        peak = max(masked, key=lambda s: s["masked_fraction"])
        causes.append(f"layover/shadow masks: {len(masked)} file(s) masked, up to "
                      f"{peak['masked_fraction']:.0%} of {peak.get('path')}")
    empty = [s for s in sources if (s.get("nodata_fraction") or 0) > 0.3]
    if empty:
        peak = max(empty, key=lambda s: s["nodata_fraction"])
        causes.append(f"nodata in the images: {len(empty)} file(s) over 30% nodata, up to "
                      f"{peak['nodata_fraction']:.0%} of {peak.get('path')}")
    return causes


def sparse_district_warning(spec: JobSpec, districts: pd.DataFrame, geoms: np.ndarray,
                            grid: Grid, sources: Sequence[Mapping[str, Any]],
                            n_dates: Mapping[str, int]) -> str | None:
    """A warning naming the districts whose valid score covers less than
    `SPARSE_VALID_SHARE` of their area inside the imagery, and the likely causes; None when
    every district with imagery is mostly scored.

    `geoms`: the districts in the grid's CRS (as the table's rows); the share of each inside
    the imagery's footprint scales its (equal-area) `area_km2`.
    """
    area = np.asarray(districts["area_km2"], np.float64)
    valid = np.asarray(districts["valid_km2"], np.float64)
    footprint = shapely.box(*grid.bounds)
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = np.asarray(shapely.area(shapely.intersection(geoms, footprint)), np.float64)
        share_inside = np.nan_to_num(inside / np.asarray(shapely.area(geoms), np.float64))
    with_imagery = area * share_inside
    sparse = (with_imagery > 0) & (valid < SPARSE_VALID_SHARE * with_imagery)
    if not sparse.any():
        return None
    ids = np.asarray(districts["district_id"]).astype(str)[sparse]
    shown = ", ".join(f"{i} ({v:.2f} of {w:.2f} km2)" for i, v, w in
                      zip(ids[:5], valid[sparse][:5], with_imagery[sparse][:5], strict=True))
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    causes = "; ".join(_likely_causes(spec, sources, n_dates))
    return (f"warning: {len(ids)} of {len(districts)} district(s) have a valid score on less "
            f"than {SPARSE_VALID_SHARE:.0%} of their area inside the imagery: {shown}{more} "
            f"(valid_km2 of the area with imagery). Likely causes: {causes}")
