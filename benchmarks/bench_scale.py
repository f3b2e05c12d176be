"""The country on paper: the job's plan, scheduler and client merge at country scale.

Three parts, each measured in this run (`--parts`, default all):

- **dryrun**: a real `JobPlan` of a country-sized grid (61,440 x 102,400 px at 10 m = 6.3e9 px,
  1,500 tiles of 2048², 500 Voronoi districts, 500 m grid cells, 10 million rectangular
  footprints, 70 % of them in settlements) whose tiles' partials are made without pixels:
  synthetic but in the format and sizes `run_tile` writes (every district row, the 512-bin
  histograms, each footprint a tile touches, those crossing tile edges in each tile, the
  grid cells it touches), saved with `save_partial` and recorded in the ledger with their
  checksums. Then the client's merge (`run._merge`: verified loads, `merge_partials`, the
  building scores, the district table with its count intervals, the grid layers) runs in a
  fresh subprocess, timed, its peak memory (VmHWM) read, and its results checked against
  the footprints' whole values (every footprint's mean score and pixel count, split over
  tiles or not). Targets: merge < 60 s, client peak < 4 GiB.
- **sched**: the country plan's task graph (tasks, bytes the client sends per tile task) and
  the scheduler's time per task on a real local cluster (1 and 2 worker processes): 1,500
  tasks submitted like `run._run_tiles` submits tiles (the plan scattered once, one task per
  tile with its key, tile and the `VectorsFile` of its polygons), doing nothing; the
  scheduler's own CPU seconds per task are read on the scheduler. The tiles' polygon files
  (`job.vector_files`: WKB of each footprint a tile needs, twice with the built-up mask),
  their bytes and the client's time to write them, are measured on 40 tiles (written for
  real) and fitted and summed over the country, beside what the same polygons weighed as
  task arguments before they moved to files.
- **job**: the real job (bench_job's 4096² scene: 5 pre + 3 post dates, VV + VH, 100
  districts, 50,000 footprints) with 1 and 2 local workers, `--repeat` times each; per-tile
  seconds from its ledger. Then the **scaling curve**: the tile phase of the country
  simulated (said so in the output) for 1..1024 workers by a discrete-event model of one
  scheduler handing tiles to workers in submission order, with the measured per-tile
  seconds scaled by pixels to 2048² tiles and the measured scheduler seconds per task, plus
  the measured merge; the same model on the measured 4096² job is printed beside its
  measured tile phase, so the model's error is visible.

    python benchmarks/bench_scale.py --workdir /tmp/ruinmap-bench-scale --json scale.json
    python benchmarks/bench_scale.py --parts dryrun --scale small    # a quick look
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_job beside this file

CRS_EPSG = 32636
ORIGIN = (300000.0, 5800000.0)
PIXEL_M = 10.0
CELL_M = 500.0
COARSE_PX = 128  # districts and nodata are drawn on cells of this side, inside tiles
BIN_EDGE_SCORE = (2.0, 3.3, 4.0, 5.0)  # pwtt's default class edges
WKB_BOX_BYTES = 93  # a 5-point polygon: 1 + 4 + 4 + 4 + 5 * 16
SIM_WORKERS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class Country:
    """The dry run's size: grid (px), tile side, districts and footprints."""

    height: int
    width: int
    tile_px: int
    n_districts: int
    n_buildings: int
    n_settlements: int
    seed: int = 0

    @property
    def pixels(self) -> int:
        return self.height * self.width


SCALES = {
    # Ukraine is about 6e9 px a date at 10 m: 30 x 50 tiles of 2048²
    "country": Country(61_440, 102_400, 2048, 500, 10_000_000, 3000),
    # the test's size: 3 x 4 tiles of 1024², seconds
    "small": Country(3072, 4096, 1024, 12, 20_000, 20),
}


