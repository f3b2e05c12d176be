"""`ruinmap run` on a terminal: every phase says what it is doing (nothing silent between the
progress bars), and `--help` names every cluster profile."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from distributed import Client

from ruinmap.cluster.job.spec import JobSpec, dump_toml
from ruinmap.synthetic import City
from tests.support.processes import BIN

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _run_on_a_terminal(argv: list[str], timeout_s: float) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as stdin/stdout/stderr; its status and output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower,
                            close_fds=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    os.close(leader)
    return proc.wait(timeout=30), _ANSI.sub("", b"".join(chunks).decode(errors="replace"))


@pytest.mark.slow
def test_ruinmap_run_on_a_terminal_names_every_phase(
    job_city: City, tmp_path: Path, dask_client: Client, job_spec_for: Callable[..., JobSpec],
) -> None:
    job = tmp_path / "job.toml"
    job.write_text(dump_toml(job_spec_for(job_city, tmp_path / "out").to_json_dict()))
    status, output = _run_on_a_terminal(
        [str(BIN / "ruinmap"), "run", str(job), "--scheduler", dask_client.scheduler.address],
        timeout_s=300)
    assert status == 0, output
    for name in ("loading ruinmap", "checking the job and reading the inputs' headers",
                 "connecting to the Dask cluster", "reading the inputs' headers",
                 "starting the ingest on the workers", "planning the tiles",
                 "starting the tiles on the workers", "closing the Dask cluster",
                 "merging the tiles' results", "writing the products"):
        assert re.search(rf"✓ {re.escape(name)}.* \d+\.\d s", output), (name, output)
    assert "ingest" in output and "tiles" in output and "Traceback" not in output


def test_every_cluster_profile_is_in_the_run_and_demo_help() -> None:
    for command in ("run", "demo"):
        text = subprocess.run([str(BIN / "ruinmap"), command, "--help"], capture_output=True,
                              text=True, check=True).stdout
        flat = " ".join(text.split())
        for profile in ("local", "tcp://host:port", "slurm", "pbs", "kubernetes"):
            assert profile in flat, (command, profile)
