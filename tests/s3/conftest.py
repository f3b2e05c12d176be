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
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.processes import BIN, free_port
from tests.support.s3 import AWS_ENV


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
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