def _status_mib(field: str) -> float:
    """A memory figure of the calling process from /proc/self/status (`VmHWM`: its peak
    resident memory; `VmRSS`: its resident memory now), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# ---------------------------------------------------------------------------------------------
# the plan


def country_plan(country: Country, folder: Path) -> Any:
    """A real `JobPlan` (pwtt, footprints, the built-up mask by default) of `country`'s grid;
    the store is described, never read (the dry run reads no pixel)."""
    from affine import Affine
    from rasterio.crs import CRS

    from ruinmap.cluster.geo.grid import Grid
    from ruinmap.cluster.job.plan import plan_job
    from ruinmap.cluster.job.spec import parse_spec
    from ruinmap.cluster.job.spec.files import SpecFiles, VectorInfo
    from ruinmap.cluster.storage.location import as_location
    from ruinmap.cluster.storage.store import StoreInfo

    folder.mkdir(parents=True, exist_ok=True)
    districts = folder / "districts.json"  # only stat'ed, for the plan's signature
    if not districts.exists():
        districts.write_text(json.dumps({"country": country.__dict__}))
    spec = parse_spec({
        "method": "pwtt", "inputs": {"store": str(folder / "store.zarr")},
        "districts": {"path": districts.name, "id": "district_id"},
        "buildings": {"path": "buildings.parquet", "id": "building_id"},
        "grid": {"cell_size": CELL_M}, "output": {"dir": str(folder / "out")},
    }, folder)  # fmt: skip
    grid = Grid.of(CRS.from_epsg(CRS_EPSG), Affine(PIXEL_M, 0, ORIGIN[0], 0, -PIXEL_M, ORIGIN[1]),
                   country.width, country.height)
    store = StoreInfo(location=as_location(folder / "store.zarr"), attrs={"store_id": "dry-run"},
                      grid=grid, bands=("VV", "VH"), chunk=512, shard=country.tile_px,
                      n_times={"pre": 5, "post": 3})
    files = SpecFiles(pre=(), post=(), store=store.location,
                      districts=VectorInfo(districts, ("district_id",), grid.crs_wkt,
                                           country.n_districts, "Polygon"),
                      buildings=None, output_dir=as_location(folder / "out"))
    return plan_job(spec, files, store, n_districts=country.n_districts)


# ---------------------------------------------------------------------------------------------
# synthetic footprints and districts (NumPy only: 10 million shapely boxes cost minutes and GBs)


@dataclass(frozen=True)
class Footprints:
    """Axis-aligned footprints in pixel coordinates (col/row, floats) and their truth."""

    col0: np.ndarray
    col1: np.ndarray
    row0: np.ndarray
    row1: np.ndarray
    score: np.ndarray  # the footprint's score (every pixel of it)
    has_data: np.ndarray  # False: it lies in a nodata patch (no valid pixel)
    scored: np.ndarray  # at least the method's minimum area
    district: np.ndarray  # 0-based district of its centroid

    @property
    def members(self) -> np.ndarray:
        """Pixel centres inside each footprint (the whole footprint)."""
        return _centres(self.col0, self.col1) * _centres(self.row0, self.row1)


def _centres(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How many pixel centres (j + 0.5) lie in [lo, hi)."""
    return np.maximum(np.ceil(hi - 0.5) - np.ceil(lo - 0.5), 0).astype(np.int64)


def district_cells(country: Country, rng: np.random.Generator) -> np.ndarray:
    """0-based district of every COARSE_PX cell: Voronoi cells of random seeds."""
    from scipy.spatial import cKDTree

    rows, cols = country.height // COARSE_PX, country.width // COARSE_PX
    seeds = rng.uniform((0, 0), (rows, cols), (country.n_districts, 2))
    rr, cc = np.mgrid[0:rows, 0:cols]
    centres = np.column_stack([rr.ravel() + 0.5, cc.ravel() + 0.5])
    return cKDTree(seeds).query(centres)[1].reshape(rows, cols).astype(np.int64)


