"""The `[mask]` table: which pixels are built-up, so that pixel figures count only them."""

from __future__ import annotations

import math

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ruinmap.cluster.methods.params import SpecModel, spec_path

__all__ = ["MASK_KEYWORDS", "MAX_BUFFER_M", "MaskSpec"]

#: `source` values that are not a raster path
MASK_KEYWORDS = ("buildings", "none")
#: the widest buffer around footprints, metres (a block)
MAX_BUFFER_M = 1_000.0


class MaskSpec(SpecModel):
    """The built-up mask (PWTT's `mask_before_smooth`): the method's per-pixel statistic is
    NaN outside it before the focal steps, and only built-up pixels are scored and counted.

    `source`: "buildings" (the `[buildings]` footprints, rasterized with the pixel-centre rule
    after a buffer of `buffer_m` metres), "none", or a raster path: a built-up probability
    (Dynamic World's `built` averaged over the pre-event window; built-up where the value >
    `threshold`, default 0.1 as PWTT) or a class raster (ESA WorldCover: built-up where the
    value is one of `classes`, e.g. [50]), any CRS (reprojected onto the imagery's grid:
    nearest neighbour).
    """

    source: str = Field(default="buildings",
                        description='"buildings", "none", or a raster of built-up probability '
                                    "or classes")
    buffer_m: float = Field(default=10.0, ge=0, le=MAX_BUFFER_M, allow_inf_nan=False,
                            description="buffer around the footprints, metres (source = "
                                        '"buildings")')
    threshold: float | None = Field(default=None, allow_inf_nan=False,
                                    description="a probability raster is built-up above this "
                                                "value (default 0.1)")
    classes: tuple[int, ...] | None = Field(default=None,
                                            description="a class raster is built-up where its "
                                                        "value is one of these (WorldCover: "
                                                        "[50])")
    band: int = Field(default=1, ge=1, le=10_000, description="the raster's band, from 1")

    @field_validator("source")
    @classmethod
    def _resolve_source(cls, value: str, info: ValidationInfo) -> str:
        if value.strip().lower() in MASK_KEYWORDS:
            return value.strip().lower()
        if not value.strip():
            raise ValueError('empty; give "buildings", "none" or a raster path')
        return spec_path(value, info)

    @field_validator("classes")
    @classmethod
    def _some_classes(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and not value:
            raise ValueError("empty; give the class values that are built-up, e.g. [50]")
        return value

    @model_validator(mode="after")
    def _raster_keys_need_a_raster(self) -> MaskSpec:
        if self.classes is not None and self.threshold is not None:
            raise ValueError("give either classes (a class raster) or threshold (a "
                             "probability raster), not both")
        if self.source in MASK_KEYWORDS and (self.classes is not None
                                             or self.threshold is not None):
            raise ValueError(f"classes and threshold describe a mask raster; source is "
                             f"'{self.source}'")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ValueError("threshold must be a finite number")
        return self

    @property
    def is_raster(self) -> bool:
        return self.source not in MASK_KEYWORDS
