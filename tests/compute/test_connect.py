"""Connecting to a cluster and tracking futures (the cluster side of ingest)."""

from __future__ import annotations

import io
import socket
import sys

import pytest

from ruinmap.cluster.compute.connect import dashboard_link, open_client
from ruinmap.cluster.compute.progress import progress_enabled, track
from ruinmap.errors import ClusterError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_a_cluster_error_naming_the_address():
    address = f"tcp://127.0.0.1:{_closed_port()}"
    with pytest.raises(ClusterError, match=rf"cannot reach the Dask scheduler at {address}"):
        with open_client(address, timeout_s=1.0):
            pass


@pytest.mark.parametrize("address", ["lsf", "http://example.org", ""])
def test_unknown_scheduler_setting_is_a_cluster_error(address):
    with pytest.raises(ClusterError, match="expected one of kubernetes, local, pbs, slurm, or a "
                                           "scheduler address"):
        with open_client(address):
            pass


def test_open_client_connects_to_a_running_scheduler(dask_client):
    with open_client(dask_client.scheduler.address) as client:
        assert client.submit(sum, [1, 2, 3]).result() == 6
        assert len(client.scheduler_info()["workers"]) == 2
    assert dask_client.status == "running"  # closing our client leaves the cluster alone


def test_dashboard_link_is_none_without_a_dashboard(dask_client):
    # the shared cluster serves health routes only
    link = dashboard_link(dask_client)
    assert link is None or link.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("enabled", [False, True])
def test_track_yields_every_future_once(dask_client, enabled, capsys):
    futures = dask_client.map(lambda x: x * 2, range(20), pure=False)
    results = sorted(f.result() for f in track(futures, "doubling", enabled=enabled))
    assert results == [2 * x for x in range(20)]
    assert ("doubling" in capsys.readouterr().err) == enabled


def test_progress_is_off_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_enabled(None) is False
    assert progress_enabled(True) is True