def make_footprints(country: Country, cells: np.ndarray, min_area_m2: float,
                    rng: np.random.Generator) -> Footprints:
    """`country.n_buildings` rectangles of 6-30 m sides: 70 % in settlements (normal spreads
    of 0.5-5 km), the rest anywhere; about 3 % in nodata."""
    n = country.n_buildings
    clustered = int(0.7 * n)
    towns = rng.uniform((0, 0), (country.height, country.width), (country.n_settlements, 2))
    spread = rng.uniform(50, 500, country.n_settlements)  # px
    which = rng.integers(0, country.n_settlements, clustered)
    centre = np.concatenate([
        towns[which] + rng.normal(size=(clustered, 2)) * spread[which, None],
        rng.uniform((0, 0), (country.height, country.width), (n - clustered, 2)),
    ])
    half = rng.uniform(6, 30, (n, 2)) / PIXEL_M / 2
    centre[:, 0] = np.clip(centre[:, 0], half[:, 0], country.height - half[:, 0])
    centre[:, 1] = np.clip(centre[:, 1], half[:, 1], country.width - half[:, 1])
    area_m2 = 4 * half[:, 0] * half[:, 1] * PIXEL_M**2
    crow = np.minimum(centre[:, 0] // COARSE_PX, cells.shape[0] - 1).astype(np.int64)
    ccol = np.minimum(centre[:, 1] // COARSE_PX, cells.shape[1] - 1).astype(np.int64)
    return Footprints(
        col0=centre[:, 1] - half[:, 1], col1=centre[:, 1] + half[:, 1],
        row0=centre[:, 0] - half[:, 0], row1=centre[:, 0] + half[:, 0],
        score=rng.gamma(2.0, 1.2, n), has_data=rng.random(n) >= 0.03,
        scored=area_m2 >= min_area_m2, district=cells[crow, ccol],
    )  # fmt: skip


def tile_entries(country: Country, fp: Footprints) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tile number, footprint, pixel centres inside the tile) for every scored footprint
    and tile it overlaps (edge crossers in two or four tiles), sorted by tile, then
    footprint, as `polygons.tile_vectors` sends them."""
    t = country.tile_px
    n_tx = math.ceil(country.width / t)
    idx = np.flatnonzero(fp.scored)
    c0, c1, r0, r1 = fp.col0[idx], fp.col1[idx], fp.row0[idx], fp.row1[idx]
    tx0, tx1 = (c0 // t).astype(np.int64), (np.nextafter(c1, 0) // t).astype(np.int64)
    ty0, ty1 = (r0 // t).astype(np.int64), (np.nextafter(r1, 0) // t).astype(np.int64)
    across, down = tx1 != tx0, ty1 != ty0
    both = across & down
    k = np.concatenate([np.arange(idx.size), np.flatnonzero(across), np.flatnonzero(down),
                        np.flatnonzero(both)])
    ty = np.concatenate([ty0, ty0[across], ty1[down], ty1[both]])
    tx = np.concatenate([tx0, tx1[across], tx0[down], tx1[both]])
    cols = _centres(np.maximum(c0[k], tx * t), np.minimum(c1[k], (tx + 1) * t))
    rows = _centres(np.maximum(r0[k], ty * t), np.minimum(r1[k], (ty + 1) * t))
    tile = ty * n_tx + tx
    order = np.lexsort((idx[k], tile))
    return tile[order], idx[k][order], (cols * rows)[order]


# ---------------------------------------------------------------------------------------------
# partials


def _class_matrix(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bins, classes) one-hot of each histogram bin's class, and the bins above the
    damage threshold, from the bin centres."""
    centres = (edges[:-1] + edges[1:]) / 2
    which = np.digitize(centres, BIN_EDGE_SCORE, right=True)
    onehot = np.zeros((centres.size, len(BIN_EDGE_SCORE) + 1), np.int64)
    onehot[np.arange(centres.size), which] = 1
    return onehot, centres > BIN_EDGE_SCORE[1]


def district_partial_fields(country: Country, plan: Any, cells: np.ndarray,
                            valid_share: np.ndarray, iy: int, ix: int,
                            rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The `d_*` fields of tile (iy, ix): every district row, the tile's districts filled
    from its coarse cells' valid pixels, each with a 512-bin histogram drawn around a
    score of 1 and its sums, extremes and classes taken from that histogram."""
    n, edges = country.n_districts, plan.edges
    per = country.tile_px // COARSE_PX
    block = (slice(iy * per, (iy + 1) * per), slice(ix * per, (ix + 1) * per))
    pixels = np.rint(valid_share[block] * COARSE_PX**2).astype(np.int64)
    count = np.bincount(cells[block].ravel(), weights=pixels.ravel(), minlength=n)
    count = count.astype(np.int64)
    centres = (edges[:-1] + edges[1:]) / 2
    shape = np.exp(-0.5 * ((centres - 1.0) / 1.2) ** 2)
    hist = np.zeros((n, edges.size - 1), np.int64)
    present = np.flatnonzero(count)
    hist[present] = rng.multinomial(count[present], shape / shape.sum())
    onehot, damaged_bins = _class_matrix(edges)
    classes = hist @ onehot
    nonempty = hist > 0
    d_min = np.where(count > 0, centres[np.argmax(nonempty, axis=1)], np.inf)
    d_max = np.where(count > 0, centres[::-1][np.argmax(nonempty[:, ::-1], axis=1)], -np.inf)
    area = count.astype(np.float64)
    damaged = hist[:, damaged_bins].sum(axis=1)
    return {
        "d_count": count, "d_sum": hist @ centres, "d_sum_sq": hist @ centres**2,
        "d_min": d_min, "d_max": d_max, "d_hist": hist, "d_classes": classes,
        "d_damaged": damaged, "d_npost_sum": 3.0 * area, "d_npost_count": count.copy(),
        "d_valid_area": area, "d_damaged_area": damaged.astype(np.float64),
        "d_class_area": classes.astype(np.float64), "d_observed_area": area * 1.1,
    }  # fmt: skip


def grid_partial_fields(plan: Any, tile: Any, rng: np.random.Generator
                        ) -> dict[str, np.ndarray]:
    """The `g_*` fields: every damage-grid cell the tile touches (cells cut by its edges
    too), with the tile's share of each cell's pixels."""
    cell = plan.cell_px

    def spans(start: int, size: int) -> np.ndarray:
        first, last = start // cell, (start + size - 1) // cell
        lo = np.maximum(np.arange(first, last + 1) * cell, start)
        hi = np.minimum(np.arange(first + 1, last + 2) * cell, start + size)
        return hi - lo

    pixels = np.outer(spans(tile.row0, tile.height), spans(tile.col0, tile.width))
    count = rng.binomial(pixels, 0.95).astype(np.int64)
    return {
        "g_origin": np.array([tile.row0 // cell, tile.col0 // cell], np.int64),
        "g_sum": count * rng.gamma(2.0, 0.6, count.shape),
        "g_count": count, "g_damaged": rng.binomial(count, 0.03).astype(np.int64),
    }


def write_partials(country: Country, plan: Any, folder: Path) -> dict[str, Any]:
    """Make the footprints and districts, write every tile's partial and ledger entry, and
    save what the client holds before its merge (`polygons.npz`); returns sizes and times."""
    from ruinmap.cluster.job.partials import TilePartial, save_partial
    from ruinmap.cluster.job.workdir import prepare_work_dir
    from ruinmap.cluster.methods import extra_layers

    started = time.perf_counter()
    rng = np.random.default_rng(country.seed)
    cells = district_cells(country, rng)
    valid_share = np.where(rng.random(cells.shape) < 0.05, 0.0, rng.uniform(0.85, 1.0,
                                                                             cells.shape))
    fp = make_footprints(country, cells, plan.params.min_building_m2, rng)
    tile_of, entry_fp, entry_members = tile_entries(country, fp)
    ccol = np.minimum(((fp.col0 + fp.col1) / 2).astype(np.int64), country.width - 1)
    crow = np.minimum(((fp.row0 + fp.row1) / 2).astype(np.int64), country.height - 1)
    n_tx = math.ceil(country.width / country.tile_px)
    centroid_tile = (crow // country.tile_px) * n_tx + ccol // country.tile_px
    scored_idx = np.flatnonzero(fp.scored)
    c_order = scored_idx[np.argsort(centroid_tile[scored_idx], kind="stable")]
    c_starts = np.searchsorted(centroid_tile[c_order], np.arange(len(plan.tiles) + 1))
    starts = np.searchsorted(tile_of, np.arange(len(plan.tiles) + 1))
    made_s = time.perf_counter() - started

    prepare_work_dir(plan.work_dir, plan.signature, plan.layers, plan.grid, plan.store.chunk,
                     plan.tile_px, extra_layers(plan.params))
    partial_bytes = 0
    footprint_entries = []
    t0 = time.perf_counter()
    for number, tile in enumerate(plan.tiles):
        assert number == tile.iy * n_tx + tile.ix  # plan_tiles goes row by row
        sel = slice(starts[number], starts[number + 1])
        which, members = entry_fp[sel], entry_members[sel]
        count = np.where(fp.has_data[which], members, 0)
        centroid = c_order[c_starts[number] : c_starts[number + 1]]
        partial = TilePartial(
            **district_partial_fields(country, plan, cells, valid_share, tile.iy, tile.ix,
                                      rng),
            b_index=which.astype(np.int64), b_count=count, b_sum=count * fp.score[which],
            b_max=np.where(count > 0, fp.score[which], -np.inf), b_members=members,
            b_centroid_index=centroid.astype(np.int64),
            b_centroid_score=np.where(fp.has_data[centroid], fp.score[centroid], np.nan),
            **grid_partial_fields(plan, tile, rng), s_hist=np.zeros(0, np.int64),
            s_counted=np.zeros(0, np.uint8),
        )  # fmt: skip
        checksum = save_partial(partial, plan.partial(tile), tile.key)
        plan.ledger.record(tile.key, {"signature": plan.signature, "seconds": 0.0},
                           checksums={"partial": checksum})
        partial_bytes += Path(str(plan.partial(tile))).stat().st_size
        footprint_entries.append(len(which))
    written_s = time.perf_counter() - t0

    # what the client holds before the merge (polygons_on_grid), and the footprints' truth
    expected = np.where(fp.scored & fp.has_data, fp.score, np.nan)
    order = np.argsort(fp.district, kind="stable")
    np.savez(folder / "polygons.npz", district=fp.district, scored=fp.scored,
             pair_building=order, pair_district=fp.district[order], expected_score=expected,
             expected_members=np.where(fp.scored & fp.has_data, fp.members, 0))
    entries = np.array(footprint_entries)
    return {
        "pixels": country.pixels, "tiles": len(plan.tiles), "tile_px": plan.tile_px,
        "districts": country.n_districts, "footprints": country.n_buildings,
        "footprints_scored": int(fp.scored.sum()),
        "footprint_tile_entries": int(entries.sum()),
        "footprints_per_tile_median": int(np.median(entries)),
        "footprints_per_tile_max": int(entries.max()),
        "grid_cells": list(plan.cell_grid.shape),
        "partials_mib": round(partial_bytes / 2**20, 1),
        "partial_mib_mean": round(partial_bytes / len(plan.tiles) / 2**20, 2),
        "synthesis_s": round(made_s, 1), "write_s": round(written_s, 1),
    }


# ---------------------------------------------------------------------------------------------
# the client's merge, in its own process


def client_polygons(country: Country, folder: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """The `Polygons` the merge reads (`polygons_on_grid`'s arrays; no geometry is built, as
    `run._merge` reads only how many footprints there are) and the footprints' truth."""
    import geopandas as gpd

    from ruinmap.cluster.job.polygons import Polygons

    with np.load(folder / "polygons.npz") as npz:
        saved = {name: npz[name] for name in npz.files}
    n = country.n_districts
    polygons = Polygons(
        district_ids=np.array([f"D{k:03d}" for k in range(n)], object),
        district_names=np.array([f"District {k}" for k in range(n)], object),
        district_geoms=np.empty(n, object), district_frame=gpd.GeoDataFrame(),
        district_area_km2=np.full(n, country.pixels * PIXEL_M**2 / 1e6 / n),
        district_layer=np.zeros(n, np.int64),
        building_frame=gpd.GeoDataFrame({"building_id": np.arange(country.n_buildings)}),
        building_geoms=np.empty(country.n_buildings, object),
        building_scored=saved["scored"], building_district=saved["district"],
        building_pairs=(saved["pair_building"], saved["pair_district"]),
    )  # fmt: skip
    return polygons, saved


def measure_merge(country: Country, folder: Path) -> dict[str, Any]:
    """Time `run._merge` over the written partials; its peak memory and checks."""
    from ruinmap.cluster.job.run import _merge

    plan = country_plan(country, folder)
    polygons, truth = client_polygons(country, folder)
    before = _status_mib("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    result = _merge(plan, polygons, [], {}, None)
    merge_s = time.perf_counter() - started
    # CPU seconds too: on a machine shared with other work the wall time is mostly waiting
    cpu_s = time.process_time() - cpu
    peak = _status_mib("VmHWM")
    buildings = result.buildings
    assert buildings is not None  # the plan has footprints
    np.testing.assert_allclose(buildings["mean_score"].to_numpy(np.float64),
                               truth["expected_score"], rtol=1e-12, equal_nan=True)
    members = truth["expected_members"]
    has_pixels = members > 0
    np.testing.assert_array_equal(buildings["n_pixels"].to_numpy()[has_pixels],
                                  members[has_pixels])
    counted = np.isfinite(truth["expected_score"])
    np.testing.assert_array_equal(result.districts["buildings"],
                                  np.bincount(truth["district"][counted],
                                              minlength=country.n_districts))
    return {"merge_s": round(merge_s, 2), "merge_cpu_s": round(cpu_s, 2),
            "client_peak_mib": round(peak),
            "client_rss_before_merge_mib": round(before),
            "district_rows": len(result.districts), "building_rows": len(buildings),
            "grid_shape": list(result.grid_mean.shape), "checked": True}


def dry_run(country: Country, folder: Path, repeat: int) -> dict[str, Any]:
    shutil.rmtree(folder, ignore_errors=True)
    plan = country_plan(country, folder)
    row = write_partials(country, plan, folder)
    runs = []
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, __file__, "--merge-only", str(folder), "--scale",
             _scale_name(country)], capture_output=True, text=True, env=os.environ.copy(),
            check=False)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"the merge subprocess failed:\n{proc.stderr[-4000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    row["merge_runs"] = runs
    row["merge_s"] = statistics.median(r["merge_s"] for r in runs)
    row["merge_cpu_s"] = statistics.median(r.get("merge_cpu_s", math.nan) for r in runs)
    row["client_peak_mib"] = max(r["client_peak_mib"] for r in runs)
    row["merge_target_met"] = row["merge_s"] < 60 and row["client_peak_mib"] < 4096
    return row


def _scale_name(country: Country) -> str:
    return next(name for name, c in SCALES.items() if c == country)


# ---------------------------------------------------------------------------------------------
# the task graph and the scheduler


def noop_tile(plan: Any, tile: Any, vectors: Any, moments: Any) -> dict[str, float]:
    """A tile task that does nothing (its arguments still travel)."""
    return {"total_s": 0.0}


def vector_refs(plan: Any, folder: Path) -> list[Any]:
    """Per tile, the `VectorsFile` its task is sent (`run._run_tiles`); nothing is read."""
    from ruinmap.cluster.job.vector_files import VectorsFile
    from ruinmap.cluster.storage.location import LocalPath

    return [VectorsFile(LocalPath(folder).join("vectors", f"tile_{t.iy}_{t.ix}.npz"), t.key,
                        "0" * 64) for t in plan.tiles]


def sized_vectors(country: Country, cells: np.ndarray, tile: Any, which: np.ndarray,
                  rng: np.random.Generator) -> Any:
    """`TileVectors` sized like the country's for one tile: one distinct WKB box per
    footprint it is sent (as footprints and again for the built-up mask), its centroids,
    and a 4 KB WKB polygon per district it touches."""
    from ruinmap.cluster.job.polygons import TileVectors

    blob = rng.bytes(WKB_BOX_BYTES * max(len(which), 1))
    wkb = np.empty(len(which), object)
    wkb[:] = [blob[i * WKB_BOX_BYTES : (i + 1) * WKB_BOX_BYTES] for i in range(len(which))]
    per = country.tile_px // COARSE_PX
    districts = np.unique(cells[tile.iy * per : (tile.iy + 1) * per,
                                tile.ix * per : (tile.ix + 1) * per])
    d_wkb = np.empty(len(districts), object)
    d_wkb[:] = [rng.bytes(4096) for _ in districts]
    return TileVectors(
        district_wkb=d_wkb, district_label=districts + 1,
        district_layer=np.zeros(len(districts), np.int64), building_wkb=wkb,
        building_index=which.astype(np.int64), centroid_index=which.astype(np.int64),
        centroid_rc=np.zeros((len(which), 2), np.int64), mask_wkb=wkb.copy(),
    )  # fmt: skip


def task_graph(country: Country, plan: Any, folder: Path, sample: int = 40) -> dict[str, Any]:
    """Tasks and the bytes the client pickles for them: the plan once, and each tile's
    (tile, `VectorsFile`); and the tiles' polygon files (`vector_files`) the client writes
    instead, their bytes and the client's seconds to write them fitted as a + b x
    footprints on `sample` tiles of the country's footprints (written for real into
    `folder`) and summed over every tile. `task_args_before_mib`: the same polygons as
    task arguments, as they were sent before the files."""
    import pickle

    from ruinmap.cluster.job.vector_files import remove_vector_files, write_vector_files
    from ruinmap.cluster.storage.location import LocalPath

    rng = np.random.default_rng(country.seed)
    cells = district_cells(country, rng)
    fp = make_footprints(country, cells, plan.params.min_building_m2, rng)
    tile_of, entry_fp, _ = tile_entries(country, fp)
    starts = np.searchsorted(tile_of, np.arange(len(plan.tiles) + 1))
    footprints = np.diff(starts)
    picked = np.unique(np.linspace(0, len(plan.tiles) - 1, sample).astype(int))
    work = LocalPath(folder)
    refs = vector_refs(plan, folder)
    arg_bytes = [len(pickle.dumps((plan.tiles[k], refs[k]), protocol=5)) for k in picked]
    before, file_bytes, write_s = [], [], []
    for k in picked:
        vectors = sized_vectors(country, cells, plan.tiles[k],
                                entry_fp[starts[k] : starts[k + 1]], rng)
        before.append(len(pickle.dumps((plan.tiles[k], vectors), protocol=5)))
        t0 = time.perf_counter()
        [ref] = write_vector_files(work, "tile", [plan.tiles[k]], [vectors])
        write_s.append(time.perf_counter() - t0)
        file_bytes.append(Path(ref.location).stat().st_size)
    remove_vector_files(work)

    def summed(values: list[float]) -> np.ndarray:
        slope, intercept = np.polyfit(footprints[picked], values, 1)
        return intercept + slope * footprints

    per_tile_before, per_file, per_write = summed(before), summed(file_bytes), summed(write_s)
    return {"tasks": len(plan.tiles) + 1, "plan_kib": round(len(pickle.dumps(plan)) / 1024, 1),
            "task_args_mib": round(float(np.mean(arg_bytes)) * len(plan.tiles) / 2**20, 3),
            "task_args_bytes_max": int(max(arg_bytes)),
            "task_args_before_mib": round(float(per_tile_before.sum()) / 2**20, 1),
            "vector_files_mib": round(float(per_file.sum()) / 2**20, 1),
            "vector_file_kib_median": round(float(np.median(per_file)) / 1024, 1),
            "vector_files_write_s": round(float(per_write.sum()), 2),
            "fitted_on_tiles": len(picked)}


def _scheduler_cpu_s() -> float:
    return time.process_time()


def _import_job_modules() -> None:
    # the job's workers have them loaded by the ingest; unpickling the plan would load them
    # here, inside the timed part
    import ruinmap.cluster.job.plan
    import ruinmap.cluster.job.polygons  # noqa: F401


def time_scheduler(plan: Any, vectors: list[Any], workers: int) -> dict[str, Any]:
    """Submit one no-op task per tile as `run._run_tiles` does, on `workers` local worker
    processes; wall time, scheduler CPU per task, and the client's submit time."""
    from distributed import wait

    from ruinmap.cluster.compute.connect import open_client

    with open_client("local", n_workers=workers, dashboard=False) as client:
        client.run(_import_job_modules)  # workers up and warm before the clock starts
        t0 = time.perf_counter()
        [plan_future] = client.scatter([plan], broadcast=True)
        scatter_s = time.perf_counter() - t0
        cpu0 = client.run_on_scheduler(_scheduler_cpu_s)
        started = time.perf_counter()
        futures = [client.submit(noop_tile, plan_future, tile, vec, None,
                                 key=plan.task_key(tile), pure=False, retries=1)
                   for tile, vec in zip(plan.tiles, vectors, strict=True)]
        submitted = time.perf_counter() - started
        wait(futures)
        wall = time.perf_counter() - started
        cpu = client.run_on_scheduler(_scheduler_cpu_s) - cpu0
    n = len(plan.tiles)
    return {"workers": workers, "tasks": n, "wall_s": round(wall, 2),
            "scatter_s": round(scatter_s, 2), "submit_s": round(submitted, 2),
            "tasks_per_s": round(n / wall, 1),
            "wall_ms_per_task": round(1000 * wall / n, 3),
            "scheduler_cpu_ms_per_task": round(1000 * cpu / n, 3)}


def scheduler_part(country: Country, folder: Path, workers: list[int], repeat: int
                   ) -> dict[str, Any]:
    plan = country_plan(country, folder / "sched")
    vectors = vector_refs(plan, folder / "sched")
    runs = {}
    for n in workers:
        reps = [time_scheduler(plan, vectors, n) for _ in range(repeat)]
        runs[n] = min(reps, key=lambda r: r["wall_s"]) | {
            "wall_s_median": statistics.median(r["wall_s"] for r in reps),
            "scheduler_cpu_ms_per_task_median":
                statistics.median(r["scheduler_cpu_ms_per_task"] for r in reps)}
        print(f"sched {n} worker(s): {json.dumps(runs[n])}", flush=True)
    graph = task_graph(country, plan, folder / "sched")
    print(f"graph: {json.dumps(graph)}", flush=True)
    return {"graph": graph, "runs": runs}


# ---------------------------------------------------------------------------------------------
# the real job, and the simulated curve


def tile_seconds(out: Path) -> list[float]:
    """The seconds each tile took (its ledger entry, written by `run_tile`)."""
    ledger = out / ".ruinmap-job" / "ledger"
    return sorted(float(json.loads(p.read_text())["seconds"]) for p in ledger.iterdir()
                  if p.is_file() and not p.name.startswith("."))


def job_part(size: int, workers: list[int], repeat: int, folder: Path) -> dict[str, Any]:
    from bench_job import make_scene, run_ruinmap

    job = make_scene(folder / f"scene_{size}", size)
    runs: dict[int, Any] = {}
    for _ in range(repeat):
        for n in workers:  # interleaved, so the machine's load hits both alike
            out = folder / f"out_{size}_{n}w"
            run = run_ruinmap(job, n, out)
            run["tile_s"] = tile_seconds(out)
            shutil.rmtree(out, ignore_errors=True)
            runs.setdefault(n, []).append(run)
            print(f"job {size}² {n} worker(s): wall {run['wall_s']:.1f} s, "
                  f"phases {run['phases']}", flush=True)
    summary = {}
    for n, reps in runs.items():
        summary[n] = {
            "wall_s": round(statistics.median(r["wall_s"] for r in reps), 2),
            "tiles_s": round(statistics.median(r["phases"]["tiles_s"] for r in reps), 2),
            "merge_s": round(statistics.median(r["phases"]["merge_s"] for r in reps), 2),
            "tile_s_median": round(statistics.median(t for r in reps for t in r["tile_s"]), 3),
            "tile_s": [t for r in reps for t in r["tile_s"]],
            "tiles": reps[0]["tiles"], "worker_peak_mib": reps[0]["worker_peak_mib"],
            "repeats": len(reps)}
    return {"size": size, "runs": summary}


def simulate_tiles(durations: np.ndarray, workers: int, scheduler_s: float) -> float:
    """Makespan of tiles handed out in order by one scheduler to `workers` one-thread
    workers: each hand-out costs the scheduler `scheduler_s` (serially) before the task
    starts; a worker takes the next tile when its last one ends."""
    free: list[float] = [0.0] * workers  # when each worker is next free
    heapq.heapify(free)
    scheduler_free = 0.0
    end = 0.0
    for d in durations:
        worker_free = heapq.heappop(free)
        start = max(worker_free, scheduler_free) + scheduler_s
        scheduler_free = start
        finish = start + float(d)
        end = max(end, finish)
        heapq.heappush(free, finish)
    return end


def scaling_curve(job: dict[str, Any] | None, sched_ms: float, merge_s: float,
                  country: Country, tile_s: float | None = None) -> dict[str, Any]:
    """The simulated curve (see the module docstring) and the model's check on the
    measured job; `tile_s`: the seconds of one tile of the country's size, given (every
    tile alike), instead of the job's measured tiles."""
    n_tiles = math.ceil(country.height / country.tile_px) * math.ceil(country.width
                                                                       / country.tile_px)
    check: dict[int, Any] = {}
    if tile_s is not None:
        durations = np.full(n_tiles, tile_s)
        source = f"every {country.tile_px}² tile {tile_s} s (given, --tile-s)"
    else:
        assert job is not None
        runs = job["runs"]
        measured_tile = np.array(runs[max(runs)]["tile_s"])  # contended: all cores busy
        tiles_per_job = runs[max(runs)]["tiles"]
        side = job["size"] / math.isqrt(tiles_per_job)
        scale = (country.tile_px / side) ** 2
        check = {n: {"measured_tiles_s": r["tiles_s"],
                     "model_tiles_s": round(simulate_tiles(
                         np.resize(np.array(r["tile_s"]), tiles_per_job), n, sched_ms / 1e3),
                         2)}
                 for n, r in runs.items()}
        durations = np.random.default_rng(1).choice(measured_tile, n_tiles) * scale
        source = (f"per-tile seconds drawn from the measured {job['size']}² job's tiles "
                  f"({side:.0f}² px, {max(runs)} workers) scaled by pixels x{scale:.1f} to "
                  f"{country.tile_px}² tiles")
    curve = []
    one = None
    for n in SIM_WORKERS:
        tiles_s = simulate_tiles(durations, n, sched_ms / 1e3)
        total = tiles_s + merge_s
        one = one or total
        curve.append({"workers": n, "tiles_s": round(tiles_s, 1), "merge_s": round(merge_s, 1),
                      "total_s": round(total, 1), "speedup": round(one / total, 2),
                      "efficiency": round(one / total / n, 3)})
    return {"simulated": True,
            "model": "one scheduler hands tiles out in order, each hand-out costing the "
                     f"measured scheduler CPU per task; {source}; plus the measured dry-run "
                     "merge; no ingest, no products, no I/O contention",
            "scheduler_ms_per_task": sched_ms, "tile_s_mean": round(float(durations.mean()), 2),
            "model_check": check, "curve": curve}


# ---------------------------------------------------------------------------------------------


def print_table(results: dict[str, Any]) -> None:
    dry = results.get("dryrun")
    if dry:
        print(f"\ndry run: {dry['pixels'] / 1e9:.2f} Gpx, {dry['tiles']} tiles of "
              f"{dry['tile_px']}², {dry['districts']} districts, {dry['footprints']:,} "
              f"footprints ({dry['footprint_tile_entries']:,} tile entries); partials "
              f"{dry['partials_mib']} MiB ({dry['partial_mib_mean']} MiB a tile)")
        print(f"  merge {dry['merge_s']} s, CPU {dry['merge_cpu_s']} s (medians of "
              f"{len(dry['merge_runs'])}), client peak "
              f"{dry['client_peak_mib']} MiB; targets < 60 s, < 4096 MiB: "
              f"{'met' if dry['merge_target_met'] else 'MISSED'}")
    sched = results.get("sched")
    if sched:
        g = sched["graph"]
        print(f"\ntask graph: {g['tasks']} tasks, plan {g['plan_kib']} KiB once, task args "
              f"{g['task_args_mib']} MiB (at most {g['task_args_bytes_max']} bytes a tile; "
              f"the polygons as arguments were {g['task_args_before_mib']} MiB); the tiles' "
              f"polygon files {g['vector_files_mib']} MiB (median "
              f"{g['vector_file_kib_median']} KiB), written by the client in "
              f"{g['vector_files_write_s']} s")
        for n, r in sched["runs"].items():
            print(f"  no-op tiles, {n} worker(s): wall {r['wall_s_median']} s, "
                  f"{r['tasks_per_s']} tasks/s, scheduler CPU "
                  f"{r['scheduler_cpu_ms_per_task_median']} ms/task")
    curve = results.get("scaling")
    if curve:
        print("\nmodel check on the measured job (tile phase, s):")
        for n, c in curve["model_check"].items():
            print(f"  {n} worker(s): measured {c['measured_tiles_s']}, model "
                  f"{c['model_tiles_s']}")
        print("country, SIMULATED (see 'model'):")
        print(f"  {'workers':>7} {'tiles_s':>9} {'merge_s':>8} {'total_s':>9} {'speedup':>8} "
              f"{'eff':>6}")
        for r in curve["curve"]:
            print(f"  {r['workers']:>7} {r['tiles_s']:>9} {r['merge_s']:>8} {r['total_s']:>9} "
                  f"{r['speedup']:>8} {r['efficiency']:>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["dryrun", "sched", "job"],
                        choices=["dryrun", "sched", "job"])
    parser.add_argument("--scale", choices=sorted(SCALES), default="country")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--job-size", type=int, default=4096)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ruinmap-bench-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the partials afterwards")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--combine", type=Path, nargs="+",
                        help="take the parts from these --json files of earlier runs (the "
                             "curve needs all three) instead of measuring")
    parser.add_argument("--tile-s", type=float,
                        help="the curve with every country tile taking this many seconds "
                             "(instead of the measured job's tiles)")
    parser.add_argument("--merge-s", type=float,
                        help="the curve with this merge time (instead of the dry run's)")
    parser.add_argument("--merge-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    country = SCALES[args.scale]
    if args.merge_only:
        print(json.dumps(measure_merge(country, args.merge_only)))
        return 0

    results: dict[str, Any] = {"scale": args.scale, "cpus": os.cpu_count()}
    if args.combine:
        for path in args.combine:
            results.update({k: v for k, v in json.loads(path.read_text()).items()
                            if k in ("dryrun", "sched", "job")})
        for part in ("sched", "job"):  # JSON keys are strings; worker counts are ints
            if part in results:
                results[part]["runs"] = {int(k): v for k, v in results[part]["runs"].items()}
        args.parts = [p for p in ("dryrun", "sched", "job") if p in results]
    if "dryrun" in args.parts and not args.combine:
        results["dryrun"] = dry_run(country, args.workdir / "dryrun", args.repeat)
        print(f"dryrun: {json.dumps(results['dryrun'])}", flush=True)
        if not args.keep:
            shutil.rmtree(args.workdir / "dryrun", ignore_errors=True)
    if "sched" in args.parts and not args.combine:
        results["sched"] = scheduler_part(country, args.workdir, args.workers, args.repeat)
    if "job" in args.parts and not args.combine:
        results["job"] = job_part(args.job_size, args.workers, args.repeat, args.workdir / "job")
        if not args.keep:
            shutil.rmtree(args.workdir / "job", ignore_errors=True)
    has_tiles = "job" in args.parts or args.tile_s is not None
    has_merge = "dryrun" in args.parts or args.merge_s is not None
    if "sched" in args.parts and has_tiles and has_merge:
        runs = results["sched"]["runs"]
        sched_ms = runs[max(runs)]["scheduler_cpu_ms_per_task_median"]
        merge_s = args.merge_s if args.merge_s is not None else results["dryrun"]["merge_s"]
        results["scaling"] = scaling_curve(results.get("job"), sched_ms, merge_s, country,
                                           args.tile_s)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
