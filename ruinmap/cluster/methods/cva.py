"""cva: change vector analysis over (standardized) bands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator

from ruinmap.cluster.methods.base import (
    ScoreContext,
    Scorer,
    band_indices,
    mask_statistic,
    nanmean_min,
)
from ruinmap.cluster.methods.params import (
    MAX_DATES,
    MAX_RADIUS_M,
    MethodParamsBase,
    PixelSize,
    ThresholdRule,
    metres_to_px,
)
from ruinmap.cluster.storage.store import SIDES, StoreInfo
from ruinmap.errors import InputError
from ruinmap.kernels import cva_magnitude, focal_mean
from ruinmap.kernels.focal import focal_halo

__all__ = ["CVA", "CvaParams", "CvaScorer", "band_scale", "cva_score"]


class CvaParams(MethodParamsBase):
    """Change vector analysis: m = sqrt(sum_k ((mean_post_k - mean_pre_k) / s_k)^2) over `bands`.

    With `standardize`, s_k is band k's pooled standard deviation (pre and post pixels
    together), so m is in standard deviations; otherwise s_k = 1 (raw units).
    """

    method: ClassVar[str] = "cva"
    bands: tuple[str, ...] | None = Field(default=None, description="bands; default all")
    standardize: bool = Field(default=True, description="divide each band by its pooled std")
    radius_m: float = Field(default=20.0, ge=0, le=MAX_RADIUS_M, allow_inf_nan=False,
                            description="focal mean radius of the magnitude, metres")
    min_pre: int = Field(default=1, ge=1, le=MAX_DATES,
                         description="fewest valid pre dates per pixel")
    min_post: int = Field(default=1, ge=1, le=MAX_DATES,
                          description="fewest valid post dates per pixel")
    threshold: float | ThresholdRule = Field(
        default=2.0,
        description="standard deviations when standardized; or a rule (README)",
    )
    class_thresholds: tuple[float, ...] = Field(default=(1.5, 2.0, 3.0, 4.0))

    @field_validator("bands")
    @classmethod
    def _unique_bands(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError(f"give distinct band names, got {list(value)}")
        return value


def cva_score(
    pre: np.ndarray, post: np.ndarray, params: CvaParams, context: ScoreContext,
    mask: np.ndarray | None = None, valid: np.ndarray | None = None,
) -> np.ndarray:
    """Change-vector magnitude over (standardized) bands, focal-smoothed.

    m = sqrt(sum_k ((mean_post_k - mean_pre_k) / s_k)^2) (`cva_magnitude`; Malila 1980,
    Bovolo & Bruzzone 2007), s_k = band k's pooled standard deviation over the whole image
    (`context.band_scale`) with `standardize`, else 1; then a circular focal mean of radius
    `radius_m`.
    """
    names = list(params.bands or context.bands)
    idx = band_indices(context.bands, names, "bands")
    pre_mean = np.stack([nanmean_min(pre[:, i], params.min_pre) for i in idx])
    post_mean = np.stack([nanmean_min(post[:, i], params.min_post) for i in idx])
    scale = None
    if params.standardize:
        if context.band_scale is None:
            raise InputError("cva with standardize needs each band's pooled standard deviation")
        scale = np.array([context.band_scale[i] for i in idx], np.float64)
        scale[~(scale > 0)] = 1.0  # a constant band carries no change; leave it unscaled
    magnitude = cva_magnitude(pre_mean, post_mean, scale)
    return focal_mean(mask_statistic(magnitude, mask, valid),
                      metres_to_px(params.radius_m, context.pixel_size_m))


def band_scale(store: StoreInfo) -> tuple[float, ...]:
    """Pooled (pre and post) standard deviation of each band over the whole image, computed
    on the Dask cluster (one pass over the store)."""
    import dask
    import dask.array as da

    shard = store.shard
    stds = []
    for band in range(len(store.bands)):
        parts = [da.from_zarr(store.location.zarr_store(), component=side,
                              chunks=(1, 1, shard, shard))[:, band]
                 .ravel() for side in SIDES]
        stds.append(da.nanstd(da.concatenate(parts)))
    return tuple(float(v) for v in dask.compute(*stds))


class CvaScorer(Scorer[CvaParams]):
    name = "cva"
    params_model = CvaParams

    def needed_bands(self, params: CvaParams, bands: Sequence[str]) -> tuple[str, list[str]]:
        return "bands", list(params.bands or bands)

    def halo_px(self, params: CvaParams, pixel_size_m: PixelSize) -> int:
        return focal_halo(metres_to_px(params.radius_m, pixel_size_m))

    def reads_whole_store(self, params: CvaParams) -> bool:
        return params.standardize  # `band_scale` reads every date from the store

    def context(self, params: CvaParams, store: StoreInfo, pixel_size_m: PixelSize) -> ScoreContext:
        """With `standardize`, each band's pooled spread over the whole image, computed once
        so every tile divides by the same scale."""
        context = super().context(params, store, pixel_size_m)
        if not params.standardize:
            return context
        return replace(context, band_scale=band_scale(store))

    def score(self, pre: np.ndarray, post: np.ndarray, params: CvaParams,
              context: ScoreContext, mask: np.ndarray | None = None,
              valid: np.ndarray | None = None) -> np.ndarray:
        return cva_score(pre, post, params, context, mask, valid)


CVA = CvaScorer()
