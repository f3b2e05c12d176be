"""Benchmark STAC inputs against plain files on the same pixels, in one run.

Cases (real data from ../shared/data):

- `joplin`: the 2 pre + 2 post Joplin aerial tiles (uint8 RGB, 0.6 m; each side's pair one
  mosaic), as file lists and as a static STAC catalog made here with pystac;
- `bercy`: the OSCD Bercy Sentinel-2 pair (B02 B03 B04 B08), as per-band files
  (`stack_bands`) and as a static catalog of one item per date;
- `bercy-api`: the same items from the test STAC API (tests/support/stac_api.py) on
  127.0.0.1, assets read over HTTP through GDAL's /vsicurl/.

Each ingest (plan from the headers or the items, then `ingest` on one LocalCluster of 2
single-threaded workers) runs --repeat times per path, alternating, into a fresh store; the
medians and the STAC/plain ratio are printed (target: under 1.10). The stores are compared
pixel for pixel first.

`--readers` also times, for `bercy`, the pixels of every shard read in this process by our
shard reader (`ingest.mosaic.read_mosaic`, what each ingest task runs) against odc-stac's
`odc.stac.load` of the same items onto the same grid (one thread each).

    python benchmarks/bench_stac.py --repeat 5 --readers
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

# the test support (the local STAC API, the shared data's path) lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ruinmap.cluster.compute.connect import open_client
from ruinmap.cluster.geo.grid import pixel_offset
from ruinmap.cluster.ingest import IngestOptions, ingest, plan_inputs
from ruinmap.cluster.ingest.mosaic import mosaic_read, read_mosaic
from ruinmap.cluster.ingest.plan import InputPlan
from ruinmap.cluster.ingest.stac import StacQuery, find_items, plan_stac_inputs
from ruinmap.cluster.ingest.warp import SourceRead
from ruinmap.cluster.storage.store import open_store, side_array
from tests.support.rasters import SHARED_DATA
from tests.support.stac_api import make_app, serve
from tests.support.stac_items import AssetFile, make_item, write_catalog

BANDS = ("B02", "B03", "B04", "B08")


def _joplin(folder: Path) -> tuple[Callable[[], InputPlan], Callable[[], InputPlan],
                                   IngestOptions]:
    root = SHARED_DATA / "joplin-tornado"
    pre, post = sorted((root / "pre").glob("*.tif")), sorted((root / "post").glob("*.tif"))
    items = [make_item(f"pre-{p.stem}", "2011-04-01T17:00:00Z", {"image": AssetFile(p)},
                       collection="joplin") for p in pre]
    items += [make_item(f"post-{p.stem}", "2011-05-24T18:00:00Z", {"image": AssetFile(p)},
                        collection="joplin") for p in post]
    catalog = write_catalog(folder / "joplin", items, collection_id="joplin")
    options = IngestOptions(chunk=256, shard=512, durable=False)
    query = StacQuery(str(catalog), False, "2011-03-01/2011-04-30", "2011-05-01/2011-06-30",
                      assets=("image",))
    return (lambda: plan_inputs(pre, post, options),
            lambda: plan_stac_inputs(query, options), options)


def _bercy_items(href: Callable[[Path], str]) -> list[Any]:
    root = SHARED_DATA / "oscd-bercy"
    items = []
    for side, folder, when in (("pre", "imgs_1", "2016-11-30T10:50:00Z"),
                               ("post", "imgs_2", "2017-08-29T10:50:19Z")):
        files = {b: next((root / folder).glob(f"*_{b}.tif")) for b in BANDS}
        items.append(make_item(f"S2_{side}", when,
                               {b: AssetFile(p, href=href(p)) for b, p in files.items()},
                               collection="s2"))
    return items


def _bercy(folder: Path) -> tuple[Callable[[], InputPlan], Callable[[], InputPlan],
                                  IngestOptions]:
    root = SHARED_DATA / "oscd-bercy"
    catalog = write_catalog(folder / "bercy", _bercy_items(str), collection_id="s2")
    options = IngestOptions(chunk=128, shard=128, durable=False)
    plain = IngestOptions(chunk=128, shard=128, durable=False, stack_bands=True)
    query = StacQuery(str(catalog), False, "2016-11-01/2016-12-31", "2017-08-01/2017-09-30",
                      assets=BANDS)
    return (lambda: plan_inputs([str(root / "imgs_1" / "*.tif")],
                                [str(root / "imgs_2" / "*.tif")], plain),
            lambda: plan_stac_inputs(query, options), options)


def _median_run(plan: Callable[[], InputPlan], options: IngestOptions, out: Path,
                client: Any) -> float:
    started = time.perf_counter()
    ingest([], [], out, options, client=client, inputs=plan())
    return time.perf_counter() - started


def _same_pixels(a: Path, b: Path) -> None:
    da, db = open_store(a), open_store(b)
    for side in ("pre", "post"):
        np.testing.assert_array_equal(side_array(da, side).values, side_array(db, side).values)


def _compare(name: str, plain: Callable[[], InputPlan], stac: Callable[[], InputPlan],
             options: IngestOptions, folder: Path, client: Any, repeat: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"plain": [], "stac": []}
    for k in range(repeat + 1):  # the first round warms GDAL, the workers and the page cache
        for path, plan in (("plain", plain), ("stac", stac)):
            seconds = _median_run(plan, options, folder / f"{name}-{path}-{k}.zarr", client)
            if k > 0:
                times[path].append(seconds)
    _same_pixels(folder / f"{name}-plain-0.zarr", folder / f"{name}-stac-0.zarr")
    med = {path: statistics.median(values) for path, values in times.items()}
    row = {"case": name, "plain_s": med["plain"], "stac_s": med["stac"],
           "ratio": med["stac"] / med["plain"]}
    print(f"{name:10s} plain {med['plain']:.3f} s  stac {med['stac']:.3f} s  "
          f"ratio {row['ratio']:.3f}  (medians of {repeat}; runs plain "
          f"{[round(t, 3) for t in times['plain']]}, stac {[round(t, 3) for t in times['stac']]})")
    return row


def _readers(folder: Path, repeat: int) -> None:
    """Our shard reader against odc.stac.load on the bercy items, same grid, one thread."""
    import odc.stac
    from odc.geo.geobox import GeoBox

    catalog = write_catalog(folder / "bercy-readers", _bercy_items(str), collection_id="s2")
    query = StacQuery(str(catalog), False, "2016-11-01/2016-12-31", "2017-08-01/2017-09-30",
                      assets=BANDS)
    options = IngestOptions(chunk=128, shard=128)
    plan = plan_stac_inputs(query, options)
    grid = plan.grid

    def read_of(f: Any) -> SourceRead:
        return SourceRead(f.path, f.count, f.dtype, f.nodata, f.grid,
                          pixel_offset(f.grid, grid))

    mosaics = [mosaic_read(a, grid, read_of) for side in ("pre", "post")
               for a in plan.acquisitions[side]]
    from rasterio.windows import Window

    def ours() -> list[np.ndarray]:
        out = []
        with rasterio.Env(GDAL_CACHEMAX=64 * 2**20):
            for m in mosaics:
                block = np.empty((len(BANDS), grid.height, grid.width), np.float32)
                for r in range(0, grid.height, 128):
                    for c in range(0, grid.width, 128):
                        w = Window(c, r, min(128, grid.width - c), min(128, grid.height - r))
                        block[:, r:r + w.height, c:c + w.width] = read_mosaic(
                            m, grid, w, resampling="bilinear", nodata=None)
                out.append(block)
        return out

    search = find_items(query)
    items = search.items["pre"] + search.items["post"]
    geobox = GeoBox((grid.height, grid.width), grid.affine, grid.crs_wkt)

    def with_odc() -> Any:
        return odc.stac.load(items, bands=list(BANDS), geobox=geobox, dtype="float32",
                             resampling="bilinear", pool=1)

    def with_odc_windows() -> list[np.ndarray]:
        # what odc-stac costs when used as an ingest task would use it: one window at a time
        out = []
        for t in range(2):
            block = np.empty((len(BANDS), grid.height, grid.width), np.float32)
            for r in range(0, grid.height, 128):
                for c in range(0, grid.width, 128):
                    box = geobox[r:min(r + 128, grid.height), c:min(c + 128, grid.width)]
                    ds = odc.stac.load([items[t]], bands=list(BANDS), geobox=box,
                                       dtype="float32", resampling="bilinear", pool=1)
                    h, w = box.shape
                    block[:, r:r + h, c:c + w] = np.stack([ds[b].values[0] for b in BANDS])
            out.append(block)
        return out

    def timed(fn: Callable[[], Any]) -> float:
        fn()
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    a = ours()
    b = with_odc()
    same = all(np.allclose(a[t], np.stack([b[band].values[t] for band in BANDS]),
                           equal_nan=True) for t in range(2))
    c = with_odc_windows()
    same = same and all(np.allclose(a[t], c[t], equal_nan=True) for t in range(2))
    t_ours, t_odc, t_odc_w = timed(ours), timed(with_odc), timed(with_odc_windows)
    print(f"readers (bercy, {grid.width}x{grid.height} px, 4 bands, 2 dates): ours by 128 px "
          f"windows {t_ours:.3f} s; odc.stac.load by the same windows {t_odc_w:.3f} s (ratio "
          f"ours/odc {t_ours / t_odc_w:.2f}); odc.stac.load whole {t_odc:.3f} s; same pixels: "
          f"{same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--readers", action="store_true", help="also ours vs odc-stac")
    parser.add_argument("--cases", nargs="+", default=["joplin", "bercy", "bercy-api"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ruinmap-bench-stac-") as tmp, \
            open_client("local", n_workers=2, threads_per_worker=1, dashboard=False) as client:
        folder = Path(tmp)
        rows = []
        if "joplin" in args.cases:
            rows.append(_compare("joplin", *_joplin(folder), folder, client, args.repeat))
        if "bercy" in args.cases:
            rows.append(_compare("bercy", *_bercy(folder), folder, client, args.repeat))
        if "bercy-api" in args.cases:
            assets = folder / "served"
            assets.mkdir()
            items: list[dict[str, Any]] = []
            with serve(make_app(items, assets)) as url:
                for p in (SHARED_DATA / "oscd-bercy").glob("imgs_*/*.tif"):
                    (assets / p.parent.name).mkdir(exist_ok=True)
                    (assets / p.parent.name / p.name).write_bytes(p.read_bytes())
                items += [it.to_dict() for it in _bercy_items(
                    lambda p: f"{url}/assets/{p.parent.name}/{p.name}")]
                plain, _, options = _bercy(folder)
                query = StacQuery(url, True, "2016-11-01/2016-12-31", "2017-08-01/2017-09-30",
                                  collections=("s2",), assets=BANDS)
                rows.append(_compare("bercy-api", plain,
                                     lambda: plan_stac_inputs(query, options),
                                     replace(options), folder, client, args.repeat))
        if args.readers:
            _readers(folder, args.repeat)
    worst = max(r["ratio"] for r in rows)
    print(f"worst STAC/plain ratio {worst:.3f} (target < 1.10)")


if __name__ == "__main__":
    main()
