"""Fixtures of the job-service tests: real processes on 127.0.0.1 only.

- `dask_scheduler`: a `dask scheduler` and two `dask worker` processes (session);
- `service_city`: a 256 x 256 px synthetic city (3 pre, 2 post dates) in a data root; with
  64 px shards a job on it has 16 tiles;
- `start_service(folder, **config)`: `ruinmap serve` in a subprocess on a free port, with a
  service.toml written into `folder` (data root = the city's root, output root and job store
  inside `folder`), connected to `dask_scheduler`; returns a `Service` (url, kill, restart);
- `service`: one such service for the session (tokens TOKEN and TOKEN_2, max_running 4);
- `city_spec`: the city's job spec as the JSON `inputs` of an execute request;
- `tiny_city` / `tiny_spec`: a 64 x 64 px city (one tile) and its inputs without buildings;
- `finished_job`: that job run once through `service`, undisturbed (status info).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import dask_cli_processes
from distributed import Client

from ruinmap.cluster.service.config import hash_token
from ruinmap.cluster.spec import load_spec
from ruinmap.cluster.synthetic import City, make_city, write_job_spec

BIN = Path(sys.executable).parent
TOKEN = "test-token-one"
TOKEN_2 = "test-token-two"  # configured only as its sha256 hash
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CITY_SIZE = 256
SHARD = 64
TILES = (CITY_SIZE // SHARD) ** 2
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "GDAL_CACHEMAX": "64",
       "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR",
                                         str(Path(__file__).parents[2] / ".numba-cache"))}


def wait_for(condition: Callable[[], Any], deadline_s: float, what: str,
             interval_s: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; TimeoutError after `deadline_s`."""
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"gave up waiting for {what} after {deadline_s:g} s")
        time.sleep(interval_s)  # polling interval of a wait with a deadline


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class DaskCluster:
    address: str
    scheduler_file: Path

    def client(self) -> Client:
        return Client(scheduler_file=str(self.scheduler_file), timeout=30)


@pytest.fixture(scope="session")
def dask_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with dask_cli_processes(tmp_path_factory.mktemp("dask"), ENV) as (address, scheduler_file):
        yield DaskCluster(address, scheduler_file)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def service_city(data_root: Path) -> City:
    return make_city(data_root / "city", size=CITY_SIZE, seed=5, n_pre=3, n_post=2)


def spec_inputs(city: City, data_root: Path, **changes: Any) -> dict[str, Any]:
    """The city's job spec as execute-request inputs, paths relative to the data root."""
    spec = load_spec(write_job_spec(city, data_root, name=f"{city.out_dir.name}.toml"))
    data = spec.to_json_dict()
    data.pop("output")
    data.pop("cluster", None)

    def rel(text: str) -> str:
        return os.path.relpath(text, data_root)

    data["inputs"] = {side: [rel(p) for p in data["inputs"][side]] for side in ("pre", "post")}
    data["districts"]["path"] = rel(data["districts"]["path"])
    if "buildings" in data:
        data["buildings"]["path"] = rel(data["buildings"]["path"])
    data.update(changes)
    return data


@pytest.fixture(scope="session")
def tiny_city(data_root: Path) -> City:
    """A 64 x 64 px city: a one-tile job, for many or quick submissions."""
    return make_city(data_root / "tiny", size=64, seed=9, n_pre=3, n_post=2, n_districts=3)


@pytest.fixture(scope="session")
def tiny_spec(tiny_city: City, data_root: Path) -> dict[str, Any]:
    """The tiny city's job inputs, without building footprints (fewer products to write)."""
    inputs = spec_inputs(tiny_city, data_root)
    inputs.pop("buildings", None)
    return inputs


@pytest.fixture(scope="session")
def city_spec(service_city: City, data_root: Path) -> dict[str, Any]:
    return spec_inputs(service_city, data_root)


@dataclass
class Service:
    """A `ruinmap serve` subprocess and where it keeps things."""

    folder: Path
    config: Path
    scheduler: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output_root(self) -> Path:
        return self.folder / "results"

    @property
    def log(self) -> Path:
        return self.folder / "service.log"

    def start(self) -> Service:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "ruinmap"), "serve", "--config", str(self.config), "--port",
                 str(self.port), "--scheduler", self.scheduler],
                env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{self.url}/conformance", timeout=2,
                                 headers=AUTH).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 90, "the job service", interval_s=0.1)
        return self

    def kill(self) -> None:
        """SIGKILL the service (no clean shutdown)."""
        assert self.proc is not None
        _stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def restart(self) -> Service:
        self.kill()
        self.port = free_port()
        return self.start()

    def http(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def write_config(folder: Path, data_root: Path, **settings: Any) -> Path:
    """A service.toml in `folder`; `settings` are 'table.key' -> value overrides."""
    values: dict[str, Any] = {
        "auth.tokens": [TOKEN, hash_token(TOKEN_2)],
        "auth.public_read": True,
        "paths.data_roots": [str(data_root)],
        "paths.output_root": "results",
        "store.db": "jobs.sqlite",
        "jobs.max_running": 4,
        "jobs.chunk_px": 32,
        "jobs.shard_px": SHARD,
    }
    values.update({k.replace("__", "."): v for k, v in settings.items()})
    tables: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        table, name = key.split(".")
        tables.setdefault(table, {})[name] = value

    def toml(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return "[" + ", ".join(toml(v) for v in value) + "]"
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return str(value)

    lines = []
    for table, keys in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{name} = {toml(value)}" for name, value in keys.items()]
    path = folder / "service.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def start_service(dask_scheduler: DaskCluster, data_root: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(folder: Path, **settings: Any) -> Service:
        folder.mkdir(parents=True, exist_ok=True)
        service = Service(folder, write_config(folder, data_root, **settings),
                          dask_scheduler.address)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def service(start_service: Callable[..., Service],
            tmp_path_factory: pytest.TempPathFactory) -> Service:
    return start_service(tmp_path_factory.mktemp("service"))


def submit(service: Service, inputs: dict[str, Any], token: str | None = TOKEN) -> httpx.Response:
    with service.http(token) as http:
        return http.post("/processes/damage-map/execution", json={"inputs": inputs},
                         headers={"Prefer": "respond-async"})


def wait_final(service: Service, job_id: str, deadline_s: float = 120) -> dict[str, Any]:
    """Poll the job's status until it is successful, failed or dismissed."""
    with service.http() as http:
        def final() -> dict[str, Any] | None:
            info = http.get(f"/jobs/{job_id}").json()
            return info if info["status"] in ("successful", "failed", "dismissed") else None

        return dict(wait_for(final, deadline_s, f"job {job_id}", interval_s=0.1))


def ledger_count(output_dir: Path) -> int:
    ledger = output_dir / ".ruinmap-job" / "ledger"
    try:
        return sum(1 for name in os.listdir(ledger) if not name.startswith("."))
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="session")
def finished_job(service: Service, city_spec: dict[str, Any]) -> dict[str, Any]:
    response = submit(service, {**city_spec, "output": {"dir": "undisturbed"}})
    assert response.status_code == 201, response.text
    info = wait_final(service, response.json()["jobID"])
    assert info["status"] == "successful", info
    return info
