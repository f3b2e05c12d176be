"""The plan of a job, made once on the client from the spec, its files and the store's
metadata (`StoreInfo`, read once): grid, pixel size, tiles, halo, score context and the
job's signature. The same value goes to every tile task (scattered once) and to the products.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.geo.units import pixel_sides_metres
from ruinmap.cluster.job.builtup import NO_MASK, MaskChoice, mask_choice
from ruinmap.cluster.job.partials import automatic_score_edges, score_edges
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.job.spec.files import SpecFiles
from ruinmap.cluster.job.tiles import Tile, plan_tiles, tile_size
from ruinmap.cluster.job.workdir import STORE_NAME, WORK_DIR, partial_location, tile_ledger
from ruinmap.cluster.methods import MethodParams, ScoreContext, scorer_for
from ruinmap.cluster.storage.ledger import Ledger
from ruinmap.cluster.storage.location import Location, as_location
from ruinmap.cluster.storage.store import StoreInfo

__all__ = ["JobPlan", "pixel_sides_m", "pixel_size_m", "plan_job", "post_series"]


@dataclass(frozen=True, eq=False)
class JobPlan:
    """Everything about a job that is decided before its tiles run (see the module docstring)."""

    spec: JobSpec
    files: SpecFiles
    store: StoreInfo  # the imagery, read only
    layers: Location  # the job's own store, where its score and damage layers go
    work_dir: Location
    pixel_size_m: float  # the geometric mean of the sides, for cells and pixel areas
    pixel_sides_m: tuple[float, float]  # (down, across) at the grid's centre, for radii
    cell_px: int  # pixels per damage-grid cell side
    tile_px: int
    tiles: tuple[Tile, ...]
    halo: int  # pixels of margin every tile reads (the method's focal reach)
    context: ScoreContext
    edges: np.ndarray  # histogram edges of the per-district score
    n_districts: int
    signature: str  # of the method, its parameters, the store, the polygons, grid and tiles
    # `signature` but for the post-event dates: the same job monitored over more dates
    # (`job.monitor`) has the same base signature
    base_signature: str
    # the parameters with an automatic threshold chosen (`job.thresholds`), once it is
    chosen: MethodParams | None = None
    mask: MaskChoice = NO_MASK  # the built-up mask

    @property
    def grid(self) -> Grid:
        return self.store.grid

    @property
    def params(self) -> MethodParams:
        return self.spec.method_params if self.chosen is None else self.chosen

    @property
    def ledger(self) -> Ledger:
        return tile_ledger(self.work_dir)

    @property
    def task_prefix(self) -> str:
        """The key prefix of this job's tile tasks (`compute.stragglers` waits on it)."""
        return f"ruinmap-tile-{self.signature}-"

    def task_key(self, tile: Tile) -> str:
        return f"{self.task_prefix}{tile.iy}-{tile.ix}"

    def partial(self, tile: Tile) -> Location:
        return partial_location(self.work_dir, tile)

    @property
    def mask_margin(self) -> float | None:
        """With a footprint mask, how far (CRS units) around a tile its footprints reach the
        mask over its padded window: the halo plus the buffer (`polygons.tile_vectors`)."""
        if self.mask.kind != "buildings":
            return None
        side = float(np.sqrt(abs(self.grid.affine.determinant)))
        return (self.halo + 1) * side + self.mask.buffer_m / self.pixel_size_m * side

    @property
    def cell_grid(self) -> Grid:
        """The damage grid: cells of `cell_px` pixels aligned to the image's origin."""
        return self.grid.coarsened(self.cell_px)


def pixel_sides_m(grid: Grid) -> tuple[float, float]:
    """The ground metres (down, across) of a pixel at the grid's centre (`geo.units`:
    geodesic on a lon/lat grid, where they differ by cos(latitude))."""
    left, bottom, right, top = grid.bounds
    res_x, res_y = grid.resolution
    return pixel_sides_metres(grid.crs_wkt, res_x, res_y, (left + right) / 2, (bottom + top) / 2)


def pixel_size_m(grid: Grid) -> float:
    """The side of a pixel in metres: the geometric mean of its sides (`pixel_sides_m`), so
    its square is the pixel's area at the grid's centre."""
    down, across = pixel_sides_m(grid)
    return float(np.sqrt(down * across))


def post_series(store: StoreInfo) -> list[list[Any]]:
    """[store index, date, path] of every post-event source, in store order: a monitored
    job's grown store has its old series as a prefix (`job.monitor`)."""
    return sorted(([int(s["time_index"]), s.get("time"), str(s.get("path"))]
                   for s in store.sources if s.get("side") == "post"),
                  key=lambda entry: (entry[0], entry[2]))


def _signature(spec: JobSpec, files: SpecFiles, store_id: Any, tile_px: int,
               post: list[list[Any]] | None = None) -> str:
    """The job's signature; with `post` (`post_series`), of the job over those post dates
    (the store id stays the same when a monitored store grows, `ingest.append`)."""
    def stat(path: Path | None) -> list[Any]:
        if path is None:
            return []
        info = path.stat()
        return [str(path), info.st_size, info.st_mtime_ns]

    body = {
        "method": spec.method,
        "params": spec.method_params.model_dump(mode="json"),
        "store_id": store_id,
        "districts": [stat(files.districts.path), spec.districts.model_dump(mode="json")],
        "buildings": [stat(files.buildings.path if files.buildings else None),
                      spec.buildings.model_dump(mode="json") if spec.buildings else None],
        "cell_size": spec.grid.cell_size,
        "tile_px": tile_px,
        "mask": mask_choice(spec).to_json(),
        "mask_file": stat(Path(spec.mask.source)) if spec.mask and spec.mask.is_raster else [],
    }
    if post is not None:
        body["post"] = post
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def plan_job(spec: JobSpec, files: SpecFiles, store: StoreInfo, n_districts: int) -> JobPlan:
    """The plan of `spec` on `store`; runs the method's whole-image pre-pass (on the cluster)."""
    params = spec.method_params
    scorer = scorer_for(params)
    pixel_m = pixel_size_m(store.grid)
    sides = pixel_sides_m(store.grid)
    grid = store.grid
    # the output arrays are sharded by tile, so no two tasks write the same shard
    tile_px = tile_size(grid.height, grid.width, store.chunk, store.shard)
    return JobPlan(
        spec=spec, files=files, store=store,
        layers=as_location(spec.output.dir).join(STORE_NAME),
        work_dir=as_location(spec.output.dir).join(WORK_DIR),
        pixel_size_m=pixel_m, pixel_sides_m=sides,
        cell_px=max(1, round(spec.grid.cell_size / pixel_m)),
        tile_px=tile_px, tiles=tuple(plan_tiles(grid.height, grid.width, tile_px)),
        halo=scorer.halo_px(params, sides), context=scorer.context(params, store, sides),
        edges=automatic_score_edges() if params.is_automatic
        else score_edges(params.class_thresholds), n_districts=n_districts,
        signature=_signature(spec, files, store.attrs.get("store_id"), tile_px,
                             post_series(store)),
        base_signature=_signature(spec, files, store.attrs.get("store_id"), tile_px),
        mask=mask_choice(spec),
    )  # fmt: skip
