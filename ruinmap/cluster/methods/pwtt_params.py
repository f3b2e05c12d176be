"""pwtt's parameters: the keys of `method_params` for method "pwtt", each default cited to
the reference code it follows (`REFERENCE`)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ruinmap.cluster.methods.dating import DatingParams
from ruinmap.cluster.methods.params import (
    MAX_ABS_SCORE,
    MAX_DATES,
    MAX_RADIUS_M,
    MethodParamsBase,
    ThresholdRule,
    spec_path,
)

__all__ = ["MAX_LEE_SIZE", "MAX_MEDIAN_M", "MAX_ORBIT", "REFERENCE", "PwttParams"]

#: The reference code every default below cites: oballinger/PWTT pwtt/__init__.py at this commit
REFERENCE = "oballinger/PWTT pwtt/__init__.py @ e116b6b16768127fce2f5fd0d05a4dd9693f30cf"

#: Lee filter window side, pixels: the paper's is 3; a 101 px window is already 1 km at 10 m
MAX_LEE_SIZE = 101
#: focal median radius, metres: the median is the costliest filter (its window is sorted)
MAX_MEDIAN_M = 1_000.0
#: a relative orbit number (Sentinel-1 has 175)
MAX_ORBIT = 10_000


class PwttParams(MethodParamsBase, DatingParams):
    """Pixel-wise t-test on Sentinel-1 (Ballinger 2024, "Open access battle damage detection via
    pixel-wise t-test on Sentinel-1 imagery", arXiv:2405.06323).

    Per relative orbit and polarisation: Lee filter (`lee_size` window, `lee_enl` looks) of
    linear sigma0, natural log, then Welch's t between the pre and post stacks
    (pixels with fewer than `min_pre` / `min_post` valid dates are NaN), |t|. The maximum over
    orbits and polarisations, a focal median of radius `focal_median_m`, circular means of that
    median at each of `radii_m`, and the score = weights . (median, mean_r1, mean_r2, ...)
    (default: the plain mean of the four, as in the paper). Pixels with score > `threshold`
    are damaged; `class_thresholds` cut the score into `class_names`.

    Orbits: a file's relative orbit comes from `orbits` (file glob -> orbit; globs without a
    folder match the file name, the first matching glob wins), else from the first of
    `orbit_tags` found in the file's metadata, else every file is one orbit.

    The statistic, its orbit combination, the t-test and the Lee mode follow the reference
    code as published today (`REFERENCE`; `detect_damage`'s defaults, line 374): see
    `pwtt_statistic`.
    """

    method: ClassVar[str] = "pwtt"
    polarisations: tuple[str, ...] = Field(default=("VV", "VH"), description="bands to test")
    lee_size: int = Field(default=3, ge=1, le=MAX_LEE_SIZE,
                          description="Lee filter window side, pixels (odd)")
    lee_enl: float = Field(default=5.0, gt=0, le=1000, allow_inf_nan=False,
                           description="equivalent number of looks of the input")
    min_pre: int = Field(default=3, ge=2, le=MAX_DATES,
                         description="fewest valid pre dates per pixel and orbit (reference "
                                     "pwtt/__init__.py:159, pre_n >= 3)")
    min_post: int = Field(default=2, ge=1, le=MAX_DATES,
                          description="fewest valid post dates per pixel and orbit (reference "
                                      ":159, post_n >= 2; 1 with statistic = 'z')")
    statistic: Literal["t", "z", "mahalanobis"] = Field(
        default="t",
        description="t: two-sample t per orbit (reference `ttest`, :106-165); z: the latest "
                    "post image against the pre baseline (`ztest`, :168-208, one post date "
                    "suffices); mahalanobis: effect size sqrt(D2) of the orbit-normalised "
                    "bands, coverage-invariant (:463-559, :632-636)")
    orbit_combination: Literal["stouffer", "max"] = Field(
        default="stouffer",
        description="Stouffer's Z with sqrt(df) weights (reference default method='stouffer', "
                    ":374, :721-741) or the maximum |t| over orbits (:743-754)")
    ttest: Literal["welch", "pooled"] = Field(
        default="welch", description="Welch's or the pooled t (reference ttest_type='welch', "
                                     ":374, :125-148)")
    lee_mode: Literal["per_image", "composite"] = Field(
        default="per_image",
        description="Lee filter on every image (reference lee_mode='per_image', :374, :416) "
                    "or on the composites (:499-502; the t and z tests then read unfiltered "
                    "images, as the reference's)")
    variance: Literal["population", "sample"] = Field(
        default="population",
        description="variance of a side: population (ddof 0, Earth Engine's "
                    "ee.Reducer.stdDev() the reference squares, :118, :122) or sample (ddof 1)")
    layers: bool = Field(
        default=True,
        description="write the p_value, n_pre and n_post layers (store and pwtt_layers.tif) "
                    "and the districts' mean_n_post")
    mask_score_to_data: bool = Field(
        default=True,
        description="score NaN where the per-pixel statistic is (reference :821-822: the "
                    "smoothed T is masked to the raw data mask)")
    focal_median_m: float = Field(default=10.0, ge=0, le=MAX_MEDIAN_M, allow_inf_nan=False,
                                  description="focal median radius, metres (10 m = 3x3 at 10 m)")
    radii_m: tuple[float, ...] = Field(default=(50.0, 100.0, 150.0),
                                       description="radii of the circular means, metres")
    weights: tuple[float, ...] = Field(
        default=(0.25, 0.25, 0.25, 0.25),
        description="weights of (median, mean at each radius) in the score",
    )
    threshold: float | ThresholdRule = Field(
        default=3.3,
        description="score above which a pixel is damaged; or a rule (README)",
    )
    class_thresholds: tuple[float, ...] = Field(
        default=(2.0, 3.3, 4.0, 5.0),
        description="possible, likely (damaged), high confidence, severe",
    )
    incremental: bool | None = Field(
        default=None,
        description="keep every pixel's per-orbit moments of the log backscatter in the "
                    "job's store, so that post dates appended to a monitored job cost work in "
                    "those dates only (`job.score_state`); default: on with dating. Needs "
                    "statistic = 't'")
    orbits: dict[str, int] = Field(default_factory=dict,
                                   description="file glob -> Sentinel-1 relative orbit")
    orbit_tags: tuple[str, ...] = Field(
        default=("RELATIVE_ORBIT", "relativeOrbitNumber_start"),
        description="metadata tags read for a file's relative orbit, first found wins",
    )

    @field_validator("polarisations", "orbit_tags")
    @classmethod
    def _unique_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("empty; give at least one name")
        if len(set(value)) != len(value):
            raise ValueError(f"names repeat: {list(value)}")
        return value

    @field_validator("lee_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 != 1:
            raise ValueError(f"must be odd (a centred window), got {value}")
        return value

    @field_validator("radii_m")
    @classmethod
    def _positive_radii(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not all(math.isfinite(r) and 0 < r <= MAX_RADIUS_M for r in value):
            raise ValueError(f"radii must be positive metres up to {MAX_RADIUS_M:.0f}, got "
                             f"{list(value)}")
        return value

    @field_validator("weights")
    @classmethod
    def _usable_weights(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if (not all(math.isfinite(w) and 0 <= w <= MAX_ABS_SCORE for w in value)
                or sum(value) <= 0):
            raise ValueError(f"weights must be >= 0 with a positive sum, got {list(value)}")
        return value

    @field_validator("orbits")
    @classmethod
    def _resolve_orbit_globs(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        resolved: dict[str, int] = {}
        for pattern, orbit in value.items():
            if not 1 <= orbit <= MAX_ORBIT:
                raise ValueError(f"orbit of '{pattern}' must be an integer from 1 to "
                                 f"{MAX_ORBIT}, got {orbit}")
            # a bare file-name glob matches names anywhere; one with a folder is a path
            has_folder = "/" in pattern or os.sep in pattern
            resolved[spec_path(pattern, info) if has_folder else pattern] = orbit
        return resolved

    @model_validator(mode="before")
    @classmethod
    def _z_test_defaults(cls, data: Any) -> Any:
        """statistic 'z' reads one post image (reference :168-185) and combines orbits by
        their maximum (method='ztest', :743): those are its defaults."""
        if isinstance(data, Mapping) and data.get("statistic") == "z":
            data = {"min_post": 1, "orbit_combination": "max", **data}
        return data

    @model_validator(mode="after")
    def _dates_the_statistic_needs(self) -> PwttParams:
        if self.min_post < 2 and self.statistic != "z":
            raise ValueError(
                f"min_post = {self.min_post} with statistic = '{self.statistic}': a t-test or "
                "Mahalanobis distance needs at least 2 valid post dates a pixel (reference :159); "
                "give min_post >= 2 and at least 2 post images per orbit, or, with a single "
                "post image, set statistic = 'z' (the reference's z-test of the latest image "
                "against the pre baseline, pwtt/__init__.py:168; about 6 % lower AUC)")
        if self.statistic == "mahalanobis" and self.lee_mode == "composite":
            raise ValueError("lee_mode = 'composite' is not offered with statistic = "
                             "'mahalanobis' (its composites are normalised, not backscatter); "
                             "use lee_mode = 'per_image'")
        return self

    @model_validator(mode="after")
    def _incremental_needs_t(self) -> PwttParams:
        if self.incremental and self.statistic != "t":
            raise ValueError(
                f"incremental = true needs statistic = 't' (its moments can take new dates); "
                f"statistic '{self.statistic}' is recomputed over the whole series on every "
                "run: drop incremental or use statistic = 't'")
        return self

    @property
    def keeps_moments(self) -> bool:
        """Whether the job keeps its moments (`incremental`, default: with dating)."""
        wanted = self.dating if self.incremental is None else self.incremental
        return wanted and self.statistic == "t"

    @property
    def ddof(self) -> int:
        return 0 if self.variance == "population" else 1

    @model_validator(mode="after")
    def _one_weight_per_layer(self) -> PwttParams:
        if len(self.weights) != 1 + len(self.radii_m):
            raise ValueError(
                f"weights has {len(self.weights)} values but the score combines "
                f"{1 + len(self.radii_m)} layers (the median and one mean per radius in radii_m)"
            )
        return self

    def orbit_from_spec(self, path: str | Path) -> int | None:
        """The relative orbit `orbits` gives `path`, or None when no glob matches it."""
        path = Path(path)
        for pattern, orbit in self.orbits.items():
            if os.path.isabs(pattern):
                if fnmatch(os.path.normpath(os.path.abspath(path)), pattern):
                    return orbit
            elif fnmatch(path.name, pattern):
                return orbit
        return None
