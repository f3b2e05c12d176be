"""The built-up mask of a job: which one (`MaskChoice`, from `[mask]` or the default), checked
against the imagery before work, and made over each tile's padded window on the workers.

PWTT (Ballinger 2024) masks its t statistic with Dynamic World's `built` probability > 0.1
before the focal smoothing (`mask_before_smooth`) and never reports other pixels. ruinmap does
the same with the mask a job chooses:

- `buildings` (the default when the job has footprints): the footprints buffered by
  `buffer_m` metres and rasterized with the pixel-centre rule. A tile gets every footprint
  within its halo plus the buffer (`polygons.tile_vectors`), so a tile's mask over its padded
  window equals the whole image's there, and the result does not depend on the chunking;
- a raster path: read for the padded window through a `WarpedVRT` onto the imagery's grid
  (any CRS; nearest neighbour, as Earth Engine resamples Dynamic World for PWTT by default,
  and because a bilinear value near `threshold` can round differently in two windows, which
  would make the mask depend on the chunking), then `classes` or `> threshold`; pixels
  the raster does not cover, or its nodata, are not built-up;
- `none` (the default without footprints): every pixel is scored and counted.

The mask goes to the method's score function (`methods.base.mask_statistic`); the tile task
then blanks the score outside it and counts only built-up pixels in the district and grid
figures (`task.run_tile`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.geo.rasterize import footprint_labels
from ruinmap.cluster.job.spec import JobSpec, MaskSpec
from ruinmap.cluster.storage.confined import Roots, confined_raster_path
from ruinmap.errors import InputError

__all__ = ["DEFAULT_PROBABILITY_THRESHOLD", "NO_MASK", "WARP_TOLERANCE_PX", "MaskChoice",
           "check_mask_covers", "check_mask_not_empty", "mask_choice", "window_mask"]

#: PWTT's: Dynamic World `built` > 0.1 is built-up
DEFAULT_PROBABILITY_THRESHOLD = 0.1
#: error of GDAL's approximate transformer, source pixels: GDAL's default (1/8) interpolates
#: the transform over each warp chunk, so a window's nearest pixel could differ from the
#: whole grid's there (tolerance 0, the exact transformer, fails in a WarpedVRT)
WARP_TOLERANCE_PX = 1e-6


@dataclass(frozen=True)
class MaskChoice:
    """The built-up mask a job uses (see the module docstring); `chosen_by` says whether the
    spec named it or it is the default."""

    kind: Literal["buildings", "raster", "none"]
    chosen_by: Literal["spec", "default"]
    path: str | None = None
    buffer_m: float = 0.0
    threshold: float | None = None
    classes: tuple[int, ...] | None = None
    band: int = 1

    @property
    def is_applied(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        """One line for the terminal and the log."""
        why = "the default" if self.chosen_by == "default" else "[mask]"
        if self.kind == "none":
            return (f"built-up mask: none ({why}: "
                    + ("no [buildings]" if self.chosen_by == "default" else "mask.source")
                    + "); every pixel is scored and counted")
        if self.kind == "buildings":
            return (f"built-up mask: the building footprints buffered by {self.buffer_m:g} m "
                    f"({why}); pixel figures count built-up pixels only")
        rule = (f"classes {list(self.classes)}" if self.classes is not None
                else f"value > {self.threshold:g}")
        return (f"built-up mask: {self.path} band {self.band}, {rule} ({why}); pixel figures "
                "count built-up pixels only")

    def to_json(self) -> dict[str, Any]:
        """The choice for job.json."""
        record = asdict(self)
        record["classes"] = None if self.classes is None else list(self.classes)
        if self.kind != "buildings":
            record.pop("buffer_m")
        if self.kind != "raster":
            for key in ("path", "threshold", "classes", "band"):
                record.pop(key)
        return record


#: no mask: every pixel is scored and counted
NO_MASK = MaskChoice(kind="none", chosen_by="default")


def mask_choice(spec: JobSpec) -> MaskChoice:
    """The job's mask: `[mask]` when given, else the footprints when the job has them, else
    none."""
    given = spec.mask
    if given is None:
        if spec.buildings is None:
            return MaskChoice(kind="none", chosen_by="default")
        return MaskChoice(kind="buildings", chosen_by="default",
                          buffer_m=MaskSpec().buffer_m)
    if given.source == "none":
        return MaskChoice(kind="none", chosen_by="spec")
    if given.source == "buildings":
        return MaskChoice(kind="buildings", chosen_by="spec", buffer_m=given.buffer_m)
    threshold = given.threshold
    if given.classes is None and threshold is None:
        threshold = DEFAULT_PROBABILITY_THRESHOLD
    return MaskChoice(kind="raster", chosen_by="spec", path=given.source, threshold=threshold,
                      classes=given.classes, band=given.band)


def _full(bounds: Any) -> str:
    return "(" + ", ".join(repr(float(v)) for v in bounds) + ")"


def check_mask_covers(choice: MaskChoice, grid: Grid, buildings: gpd.GeoDataFrame | None,
                      confine_to: Roots | None = None) -> None:
    """InputError when the mask cannot cover any of the imagery: a raster whose extent misses
    it, or footprints of which none lies on it (both extents in the message)."""
    footprint = grid.footprint()
    crs_name = grid.crs.to_string()
    if choice.kind == "buildings" and buildings is not None and len(buildings):
        if buildings.crs is None:
            return  # validate_spec_files reports it
        geoms = buildings.to_crs(grid.crs_wkt).geometry.to_numpy()
        if not shapely.intersects(geoms, shapely.box(*footprint)).any():
            bounds = shapely.total_bounds(geoms)
            raise InputError(
                f"buildings.path: none of the {len(geoms)} footprints lies on the imagery, so "
                f"the built-up mask (mask.source = \"buildings\") would hide every pixel: the "
                f"footprints span {_full(bounds)}, the imagery {_full(footprint)} (minx, miny, "
                f"maxx, maxy in {crs_name}); check the footprint file and its CRS "
                "(buildings.crs), or set [mask] source = \"none\"")
    if choice.kind == "raster":
        assert choice.path is not None
        with confined_raster_path(choice.path, confine_to) as name, rasterio.open(name) as src:
            if src.crs is None:
                raise InputError(f"mask.source: '{choice.path}' has no CRS; set one with "
                                 "`gdal_edit.py -a_srs EPSG:...`")
            if choice.band > src.count:
                raise InputError(f"mask.band = {choice.band}, but '{choice.path}' has "
                                 f"{src.count} band(s)")
            theirs = grid.footprint(src.crs.to_wkt())
            left, bottom, right, top = src.bounds
            if not shapely.intersects(shapely.box(left, bottom, right, top),
                                      shapely.box(*theirs)):
                raise InputError(
                    f"mask.source: '{choice.path}' covers nothing of the imagery: it spans "
                    f"{_full(src.bounds)}, the imagery {_full(theirs)} (minx, miny, maxx, "
                    f"maxy in {src.crs.to_string()}); give a mask raster over the same place")


def check_mask_not_empty(choice: MaskChoice, districts: Any, output_dir: str) -> None:
    """InputError when the mask left no built-up pixel with a valid statistic in any district
    that has some (a mask raster over the imagery holding no built-up value there)."""
    if not choice.is_applied:
        return
    built = np.asarray(districts["built_km2"], np.float64)
    valid = np.asarray(districts["valid_km2"], np.float64)
    if (valid > 0).any() and not (built > 0).any():
        raise InputError(
            f"{choice.describe().split(';')[0]} holds no built-up pixel in any district "
            f"(built_km2 is 0 everywhere, valid_km2 {float(np.nansum(valid)):.6g} km2): check "
            "the mask (its classes or threshold, its CRS), or set [mask] source = \"none\". "
            f"The (empty) products are in {output_dir}")


def window_mask(choice: MaskChoice, grid: Grid, window: tuple[int, int, int, int],
                footprints_wkb: np.ndarray, pixel_size_m: float,
                confine_to: Roots | None = None) -> np.ndarray | None:
    """The mask (bool, True = built-up) over `window` = (row0, col0, row1, col1) of `grid`,
    or None for no mask. `footprints_wkb`: the footprints near the window (WKB, the grid's
    CRS), for `buildings`."""
    if not choice.is_applied:
        return None
    r0, c0, r1, c1 = window
    shape = (r1 - r0, c1 - c0)
    transform = grid.affine @ Affine.translation(c0, r0)
    if choice.kind == "buildings":
        geoms = shapely.from_wkb(footprints_wkb)
        if choice.buffer_m > 0 and len(geoms):
            # metres to the CRS's units through the pixel's side, as every radius is
            side = float(np.sqrt(abs(grid.affine.determinant)))
            distance = choice.buffer_m / pixel_size_m * side
            geoms = shapely.buffer(geoms, distance, quad_segs=4)
        return footprint_labels(geoms, transform, shape) > 0
    return _raster_window(choice, grid, window, confine_to)


def _raster_window(choice: MaskChoice, grid: Grid, window: tuple[int, int, int, int],
                   confine_to: Roots | None) -> np.ndarray:
    r0, c0, r1, c1 = window
    assert choice.path is not None
    with confined_raster_path(choice.path, confine_to) as name, rasterio.open(name) as src, \
            WarpedVRT(src, crs=grid.crs_wkt, transform=grid.affine, width=grid.width,
                      height=grid.height, tolerance=WARP_TOLERANCE_PX,
                      resampling=Resampling.nearest) as vrt:  # exact in any window
        # masked: the raster's nodata and the pixels it does not cover are not built-up
        values = vrt.read(choice.band, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
    data = np.ma.getdata(values)
    covered = ~np.ma.getmaskarray(values)
    if choice.classes is not None:
        return covered & np.isin(data, np.asarray(choice.classes))
    assert choice.threshold is not None
    return covered & (data > choice.threshold)
