"""An S3-compatible server for tests (moto) and killing a CLI run once its ledger holds N
records."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from ruinmap.cluster.storage.location import as_location
from tests.support.processes import BIN

AWS_ENV = {"AWS_ACCESS_KEY_ID": "ruinmap-test", "AWS_SECRET_ACCESS_KEY": "ruinmap-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}



def kill_when_recorded(args: list[str], env: dict[str, str], ledger: str, count: int) -> list[str]:
    """Run `ruinmap *args`, SIGKILL it (and its local workers) once `ledger` holds `count`
    entries, and return the ledger's entries once no more arrive (a PUT the server had
    already received may still land)."""
    proc = subprocess.Popen([str(BIN / "ruinmap"), *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while len(as_location(ledger).list_names()) < count:
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline, "nothing recorded in time"
            time.sleep(0.1)  # polling the ledger, with a deadline
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    recorded = as_location(ledger).list_names()
    while time.monotonic() < deadline:
        time.sleep(0.2)  # polling until two listings agree, with a deadline
        again = as_location(ledger).list_names()
        if again == recorded:
            break
        recorded = again
    return recorded

