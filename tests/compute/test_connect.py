"""Connecting to a cluster and tracking futures (the cluster side of ingest)."""

from __future__ import annotations

import io
import socket
import sys
import urllib.request

import pytest
from distributed import Client, LocalCluster

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


def test_dashboard_link_is_none_when_the_dashboard_is_off(dask_client):
    # the shared cluster has dashboard=False: its "dashboard" service answers 404 at the link
    assert "dashboard" in dask_client.scheduler_info()["services"]
    assert dashboard_link(dask_client) is None


@pytest.mark.parametrize(("options", "served"), [
    ({"dashboard_address": None}, False),
    ({"dashboard_address": "127.0.0.1:0", "scheduler_kwargs": {"dashboard": False}}, False),
    ({"dashboard_address": "127.0.0.1:0"}, True),
], ids=["no-address", "health-routes-only", "dashboard"])
def test_dashboard_link_only_when_it_answers(options, served):
    pytest.importorskip("bokeh", reason="the dashboard needs bokeh")
    # no workers: the scheduler alone serves (or not) the dashboard
    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1",
                      **options) as cluster, Client(cluster) as client:
        # a generous wait: bokeh renders its first page slowly on a loaded machine (the
        # 2 s default timed out under pytest -n 2), and a refused link answers 404 at once
        link = dashboard_link(client, timeout_s=30)
        assert (link is not None) == served
        if served:
            with urllib.request.urlopen(link, timeout=10) as answer:
                assert answer.status == 200 and b"Dask" in answer.read()


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
