"""The `[cluster]` table: where the work runs."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from ruinmap.cluster.methods.params import SpecModel

__all__ = ["CLUSTER_ADDRESS_FORMS", "ClusterSpec"]

_TCP_ADDRESS = re.compile(r"^(?P<scheme>tcp|tls)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\s\[\]]+)"
                          r":(?P<port>\d{1,5})$")
#: Accepted cluster address forms (profiles: `ruinmap.cluster.connect.PROFILES`).
CLUSTER_ADDRESS_FORMS: dict[str, str] = {
    "local": "an embedded dask LocalCluster on this machine",
    "tcp://host:port": "a running dask scheduler",
    "tls://host:port": "a running dask scheduler with TLS",
    "slurm": "workers as SLURM jobs (dask-jobqueue, Dask config jobqueue.slurm)",
    "pbs": "workers as PBS jobs (dask-jobqueue, Dask config jobqueue.pbs)",
    "kubernetes": "a DaskCluster through the Dask operator (Dask config ruinmap.kubernetes)",
}
_PROFILE_NAMES = ("local", "slurm", "pbs", "kubernetes")


class ClusterSpec(SpecModel):
    """Where the work runs: a profile ("local", "slurm", "pbs", "kubernetes") or a scheduler
    address. Left out of the job file, the Dask config `ruinmap.cluster.address` decides
    (`ruinmap.cluster.config.resolve_address`)."""

    address: str = Field(
        default="local", description="'local', 'slurm', 'pbs', 'kubernetes' or 'tcp://host:port'"
    )

    @field_validator("address")
    @classmethod
    def _known_form(cls, value: str) -> str:
        if value in _PROFILE_NAMES:
            return value
        match = _TCP_ADDRESS.match(value)
        if match and 1 <= int(match["port"]) <= 65535:
            return value
        forms = "; ".join(f"'{form}' ({what})" for form, what in CLUSTER_ADDRESS_FORMS.items())
        raise ValueError(f"'{value}' is not a cluster address; use {forms}")

    @property
    def is_local(self) -> bool:
        return self.address == "local"

    @property
    def given_address(self) -> str | None:
        """The address the job file set, or None when it left it to the Dask config."""
        return self.address if "address" in self.model_fields_set else None


# ---------------------------------------------------------------------------------------------
