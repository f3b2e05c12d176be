"""The job service under test: `ruinmap serve` in a subprocess (`Service`), its config, the
tokens, and the HTTP helpers (`submit`, `wait_final`) the service tests share."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from distributed import Client

from ruinmap.cluster.job.spec import load_spec
from ruinmap.cluster.service.config import hash_token
from ruinmap.synthetic import City, write_job_spec
from tests.support.processes import BIN, free_port

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



def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
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
        stop_process(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

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
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
        return str(value)

    lines = []
    for table, keys in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{name} = {toml(value)}" for name, value in keys.items()]
    path = folder / "service.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


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

