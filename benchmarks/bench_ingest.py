"""Benchmark `ruinmap ingest` against a plain one-process rasterio read + zarr write.

Generates SAR-like input (2 bands VV/VH, float32 linear backscatter: a smooth field times
4-look gamma speckle, a nodata (NaN) swath edge covering ~12% of each image; tiled 512 px,
uncompressed GeoTIFF; half the dates pre-event, half post-event) under --workdir, then for
each size reports:

- baseline: one process reads every file window by window with rasterio and writes the same
  sharded, compressed Zarr v3 layout with zarr-python (no Dask, no fsync, no ledger);
- ingest: `ruinmap.cluster.ingest.ingest` on a fresh local cluster (one worker per core);
- MB/s (float32 bytes written per second), compression ratio (float32 bytes / bytes on disk),
  the ingest/baseline throughput ratio, and the peak resident memory (ru_maxrss) of every
  worker process and of the client.

The input is deleted afterwards unless --keep. Example:

    python benchmarks/bench_ingest.py --sizes 8192 16384 --workdir /tmp/ruinmap-bench
    python benchmarks/bench_ingest.py --sizes 4096 --sweep      # chunk/shard/codec matrix
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import zarr
from rasterio.transform import from_origin
from rasterio.windows import Window

from ruinmap.cluster.compute.connect import open_client
from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.storage.arrays import Compression

TILE = 512


def _speckle_pool(rng: np.random.Generator, n: int = 8) -> np.ndarray:
    return rng.gamma(4.0, 0.25, (n, TILE, TILE)).astype(np.float32)


def make_input(
    workdir: Path, size: int, dates: int = 4, bands: int = 2, seed: int = 0
) -> list[Path]:
    """Write `dates` GeoTIFFs of size x size x bands, block row by block row (low memory)."""
    rng = np.random.default_rng(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    # coarse field (1 value per 64 px) upsampled by repetition + linear blend per block row
    coarse = rng.normal(size=(bands, size // 64 + 2, size // 64 + 2)).astype(np.float32)
    pool = _speckle_pool(rng)
    for d in range(dates):
        side = "pre" if d < dates // 2 else "post"
        path = workdir / f"{side}_2020-0{d + 1}-01.tif"
        paths.append(path)
        if path.exists():  # kept from an earlier run (--keep)
            with rasterio.open(path) as src:
                if src.width == size and src.count == bands:
                    continue
        profile = dict(
            driver="GTiff",
            width=size,
            height=size,
            count=bands,
            dtype="float32",
            crs="EPSG:32636",
            transform=from_origin(600000, 4000000, 10, 10),
            nodata=np.nan,
            tiled=True,
            blockxsize=TILE,
            blockysize=TILE,
            interleave="pixel",
            BIGTIFF="YES",
        )
        with rasterio.open(path, "w", **profile) as dst:
            dst.descriptions = ("VV", "VH")[:bands] if bands <= 2 else None
            for r0 in range(0, size, TILE):
                rows = np.arange(r0, r0 + TILE) / 64.0
                cols = np.arange(size) / 64.0
                block = np.empty((bands, TILE, size), np.float32)
                for b in range(bands):
                    ri, ci = rows.astype(int), cols.astype(int)
                    rf, cf = (rows - ri)[:, None], (cols - ci)[None, :]
                    c = coarse[b] + 0.1 * d
                    field = (
                        c[ri][:, ci] * (1 - rf) * (1 - cf)
                        + c[ri + 1][:, ci] * rf * (1 - cf)
                        + c[ri][:, ci + 1] * (1 - rf) * cf
                        + c[ri + 1][:, ci + 1] * rf * cf
                    )
                    sigma = 10 ** ((-12 - 6 * b + 4 * field) / 10)
                    speckle = np.concatenate(
                        [
                            pool[(r0 // TILE + c0 // TILE + b + d) % len(pool)]
                            for c0 in range(0, size, TILE)
                        ],
                        axis=1,
                    )
                    block[b] = sigma * speckle
                # a swath edge: no data left of a slanted line (~12% of the image)
                edge = 0.16 * size - 0.16 * np.arange(r0, r0 + TILE)[:, None] * 0.5
                block[:, np.arange(size)[None, :] < edge] = np.nan
                dst.write(block, window=Window(0, r0, size, TILE))
    return paths


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM, MiB).

    Not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a worker would report its
    parent's peak; VmHWM belongs to the process's own address space.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def baseline(paths: list[Path], out: Path, chunk: int, shard: int, compression: str) -> dict:
    """Plain rasterio window reads + zarr sharded writes in this one process."""
    shutil.rmtree(out, ignore_errors=True)
    codec = Compression.parse(compression)
    with rasterio.open(paths[0]) as src:
        size, bands = src.width, src.count
    started = time.perf_counter()
    root = zarr.open_group(str(out), mode="w", zarr_format=3)
    arr = root.create_array(
        "data",
        shape=(len(paths), bands, size, size),
        dtype="float32",
        chunks=(1, 1, chunk, chunk),
        shards=(1, bands, shard, shard),
        compressors=codec.codecs(),
        fill_value=np.nan,
    )
    for t, path in enumerate(paths):
        with rasterio.open(path) as src:
            for r0 in range(0, size, shard):
                for c0 in range(0, size, shard):
                    w = Window(c0, r0, min(shard, size - c0), min(shard, size - r0))
                    block = src.read(window=w)
                    arr[t, :, r0 : r0 + block.shape[1], c0 : c0 + block.shape[2]] = block
    seconds = time.perf_counter() - started
    raw = len(paths) * bands * size * size * 4
    stored = sum(f.stat().st_size for f in (out / "data").rglob("*") if f.is_file())
    return {"seconds": seconds, "mb_s": raw / 1e6 / seconds, "ratio": raw / stored}


def tile_read_ms(store: Path, tile: int = 512, count: int = 16) -> float:
    """Median time to read one tile x tile window of every date and band (a pipeline read)."""
    rng = np.random.default_rng(1)
    arrays = [zarr.open_array(store / side, mode="r") for side in ("pre", "post")]
    size = arrays[0].shape[-1]
    times = []
    for _ in range(count):
        r0, c0 = rng.integers(0, size - tile, 2)
        started = time.perf_counter()
        for array in arrays:
            array[:, :, r0 : r0 + tile, c0 : c0 + tile]
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000


def _optical_sample(size: int) -> np.ndarray | None:
    """Real optical pixels (Joplin aerial uint8 RGB, ../shared/data) tiled to size x size x 2."""
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "joplin-tornado" / "pre"
    tiles = sorted(root.glob("*.tif"))
    if not tiles:
        return None
    with rasterio.open(tiles[0]) as src:
        rgb = src.read(out_dtype="float32")
    reps = (1, -(-size // rgb.shape[1]), -(-size // rgb.shape[2]))
    return np.tile(rgb[:2], reps)[:, :size, :size].copy()


def codec_matrix(sar_path: Path, workdir: Path) -> list[dict]:
    """Chunk/shard/codec choices measured in one process, on a RAM disk when there is one.

    Per config: write MB/s (float32 bytes / s, one 2-band 4096^2 date written shard by shard),
    compression ratio, and the median time to read a 512 x 512 tile of both bands. Free of
    disk and Dask effects, so it isolates what the codec and chunk shape cost.
    """
    with rasterio.open(sar_path) as src:
        sar = src.read(window=Window(0, 0, min(4096, src.width), min(4096, src.height)))
    samples = {"sar_float32": sar}
    optical = _optical_sample(sar.shape[-1])
    if optical is not None:
        samples["aerial_uint8_as_float32"] = optical
    shm = Path("/dev/shm")
    root = (shm if shm.is_dir() else workdir) / f"ruinmap-codecs-{os.getpid()}"
    rows = []
    configs = [(256, 1024), (256, 2048), (512, 2048), (512, 4096), (1024, 2048), (1024, 4096)]
    codecs = ["none", "zstd:1", "zstd:3", "blosc-lz4:5", "blosc-zstd:1", "blosc-zstd:3"]
    try:
        for name, data in samples.items():
            bands, size = data.shape[0], data.shape[-1]
            for chunk, shard in configs:
                for comp in codecs:
                    shutil.rmtree(root, ignore_errors=True)
                    arr = zarr.create_array(
                        str(root),
                        shape=data.shape,
                        dtype="float32",
                        chunks=(1, chunk, chunk),
                        shards=(bands, shard, shard),
                        compressors=Compression.parse(comp).codecs(),
                        fill_value=np.nan,
                    )
                    started = time.perf_counter()
                    for r0 in range(0, size, shard):
                        for c0 in range(0, size, shard):
                            arr[:, r0 : r0 + shard, c0 : c0 + shard] = data[
                                :, r0 : r0 + shard, c0 : c0 + shard
                            ]
                    write_s = time.perf_counter() - started
                    stored = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
                    rng = np.random.default_rng(0)
                    reads = []
                    for _ in range(9):
                        r0, c0 = rng.integers(0, size - 512, 2)
                        t0 = time.perf_counter()
                        arr[:, r0 : r0 + 512, c0 : c0 + 512]
                        reads.append(time.perf_counter() - t0)
                    row = {
                        "data": name,
                        "chunk": chunk,
                        "shard": shard,
                        "compression": comp,
                        "write_mb_s": round(data.nbytes / 1e6 / write_s),
                        "ratio": round(data.nbytes / stored, 3),
                        "tile512_read_ms": round(float(np.median(reads)) * 1000, 1),
                    }
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def run_ingest(paths: list[Path], out: Path, options: IngestOptions, workers: int | None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    n = len(paths)
    with open_client("local", n_workers=workers, dashboard=False) as client:
        report = ingest(
            paths[: n // 2], paths[n // 2 :], out, options, client=client, progress=False
        )
        peaks = client.run(_peak_rss_mib)
    return {
        "seconds": report.seconds,
        "mb_s": report.mb_per_s,
        "ratio": report.bytes_written / report.stored_bytes,
        "worker_peak_rss_mib": sorted(round(v) for v in peaks.values()),
        "units": report.units_written,
        "phases_s": {k: round(v, 1) for k, v in report.phase_seconds.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--dates", type=int, default=4)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ruinmap-bench"))
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--shard", type=int, default=2048)
    ap.add_argument("--compression", default="blosc-zstd:1")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument(
        "--fsync",
        choices=("on", "off", "both"),
        default="both",
        help="ingest with fsync per shard (the default of ruinmap ingest), without, or both",
    )
    ap.add_argument("--sweep", action="store_true", help="chunk/shard/codec matrix (ingest only)")
    ap.add_argument("--codecs", action="store_true", help="codec/chunk matrix in one process")
    ap.add_argument("--keep", action="store_true", help="keep the generated input")
    args = ap.parse_args(argv)

    results = []
    for size in args.sizes:
        inputs = args.workdir / f"in-{size}"
        t0 = time.perf_counter()
        paths = make_input(inputs, size, dates=args.dates)
        gen_s = time.perf_counter() - t0
        print(f"# generated {len(paths)} x {size}^2 x 2 bands in {gen_s:.0f} s", file=sys.stderr)
        try:
            if args.codecs:
                codec_matrix(paths[0], args.workdir)
                continue
            if args.sweep:
                for chunk, shard in (
                    (256, 1024),
                    (256, 2048),
                    (512, 2048),
                    (512, 4096),
                    (1024, 2048),
                    (1024, 4096),
                ):
                    for comp in ("zstd:1", "zstd:3", "blosc-lz4:5", "blosc-zstd:1"):
                        opts = IngestOptions(
                            chunk=chunk, shard=shard, compression=comp, durable=args.fsync != "off"
                        )
                        res = run_ingest(paths, args.workdir / "out.zarr", opts, args.workers)
                        res["tile_read_ms"] = round(tile_read_ms(args.workdir / "out.zarr"), 1)
                        row = {
                            "size": size,
                            "chunk": chunk,
                            "shard": shard,
                            "compression": comp,
                            **res,
                        }
                        print(json.dumps(row), flush=True)
                        results.append(row)
                continue
            base = baseline(
                paths, args.workdir / "baseline.zarr", args.chunk, args.shard, args.compression
            )
            shutil.rmtree(args.workdir / "baseline.zarr", ignore_errors=True)
            modes = {"on": [True], "off": [False], "both": [True, False]}[args.fsync]
            for durable in modes:
                opts = IngestOptions(
                    chunk=args.chunk,
                    shard=args.shard,
                    compression=args.compression,
                    durable=durable,
                )
                res = run_ingest(paths, args.workdir / "out.zarr", opts, args.workers)
                shutil.rmtree(args.workdir / "out.zarr", ignore_errors=True)
                row = {
                    "size": size,
                    "dates": args.dates,
                    "bands": 2,
                    "chunk": args.chunk,
                    "shard": args.shard,
                    "compression": args.compression,
                    "fsync": durable,
                    "input_gb": round(sum(p.stat().st_size for p in paths) / 1e9, 2),
                    "baseline_mb_s": round(base["mb_s"], 1),
                    "baseline_ratio": round(base["ratio"], 3),
                    "ingest_mb_s": round(res["mb_s"], 1),
                    "ingest_ratio": round(res["ratio"], 3),
                    "ingest_vs_baseline": round(res["mb_s"] / base["mb_s"], 2),
                    "worker_peak_rss_mib": res["worker_peak_rss_mib"],
                    "ingest_phases_s": res["phases_s"],
                    "baseline_s": round(base["seconds"], 1),
                    "ingest_s": round(res["seconds"], 1),
                    "driver_peak_rss_mib": round(_peak_rss_mib()),  # baseline + ingest client
                    "cpu_count": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 1),
                }
                print(json.dumps(row), flush=True)
                results.append(row)
        finally:
            if not args.keep:
                shutil.rmtree(inputs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
