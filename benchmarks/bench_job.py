"""Benchmark the whole damage-mapping job (`ruinmap run`) against a straightforward pipeline.

Scene (written once per size under --workdir, kept with --keep): size x size px at 10 m,
5 pre + 3 post dates, 2 polarisations (VV, VH) of SAR-like linear backscatter (a smooth field
times 5-look gamma speckle, an ~8% nodata swath edge), destroyed blocks where post-event
backscatter drops 6 dB, 100 Voronoi districts and 50,000 rectangular building footprints.

For each size it reports:

- ruinmap with 1 and with 2 local workers (one process each, one thread): the whole job
  (ingest, pwtt tiles, aggregation, every product) wall time, its phases, megapixels/s
  (image pixels / wall time) and the peak resident memory (VmHWM) of every worker;
- baseline (one process, run as a subprocess so its memory is its own): the same steps the
  straightforward way: rioxarray loads every image whole, Lee filter and circular means by
  xarray-spatial `convolve_2d`, Welch's t with xarray reductions, focal median with
  xarray-spatial `focal.apply`, zonal statistics of districts and buildings with exactextract,
  the grid with xarray `coarsen`, COGs with rioxarray; skipped above --baseline-max px
  (it holds every image in memory);
- the I/O bounds on the same cluster right after each job (`measure_io_bounds`, medians of 3):
  `store_read_s` (every input array of the store read once in the job's tile-sized blocks,
  nothing else) and `input_read_s` (every source GeoTIFF read once), with the ratios
  `tiles_s / store_read_s` (and its inverse, the share of the bound the tiles reach) and
  `total_s / input_read_s` (the store-read bound means something for `--ingest always` only:
  a date read in place has no shards in the store);
- the ratios: 2 workers / 1 worker, ruinmap (2 workers) / baseline;
- with `--ingest always never` (`inputs.ingest`; the scene's files are tiled GeoTIFFs on the
  grid, so `auto` reads them in place too): each mode's runs side by side, interleaved
  `--repeats` times, their median wall time and phases, and the gain always / each mode.

    python benchmarks/bench_job.py --sizes 4096 --workdir /tmp/ruinmap-bench-job
    python benchmarks/bench_job.py --sizes 16384 --workers 1 2 --baseline-max 0
    python benchmarks/bench_job.py --sizes 32768 --workers 2 --baseline-max 0 --dates 3 2 --bands VV
    python benchmarks/bench_job.py --sizes 4096 --workers 2 --baseline-max 0 \
        --ingest always never --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TILE = 512
N_PRE, N_POST = 5, 3
BANDS = ("VV", "VH")
N_DISTRICTS = 100
N_BUILDINGS = 50_000
CRS = "EPSG:32636"
ORIGIN = (600000.0, 4000000.0)


def _peak_rss_mib() -> float:
    """Peak resident memory of the calling process (VmHWM, MiB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# ---------------------------------------------------------------------------------------------
# the scene


def make_scene(folder: Path, size: int, seed: int = 0, *, n_pre: int = N_PRE,
               n_post: int = N_POST, bands: tuple[str, ...] = BANDS) -> Path:
    """Write the scene (see module doc; `n_pre` + `n_post` dates of `bands`) into `folder`;
    return its job.toml."""
    import geopandas as gpd
    import rasterio
    import shapely
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from ruinmap.cluster.job.spec import dump_toml

    job = folder / "job.toml"
    if job.exists():
        return job
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    transform = from_origin(*ORIGIN, 10.0, 10.0)
    coarse = rng.normal(size=(2, size // 64 + 2, size // 64 + 2)).astype(np.float32)
    pool = rng.gamma(5.0, 0.2, (16, TILE, TILE)).astype(np.float32)
    # destroyed blocks: 200 m squares on a coarse 200 m grid, ~10% of them
    blocks = rng.random((size // 20 + 1, size // 20 + 1)) < 0.10
    # Row block by row block, every date at once: the smooth field and its dB to linear power
    # (most of the work) are shared by the dates of a side, so a 32768^2 scene takes minutes.
    with contextlib.ExitStack() as files:
        dates = []
        for d in range(n_pre + n_post):
            side = "pre" if d < n_pre else "post"
            path = folder / side / f"S1_2022{d + 1:02d}01.tif"
            path.parent.mkdir(exist_ok=True)
            profile = dict(driver="GTiff", width=size, height=size, count=len(bands),
                           dtype="float32", crs=CRS, transform=transform, nodata=np.nan,
                           tiled=True, blockxsize=TILE, blockysize=TILE, BIGTIFF="YES")
            dst = files.enter_context(rasterio.open(path, "w", **profile))
            dst.descriptions = bands
            dst.update_tags(ACQUISITION_DATE=f"2022-{d + 1:02d}-01")
            dates.append((d, side, dst))
        for r0 in range(0, size, TILE):
            rows = np.arange(r0, r0 + TILE) / 64.0
            cols = np.arange(size) / 64.0
            ri, ci = rows.astype(int), cols.astype(int)
            rf, cf = (rows - ri)[:, None], (cols - ci)[None, :]
            hit = blocks[(np.arange(r0, r0 + TILE) // 20)[:, None],
                         (np.arange(size) // 20)[None, :]]
            power = {}
            for b, band in enumerate(bands):
                c = coarse[BANDS.index(band)]
                field = (c[ri][:, ci] * (1 - rf) * (1 - cf) + c[ri + 1][:, ci] * rf * (1 - cf)
                         + c[ri][:, ci + 1] * (1 - rf) * cf + c[ri + 1][:, ci + 1] * rf * cf)
                db = -8.0 - 6.0 * BANDS.index(band) + 3.0 * field
                power[b, "pre"] = 10 ** (db / 10)
                power[b, "post"] = 10 ** (np.where(hit, db - 6.0, db) / 10)
            edge = 0.16 * size - 0.16 * np.arange(r0, r0 + TILE)[:, None]
            swath = np.arange(size)[None, :] < edge
            for d, side, dst in dates:
                block = np.empty((len(bands), TILE, size), np.float32)
                for b in range(len(bands)):
                    speckle = np.concatenate(
                        [pool[(r0 // TILE * 7 + c0 // TILE * 3 + 5 * b + 11 * d) % len(pool)]
                         for c0 in range(0, size, TILE)], axis=1)
                    block[b] = power[b, side] * speckle
                block[:, swath] = np.nan
                dst.write(block, window=Window(0, r0, size, TILE))

    extent = size * 10.0
    x0, y1 = ORIGIN
    box = shapely.box(x0, y1 - extent, x0 + extent, y1)
    seeds = shapely.points(rng.uniform(x0, x0 + extent, N_DISTRICTS),
                           rng.uniform(y1 - extent, y1, N_DISTRICTS))
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=box))
    cells = shapely.intersection(cells, box)
    gpd.GeoDataFrame({"district_id": [f"D{i:03d}" for i in range(len(cells))],
                      "name": [f"District {i}" for i in range(len(cells))]},
                     geometry=cells, crs=CRS).to_file(folder / "districts.geojson")
    cx = rng.uniform(x0, x0 + extent, N_BUILDINGS)
    cy = rng.uniform(y1 - extent, y1, N_BUILDINGS)
    w, h = rng.uniform(6, 30, N_BUILDINGS), rng.uniform(6, 30, N_BUILDINGS)
    gpd.GeoDataFrame({"building_id": np.arange(N_BUILDINGS)},
                     geometry=shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                     crs=CRS).to_parquet(folder / "buildings.parquet")
    job.write_text(dump_toml({
        "method": "pwtt",
        "inputs": {"pre": ["pre/*.tif"], "post": ["post/*.tif"]},
        "districts": {"path": "districts.geojson", "id": "district_id", "name": "name"},
        "buildings": {"path": "buildings.parquet", "id": "building_id"},
        "grid": {"cell_size": 500.0},
        "output": {"dir": "out"},
        **({} if bands == BANDS else {"method_params": {"polarisations": list(bands)}}),
    }))
    return job


# ---------------------------------------------------------------------------------------------
# ruinmap


def run_ruinmap(job: Path, workers: int, out: Path, ingest: str = "always") -> dict[str, Any]:
    from ruinmap.cluster.compute.connect import open_client
    from ruinmap.cluster.job.run import run_job
    from ruinmap.cluster.job.spec import OutputSpec, load_spec

    spec = load_spec(job)
    spec = spec.model_copy(update={"output": OutputSpec(dir=str(out)), "inputs":
                                   spec.inputs.model_copy(update={"ingest": ingest})})
    shutil.rmtree(out, ignore_errors=True)
    with open_client("local", n_workers=workers, dashboard=False) as client:
        started = time.perf_counter()
        result = run_job(spec, client=client, progress=False)
        wall = time.perf_counter() - started
        peaks = sorted(client.run(_peak_rss_mib).values())
        sources = [*sorted((job.parent / "pre").glob("*.tif")),
                   *sorted((job.parent / "post").glob("*.tif"))]
        bounds = measure_io_bounds(client, result.store, sources)
    run = {"wall_s": wall, "phases": {k: round(v, 2) for k, v in result.timings.items()},
           "worker_peak_mib": [round(p) for p in peaks], "tiles": result.tiles_total,
           "client_peak_mib": round(_peak_rss_mib()), **bounds}
    return {**run, **bound_ratios(run)}


# ---------------------------------------------------------------------------------------------
# the I/O bounds, measured on the job's own cluster right after it


BOUND_REPEATS = 3


def _sum_store_tile(store: str, tile: tuple[int, int, int, int]) -> float:
    """Read one tile-sized block of every input array of the store (all dates and bands of
    both sides, no halo) and sum it, so nothing but the read and decode is timed."""
    from ruinmap.cluster.storage.arrays import open_array
    from ruinmap.cluster.storage.location import as_location

    r0, c0, r1, c1 = tile
    return sum(float(np.nansum(open_array(as_location(store), side)[:, :, r0:r1, c0:c1]))
               for side in ("pre", "post"))


def _sum_geotiff_window(path: str, tile: tuple[int, int, int, int]) -> float:
    """Read one window of every band of a source GeoTIFF and sum it."""
    import rasterio
    from rasterio.windows import Window

    r0, c0, r1, c1 = tile
    with rasterio.open(path) as src:
        return float(np.nansum(src.read(window=Window(c0, r0, c1 - c0, r1 - r0))))


def _median_map_seconds(client: Any, func: Any, *iterables: Any) -> float:
    """Median wall time over BOUND_REPEATS of mapping `func` over the cluster and gathering."""
    times = []
    for _ in range(BOUND_REPEATS):
        started = time.perf_counter()
        client.gather(client.map(func, *iterables, pure=False))
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def measure_io_bounds(client: Any, store: Any, sources: list[Path]) -> dict[str, float]:
    """The job's I/O bounds on its own workers (medians of BOUND_REPEATS):

    - `store_read_s`: every input array of the ingested store read once, in the job's
      tile-sized blocks (one task per tile reads both sides, as a tile task does, without
      the halo), summed; the floor under the tile phase;
    - `input_read_s`: every source GeoTIFF read once, all bands, in the same windows; the
      floor under the whole job.

    Both run after the job, so the store and the sources are as warm in the page cache as the
    job found them (the ingest had just written the store).
    """
    from ruinmap.cluster.job.tiles import plan_tiles, tile_size
    from ruinmap.cluster.storage.store import StoreInfo

    info = StoreInfo.read(store)
    tile_px = tile_size(info.grid.height, info.grid.width, info.chunk, info.shard)
    windows = [(t.row0, t.col0, t.row0 + t.height, t.col0 + t.width)
               for t in plan_tiles(info.grid.height, info.grid.width, tile_px)]
    store_read = _median_map_seconds(client, _sum_store_tile, [str(store)] * len(windows),
                                     windows)
    pairs = [(str(path), w) for path in sources for w in windows]
    input_read = _median_map_seconds(client, _sum_geotiff_window, [p for p, _ in pairs],
                                     [w for _, w in pairs])
    return {"store_read_s": round(store_read, 3), "input_read_s": round(input_read, 3)}


def bound_ratios(run: dict[str, Any]) -> dict[str, float]:
    """tiles_s / store_read_s, its inverse (the share of the store-read bound the tiles reach;
    the target is >= 0.5) and total_s / input_read_s."""
    tiles_s, total_s = run["phases"]["tiles_s"], run["phases"]["total_s"]
    return {"tiles_over_store_read": round(tiles_s / run["store_read_s"], 2),
            "store_read_over_tiles": round(run["store_read_s"] / tiles_s, 3),
            "total_over_input_read": round(total_s / run["input_read_s"], 2)}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time, with every phase's median and each run's wall time."""
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    median = dict(ordered[len(ordered) // 2])
    median["phases"] = {k: round(float(np.median([r["phases"][k] for r in runs])), 2)
                        for k in median["phases"]}
    median["wall_s_runs"] = [round(r["wall_s"], 2) for r in runs]
    return median


def _run_modes(job: Path, workers: int, out: Path, modes: list[str], repeats: int, size: int,
               mpx: float) -> dict[str, Any]:
    """Each `inputs.ingest` mode's median run, the modes interleaved `repeats` times so the
    machine's load falls on each alike; with several, the gain always / mode."""
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(max(1, repeats)):
        for mode in modes:
            run = run_ruinmap(job, workers, out, mode)
            run["ingest"] = mode
            runs[mode].append(run)
            print(f"[{size}] ruinmap {workers} worker(s): {json.dumps(run)}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    result: dict[str, Any] = {}
    for mode in modes:
        result[mode] = _median_run(runs[mode])
        result[mode]["mpx_per_s"] = round(mpx / result[mode]["wall_s"], 2)
    if "always" in result and len(modes) > 1:
        for mode in modes:
            if mode != "always":
                result[f"gain_always_vs_{mode}"] = round(
                    result["always"]["wall_s"] / result[mode]["wall_s"], 2)
        print(f"[{size}] {workers} worker(s), median wall s: "
              f"{ {m: round(result[m]['wall_s'], 2) for m in modes} }, gains "
              f"{ {k: v for k, v in result.items() if k.startswith('gain')} }", flush=True)
    return result


# ---------------------------------------------------------------------------------------------
# the straightforward pipeline


def run_baseline(job: Path, out: Path) -> dict[str, Any]:
    """The same steps with xarray + xarray-spatial + exactextract in one process."""
    import warnings

    import exactextract
    import geopandas as gpd
    import numba
    import rioxarray
    import xarray as xr
    from xrspatial.convolution import circle_kernel, convolve_2d
    from xrspatial.focal import apply as focal_apply

    warnings.simplefilter("ignore")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    folder = job.parent
    started = time.perf_counter()

    def load(side: str) -> xr.DataArray:
        files = sorted((folder / side).glob("*.tif"))
        return xr.concat([rioxarray.open_rasterio(f, masked=True).astype("float32")
                          for f in files], dim="time")

    pre, post = load("pre"), load("post")
    template = pre.isel(time=0, band=0)
    ones3 = np.ones((3, 3))

    def nan_convolve_mean(img: xr.DataArray, kernel: np.ndarray) -> xr.DataArray:
        valid = img.notnull().astype("float32")
        total = convolve_2d(img.fillna(0).data, kernel)
        count = convolve_2d(valid.data, kernel)
        return img.copy(data=np.where(count > 0, total / count, np.nan).astype("float32"))

    def lee(img: xr.DataArray, enl: float = 5.0) -> xr.DataArray:
        mean = nan_convolve_mean(img, ones3)
        mean_sq = nan_convolve_mean(img * img, ones3)
        var_z = (mean_sq - mean * mean).clip(min=0)
        eta2 = 1.0 / enl
        var_x = (var_z - mean * mean * eta2) / (1 + eta2)
        b = xr.where(var_z > 0, (var_x / var_z).clip(min=0), 0)
        return ((1 - b) * mean + b * img).where(img.notnull())

    best = None
    for band in range(pre.sizes["band"]):
        a = xr.concat([np.log(lee(pre.isel(time=t, band=band))) for t in range(pre.sizes["time"])],
                      dim="time")
        b = xr.concat([np.log(lee(post.isel(time=t, band=band)))
                       for t in range(post.sizes["time"])], dim="time")
        na, nb = a.count("time"), b.count("time")
        t = (b.mean("time") - a.mean("time")) / np.sqrt(a.var("time", ddof=1) / na
                                                         + b.var("time", ddof=1) / nb)
        t = abs(t.where((na >= 3) & (nb >= 2)))
        best = t if best is None else np.fmax(best, t)
    del pre, post

    @numba.njit
    def nanmedian(window: np.ndarray) -> float:
        return np.nanmedian(window)

    median = focal_apply(best.astype("float32"), circle_kernel(10, 10, 10), nanmedian)
    layers = [median] + [nan_convolve_mean(median, circle_kernel(10, 10, r))
                         for r in (50, 100, 150)]
    score = (0.25 * sum(layers)).astype("float32").rio.write_crs(CRS)
    score = score.rio.write_transform(template.rio.transform())
    score.attrs = {}
    classes = xr.where(score.notnull(), np.digitize(score.fillna(0), [2, 3.3, 4, 5], right=True),
                       255).astype("uint8").rio.write_crs(CRS)
    classes.attrs = {}
    score.rio.to_raster(out / "score.tif", driver="COG", compress="deflate")
    classes.rio.to_raster(out / "damage.tif", driver="COG", compress="deflate")
    damaged = (score > 3.3).astype("float32").where(score.notnull()).rio.write_crs(CRS)
    damaged.rio.to_raster(out / "damaged.tif", driver="GTiff")

    districts = gpd.read_file(folder / "districts.geojson")
    stats = exactextract.exact_extract(str(out / "score.tif"), districts,
                                       ["mean", "count", "quantile(q=0.9)"],
                                       include_cols=["district_id"], output="pandas")
    frac = exactextract.exact_extract(str(out / "damaged.tif"), districts, ["mean"],
                                      include_cols=["district_id"], output="pandas")
    stats.merge(frac, on="district_id").to_parquet(out / "districts.parquet")
    buildings = gpd.read_parquet(folder / "buildings.parquet")
    exactextract.exact_extract(str(out / "score.tif"), buildings, ["mean", "max"],
                               include_cols=["building_id"], output="pandas"
                               ).to_parquet(out / "buildings.parquet")
    grid = score.coarsen(x=50, y=50, boundary="pad").mean()
    grid.attrs = {}
    grid.rio.write_crs(CRS).rio.to_raster(out / "grid.tif", driver="COG")
    wall = time.perf_counter() - started
    return {"wall_s": wall, "peak_mib": round(_peak_rss_mib())}


# ---------------------------------------------------------------------------------------------
# the scene's shape on the command line


def add_scene_shape_args(parser: argparse.ArgumentParser) -> None:
    """`--dates PRE POST` and `--bands ...`: a smaller scene per pixel, e.g. a 32768^2 one that
    fits the disk (`--dates 3 2 --bands VV`: 5 layers of 4.3 GB instead of 16)."""
    parser.add_argument("--dates", type=int, nargs=2, default=[N_PRE, N_POST],
                        metavar=("PRE", "POST"), help="pre- and post-event dates (default 5 3)")
    parser.add_argument("--bands", nargs="+", choices=BANDS, default=list(BANDS),
                        help="polarisations of every date (default VV VH)")


def scene_shape(args: argparse.Namespace) -> dict[str, Any]:
    """make_scene's keyword arguments from `add_scene_shape_args`' options."""
    n_pre, n_post = args.dates
    if n_pre < 3 or n_post < 2:
        raise SystemExit("--dates: pwtt needs at least 3 pre- and 2 post-event dates")
    return {"n_pre": n_pre, "n_post": n_post, "bands": tuple(args.bands)}


def scene_folder(workdir: Path, size: int, shape: dict[str, Any]) -> Path:
    """The scene's folder: `scene_<size>`, with its shape in the name when not the default."""
    if (shape["n_pre"], shape["n_post"], shape["bands"]) == (N_PRE, N_POST, BANDS):
        return workdir / f"scene_{size}"
    return workdir / f"scene_{size}_{shape['n_pre']}x{shape['n_post']}_{'-'.join(shape['bands'])}"


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ruinmap-bench-job"))
    parser.add_argument("--baseline-max", type=int, default=8192,
                        help="largest size the baseline runs at (it loads every image)")
    parser.add_argument("--keep", action="store_true", help="keep the scenes afterwards")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--baseline-only", type=Path, help=argparse.SUPPRESS)
    add_scene_shape_args(parser)
    parser.add_argument("--ingest", nargs="+", default=["always"],
                        choices=("always", "auto", "never"),
                        help="inputs.ingest modes run side by side (the first fills the rows)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each mode, interleaved; medians reported")
    args = parser.parse_args()
    shape = scene_shape(args)
    if args.baseline_only:
        print(json.dumps(run_baseline(args.baseline_only, args.baseline_only.parent / "base")))
        return 0

    results = []
    for size in args.sizes:
        folder = scene_folder(args.workdir, size, shape)
        t0 = time.perf_counter()
        job = make_scene(folder, size, **shape)
        print(f"[{size}] scene ready in {time.perf_counter() - t0:.0f} s", flush=True)
        mpx = size * size / 1e6
        row: dict[str, Any] = {"size": size, "megapixels": mpx, "ruinmap": {},
                               "dates": [shape["n_pre"], shape["n_post"]],
                               "bands": list(shape["bands"])}
        for workers in args.workers:
            modes = _run_modes(job, workers, folder / f"out_{workers}w", args.ingest,
                               args.repeats, size, mpx)
            row["ruinmap"][workers] = modes[args.ingest[0]]
            if len(args.ingest) > 1:
                row.setdefault("ingest_modes", {})[workers] = modes
        if size <= args.baseline_max:
            proc = subprocess.run([sys.executable, __file__, "--baseline-only", str(job)],
                                  capture_output=True, text=True, env=os.environ.copy())
            if proc.returncode == 0:
                base = json.loads(proc.stdout.strip().splitlines()[-1])
                base["mpx_per_s"] = round(mpx / base["wall_s"], 2)
            else:
                base = {"error": proc.stderr[-2000:]}
            row["baseline"] = base
            print(f"[{size}] baseline: {json.dumps(base)[:2500]}", flush=True)
        runs = row["ruinmap"]
        if 1 in runs and 2 in runs:
            row["speedup_2_vs_1"] = round(runs[1]["wall_s"] / runs[2]["wall_s"], 2)
        best = min(r["wall_s"] for r in runs.values())
        if "wall_s" in row.get("baseline", {}):
            row["speedup_vs_baseline"] = round(row["baseline"]["wall_s"] / best, 2)
        print(f"[{size}] ratios: 2w/1w {row.get('speedup_2_vs_1')}, vs baseline "
              f"{row.get('speedup_vs_baseline')}", flush=True)
        results.append(row)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
