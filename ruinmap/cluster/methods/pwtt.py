"""pwtt: the pixel-wise t-test on Sentinel-1 backscatter (Ballinger 2024)."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import rasterio
from pydantic import Field, ValidationInfo, field_validator, model_validator

from ruinmap.cluster.methods.base import ScoreContext, Scorer, band_indices, mask_statistic
from ruinmap.cluster.methods.params import (
    MAX_ABS_SCORE,
    MAX_DATES,
    MAX_RADIUS_M,
    MethodParamsBase,
    metres_to_px,
    spec_path,
)
from ruinmap.cluster.storage.confined import confined_raster_path, current_roots
from ruinmap.cluster.storage.location import as_location, gdal_env
from ruinmap.cluster.storage.store import StoreInfo
from ruinmap.kernels import focal_mean, focal_median, lee_filter, welch_t
from ruinmap.kernels.focal import focal_halo

__all__ = ["PWTT", "PwttParams", "PwttScorer", "date_orbits", "pwtt_score"]

#: Lee filter window side, pixels: the paper's is 3; a 101 px window is already 1 km at 10 m
MAX_LEE_SIZE = 101
#: focal median radius, metres: the median is the costliest filter (its window is sorted)
MAX_MEDIAN_M = 1_000.0
#: a relative orbit number (Sentinel-1 has 175)
MAX_ORBIT = 10_000


class PwttParams(MethodParamsBase):
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
    """

    method: ClassVar[str] = "pwtt"
    polarisations: tuple[str, ...] = Field(default=("VV", "VH"), description="bands to test")
    lee_size: int = Field(default=3, ge=1, le=MAX_LEE_SIZE,
                          description="Lee filter window side, pixels (odd)")
    lee_enl: float = Field(default=5.0, gt=0, le=1000, allow_inf_nan=False,
                           description="equivalent number of looks of the input")
    min_pre: int = Field(default=3, ge=2, le=MAX_DATES,
                         description="fewest valid pre dates per pixel")
    min_post: int = Field(default=2, ge=2, le=MAX_DATES,
                          description="fewest valid post dates per pixel")
    focal_median_m: float = Field(default=10.0, ge=0, le=MAX_MEDIAN_M, allow_inf_nan=False,
                                  description="focal median radius, metres (10 m = 3x3 at 10 m)")
    radii_m: tuple[float, ...] = Field(default=(50.0, 100.0, 150.0),
                                       description="radii of the circular means, metres")
    weights: tuple[float, ...] = Field(
        default=(0.25, 0.25, 0.25, 0.25),
        description="weights of (median, mean at each radius) in the score",
    )
    threshold: float = Field(default=3.3, description="score above which a pixel is damaged")
    class_thresholds: tuple[float, ...] = Field(
        default=(2.0, 3.3, 4.0, 5.0),
        description="possible, likely (damaged), high confidence, severe",
    )
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


def _log_sigma0(image: np.ndarray, size: int, enl: float) -> np.ndarray:
    filtered = lee_filter(image, size=size, enl=enl)
    with np.errstate(invalid="ignore", divide="ignore"):
        logged = np.log(filtered)
    # zero or negative power is nodata, never -inf
    logged[~np.isfinite(logged)] = np.nan
    return logged


