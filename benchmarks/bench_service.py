"""Benchmark the job service: status requests while jobs run, and the cost of going through it.

One local Dask cluster (LocalCluster in this process, --workers processes with one thread
each) serves both paths, so they share workers, scene and settings:

1. **Overhead**: the bench_job.py scene (size x size px, 5 pre + 3 post dates, VV + VH, 100
   districts, 50,000 footprints) run with `run_job` on the cluster directly, then
   submitted to `ruinmap serve` (a subprocess on a free port, connected to the same scheduler)
   and polled until successful, --repeat times each in ABBA order, after one untimed run of
   each on a 512^2 scene (worker imports, numba caches). Reported: wall time of each
   (service: from the POST to the first poll that sees `successful`, polled every 0.2 s) and
   the overhead of the service over the direct run (medians). Target: under 5 % at 4096^2.
2. **Status load**: --load-jobs jobs of the same scene submitted at once (max_running 2), and
   while they run, --threads client threads send `GET /jobs/{id}` as fast as they can for
   --seconds; reported: requests/s, p50 and p99 latency. The same is measured with no job
   running, for comparison. Client threads share the machine with the workers.

    python benchmarks/bench_service.py --size 4096
    python benchmarks/bench_service.py --size 1024 --repeat 2 --json /tmp/service.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".numba-cache")
)

from bench_job import make_scene

TOKEN = "bench-token"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class ServiceProcess:
    """`ruinmap serve` in a subprocess, reading the scene folder and writing under `root`."""

    def __init__(self, root: Path, data: Path, scheduler: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = root / "service.toml"
        config.write_text(
            f'[auth]\ntokens = ["{TOKEN}"]\n[paths]\ndata_roots = ["{data}"]\n'
            f'output_root = "{root / "results"}"\n[store]\ndb = "{root / "jobs.sqlite"}"\n'
            "[jobs]\nmax_running = 2\n"
        )
        self.log = (root / "service.log").open("ab")
        self.proc = subprocess.Popen(
            [str(BIN / "ruinmap"), "serve", "--config", str(config), "--port", str(self.port),
             "--scheduler", scheduler],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        end = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited; see {root / 'service.log'}")
            try:
                if httpx.get(f"{self.url}/conformance", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                raise RuntimeError("the service did not start within 120 s")
            time.sleep(0.2)  # polling the service's start, with a deadline
        self.http = httpx.Client(base_url=self.url, timeout=60,
                                 headers={"Authorization": f"Bearer {TOKEN}"})

    def submit(self, inputs: dict[str, Any]) -> str:
        response = self.http.post("/processes/damage-map/execution", json={"inputs": inputs},
                                  headers={"Prefer": "respond-async"})
        if response.status_code != 201:
            raise RuntimeError(f"submission refused: {response.status_code} {response.text}")
        return str(response.json()["jobID"])

    def wait(self, job_id: str, poll_s: float = 0.2) -> dict[str, Any]:
        while True:
            info = self.http.get(f"/jobs/{job_id}").json()
            if info["status"] in ("successful", "failed", "dismissed"):
                if info["status"] != "successful":
                    raise RuntimeError(f"job {job_id} {info['status']}: {info['message']}")
                return dict(info)
            time.sleep(poll_s)  # the polling interval a client would use

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def _inputs(out_name: str) -> dict[str, Any]:
    return {
        "method": "pwtt",
        "inputs": {"pre": ["pre/*.tif"], "post": ["post/*.tif"]},
        "districts": {"path": "districts.geojson", "id": "district_id", "name": "name"},
        "buildings": {"path": "buildings.parquet", "id": "building_id"},
        "grid": {"cell_size": 500.0},
        "output": {"dir": out_name},
    }


def run_direct(client: Any, job: Path, out: Path) -> float:
    from ruinmap.cluster.job.run import run_job
    from ruinmap.cluster.job.spec import OutputSpec, load_spec

    spec = load_spec(job)
    spec = spec.model_copy(update={"output": OutputSpec(dir=str(out))})
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    run_job(spec, client=client, progress=False)
    return time.perf_counter() - started


def run_service(service: ServiceProcess, name: str) -> tuple[float, float]:
    """(wall from POST to seen successful, the job's own started -> finished), seconds."""
    from datetime import datetime

    started = time.perf_counter()
    job_id = service.submit(_inputs(name))
    info = service.wait(job_id)
    wall = time.perf_counter() - started

    def stamp(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    return wall, stamp(info["finished"]) - stamp(info["started"])


def status_load(service: ServiceProcess, job_ids: list[str], threads: int,
                seconds: float) -> dict[str, float]:
    """Hammer GET /jobs/{id} from `threads` threads for `seconds`; rate and latencies."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def worker(index: int) -> None:
        mine: list[float] = []
        with httpx.Client(base_url=service.url, timeout=30) as http:
            i = index
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                response = http.get(f"/jobs/{job_ids[i % len(job_ids)]}")
                mine.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    errors[0] += 1
                i += 1
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "errors": errors[0],
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(1000 * _percentile(latencies, 50), 2),
            "p99_ms": round(1000 * _percentile(latencies, 99), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="scene side, px (default 4096)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each path (median)")
    parser.add_argument("--load-jobs", type=int, default=2,
                        help="jobs running during the status load (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="status client threads")
    parser.add_argument("--seconds", type=float, default=10.0, help="status load duration")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ruinmap-bench-service"))
    parser.add_argument("--keep", action="store_true", help="keep the scene afterwards")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from ruinmap.cluster.compute.connect import open_client

    scene = args.workdir / f"scene-{args.size}"
    print(f"scene {args.size}^2 in {scene} ...", file=sys.stderr)
    job = make_scene(scene, args.size)
    results: dict[str, Any] = {"size": args.size, "workers": args.workers,
                               "cpus": os.cpu_count(), "direct_s": [], "service_s": [],
                               "service_job_s": []}
    with open_client("local", n_workers=args.workers, dashboard=False) as client:
        service = ServiceProcess(args.workdir / "service", scene, client.scheduler.address)
        try:
            # warm-up on a small scene through both paths: worker imports, numba caches
            small = make_scene(args.workdir / "scene-warmup", 512)
            run_direct(client, small, small.parent / "direct-warmup")
            warm = ServiceProcess(args.workdir / "service-warmup", small.parent,
                                  client.scheduler.address)
            try:
                warm.wait(warm.submit(_inputs("warmup")))
            finally:
                warm.close()
            for i in range(args.repeat):
                # ABBA order, so drift in the machine's load hits both paths alike
                order = ("direct", "service") if i % 2 == 0 else ("service", "direct")
                for path in order:
                    if path == "direct":
                        direct = run_direct(client, job, scene / f"direct-{i}")
                        print(f"direct run {i}: {direct:.2f} s", file=sys.stderr)
                        results["direct_s"].append(round(direct, 3))
                    else:
                        wall, own = run_service(service, f"via-service-{i}")
                        print(f"service run {i}: {wall:.2f} s (job {own:.2f} s)",
                              file=sys.stderr)
                        results["service_s"].append(round(wall, 3))
                        results["service_job_s"].append(round(own, 3))
            direct_median = statistics.median(results["direct_s"])
            service_median = statistics.median(results["service_s"])
            results["overhead_pct"] = round(100 * (service_median / direct_median - 1), 2)

            done = service.http.get("/jobs", params={"limit": 1}).json()["jobs"]
            results["status_idle"] = status_load(service, [done[0]["jobID"]], args.threads,
                                                 min(args.seconds, 5.0))
            loaded = [service.submit(_inputs(f"load-{i}")) for i in range(args.load_jobs)]
            results["status_under_load"] = status_load(service, loaded, args.threads,
                                                       args.seconds)
            running = [service.http.get(f"/jobs/{j}").json()["status"] for j in loaded]
            results["load_jobs_still_active_at_end"] = sum(
                s in ("accepted", "running") for s in running)
            for job_id in loaded:
                service.http.delete(f"/jobs/{job_id}")
        finally:
            service.close()
    if not args.keep:
        shutil.rmtree(args.workdir / "service", ignore_errors=True)
        shutil.rmtree(args.workdir / "service-warmup", ignore_errors=True)
        for out in scene.glob("direct-*"):
            shutil.rmtree(out, ignore_errors=True)

    print(f"\njob service, {args.size}^2 scene, {args.workers} local workers, "
          f"{results['cpus']} CPUs")
    print(f"  direct run_job:      {results['direct_s']} s (median "
          f"{statistics.median(results['direct_s']):.2f})")
    print(f"  through the service: {results['service_s']} s (median "
          f"{statistics.median(results['service_s']):.2f}; the job itself "
          f"{results['service_job_s']} s)")
    print(f"  overhead: {results['overhead_pct']:+.1f} % (target < 5 %)")
    for key, label in (("status_idle", "no job running"),
                       ("status_under_load", f"{args.load_jobs} jobs running")):
        s = results[key]
        print(f"  GET /jobs/{{id}}, {label}: {s['requests_per_s']} req/s, p50 {s['p50_ms']} ms,"
              f" p99 {s['p99_ms']} ms ({s['requests']} requests, {args.threads} threads, "
              f"{s['errors']} errors)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
