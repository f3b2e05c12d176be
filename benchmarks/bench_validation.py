"""Benchmark `ruinmap validate`, and measure how often its count intervals hold the truth.

Two parts, both printed as JSON lines:

- `speed`: a results folder of `--footprints` square footprints (10-30 m) on a 10 m score
  grid, with districts, validated against `--points` UNOSAT-style damage-site points
  (GeoPackage, `Main_Damage_Site_Class`, EPSG:4326); reports the median of `--repeat` runs
  of `validate` (reading, joining, metrics, calibration with 200 resamples, intervals,
  figure, files) and of the label join alone.
- `coverage`: for each of `--seeds` synthetic cities (`ruinmap.synthetic`, 320 px, pwtt on a
  local cluster), labels are the truth of a random 30 % of the footprints; the calibrated
  90 % interval of every district with buildings is held against the district's true
  destroyed count; reports the share of districts covered, and the same for the
  unvalidated interval of the job.

    python benchmarks/bench_validation.py speed --footprints 100000 --points 50000
    python benchmarks/bench_validation.py coverage --seeds 8 --workdir /tmp/ruinmap-cov
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.transform import from_origin

from ruinmap.cluster.validation.config import ValidationSpec
from ruinmap.cluster.validation.join import mark_footprints
from ruinmap.cluster.validation.labels import read_labels
from ruinmap.cluster.validation.run import validate

CRS = "EPSG:32637"
ORIGIN = (330000.0, 4010000.0)


def _results_folder(root: Path, n_footprints: int, rng: np.random.Generator) -> Path:
    """score.tif, buildings.parquet, districts.parquet and job.json shaped like a real run."""
    side_m = float(np.sqrt(n_footprints) * 40)  # one footprint per 40 m x 40 m
    px = int(side_m / 10)
    transform = from_origin(ORIGIN[0], ORIGIN[1], 10, 10)
    score = rng.normal(1.0, 1.0, (px, px)).astype(np.float32)
    with rasterio.open(root / "score.tif", "w", driver="GTiff", width=px, height=px, count=1,
                       dtype="float32", crs=CRS, transform=transform, nodata=float("nan"),
                       tiled=True, compress="zstd") as dst:
        dst.write(score, 1)
    x = ORIGIN[0] + rng.uniform(0, side_m, n_footprints)
    y = ORIGIN[1] - rng.uniform(0, side_m, n_footprints)
    half = rng.uniform(5, 15, n_footprints)
    boxes = shapely.box(x - half, y - half, x + half, y + half)
    n_side = 8
    cell = side_m / n_side
    zones = [shapely.box(ORIGIN[0] + i * cell, ORIGIN[1] - (j + 1) * cell,
                         ORIGIN[0] + (i + 1) * cell, ORIGIN[1] - j * cell)
             for j in range(n_side) for i in range(n_side)]
    ids = [f"D{k:03d}" for k in range(len(zones))]
    districts = gpd.GeoDataFrame({"district_id": ids, "name": ids,
                                  "buildings": np.zeros(len(zones), np.int64)},
                                 geometry=zones, crs=CRS)
    col = np.minimum(((x - ORIGIN[0]) // cell).astype(int), n_side - 1)
    row = np.minimum(((ORIGIN[1] - y) // cell).astype(int), n_side - 1)
    district_of = np.array(ids)[row * n_side + col]
    districts["buildings"] = pd.Series(district_of).value_counts().reindex(ids).fillna(0)\
        .astype(np.int64).to_numpy()
    mean = rng.normal(1.0, 1.0, n_footprints)
    buildings = gpd.GeoDataFrame({"building_id": np.arange(n_footprints), "mean_score": mean,
                                  "damaged": mean > 3.3, "district_id": district_of},
                                 geometry=boxes, crs=CRS)
    buildings.to_parquet(root / "buildings.parquet")
    districts.to_parquet(root / "districts.parquet")
    report = {"spec": {"method": "pwtt"},
              "parameters": {"threshold": 3.3, "class_thresholds": [2.0, 3.3, 4.0, 5.0],
                             "class_names": None},
              "inputs": [{"side": "post", "date": "2023-02-01T00:00:00"}]}
    (root / "job.json").write_text(json.dumps(report))
    return root


def _points(root: Path, results: Path, n_points: int, rng: np.random.Generator) -> Path:
    buildings = gpd.read_parquet(results / "buildings.parquet")
    pick = rng.choice(len(buildings), n_points, replace=False)
    chosen = buildings.iloc[pick]
    # damage sites sit on damaged buildings more often where the score is high
    p = 1 / (1 + np.exp(-(chosen["mean_score"].to_numpy() - 2.0)))
    klass = np.where(rng.random(n_points) < p, rng.choice([1, 2, 3], n_points), 6)
    points = gpd.GeoDataFrame({"Main_Damage_Site_Class": klass},
                              geometry=chosen.geometry.centroid.to_numpy(), crs=CRS).to_crs(4326)
    path = root / "sites.gpkg"
    points.to_file(path, driver="GPKG", layer="Damage_Sites")
    return path


def speed(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        (root / "results").mkdir()
        results = _results_folder(root / "results", args.footprints, rng)
        labels = _points(root, results, args.points, rng)
        spec = ValidationSpec(labels=str(labels))
        totals, joins = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            validate(results, spec, out_dir=root / "out")
            totals.append(time.perf_counter() - t0)
            marks = read_labels(labels, results_crs=CRS)
            buildings = gpd.read_parquet(results / "buildings.parquet")
            t0 = time.perf_counter()
            mark_footprints(buildings, marks, 10.0)
            joins.append(time.perf_counter() - t0)
        print(json.dumps({"part": "speed", "footprints": args.footprints,
                          "points": args.points, "repeat": args.repeat,
                          "validate_s_median": round(statistics.median(totals), 3),
                          "join_s_median": round(statistics.median(joins), 3)}))


def coverage(args: argparse.Namespace) -> None:
    from ruinmap.cluster.compute.connect import open_client
    from ruinmap.cluster.job.run import run_job
    from ruinmap.cluster.job.spec import load_spec
    from ruinmap.synthetic import make_city, write_job_spec

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    covered = {"calibrated": [], "unvalidated": []}
    with open_client("local") as client:
        for seed in range(args.seeds):
            city = make_city(work / f"city{seed}", size=args.size, seed=100 + seed,
                             overwrite=True)
            spec = load_spec(write_job_spec(city))
            result = run_job(spec, client=client, progress=False)
            truth = gpd.read_parquet(city.truth_buildings_path)
            rng = np.random.default_rng(seed)
            sample = truth[rng.random(len(truth)) < args.label_share]
            labels = gpd.GeoDataFrame(
                {"subtype": np.where(sample["destroyed"], "destroyed", "no-damage")},
                geometry=sample.geometry.to_numpy(), crs=truth.crs)
            labels.to_file(work / f"labels{seed}.gpkg", driver="GPKG")
            labelled = ValidationSpec(labels=str(work / f"labels{seed}.gpkg"))
            done = validate(spec.output.dir, labelled, out_dir=work / f"check{seed}")
            buildings = pd.read_parquet(Path(spec.output.dir) / "buildings.parquet")
            scored = buildings[buildings["mean_score"].notna()].merge(
                truth[["building_id", "destroyed"]], on="building_id")
            true = scored.groupby("district_id")["destroyed"].sum()
            for kind, table in (("calibrated", done.districts), ("unvalidated", result.districts)):
                assert table is not None
                t = table.set_index("district_id")
                t = t[t["buildings"] > 0]
                n = true.reindex(t.index).fillna(0).to_numpy()
                hit = (t["buildings_damaged_low"].to_numpy() <= n) & \
                      (n <= t["buildings_damaged_high"].to_numpy())
                covered[kind].extend(hit.tolist())
            print(json.dumps({"part": "coverage", "seed": 100 + seed,
                              "districts": len(covered["calibrated"]),
                              "calibrated": float(np.mean(covered["calibrated"])),
                              "unvalidated": float(np.mean(covered["unvalidated"]))}),
                  flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--footprints", type=int, default=100_000)
    s.add_argument("--points", type=int, default=50_000)
    s.add_argument("--repeat", type=int, default=3)
    s.add_argument("--workdir", default=None)
    c = sub.add_parser("coverage")
    c.add_argument("--seeds", type=int, default=6)
    c.add_argument("--size", type=int, default=320)
    c.add_argument("--label-share", type=float, default=0.3)
    c.add_argument("--workdir", default="/tmp/ruinmap-coverage")
    args = parser.parse_args(argv)
    (speed if args.part == "speed" else coverage)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
