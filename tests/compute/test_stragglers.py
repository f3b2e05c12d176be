"""A crashed run's tile tasks keep executing on the workers; a re-run waits for them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from distributed import Client, LocalCluster

from ruinmap.cluster.compute.stragglers import running_task_keys, stop_tasks, wait_for_stragglers
from ruinmap.errors import ClusterError

PREFIX = "ruinmap-tile-0123abcd-"


def _busy(seconds: float) -> float:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)
    return seconds


def _orphan(cluster: LocalCluster, key: str, seconds: float) -> float:
    """Start `key` from a client that then dies, as a crashed run would; returns its end time."""
    crashed = Client(cluster)
    future = crashed.submit(_busy, seconds, key=key, pure=False)
    deadline = time.monotonic() + 30
    while not running_task_keys(crashed, key):  # polling, with a deadline
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    ends = time.monotonic() + seconds
    del future
    crashed.close()  # the scheduler forgets the task; the worker thread runs on
    return ends


def test_a_rerun_waits_for_the_tiles_a_crashed_run_left_running(
    local_cluster: LocalCluster, dask_client: Client,
) -> None:
    ends = _orphan(local_cluster, f"{PREFIX}0-0", 3.0)
    assert dask_client.run_on_scheduler(
        lambda dask_scheduler: f"{PREFIX}0-0" in dask_scheduler.tasks) is False
    assert running_task_keys(dask_client, PREFIX) == [f"{PREFIX}0-0"]
    assert running_task_keys(dask_client, "ruinmap-tile-other-") == []
    assert wait_for_stragglers(dask_client, PREFIX, poll_s=0.05) == 1
    assert time.monotonic() >= ends - 0.2  # it returned only once the task had finished
    assert running_task_keys(dask_client, PREFIX) == []


def test_waiting_too_long_is_a_cluster_error_naming_the_task(
    local_cluster: LocalCluster, dask_client: Client,
) -> None:
    _orphan(local_cluster, f"{PREFIX}1-2", 2.0)
    with pytest.raises(ClusterError, match=f"{PREFIX}1-2.*restart the workers"):
        wait_for_stragglers(dask_client, PREFIX, timeout_s=0.2, poll_s=0.05)
    wait_for_stragglers(dask_client, PREFIX, poll_s=0.05)


def test_nothing_running_returns_at_once(dask_client: Client) -> None:
    started = time.monotonic()
    assert wait_for_stragglers(dask_client, PREFIX) == 0
    assert time.monotonic() - started < 5


def _cancelled_while_running(client: Client, key: str, seconds: float, worker: str) -> None:
    future = client.submit(_busy, seconds, key=key, pure=False, workers=[worker])
    deadline = time.monotonic() + 30
    while not running_task_keys(client, key):  # polling, with a deadline
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    future.cancel()  # as a dismissal does: the worker thread runs on


@pytest.fixture
def own_cluster() -> Iterator[tuple[LocalCluster, Client]]:
    """Two worker processes with nannies of their own: these tests restart workers."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        yield cluster, client


def test_a_dismissed_task_that_runs_on_is_stopped_by_restarting_only_its_worker(
        own_cluster: tuple[LocalCluster, Client]) -> None:
    _, client = own_cluster
    stuck_on, other = sorted(client.scheduler_info()["workers"])
    pids = client.run(os.getpid)
    innocent = client.submit(_busy, 4.0, key="another-job-0", pure=False, workers=[other])
    _cancelled_while_running(client, f"{PREFIX}2-2", 600.0, stuck_on)
    started = time.monotonic()
    assert stop_tasks(client, [f"{PREFIX}2-2"], grace_s=0.5, deadline_s=60, poll_s=0.05)
    assert time.monotonic() - started < 60  # not the task's 600 s
    client.wait_for_workers(2)
    assert running_task_keys(client, PREFIX) == []
    assert innocent.result(timeout=60) == 4.0  # the other worker, and its task, untouched
    after = client.run(os.getpid)
    assert after[other] == pids[other]
    assert pids[stuck_on] not in after.values()  # a fresh process replaced the stuck one


def test_tasks_that_return_within_the_grace_restart_nothing(
        own_cluster: tuple[LocalCluster, Client]) -> None:
    _, client = own_cluster
    worker = sorted(client.scheduler_info()["workers"])[0]
    pids = client.run(os.getpid)
    _cancelled_while_running(client, f"{PREFIX}3-3", 1.0, worker)
    assert stop_tasks(client, [f"{PREFIX}3-3"], grace_s=30, deadline_s=60, poll_s=0.05)
    assert client.run(os.getpid) == pids
