"""A real S3-compatible server for the session: moto's server mode on a free 127.0.0.1 port.

- `s3_server`: its endpoint URL; the AWS variables of the session point at it (fake
  credentials, `AWS_ENDPOINT_URL`), so this process and every subprocess it starts (`ruinmap`
  commands and their local Dask workers) talk to it and never to AWS;
- `bucket`: a fresh, versioned bucket per test (versions show which objects were rewritten);
- `s3_env`: the environment for `ruinmap` subprocesses;
- `run_cli(*args)`: run `ruinmap` in a subprocess against the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ruinmap.cluster import objectstore

BIN = Path(sys.executable).parent
AWS_ENV = {"AWS_ACCESS_KEY_ID": "ruinmap-test", "AWS_SECRET_ACCESS_KEY": "ruinmap-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
            patch.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture
def s3_client(s3_server: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=s3_server)


@pytest.fixture
def bucket(s3_client: Any) -> str:
    name = f"ruinmap-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    s3_client.put_bucket_versioning(Bucket=name,
                                    VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def s3_env(s3_server: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
            "DASK_RUINMAP__LOCAL__N_WORKERS": "2", "DASK_RUINMAP__LOCAL__DASHBOARD": "False"}


@pytest.fixture
def run_cli(s3_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(BIN / "ruinmap"), *args], env=s3_env, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, f"ruinmap {' '.join(args)} failed:\n{done.stderr[-4000:]}"
        return done

    return run


def kill_when_recorded(args: list[str], env: dict[str, str], ledger: str, count: int) -> list[str]:
    """Run `ruinmap *args`, SIGKILL it (and its local workers) once `ledger` holds `count`
    entries, and return the ledger's entries once no more arrive (a PUT the server had
    already received may still land)."""
    proc = subprocess.Popen([str(BIN / "ruinmap"), *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len(objectstore.list_names(ledger)) < count:
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline, "nothing recorded in time"
            time.sleep(0.1)  # polling the ledger, with a deadline
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    recorded = objectstore.list_names(ledger)
    while time.monotonic() < deadline:
        time.sleep(0.2)  # polling until two listings agree, with a deadline
        again = objectstore.list_names(ledger)
        if again == recorded:
            break
        recorded = again
    return recorded
