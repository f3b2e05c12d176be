"""deploy/hpc/: the Dask config for SLURM is valid and complete for the slurm profile."""

from __future__ import annotations

import yaml

from tests.support.repo import DEPLOY


def test_the_hpc_config_has_a_jobqueue_slurm_section_and_a_ruinmap_key():
    config = yaml.safe_load((DEPLOY / "hpc" / "ruinmap-slurm.yaml").read_text())
    slurm = config["jobqueue"]["slurm"]
    for key in ("cores", "memory", "walltime", "account", "job-extra-directives",
                "worker-extra-args"):
        assert key in slurm, key
    assert "--lifetime" in slurm["worker-extra-args"]
    assert config["ruinmap"]["cluster"]["address"] == "slurm"


def test_the_hpc_guide_names_the_config_and_the_commands():
    guide = (DEPLOY / "hpc" / "README.md").read_text()
    for text in ("ruinmap-slurm.yaml", "ruinmap cluster script --profile slurm",
                 "ruinmap run", "~/.config/dask/"):
        assert text in guide, text
