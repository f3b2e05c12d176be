"""Cluster profiles and ruinmap's settings in the Dask config: which cluster a run uses, and how.

The slurm profile runs against stand-ins for `sbatch` and `scancel` that run the real batch
script dask-jobqueue writes as a local process group, so the worker it starts is a real
`distributed` worker joining the profile's real scheduler.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import dask_jobqueue  # noqa: F401  (registers the jobqueue section of the Dask config)
import pytest
import yaml
from distributed import Client

from ruinmap.cli import main
from ruinmap.cluster import settings as ruinmap_config
from ruinmap.cluster.compute.connect import PROFILES, open_client
from ruinmap.cluster.compute.profiles import job_script, kubernetes_cluster_spec
from ruinmap.cluster.ingest import ingest
from ruinmap.cluster.job.run import run_job
from ruinmap.cluster.job.spec import load_spec, parse_spec
from ruinmap.cluster.settings import WORKER_ENV, resolve_address, settings
from ruinmap.errors import ClusterError, SpecError
from ruinmap.synthetic import make_city, write_job_spec
from tests.support.repo import REPO

HPC_CONFIG = REPO / "deploy" / "hpc" / "ruinmap-slurm.yaml"


@pytest.fixture
def restore_config() -> Iterator[None]:
    """Tests here re-collect the Dask config from other sources; put the real one back."""
    yield
    dask.config.refresh()


def _closed_port_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _spec_mapping(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {
        "method": "log-ratio",
        "inputs": {"pre": ["pre/*.tif"], "post": ["post/*.tif"]},
        "districts": {"path": "districts.geojson", "id": "id"},
        "output": {"dir": str(tmp_path / "out")},
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# settings


def test_every_default_of_the_shipped_yaml_is_in_the_dask_config():
    shipped = yaml.safe_load(ruinmap_config.CONFIG_FILE.read_text())["ruinmap"]

    def leaves(tree: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
        for key, value in tree.items():
            if isinstance(value, dict) and value:
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    pairs = list(leaves(shipped))
    assert len(pairs) > 15
    for key, value in pairs:
        assert dask.config.get(f"ruinmap.{key}") == value, key
    assert settings()["cluster"]["address"] == "local"


def test_every_setting_is_documented_with_its_default_in_the_readme():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Running on clusters"):]
    shipped = yaml.safe_load(ruinmap_config.CONFIG_FILE.read_text())["ruinmap"]
    for table, keys in shipped.items():
        for key in keys:
            assert f"`ruinmap.{table}.{key}`" in section, f"ruinmap.{table}.{key}"


def test_environment_variables_override_the_defaults(restore_config):
    dask.config.refresh(env={"DASK_RUINMAP__CLUSTER__ADDRESS": "pbs",
                             "DASK_RUINMAP__LOCAL__N_WORKERS": "3"})
    assert resolve_address() == "pbs"
    assert dask.config.get("ruinmap.local.n-workers") == 3
    assert dask.config.get("ruinmap.cluster.workers") == 2  # untouched keys keep defaults


def test_a_yaml_file_in_the_dask_config_folder_overrides_the_defaults(tmp_path, restore_config):
    (tmp_path / "site.yaml").write_text("ruinmap:\n  cluster:\n    address: kubernetes\n"
                                        "  kubernetes:\n    image: registry.example/ruinmap:9\n")
    dask.config.refresh(paths=[str(tmp_path)], env={})
    assert resolve_address() == "kubernetes"
    assert kubernetes_cluster_spec()["spec"]["worker"]["spec"]["containers"][0]["image"] == (
        "registry.example/ruinmap:9")
    assert dask.config.get("ruinmap.local.threads-per-worker") == 1


@pytest.mark.parametrize(
    ("explicit", "in_spec", "in_config", "expected"),
    [
        ("tcp://10.0.0.1:8786", "slurm", "pbs", "tcp://10.0.0.1:8786"),
        (None, "slurm", "pbs", "slurm"),
        (None, None, "pbs", "pbs"),
        (None, None, None, "local"),
        ("", "  ", "kubernetes", "kubernetes"),
    ],
)
def test_address_precedence_is_flag_then_job_then_config_then_local(
    explicit, in_spec, in_config, expected
):
    with dask.config.set({"ruinmap.cluster.address": in_config}):
        assert resolve_address(explicit, in_spec) == expected


def test_a_job_without_a_cluster_table_leaves_the_address_to_the_config(tmp_path):
    unset = parse_spec(_spec_mapping(tmp_path), tmp_path)
    assert unset.cluster.given_address is None
    assert "cluster" not in unset.to_json_dict()
    again = parse_spec(unset.to_json_dict(), tmp_path)
    assert again.cluster.given_address is None
    given = parse_spec(_spec_mapping(tmp_path, cluster={"address": "local"}), tmp_path)
    assert given.cluster.given_address == "local"
    assert parse_spec(given.to_json_dict(), tmp_path).cluster.given_address == "local"


@pytest.mark.parametrize("profile", ["slurm", "pbs", "kubernetes"])
def test_job_files_accept_the_profile_names(tmp_path, profile):
    spec = parse_spec(_spec_mapping(tmp_path, cluster={"address": profile}), tmp_path)
    assert spec.cluster.address == profile


def test_job_files_refuse_unknown_profiles(tmp_path):
    with pytest.raises(SpecError, match=r"'lsf' is not a cluster address; use 'local'.*'slurm'"):
        parse_spec(_spec_mapping(tmp_path, cluster={"address": "lsf"}), tmp_path)


def test_every_profile_is_registered():
    assert set(PROFILES) == {"local", "slurm", "pbs", "kubernetes"}
    with pytest.raises(ClusterError, match="expected one of kubernetes, local, pbs, slurm"):
        with open_client("lsf"):
            pass


# ---------------------------------------------------------------------------------------------
# which cluster the library entry points use


@pytest.fixture(scope="module")
def small_city(tmp_path_factory: pytest.TempPathFactory):
    return make_city(tmp_path_factory.mktemp("profiles") / "city", size=64, n_pre=2, n_post=2,
                     seed=5)


def test_open_client_without_an_address_uses_the_configured_scheduler(dask_client):
    address = dask_client.scheduler.address
    with dask.config.set({"ruinmap.cluster.address": address}):
        with open_client() as client:
            assert client.scheduler.address == address
            assert client.submit(sum, [1, 2]).result() == 3


def test_ingest_without_a_scheduler_uses_the_configured_address(small_city, tmp_path):
    dead = _closed_port_address()
    with dask.config.set({"ruinmap.cluster.address": dead,
                          "ruinmap.cluster.connect-timeout": 1}):
        with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {dead}"):
            ingest([str(p) for p in small_city.pre_files],
                   [str(p) for p in small_city.post_files], tmp_path / "store.zarr")


def _job(small_city, tmp_path: Path, address: str | None):
    spec = load_spec(write_job_spec(small_city, tmp_path))
    data = spec.to_json_dict()
    data.pop("cluster", None)
    if address is not None:
        data["cluster"] = {"address": address}
    return parse_spec(data, tmp_path)


@pytest.mark.parametrize("winner", ["flag", "job", "config"])
def test_run_job_picks_the_address_by_precedence(small_city, tmp_path, winner):
    addresses = {name: _closed_port_address() for name in ("flag", "job", "config")}
    spec = _job(small_city, tmp_path, addresses["job"] if winner != "config" else None)
    flag = addresses["flag"] if winner == "flag" else None
    with dask.config.set({"ruinmap.cluster.address": addresses["config"],
                          "ruinmap.cluster.connect-timeout": 1}):
        with pytest.raises(ClusterError, match=addresses[winner]):
            run_job(spec, scheduler=flag, progress=False)


def test_local_profile_takes_its_settings_from_the_config():
    with dask.config.set({"ruinmap.local.n-workers": 1, "ruinmap.local.memory-limit": "1GiB",
                          "ruinmap.local.dashboard": False}):
        with open_client("local") as client:
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 1
            [info] = workers.values()
            assert info["memory_limit"] == 2**30
            assert info["nthreads"] == 1
            env = client.run(lambda: os.environ.get("GDAL_CACHEMAX"))
            assert set(env.values()) == {WORKER_ENV["GDAL_CACHEMAX"]}


# ---------------------------------------------------------------------------------------------
# batch systems


SLURM = {"cores": 1, "processes": 1, "memory": "2GB", "walltime": "01:15:00",
         "account": "proj42", "queue": "compute", "job-extra-directives": ["--exclusive=user"],
         "worker-extra-args": ["--lifetime", "55m"], "job-script-prologue": ["echo ready"]}


def test_slurm_job_script_reflects_the_jobqueue_config():
    with dask.config.set({"jobqueue.slurm": {**dask.config.get("jobqueue.slurm"), **SLURM}}):
        script = job_script("slurm")
    lines = script.splitlines()
    for directive in ("#SBATCH -A proj42", "#SBATCH -p compute", "#SBATCH --cpus-per-task=1",
                      "#SBATCH -t 01:15:00", "#SBATCH --exclusive=user", "#SBATCH --mem=2G"):
        assert directive in lines, directive
    for name, value in WORKER_ENV.items():
        assert f"export {name}={value}" in lines
    assert lines.index("echo ready") > lines.index("export GDAL_CACHEMAX=64")
    [command] = [line for line in lines if "distributed.cli.dask_worker" in line]
    assert "--lifetime 55m" in command and "--nthreads 1" in command


def test_pbs_job_script_reflects_the_jobqueue_config():
    pbs = {**dask.config.get("jobqueue.pbs"), "cores": 4, "memory": "16GB", "account": "geo",
           "walltime": "03:00:00", "job-extra-directives": ["-l place=scatter"]}
    with dask.config.set({"jobqueue.pbs": pbs}):
        lines = job_script("pbs").splitlines()
    for directive in ("#PBS -A geo", "#PBS -l walltime=03:00:00", "#PBS -l place=scatter"):
        assert directive in lines, directive
    assert any(line.startswith("#PBS -l select=1:ncpus=4:mem=") for line in lines)


def test_the_shipped_hpc_config_gives_a_valid_slurm_script(restore_config):
    dask.config.refresh(paths=[str(HPC_CONFIG.parent)], env={})
    assert resolve_address() == "slurm"
    lines = job_script("slurm").splitlines()
    assert "#SBATCH -p compute" in lines and "#SBATCH --cpus-per-task=8" in lines
    assert any("--lifetime 115m" in line for line in lines)


def test_a_batch_profile_without_cores_and_memory_names_the_config_section():
    with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}):
        with pytest.raises(ClusterError, match=r"jobqueue\.slurm section"):
            job_script("slurm")


def test_the_slurm_profile_off_a_login_node_says_sbatch_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match=r"`sbatch` is not on PATH"):
        with open_client("slurm"):
            pass


def _fake_slurm(folder: Path) -> Path:
    """`sbatch` running the job script as its own process group, `scancel` killing it."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": f"""#!/bin/sh
script="$1"
cp "$script" {folder}/submitted-$$.sh
setsid sh {folder}/submitted-$$.sh > {folder}/job-$$.log 2>&1 < /dev/null &
echo "$!" > {folder}/pgid-$$
echo "Submitted batch job $$"
""",
        "scancel": f"""#!/bin/sh
for job in "$@"; do
  kill -TERM -- -"$(cat {folder}/pgid-$job)" 2>/dev/null
  echo "$job" >> {folder}/cancelled
done
""",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_the_slurm_profile_runs_work_on_workers_its_batch_jobs_start(tmp_path, monkeypatch):
    bin_dir = _fake_slurm(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    slurm = {**dask.config.get("jobqueue.slurm"), **SLURM, "interface": "lo",
             "scheduler-options": {"dashboard_address": ":0"}, "job-script-prologue": []}
    with dask.config.set({"jobqueue.slurm": slurm, "ruinmap.cluster.workers": 1,
                          "ruinmap.cluster.worker-timeout": 60}):
        with open_client("slurm") as client:
            assert isinstance(client, Client)
            worker_pid = client.submit(os.getpid, pure=False).result()
            env = client.run(lambda: os.environ.get("NUMBA_NUM_THREADS"))
    [submitted] = tmp_path.glob("submitted-*.sh")
    assert "#SBATCH -A proj42" in submitted.read_text()
    assert set(env.values()) == {"1"}
    [pgid_file] = tmp_path.glob("pgid-*")
    pgid = int(pgid_file.read_text())
    assert os.getpgid(worker_pid) == pgid  # the work ran inside the batch job
    assert (tmp_path / "cancelled").read_text().split() == [pgid_file.name.split("-")[1]]
    end = time.monotonic() + 30.0
    while _alive(pgid) and time.monotonic() < end:
        time.sleep(0.1)  # polling a condition with a deadline
    assert not _alive(pgid), "scancel left the batch job running"


# ---------------------------------------------------------------------------------------------
# kubernetes


def test_the_kubernetes_profile_builds_its_daskcluster_from_the_config():
    with dask.config.set({"ruinmap.kubernetes.name": "damage", "ruinmap.cluster.workers": 5,
                          "ruinmap.kubernetes.env": {"AWS_REGION": "eu-central-1"}}):
        spec = kubernetes_cluster_spec()
    assert spec["kind"] == "DaskCluster" and spec["metadata"]["name"] == "damage"
    worker = spec["spec"]["worker"]
    assert worker["replicas"] == 5
    [container] = worker["spec"]["containers"]
    assert container["command"][:2] == ["dask", "worker"]  # the image's entrypoint is ruinmap
    assert "args" not in container
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AWS_REGION"] == "eu-central-1" and env["GDAL_CACHEMAX"] == "64"
    assert container["resources"] == dask.config.get("ruinmap.kubernetes.resources")
    [scheduler] = spec["spec"]["scheduler"]["spec"]["containers"]
    assert scheduler["command"][:2] == ["dask", "scheduler"]


def test_the_kubernetes_profile_without_a_cluster_is_a_cluster_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterError, match="could not create the DaskCluster 'ruinmap'"):
        with open_client("kubernetes"):
            pass


