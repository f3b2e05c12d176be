"""PCC and Kappa of each damage-threshold rule on real SAR change-detection pairs.

Usage:
    python benchmarks/eval_thresholds.py PAIRS_DIR [--out DIR] [--radius-m 10] [--json]

PAIRS_DIR holds image pairs as the change-detection literature distributes them:
`<name>_1.<ext>`, `<name>_2.<ext>` (before, after) and `<name>_gt.<ext>` (the reference change
map, white = changed), e.g. the Ottawa, Bern, San Francisco, Yellow River and Sulzberger
pairs (8-bit amplitudes, no georeferencing). Nothing of them is shipped with ruinmap: fetch
them yourself (they keep their authors' terms).

For each pair the script writes the two images as GeoTIFFs on a nominal local grid
(EPSG:32631, 10 m pixels; amplitudes + 1 so a zero pixel still has a ratio), one district
covering the scene, and runs ruinmap's `log-ratio` job (direction "both", focal mean
`--radius-m`) once per rule: the fixed default 3 dB and each automatic threshold. "Changed"
is damage class >= the threshold's class (= score > threshold), read from the job's own
`damage` layer; the job's `job.json` gives the threshold each rule chose. The table reports
PCC (share of pixels right), Cohen's Kappa, false and missed alarms, and the AUC of the score
itself (threshold-free: how well the score ranks).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import zarr
from distributed import Client, LocalCluster
from PIL import Image
from rasterio.transform import from_origin
from shapely.geometry import box
from sklearn.metrics import roc_auc_score

from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec import parse_spec

RULES: tuple[str | float, ...] = (3.0, "otsu", "kittler-illingworth", "gmm")
PIXEL_M = 10.0
ORIGIN = (500_000.0, 5_000_000.0)
CRS = "EPSG:32631"


def find_pairs(folder: Path) -> list[tuple[str, Path, Path, Path]]:
    """(name, before, after, reference) of every complete pair in `folder`."""
    pairs = []
    for first in sorted(folder.glob("*_1.*")):
        name = first.name[: -len("_1" + first.suffix)]
        second = first.with_name(f"{name}_2{first.suffix}")
        truth = first.with_name(f"{name}_gt{first.suffix}")
        if second.exists() and truth.exists():
            pairs.append((name, first, second, truth))
    return pairs


def _gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32)


def _write_tif(path: Path, image: np.ndarray) -> None:
    rows, cols = image.shape
    with rasterio.open(path, "w", driver="GTiff", height=rows, width=cols, count=1,
                       dtype="float32", crs=CRS,
                       transform=from_origin(*ORIGIN, PIXEL_M, PIXEL_M)) as dst:
        dst.write(image, 1)
        dst.set_band_description(1, "AMP")


def prepare(work: Path, name: str, before: Path, after: Path) -> tuple[Path, tuple[int, int]]:
    """GeoTIFFs and a scene-wide district for one pair; returns the folder and the shape."""
    folder = work / name
    (folder / "pre").mkdir(parents=True, exist_ok=True)
    (folder / "post").mkdir(parents=True, exist_ok=True)
    pre, post = _gray(before), _gray(after)
    if pre.shape != post.shape:
        raise SystemExit(f"{name}: the two images differ in size ({pre.shape}, {post.shape})")
    # + 1: an 8-bit zero would have no log ratio (NaN), the usual log((I2 + 1) / (I1 + 1))
    _write_tif(folder / "pre" / "scene_20200101.tif", pre + 1.0)
    _write_tif(folder / "post" / "scene_20200201.tif", post + 1.0)
    rows, cols = pre.shape
    x0, y1 = ORIGIN
    scene = box(x0, y1 - rows * PIXEL_M, x0 + cols * PIXEL_M, y1)
    gpd.GeoDataFrame({"district_id": ["scene"]}, geometry=[scene], crs=CRS).to_file(
        folder / "districts.geojson", driver="GeoJSON")
    return folder, pre.shape


def run_rule(folder: Path, rule: str | float, radius_m: float, client: Client
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """(score, changed, threshold) of the log-ratio job with `rule` on one prepared pair."""
    label = rule if isinstance(rule, str) else f"fixed-{rule:g}"
    out = folder / f"out-{label}"
    data = {
        "method": "log-ratio",
        "inputs": {"pre": [str(folder / "pre" / "*.tif")],
                   "post": [str(folder / "post" / "*.tif")]},
        "districts": {"path": str(folder / "districts.geojson"), "id": "district_id"},
        "grid": {"cell_size": 100.0},
        "output": {"dir": str(out)},
        "method_params": {"direction": "both", "radius_m": radius_m, "threshold": rule},
    }
    spec = parse_spec(data, folder)
    run_job(spec, client=client, progress=False)
    report = json.loads((out / "job.json").read_text())
    params = report["parameters"]
    threshold = float(params["threshold"])
    k = params["class_thresholds"].index(threshold) + 1  # damaged = class >= k
    store = str(out / "store.zarr")
    score = np.asarray(zarr.open_array(store=store, path="score", mode="r")[...])
    damage = np.asarray(zarr.open_array(store=store, path="damage", mode="r")[...])
    return score, (damage >= k) & (damage != 255), threshold


def agreement(changed: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """PCC, Kappa, false alarms (FA) and missed alarms (MA) of a change map."""
    n = truth.size
    tp = float(np.sum(changed & truth))
    tn = float(np.sum(~changed & ~truth))
    fp = float(np.sum(changed & ~truth))
    fn = float(np.sum(~changed & truth))
    pcc = (tp + tn) / n
    chance = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    kappa = (pcc - chance) / (1 - chance) if chance < 1 else float("nan")
    return {"pcc": pcc, "kappa": kappa, "fa": fp, "ma": fn}


def evaluate(folder: Path, work: Path, radius_m: float) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        for name, before, after, reference in find_pairs(folder):
            pair, shape = prepare(work, name, before, after)
            truth = _gray(reference) > 127
            if truth.shape != shape:
                raise SystemExit(f"{name}: reference {truth.shape} differs from {shape}")
            for rule in RULES:
                started = time.perf_counter()
                score, changed, threshold = run_rule(pair, rule, radius_m, client)
                finite = np.isfinite(score)
                auc = float(roc_auc_score(truth[finite], score[finite]))
                rows.append({"pair": name, "size": f"{shape[0]}x{shape[1]}",
                             "changed_share": float(truth.mean()),
                             "rule": rule if isinstance(rule, str) else f"fixed {rule:g} dB",
                             "threshold_db": threshold, "auc": auc,
                             **agreement(changed, truth),
                             "seconds": time.perf_counter() - started})
                print(f"{name:12s} {rows[-1]['rule']:20s} t={threshold:7.3f} dB  "
                      f"PCC {rows[-1]['pcc']:.4f}  Kappa {rows[-1]['kappa']:.4f}  "
                      f"AUC {auc:.4f}", file=sys.stderr)
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| pair | rule | threshold (dB) | PCC | Kappa | FA | MA |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['pair']} ({r['size']}, AUC {r['auc']:.3f}) | {r['rule']} | "
                     f"{r['threshold_db']:.2f} | {r['pcc']:.4f} | {r['kappa']:.4f} | "
                     f"{int(r['fa'])} | {int(r['ma'])} |")  # type: ignore[call-overload]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path, help="folder of <name>_1/_2/_gt images")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temp)")
    parser.add_argument("--radius-m", type=float, default=10.0,
                        help="focal mean radius of the log ratio, metres (10 = 3x3 at 10 m)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if not find_pairs(args.pairs):
        print(f"{args.pairs}: no <name>_1, <name>_2, <name>_gt image triples", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ruinmap-thresholds-") as tmp:
        rows = evaluate(args.pairs, args.out or Path(tmp), args.radius_m)
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
