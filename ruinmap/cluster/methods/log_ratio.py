"""log-ratio: the log ratio of mean post to mean pre backscatter, in dB."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from ruinmap.cluster.methods.base import (
    ScoreContext,
    Scorer,
    band_indices,
    directed,
    mask_statistic,
    nanmean_min,
)
from ruinmap.cluster.methods.dating import DatingParams
from ruinmap.cluster.methods.params import (
    MAX_DATES,
    MAX_RADIUS_M,
    Direction,
    MethodParamsBase,
    PixelSize,
    ThresholdRule,
    floor_power,
    metres_to_px,
)
from ruinmap.kernels import focal_mean, log_ratio
from ruinmap.kernels.focal import focal_halo

__all__ = ["LOG_RATIO", "LogRatioParams", "LogRatioScorer", "log_ratio_score"]


class LogRatioParams(MethodParamsBase, DatingParams):
    """Log ratio of mean post to mean pre backscatter, in dB: r = 10 log10(mean_post / mean_pre).

    The score is -r (`direction = "decrease"`), r ("increase") or |r| ("both"), focal-mean
    smoothed over `radius_m`. `band` is the band (polarisation) used; default the first band.
    """

    method: ClassVar[str] = "log-ratio"
    band: str | None = Field(default=None, description="band name; default the first band")
    radius_m: float = Field(default=30.0, ge=0, le=MAX_RADIUS_M, allow_inf_nan=False,
                            description="focal mean radius of the ratio, metres")
    direction: Direction = Field(default="both", description="which change counts as damage")
    min_pre: int = Field(default=1, ge=1, le=MAX_DATES,
                         description="fewest valid pre dates per pixel")
    min_post: int = Field(default=1, ge=1, le=MAX_DATES,
                          description="fewest valid post dates per pixel")
    threshold: float | ThresholdRule = Field(
        default=3.0,
        description="dB; or a rule (README)",
    )
    class_thresholds: tuple[float, ...] = Field(default=(1.5, 3.0, 4.5, 6.0), description="dB")


def log_ratio_score(
    pre: np.ndarray, post: np.ndarray, params: LogRatioParams, context: ScoreContext,
    mask: np.ndarray | None = None, valid: np.ndarray | None = None,
) -> np.ndarray:
    """Absolute (or signed) log ratio of mean post to mean pre backscatter, focal-smoothed.

    r = 10 log10(mean_post / mean_pre) dB over each side's valid dates (`log_ratio`; Bazi,
    Bruzzone & Melgani 2005, IEEE TGRS 43(4)), NaN where a side has fewer than `min_pre` /
    `min_post` valid dates (a mean of zero is raised to `params.POWER_FLOOR`, -60 dB: zero
    power is data); score = |r| (`direction = "both"`), -r ("decrease") or r
    ("increase"), then a circular focal mean of radius `radius_m`.
    """
    band = band_indices(context.bands, [params.band or context.bands[0]], "band")[0]
    # zero mean power is data (darker than the sensor resolves): floored, not nodata
    ratio = log_ratio(floor_power(nanmean_min(pre[:, band], params.min_pre)),
                      floor_power(nanmean_min(post[:, band], params.min_post)))
    ratio[~np.isfinite(ratio)] = np.nan
    return focal_mean(mask_statistic(directed(ratio, params.direction), mask, valid),
                      metres_to_px(params.radius_m, context.pixel_size_m))


class LogRatioScorer(Scorer[LogRatioParams]):
    name = "log-ratio"
    params_model = LogRatioParams

    def needed_bands(self, params: LogRatioParams, bands: Sequence[str]
                     ) -> tuple[str, list[str]]:
        return "band", [params.band or bands[0]]

    def halo_px(self, params: LogRatioParams, pixel_size_m: PixelSize) -> int:
        return focal_halo(metres_to_px(params.radius_m, pixel_size_m))

    def score(self, pre: np.ndarray, post: np.ndarray, params: LogRatioParams,
              context: ScoreContext, mask: np.ndarray | None = None,
              valid: np.ndarray | None = None) -> np.ndarray:
        return log_ratio_score(pre, post, params, context, mask, valid)


LOG_RATIO = LogRatioScorer()
