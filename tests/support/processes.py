"""Processes for tests: the venv's executables (`BIN`), a free port on 127.0.0.1, and real Dask
scheduler and worker processes started with the `dask` CLI (`dask_cli_processes`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from distributed import Client

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def dask_cli_processes(folder: Path, env: Mapping[str, str], n_workers: int = 2
                       ) -> Iterator[tuple[str, Path]]:
    """A real `dask scheduler` and `n_workers` `dask worker` processes on 127.0.0.1 (one
    thread, 2 GiB each); yields (scheduler address, scheduler file) and stops them all."""
    scheduler_file = folder / "scheduler.json"
    dask = str(BIN / "dask")

    def start(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([dask, *args], env=dict(env), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    procs = [start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--scheduler-file", str(scheduler_file))]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, "the dask scheduler did not start in 60 s"
            time.sleep(0.05)  # polling, with a deadline
        procs += [start("worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                        "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1",
                        "--memory-limit", "2GiB") for _ in range(n_workers)]
        with Client(scheduler_file=str(scheduler_file), timeout=30) as client:
            client.wait_for_workers(n_workers, timeout=90)
            address = client.scheduler.address
        yield address, scheduler_file
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

