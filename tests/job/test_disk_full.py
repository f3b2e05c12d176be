"""A full disk while `ruinmap run` writes: one line naming the file and the space, no
temporaries left, and the re-run after freeing space resumes.

The disk is a real, small tmpfs, mounted without root in a user and mount namespace
(`unshare -rm`), so writes fail with ENOSPC as on a full disk; `mount -o remount,size=`
then frees space for the re-run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from distributed import Client

from ruinmap.cluster.ingest import IngestOptions, ingest
from ruinmap.cluster.job.spec import JobSpec, dump_toml
from ruinmap.synthetic import City
from tests.support.jobs import SHARD
from tests.support.processes import BIN

pytestmark = pytest.mark.slow


def _can_mount_tmpfs(folder: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=64k",
                            "tmpfs", str(folder)], capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize(("size", "full_at"), [
    # the tiles' layer shards (the job's own store.zarr) or partials fill it (the tiles'
    # polygon files, about 540 kB for the 9 tiles, fit: they are written before any tile)
    ("900k", r"(\.ruinmap-job/partials/tile_\d_\d\.npz|store\.zarr/[a-z_]+/c/\d+/\d+)"),
    # the layers and partials fit, the products (the COGs) do not
    ("2200k", r"(score|damage|pwtt_layers)\.tif"),
], ids=["tiles", "products"])
def test_full_disk_is_one_line_leaves_no_temporaries_and_the_rerun_resumes(
    size: str, full_at: str, job_city: City, tmp_path: Path, dask_client: Client,
    job_spec_for: Callable[..., JobSpec],
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _can_mount_tmpfs(disk):
        pytest.skip("needs `unshare -rm` (unprivileged user namespaces) to mount a tmpfs")
    store = tmp_path / "input.zarr"  # the imagery lives off the small disk
    ingest([str(p) for p in job_city.pre_files], [str(p) for p in job_city.post_files], store,
           IngestOptions(chunk=64, shard=SHARD), client=dask_client, progress=False)
    out = disk / "out"
    data = job_spec_for(job_city, out).to_json_dict()
    data["inputs"] = {"store": str(store)}
    job = tmp_path / "job.toml"
    job.write_text(dump_toml(data))
    run = f"{BIN / 'ruinmap'} run {job} --no-progress"
    script = (f"mount -t tmpfs -o size={size} tmpfs {disk} && {{ {run}; echo \"rc=$?\"; "
              f"find {out} -name '*.tmp-*' -printf 'left %p\\n'; echo =====; "
              f"mount -o remount,size=50m {disk} && {run}; echo \"rc=$?\"; }}")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                            text=True, timeout=600)
    first, _, second = result.stdout.partition("=====")
    errors = [line for line in result.stderr.splitlines()
              # libtiff's own lines go straight to stderr (see ruinmap.cli_logging), GDAL's
              # warnings on the staging TIFF it could not finish too; the built-up mask's
              # line says which mask the run uses, the rerun's which tiles kept their inputs
              if not line.startswith(("Dask dashboard:", "_tiff", "CPLE_", "built-up mask:"))
              and not re.match(r"\d+ of \d+ tiles read their kept", line)]
    assert "rc=1" in first, result.stderr
    assert "left " not in first, first  # every temporary was removed
    assert "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1, result.stderr
    assert re.fullmatch(
        rf"ruinmap run: error: {out}/{full_at}: no space left on device \(it needs "
        r"[\d.]+ [kM]B, [\d.]+ [kM]B free there\); free some space and re-run: finished work "
        r"is kept and resumed", errors[0]), errors[0]
    assert "rc=0" in second, result.stderr
    assert "done before" in second  # the tiles recorded before the disk filled are kept
    assert "Damage by district" in second
