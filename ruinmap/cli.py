"""The `ruinmap` command: argument parsing and printing only.

Each sub-command has an `_add_<name>` function that declares its arguments and a `_run_<name>`
function that calls the library function tests can call too. Library modules are imported
inside `_run_*` so `ruinmap --help` stays fast and does not compile kernels.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable, Sequence

from ruinmap import __version__
from ruinmap.errors import RuinmapError, SpecError

Runner = Callable[[argparse.Namespace], int]


def _add_bench(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser(
        "bench",
        help="measure every kernel against the memory-bandwidth bound and its NumPy reference",
        description=(
            "Time every kernel on size x size float32 inputs using all cores; report megapixels/s, "
            "effective GB/s, the fraction of a triad bandwidth bound measured in the same run, "
            "and the speedup over the kernel's NumPy reference."
        ),
    )
    p.add_argument("--size", type=int, default=4096, help="image side in pixels (default 4096)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per kernel; median reported")
    p.add_argument(
        "--kernel", action="append", default=None, help="only this kernel (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="print only a JSON list, one per kernel")

    def run(args: argparse.Namespace) -> int:
        from ruinmap.bench import print_results, run_benchmarks

        results = run_benchmarks(size=args.size, repeat=args.repeat, kernels=args.kernel)
        print_results(results, as_json=args.json)
        return 0

    return run


def _add_ingest(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser(
        "ingest",
        help="shard pre- and post-event GeoTIFFs into one georeferenced Zarr v3 store",
        description=(
            "Put every pre- and post-event image (GeoTIFF/COG, one file per date; globs allowed) "
            "on one grid and write them, shard by shard on a Dask cluster, into one Zarr v3 "
            "store with arrays pre and post (time, band, y, x), float32, NaN = nodata. "
            "Resumes an interrupted run; a complete store is left alone unless --overwrite, "
            "or grown by post-event files given since it was made (later dates only: "
            "monitoring; only their shards are written)."
        ),
    )
    p.add_argument(
        "--pre",
        nargs="+",
        action="extend",
        required=True,
        metavar="FILE",
        help="pre-event files or quoted globs, e.g. 'pre/*.tif' (repeatable)",
    )
    p.add_argument(
        "--post",
        nargs="+",
        action="extend",
        required=True,
        metavar="FILE",
        help="post-event files or quoted globs (repeatable)",
    )
    p.add_argument("--out", required=True, help="the store to write, e.g. store.zarr")
    p.add_argument(
        "--bbox",
        metavar="MINX,MINY,MAXX,MAXY",
        help="extent to cover (default: the intersection of all footprints)",
    )
    p.add_argument("--bbox-crs", metavar="CRS", help="CRS of --bbox (default: the target CRS)")
    p.add_argument("--crs", help="target CRS (default: the first pre image's)")
    p.add_argument(
        "--resolution",
        metavar="RES[,YRES]",
        help="target pixel size in CRS units (default: the first pre image's)",
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=None,
        metavar="PX",
        help="inner Zarr chunk side in pixels (default 512)",
    )
    p.add_argument(
        "--shard",
        type=int,
        default=None,
        metavar="PX",
        help="shard side in pixels, a multiple of --chunk; one task writes one "
        "shard (default 2048, smaller for many bands)",
    )
    p.add_argument(
        "--compression",
        default=None,
        help="blosc-zstd[:level] (default blosc-zstd:1, byte shuffle), zstd[:level], "
        "blosc-lz4[:level] or none",
    )
    p.add_argument(
        "--resampling",
        default="bilinear",
        help="for images not on the grid: bilinear (default), nearest (classes), "
        "cubic, average, ...",
    )
    p.add_argument(
        "--nodata",
        type=float,
        default=None,
        help="nodata value of every input, overriding the files' own",
    )
    p.add_argument("--bands", metavar="NAME,NAME",
                   help="band names (default: descriptions, else b1..bN)")
    p.add_argument(
        "--scale",
        default="auto",
        help="scale of SAR inputs: auto (default: metadata, else the values), power, "
        "amplitude or db; converted to linear power",
    )
    p.add_argument(
        "--ingest",
        default="always",
        choices=("always", "auto", "never"),
        help="always (default): copy every date into the store; auto: leave local tiled "
        "GeoTIFFs (COGs) already on the grid where they are, for jobs to read in place; "
        "never: copy nothing, refusing files that would need it",
    )
    p.add_argument(
        "--stack-bands",
        action="store_true",
        help="files of one side with the same date are one acquisition, one band "
        "each (e.g. Sentinel-2 *_B02.tif, *_B03.tif ...)",
    )
    p.add_argument(
        "--pre-dates", metavar="DATE,DATE", help="one date per pre file, overriding tags and names"
    )
    p.add_argument(
        "--post-dates",
        metavar="DATE,DATE",
        help="one date per post file, overriding tags and names",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="'local' (a cluster on this machine), tcp://host:port, slurm, pbs or kubernetes; "
        "default: the Dask config's ruinmap.cluster.address, else local",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing ruinmap store at --out"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def _floats(text: str | None, what: str, count: tuple[int, ...]) -> tuple[float, ...] | None:
        if text is None:
            return None
        try:
            values = tuple(float(v) for v in text.replace(" ", "").split(","))
        except ValueError:
            values = ()
        if len(values) not in count:
            raise SpecError(f"{what} {text!r}: expected {' or '.join(map(str, count))} numbers")
        return values

    def _names(text: str | None) -> tuple[str, ...] | None:
        return None if text is None else tuple(v.strip() for v in text.split(",") if v.strip())

    def run(args: argparse.Namespace) -> int:
        from ruinmap.cli_logging import log_to_terminal
        from ruinmap.cluster.ingest import DEFAULT_CHUNK, DEFAULT_COMPRESSION, IngestOptions
        from ruinmap.cluster.ingest import ingest_or_append as run_ingest

        log_to_terminal()
        resolution = _floats(args.resolution, "--resolution", (1, 2))
        bbox = _floats(args.bbox, "--bbox", (4,))
        options = IngestOptions(
            crs=args.crs,
            resolution=None if resolution is None else (resolution[0], resolution[-1]),
            bbox=None if bbox is None else (bbox[0], bbox[1], bbox[2], bbox[3]),
            bbox_crs=args.bbox_crs,
            chunk=DEFAULT_CHUNK if args.chunk is None else args.chunk,
            shard=args.shard,
            compression=args.compression or DEFAULT_COMPRESSION,
            resampling=args.resampling,
            nodata=args.nodata,
            bands=_names(args.bands),
            stack_bands=args.stack_bands,
            scale=args.scale,
            ingest=args.ingest,
            pre_dates=_names(args.pre_dates),
            post_dates=_names(args.post_dates),
            overwrite=args.overwrite,
        )
        report = run_ingest(
            args.pre,
            args.post,
            args.out,
            options,
            scheduler=args.scheduler,
            progress=False if args.no_progress else None,
        )
        grid = report.grid
        for note in report.notes:
            print(note)
        print(
            f"{report.out}: pre {len(report.times['pre'])} date(s), post "
            f"{len(report.times['post'])} date(s), bands {','.join(report.bands)}, grid "
            f"{grid.width}x{grid.height} px of {grid.resolution[0]:g} x {grid.resolution[1]:g} "
            f"({grid.crs.to_string()})"
        )
        if not report.was_noop:
            ratio = report.bytes_written / report.stored_bytes if report.stored_bytes else 0.0
            print(
                f"wrote {report.units_written} shard(s), skipped {report.units_skipped} done "
                f"before; {report.bytes_written / 1e6:.1f} MB in {report.seconds:.1f} s "
                f"({report.mb_per_s:.1f} MB/s); stored {report.stored_bytes / 1e6:.1f} MB"
                + (f" (ratio {ratio:.2f})" if report.units_skipped == 0 else "")
            )
        return 0

    return run


def _bars(args: argparse.Namespace) -> bool | None:
    """Progress bars and phase lines: off with --no-progress, else on a terminal only."""
    return False if args.no_progress else None


SCHEDULER_HELP = (
    "'local' (a cluster on this machine, one worker per core), tcp://host:port (a running "
    "Dask scheduler), or a cluster profile that starts workers itself: slurm, pbs (HPC "
    "batch jobs through dask-jobqueue) or kubernetes (the Dask operator); profiles are set "
    "in the Dask config (see `ruinmap cluster --help`)"
)


def _print_summary(result: object) -> None:
    from rich.console import Console

    from ruinmap.cluster.outputs import format_district_table

    console = Console()
    console.print(format_district_table(result.districts))  # type: ignore[attr-defined]


def _add_run(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser(
        "run",
        help="run a damage-mapping job: scores, damage classes, district tables, grids, map",
        description=(
            "Run the job a TOML (or JSON) file describes: ingest the imagery, score every tile "
            "with the method on a Dask cluster, and write score.tif, damage.tif, grid.tif, "
            "districts.parquet/.geojson/.csv, buildings.parquet, map.png and job.json into "
            "output.dir. The spec and its files are checked before any work starts. "
            "Re-running after a crash resumes; re-running a finished job rewrites nothing."
        ),
    )
    p.add_argument("job", help="the job file, e.g. job.toml")
    p.add_argument(
        "--scheduler",
        default=None,
        help=SCHEDULER_HELP + "; default: the job's [cluster] address",
    )
    p.add_argument(
        "--overwrite", action="store_true",
        help="start over: ingest the imagery again into output.dir/store.zarr, replacing the "
        "store there (needed when it was made from other imagery or settings), and recompute "
        "every tile",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from ruinmap.cli_logging import log_to_terminal
        from ruinmap.cluster.compute.phases import phase

        with phase("loading ruinmap (Dask, numba, GDAL)", enabled=_bars(args)):
            from ruinmap.cluster.ingest import IngestOptions
            from ruinmap.cluster.job.run import run_job
            from ruinmap.cluster.job.spec import load_spec

        log_to_terminal()
        spec = load_spec(args.job)
        if args.overwrite and spec.inputs.store is not None:
            raise SpecError(f"--overwrite: the job reads the store {spec.inputs.store} "
                            "(inputs.store), which ruinmap run never replaces; re-ingest it "
                            "with `ruinmap ingest --overwrite`")
        result = run_job(
            spec, scheduler=args.scheduler, progress=False if args.no_progress else None,
            ingest_options=IngestOptions(overwrite=args.overwrite),
        )
        _print_summary(result)
        if result.validation is not None:
            from ruinmap.cli_validate import print_validation

            print_validation(result.validation)
        skipped = result.tiles_total - result.tiles_run
        print(
            f"{result.tiles_run} tile(s) computed"
            + (f", {skipped} done before" if skipped else "")
            + f" in {result.timings.get('total_s', 0.0):.1f} s; results in {spec.output.dir}"
        )
        return 0

    return run


def _add_demo(sub: argparse._SubParsersAction) -> Runner:
    p = sub.add_parser(
        "demo",
        help="make a synthetic city with known damage, map it, and report the accuracy",
        description=(
            "Generate a synthetic city (buildings, roads, districts, pre- and post-event "
            "Sentinel-1-like stacks with speckle, seasonal change and new construction, and a "
            "known set of destroyed buildings), run the damage-mapping job on it, print the "
            "district table and the accuracy against the truth: per-building AUC and F1, "
            "and the per-district damaged-fraction error."
        ),
    )
    p.add_argument("--size", type=int, default=1024, help="city side in pixels (default 1024)")
    p.add_argument("--out", default="ruinmap-demo", help="folder to write (default ruinmap-demo)")
    p.add_argument(
        "--method",
        default="pwtt",
        choices=("pwtt", "log-ratio", "nd-change", "cva"),
        help="method to run (default pwtt)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the city (default 0)")
    p.add_argument(
        "--scheduler", default=None, help=SCHEDULER_HELP + "; default: local"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(args: argparse.Namespace) -> int:
        from ruinmap.cli_logging import log_to_terminal
        from ruinmap.cluster.compute.phases import phase

        print(f"making a {args.size} x {args.size} px synthetic city in {args.out} ...",
              flush=True)
        with phase("loading ruinmap (Dask, numba, GDAL)", enabled=_bars(args)):
            from ruinmap.demo import run_demo
        log_to_terminal()  # after distributed's import, which sets up its own loggers
        demo = run_demo(
            args.out,
            args.size,
            method=args.method,
            seed=args.seed,
            scheduler=args.scheduler,
            progress=False if args.no_progress else None,
        )
        _print_summary(demo.result)
        acc = demo.accuracy
        print(
            f"accuracy vs truth ({acc.n_buildings} scored buildings, {acc.n_destroyed} "
            f"destroyed): building AUC {acc.building_auc:.3f}, F1 {acc.building_f1:.3f} at "
            f"threshold {demo.result.spec.method_params.threshold:g}; district damaged-fraction "
            f"error (MAE, {acc.n_districts} districts) {acc.district_fraction_mae:.3f}"
        )
        area = ("built-up area" if acc.pixel_figure == "damaged_built_fraction"
                else "valid area (no built-up mask)")
        print(
            f"district ranking vs the true destroyed share (Spearman, {acc.n_ranked} "
            f"districts): by damaged buildings {acc.district_rank_buildings:.3f}, by damaged "
            f"share of the {area} ({acc.pixel_figure}) {acc.district_rank_pixels:.3f}"
        )
        print(f"results in {demo.result.spec.output.dir} (open map.png, districts.geojson, "
              f"damage.tif in QGIS); job file {demo.job_path}")
        print(f"hold them against the truth, with calibrated intervals on the counts: "
              f"ruinmap validate {demo.result.spec.output.dir} --labels {demo.labels_path}")
        return 0

    return run


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], Runner]] = {
    "bench": _add_bench,
    "ingest": _add_ingest,
    "run": _add_run,
    "demo": _add_demo,
}


def _all_commands() -> dict[str, Callable[[argparse._SubParsersAction], Runner]]:
    from ruinmap.cli_cluster import COMMANDS as CLUSTER_COMMANDS
    from ruinmap.cli_service import COMMANDS as SERVICE_COMMANDS
    from ruinmap.cli_stac import COMMANDS as STAC_COMMANDS
    from ruinmap.cli_validate import COMMANDS as VALIDATE_COMMANDS

    return {**COMMANDS, **VALIDATE_COMMANDS, **SERVICE_COMMANDS, **CLUSTER_COMMANDS,
            **STAC_COMMANDS}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Runner]]:
    """The top-level parser and the runner of each sub-command."""
    parser = argparse.ArgumentParser(
        prog="ruinmap",
        description="Map war and disaster damage from pre- and post-event satellite imagery.",
    )
    parser.add_argument("--version", action="version", version=f"ruinmap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners = {name: add(sub) for name, add in _all_commands().items()}
    return parser, runners


def main(argv: Sequence[str] | None = None) -> int:
    parser, runners = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from ruinmap.cluster.compute.interrupt import INTERRUPTED_STATUS, graceful_interrupts

    interrupted = f"ruinmap {args.command}: interrupted"
    try:
        with graceful_interrupts(f"{interrupted} again; stopped at once"):
            return runners[args.command](args)
    except RuinmapError as exc:
        print(f"ruinmap {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # written outside the durable recipe (a store shard): what was recorded is kept
        print(f"ruinmap {args.command}: error: {exc.filename or 'a file'}: no space left on "
              "device; free some space and re-run: finished work is kept and resumed",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # the cluster is closed by now; what finished is recorded, so a re-run resumes
        print(f"{interrupted}; re-run the same command to resume", file=sys.stderr)
        return INTERRUPTED_STATUS
