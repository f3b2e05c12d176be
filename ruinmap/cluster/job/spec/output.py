"""The `[grid]` and `[output]` tables: the damage grid's cells and where results go."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from ruinmap.cluster.methods.params import SpecModel, spec_path

__all__ = ["GridSpec", "OutputSpec"]


class GridSpec(SpecModel):
    """The regular damage grid."""

    cell_size: float = Field(default=500.0, gt=0, allow_inf_nan=False, description="metres")


class OutputSpec(SpecModel):
    """Where results go."""

    dir: str = Field(description="output folder (or s3:// prefix); created if absent")

    @field_validator("dir")
    @classmethod
    def _resolve_dir(cls, value: str, info: ValidationInfo) -> str:
        return spec_path(value, info, allow_url=True)