def test_the_kubernetes_profile_without_dask_kubernetes_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)
    with pytest.raises(ClusterError, match=r"pip install 'ruinmap\[kubernetes\]'"):
        kubernetes_cluster_spec()


# ---------------------------------------------------------------------------------------------
# the CLI


def test_cli_cluster_script_prints_the_slurm_batch_script(capsys):
    with dask.config.set({"jobqueue.slurm": {**dask.config.get("jobqueue.slurm"), **SLURM}}):
        assert main(["cluster", "script", "--profile", "slurm"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/usr/bin/env bash") and "#SBATCH -A proj42" in out


def test_cli_cluster_script_prints_the_daskcluster(capsys):
    assert main(["cluster", "script", "--profile", "kubernetes"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["kind"] == "DaskCluster"


def test_cli_cluster_config_prints_the_settings_in_effect(tmp_path):
    env = {**os.environ, "DASK_RUINMAP__CLUSTER__ADDRESS": "tcp://10.1.2.3:8786",
           "DASK_RUINMAP__LOCAL__MEMORY_LIMIT": "3GiB", "DASK_CONFIG": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "ruinmap", "cluster", "config"], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    shown = yaml.safe_load(done.stdout)["ruinmap"]
    assert shown["cluster"]["address"] == "tcp://10.1.2.3:8786"
    assert shown["local"]["memory_limit"] == "3GiB"
    assert shown["kubernetes"]["image"] == dask.config.get("ruinmap.kubernetes.image")
    assert "work runs on: tcp://10.1.2.3:8786" in done.stdout


def test_cli_cluster_script_without_cores_is_a_clean_error(capsys):
    with dask.config.set({"jobqueue.pbs.cores": None}):
        assert main(["cluster", "script", "--profile", "pbs"]) == 1
    assert "ruinmap cluster: error: profile 'pbs'" in capsys.readouterr().err
