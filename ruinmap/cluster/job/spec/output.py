"""The `[grid]` and `[output]` tables: the damage grid's cells and where results go."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from ruinmap.cluster.methods.params import SpecModel, spec_path

__all__ = ["MAX_CELL_SIZE_M", "GridSpec", "OutputSpec"]


#: The largest damage-grid cell, metres. The cell must also fit inside the imagery, which is
#: checked once the grid is known from the files' headers (`job.preflight`).
MAX_CELL_SIZE_M = 100_000.0


class GridSpec(SpecModel):
    """The regular damage grid."""

    cell_size: float = Field(default=500.0, gt=0, le=MAX_CELL_SIZE_M, allow_inf_nan=False,
                             description="metres, at most 100 km and the imagery's larger side")
    h3_resolution: int | None = Field(default=None, ge=0, le=15,
                                      description="also an H3 grid at this resolution (0-15): "
                                                  "grid_h3.gpkg / .parquet")


class OutputSpec(SpecModel):
    """Where results go."""

    dir: str = Field(description="output folder (or s3:// prefix); created if absent")
    title: str | None = Field(default=None, max_length=200,
                              description="map.png's title; default 'Damage detected "
                                          "(<method>)' with the last imagery date")
    credit: str | None = Field(default=None, max_length=400,
                               description="the figures' source credit line; default from "
                                           "the imagery (Copernicus Sentinel, else the file "
                                           "names)")

    @field_validator("dir")
    @classmethod
    def _resolve_dir(cls, value: str, info: ValidationInfo) -> str:
        return spec_path(value, info, allow_url=True)
