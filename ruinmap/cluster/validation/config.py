"""What a validation needs to know: the labels and how to read them, the join, the interval.

The same model is the job spec's `[validation]` table and the options of `ruinmap validate`.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field, ValidationInfo, field_validator

from ruinmap.cluster.methods.params import SpecModel, spec_path
from ruinmap.cluster.validation.intervals import DEFAULT_LEVEL

__all__ = ["ValidationSpec"]


class ValidationSpec(SpecModel):
    """Ground-truth labels and how to hold the results against them."""

    labels: str = Field(description="label file: UNOSAT points (GeoPackage, Shapefile, File "
                        "Geodatabase), xBD label JSON (file, folder or glob), polygon layer")
    layer: str | None = Field(default=None, description="layer of a multi-layer file")
    class_field: str | None = Field(default=None, description="field holding the class "
                                    "(default: found from the file's format)")
    damaged_classes: tuple[str, ...] | None = Field(
        default=None, description="classes that count as damaged (default: UNOSAT 1, 2, 3; "
        "xBD major-damage, destroyed)")
    date_field: str | None = Field(default=None, description="date field of a long-format file")
    date: dt.date | None = Field(default=None, description="label epoch cutoff (default: the "
                                 "end of the post-event imagery)")
    labels_crs: str | None = Field(default=None, description="the labels' true CRS, when the "
                                   "file declares a wrong one")
    buffer_m: float = Field(default=10.0, gt=0, le=1000, allow_inf_nan=False,
                            description="a label point within this many metres of a "
                            "footprint marks it (PWTT's rule)")
    level: float = Field(default=DEFAULT_LEVEL, ge=0.5, le=0.999,
                         description="confidence level of the count intervals")
    n_boot: int = Field(default=200, ge=20, le=5000,
                        description="bootstrap resamples of the calibration")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="seed of the bootstrap")

    @field_validator("labels")
    @classmethod
    def _resolve_labels(cls, value: str, info: ValidationInfo) -> str:
        return spec_path(value, info)