def pwtt_score(
    pre: np.ndarray, post: np.ndarray, params: PwttParams, context: ScoreContext,
    mask: np.ndarray | None = None, valid: np.ndarray | None = None,
) -> np.ndarray:
    """The pixel-wise t-test score of Ballinger (2024), as its reference code computes it.

    Source: O. Ballinger, "Open access battle damage detection via pixel-wise t-test on
    Sentinel-1 imagery", arXiv:2405.06323 (2024), and github.com/oballinger/PWTT code/pwtt.py.

    1. Every image, per polarisation: Lee filter of linear sigma0 (`lee_size` x `lee_size`,
       `lee_enl` looks; the paper's 3x3, ENL 5), then the natural log.
    2. Per relative orbit and per polarisation: Welch's t between the pre and the post stack
       of that orbit (`welch_t`), NaN where a pixel has fewer than `min_pre` (3) pre or
       `min_post` (2) post observations; |t| (the reference takes abs(t): a rise and a drop
       in backscatter both mark damage).
    3. Orbits combined by the maximum |t| (pwtt.py's `.max()` over the orbit collection),
       then the maximum over the polarisations (VV, VH).
    4. A focal median of radius `focal_median_m` (10 m: radius 1 at 10 m pixels), then
       circular means of that median at each radius of `radii_m` (50, 100, 150 m).
    5. score = weights . (median, mean_50, mean_100, mean_150), default 0.25 each (the paper's
       T = 0.25 (median + k50 + k100 + k150)); damaged where score > `threshold` (3.3).

    Radii are converted to pixels with `metres_to_px` and the pixel size. NaN (nodata) where
    no orbit and polarisation has enough observations and no valid neighbour reaches it.
    """
    pols = band_indices(context.bands, params.polarisations, "polarisations")
    pre_orbits = np.asarray(context.pre_orbits)
    post_orbits = np.asarray(context.post_orbits)
    best: np.ndarray | None = None
    for band in pols:
        pre_log = np.stack([_log_sigma0(pre[t, band], params.lee_size, params.lee_enl)
                            for t in range(pre.shape[0])])
        post_log = np.stack([_log_sigma0(post[t, band], params.lee_size, params.lee_enl)
                             for t in range(post.shape[0])])
        for orbit in sorted(set(pre_orbits.tolist()) & set(post_orbits.tolist())):
            t = welch_t(pre_log[pre_orbits == orbit], post_log[post_orbits == orbit],
                        min_pre=params.min_pre, min_post=params.min_post)
            assert isinstance(t, np.ndarray)
            np.abs(t, out=t)
            # fmax: an orbit without enough observations (NaN) does not mask another's t
            best = t if best is None else np.fmax(best, t)
        del pre_log, post_log
    if best is None:  # no orbit has both pre and post dates
        best = np.full(pre.shape[2:], np.nan, np.float32)
    best = mask_statistic(best, mask, valid)  # PWTT's mask_before_smooth
    median = focal_median(best, metres_to_px(params.focal_median_m, context.pixel_size_m))
    score = np.float64(params.weights[0]) * median.astype(np.float64)
    for weight, radius_m in zip(params.weights[1:], params.radii_m, strict=True):
        score += weight * focal_mean(median, metres_to_px(radius_m, context.pixel_size_m))
    return score.astype(np.float32)


def _orbit_of_file(path: str, params: PwttParams) -> int | None:
    orbit = params.orbit_from_spec(path)
    location = as_location(path)
    if orbit is not None or not location.is_file():
        return orbit
    try:
        with gdal_env([location]), \
                confined_raster_path(path, current_roots()) as name, rasterio.open(name) as src:
            tags = src.tags()
    except rasterio.errors.RasterioIOError:
        return None
    for name in params.orbit_tags:
        with contextlib.suppress(KeyError, ValueError):
            return int(float(tags[name]))
    return None


def date_orbits(attrs: Mapping[str, Any], side: str, count: int, params: Any) -> tuple[int, ...]:
    """Relative orbit of each date of a side: spec globs, else file tags, else 0 (one orbit).

    `attrs` is a store's `ruinmap` attribute (its `sources`); other methods than pwtt have no
    orbits (all 0).
    """
    orbits = [0] * count
    if not isinstance(params, PwttParams):
        return tuple(orbits)
    found: dict[int, int] = {}
    for source in attrs.get("sources", []):
        if source.get("side") != side or source.get("time_index") in found:
            continue
        orbit = source.get("orbit")
        if orbit is None:
            orbit = _orbit_of_file(str(source.get("path", "")), params)
        if orbit is not None:
            found[int(source["time_index"])] = int(orbit)
    for t, orbit in found.items():
        if 0 <= t < count:
            orbits[t] = orbit
    return tuple(orbits)


class PwttScorer(Scorer[PwttParams]):
    name = "pwtt"
    params_model = PwttParams

    def needed_bands(self, params: PwttParams, bands: Sequence[str]) -> tuple[str, list[str]]:
        return "polarisations", list(params.polarisations)

    def halo_px(self, params: PwttParams, pixel_size_m: float) -> int:
        """Lee filter, then focal median, then circular means of the median: their reaches
        add up (the Lee half-window, the median radius, the largest mean radius)."""
        mean_reach = max((focal_halo(metres_to_px(r, pixel_size_m)) for r in params.radii_m),
                         default=0)
        return (focal_halo(params.lee_size // 2)
                + focal_halo(metres_to_px(params.focal_median_m, pixel_size_m)) + mean_reach)

    def context(self, params: PwttParams, store: StoreInfo, pixel_size_m: float) -> ScoreContext:
        """The relative orbit of every date: spec globs, else file tags (`date_orbits`)."""
        return ScoreContext(
            bands=store.bands,
            pre_orbits=date_orbits(store.attrs, "pre", store.n_times["pre"], params),
            post_orbits=date_orbits(store.attrs, "post", store.n_times["post"], params),
            pixel_size_m=pixel_size_m,
        )

    def score(self, pre: np.ndarray, post: np.ndarray, params: PwttParams,
              context: ScoreContext, mask: np.ndarray | None = None,
              valid: np.ndarray | None = None) -> np.ndarray:
        return pwtt_score(pre, post, params, context, mask, valid)


PWTT = PwttScorer()
