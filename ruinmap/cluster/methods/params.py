"""What every method's parameters share, and the pydantic base of every job-spec table.

A method's parameters are a frozen pydantic model (`MethodParamsBase` and its own fields),
checked once when the job spec is parsed: a damage `threshold`, ascending
`class_thresholds` cutting the score into `class_names`, and the smallest building scored.
`spec_path` resolves a path the user wrote against the spec file's folder.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal, overload

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ruinmap.cluster.storage.location import URL_SCHEMES
from ruinmap.errors import SpecError

__all__ = ["DEFAULT_CLASS_NAMES", "MAX_ABS_SCORE", "MAX_DATES", "MAX_RADIUS_M", "POWER_FLOOR",
           "Direction", "MethodParamsBase", "PixelSize", "SpecModel", "floor_power",
           "metres_to_px", "spec_path"]

Direction = Literal["decrease", "increase", "both"]

#: Names of the four default damage classes, lowest score first (Ballinger 2024 uses 3.3 as
#: the damaged/intact cut; the others bracket it).
DEFAULT_CLASS_NAMES: tuple[str, ...] = ("possible", "likely", "high-confidence", "severe")

# Upper bounds of the parameters, so that a typo (1e300, 10**400) is a spec error rather than
# an overflow or a task that never ends. Each is far beyond any sensible value:
#: radii of focal filters, metres (10 km: a 1,000 px radius at Sentinel's 10 m pixels)
MAX_RADIUS_M = 10_000.0
#: fewest valid dates a side (min_pre, min_post): more than ten years of 6-day revisits
MAX_DATES = 1_000
#: |threshold| and |class_thresholds| (t statistics, dB, index units, standard deviations)
MAX_ABS_SCORE = 1e6
#: linear power a zero (or negative) value is raised to before a logarithm: -60 dB, below any
#: Sentinel-1 noise floor (about -22 dB). Zero is data (a pixel darker than the sensor
#: resolves, an 8-bit amplitude of 0), never nodata: only the files' nodata values, NaN and
#: the products' masks are nodata (README "Inputs: RTC products and scales")
POWER_FLOOR = 1e-6


def floor_power(power: np.ndarray) -> np.ndarray:
    """`power` with values below `POWER_FLOOR` (zero, negative) raised to it; NaN stays NaN.
    A new float32 array."""
    # a comparison with NaN is False, so NaN passes through
    return np.where(power < POWER_FLOOR, np.float32(POWER_FLOOR), power).astype(np.float32)


#: A pixel's ground size in metres: one number (square pixels) or (y, x), the ground length of
#: one pixel step down and across (they differ on a lon/lat grid away from the equator).
PixelSize = float | tuple[float, float]


@overload
def metres_to_px(metres: float, pixel_size_m: float) -> int: ...
@overload
def metres_to_px(metres: float, pixel_size_m: tuple[float, float]) -> tuple[int, int]: ...
def metres_to_px(metres: float, pixel_size_m: PixelSize) -> int | tuple[int, int]:
    """A radius in metres as whole pixels: round(metres / pixel_size_m), never negative.

    10 m at 10 m pixels is radius 1 (a 3x3 window); 50 m is radius 5. With a (y, x) pixel
    size, a (radius_y, radius_x) pair, each axis rounded on its own (the kernels' ellipse).
    """
    if isinstance(pixel_size_m, tuple):
        size_y, size_x = pixel_size_m
        return metres_to_px(metres, size_y), metres_to_px(metres, size_x)
    if not (pixel_size_m > 0 and math.isfinite(pixel_size_m)):
        raise SpecError(f"pixel size must be a positive number of metres, got {pixel_size_m!r}")
    if not (metres >= 0 and math.isfinite(metres)):
        raise SpecError(f"radius must be a non-negative number of metres, got {metres!r}")
    return math.floor(metres / pixel_size_m + 0.5)


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir") or Path.cwd())


def spec_path(text: str, info: ValidationInfo, *, allow_url: bool = False) -> str:
    """A user path made absolute against the spec's folder; globs keep their magic.

    With `allow_url`, an s3:// URL is kept as given (imagery, stores and outputs may live in
    object storage; polygons are read locally)."""
    if "://" in text:
        if allow_url and text.startswith(URL_SCHEMES):
            return text.rstrip("/")
        where = "s3:// URLs" if allow_url else "URLs for imagery, stores and output only"
        raise ValueError(f"'{text}' is a URL; only local paths are supported here ({where})")
    expanded = os.path.expanduser(text)
    if not os.path.isabs(expanded):
        expanded = os.path.join(_base_dir(info), expanded)
    return os.path.normpath(expanded)


def _strictly_ascending(values: Sequence[float]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


class SpecModel(BaseModel):
    """Base of every job-spec table and method-params model."""

    # frozen: the spec is parsed once and then only read, by many tasks
    model_config = ConfigDict(extra="forbid", frozen=True)


class MethodParamsBase(SpecModel):
    """What every method shares: a damage threshold and ascending class thresholds."""

    method: ClassVar[str]
    threshold: float
    class_thresholds: tuple[float, ...]
    class_names: tuple[str, ...] | None = Field(
        default=None,
        description="one name per class threshold; default possible/likely/high-confidence/"
        "severe for four classes, else 'class 1'...",
    )
    min_building_m2: float = Field(
        default=50.0, ge=0, le=1e6, allow_inf_nan=False,
        description="buildings smaller than this (m^2) get no per-building score",
    )

    @field_validator("threshold")
    @classmethod
    def _finite_threshold(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        if abs(value) > MAX_ABS_SCORE:
            raise ValueError(f"must lie within +-{MAX_ABS_SCORE:.0e}, got {value!r}")
        return value

    @field_validator("class_thresholds")
    @classmethod
    def _ascending(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("empty; give at least one class threshold")
        if not all(math.isfinite(v) for v in value):
            raise ValueError(f"must be finite numbers, got {list(value)}")
        if any(abs(v) > MAX_ABS_SCORE for v in value):
            raise ValueError(f"must lie within +-{MAX_ABS_SCORE:.0e}, got {list(value)}")
        if not _strictly_ascending(value):
            raise ValueError(f"must be strictly ascending, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _names_match_thresholds(self) -> MethodParamsBase:
        if self.class_names is not None and len(self.class_names) != len(self.class_thresholds):
            raise ValueError(
                f"class_names has {len(self.class_names)} names but class_thresholds has "
                f"{len(self.class_thresholds)} values; give one name per threshold"
            )
        return self

    @property
    def class_labels(self) -> tuple[str, ...]:
        """The class names actually used: `class_names`, or the defaults."""
        if self.class_names is not None:
            return self.class_names
        if len(self.class_thresholds) == len(DEFAULT_CLASS_NAMES):
            return DEFAULT_CLASS_NAMES
        return tuple(f"class {i + 1}" for i in range(len(self.class_thresholds)))
