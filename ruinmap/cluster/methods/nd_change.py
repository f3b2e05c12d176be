"""nd-change: the change of a normalized difference (NDVI, NDBI or a custom pair of bands)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from ruinmap.cluster.methods.base import (
    ScoreContext,
    Scorer,
    band_indices,
    directed,
    mask_statistic,
    nanmean_min,
)
from ruinmap.cluster.methods.params import (
    MAX_DATES,
    MAX_RADIUS_M,
    Direction,
    MethodParamsBase,
    PixelSize,
    ThresholdRule,
    metres_to_px,
)
from ruinmap.kernels import focal_mean, nd_change
from ruinmap.kernels.focal import focal_halo

__all__ = ["ND_CHANGE", "ND_PRESETS", "NdChangeParams", "NdChangeScorer", "nd_change_score"]


#: Normalized-difference presets: (a, b, damage direction). nd = (a - b) / (a + b).
ND_PRESETS: dict[str, tuple[str, str, Direction]] = {
    # vegetation loss (burnt, felled or buried under rubble) lowers NDVI
    "ndvi": ("B08", "B04", "decrease"),
    # rubble and bare soil raise SWIR, roofs differ: the sign is not fixed, so both count
    "ndbi": ("B11", "B08", "both"),
}


class NdChangeParams(MethodParamsBase):
    """Change of a normalized difference nd = (a - b) / (a + b) between mean pre and mean post.

    d = nd_post - nd_pre; the score is -d for `direction = "decrease"` (e.g. NDVI loss:
    vegetation destroyed), d for "increase", |d| for "both". Presets (Sentinel-2 band names):
    "ndvi": a=B08 (NIR), b=B04 (red), damage = decrease; "ndbi": a=B11 (SWIR), b=B08 (NIR),
    damage = both. Giving `a` and `b` without `preset` defines a custom index.
    """

    method: ClassVar[str] = "nd-change"
    preset: Literal["ndvi", "ndbi"] | None = Field(default="ndvi", description="ndvi or ndbi")
    a: str | None = Field(default=None, description="first band name (set by the preset)")
    b: str | None = Field(default=None, description="second band name (set by the preset)")
    direction: Direction | None = Field(default=None, description="default: the preset's")
    radius_m: float = Field(default=20.0, ge=0, le=MAX_RADIUS_M, allow_inf_nan=False,
                            description="focal mean radius of the change, metres")
    min_pre: int = Field(default=1, ge=1, le=MAX_DATES,
                         description="fewest valid pre dates per pixel")
    min_post: int = Field(default=1, ge=1, le=MAX_DATES,
                          description="fewest valid post dates per pixel")
    threshold: float | ThresholdRule = Field(
        default=0.2,
        description="normalized-difference units; or a rule (README)",
    )
    class_thresholds: tuple[float, ...] = Field(default=(0.1, 0.2, 0.3, 0.4))

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if "preset" not in data and ("a" in data or "b" in data):
            data["preset"] = None  # explicit bands: a custom index
        preset = data.get("preset", "ndvi")
        if preset is None:
            data.setdefault("direction", "both")
            return data
        if preset not in ND_PRESETS:
            return data  # the Literal check reports it
        a, b, direction = ND_PRESETS[preset]
        for key, value in (("a", a), ("b", b)):
            given = data.get(key)
            if given is not None and given != value:
                raise ValueError(
                    f"{key} = '{given}' contradicts preset '{preset}' ({key} = '{value}'); "
                    "drop the preset to define a custom index"
                )
        data.update(a=a, b=b)
        data.setdefault("direction", direction)
        return data

    @model_validator(mode="after")
    def _bands_known(self) -> NdChangeParams:
        if self.a is None or self.b is None:
            raise ValueError("a custom index needs both a and b (band names), or a preset")
        if self.a == self.b:
            raise ValueError(f"a and b are the same band '{self.a}'")
        return self


def nd_change_score(
    pre: np.ndarray, post: np.ndarray, params: NdChangeParams, context: ScoreContext,
    mask: np.ndarray | None = None, valid: np.ndarray | None = None,
) -> np.ndarray:
    """Change of a normalized difference (a - b) / (a + b) between mean pre and mean post.

    d = ND(mean_post_a, mean_post_b) - ND(mean_pre_a, mean_pre_b) (`nd_change`); the score is
    -d for `direction = "decrease"` (NDVI loss, Tucker 1979 index), d for "increase", |d| for
    "both" (NDBI, Zha et al. 2003), then a circular focal mean of radius `radius_m`.
    """
    assert params.a is not None and params.b is not None  # the params model fills them
    a, b = band_indices(context.bands, [params.a, params.b], "a/b")
    change = nd_change(
        nanmean_min(pre[:, a], params.min_pre), nanmean_min(pre[:, b], params.min_pre),
        nanmean_min(post[:, a], params.min_post), nanmean_min(post[:, b], params.min_post),
    )
    return focal_mean(mask_statistic(directed(change, params.direction or "both"), mask, valid),
                      metres_to_px(params.radius_m, context.pixel_size_m))


class NdChangeScorer(Scorer[NdChangeParams]):
    name = "nd-change"
    params_model = NdChangeParams

    def needed_bands(self, params: NdChangeParams, bands: Sequence[str]
                     ) -> tuple[str, list[str]]:
        return "a/b", [str(params.a), str(params.b)]

    def halo_px(self, params: NdChangeParams, pixel_size_m: PixelSize) -> int:
        return focal_halo(metres_to_px(params.radius_m, pixel_size_m))

    def score(self, pre: np.ndarray, post: np.ndarray, params: NdChangeParams,
              context: ScoreContext, mask: np.ndarray | None = None,
              valid: np.ndarray | None = None) -> np.ndarray:
        return nd_change_score(pre, post, params, context, mask, valid)


ND_CHANGE = NdChangeScorer()
