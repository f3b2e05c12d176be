"""The scorer of a method, and what every scorer shares.

A `Scorer` is one method: its parameters model, the bands it reads, its halo (the reach of
its chained focal steps, so that a tile cut with that margin and cropped back scores exactly
as the whole image does), a whole-image pre-pass that fills the `ScoreContext` (the relative
orbit of every date, a band's pooled spread), and its score function on one padded window.
`registry.SCORERS` lists them by method name.

A score function takes the pre and post stacks of a window read with a halo of `halo_px`
pixels on every side ((time, band, y, x) float32, NaN = nodata, NaN outside the image), the
parameters and the context, and returns the float32 score of the whole padded window (higher
= more damage). The caller crops the halo off: every focal step treats pixels outside the
window as missing (`ruinmap.kernels.focal`).

Built-up mask: a score function also takes `mask` (bool over the padded window, True =
built-up, or None) and `valid` (an optional bool array it fills). Every method passes its
per-pixel change statistic through `mask_statistic` right before its first focal smoothing
step, as PWTT does (`mask_before_smooth`): the statistic is NaN outside the mask, so fields,
water and bare soil never smooth into the built-up pixels' scores. The focal steps still give
a score to every pixel within their radius of a valid one (nodata and masked-out pixels
included); `valid` records where the statistic itself was valid, which is what the caller
counts as valid area.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

import numpy as np

from ruinmap.cluster.methods.params import MethodParamsBase, PixelSize
from ruinmap.cluster.storage.store import StoreInfo
from ruinmap.errors import SpecError

__all__ = ["ExtraLayer", "ScoreContext", "ScoreLayers", "Scorer", "band_indices", "directed",
           "mask_statistic", "nanmean_min"]

P = TypeVar("P", bound=MethodParamsBase)


@dataclass(frozen=True)
class ScoreContext:
    """What a method needs to know about the store besides the pixels.

    `pre_orbits` / `post_orbits`: the relative orbit of each date of each side (all equal when
    unknown); `band_scale`: per band of the store, the pooled standard deviation of pre and
    post (only `cva` with `standardize` uses it; computed once over the whole image so tiles
    agree).
    """

    bands: tuple[str, ...]
    pre_orbits: tuple[int, ...]
    post_orbits: tuple[int, ...]
    pixel_size_m: PixelSize
    band_scale: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ExtraLayer:
    """A per-pixel layer a method gives besides its score (pwtt's `p_value`, `n_pre`,
    `n_post`), stored, checksummed and published like `score`: a measurement as float32
    with NaN = nodata, or a count (`is_count`) as uint16, whose 0 (no date used: the
    statistic is NaN there) is the store's fill and stays a count (no `_FillValue`)."""

    name: str
    units: str
    long_name: str
    is_count: bool = False

    @property
    def dtype(self) -> np.dtype:
        # a count fits 16 bits (dates a pixel used) and costs half a float32 to write
        return np.dtype(np.uint16 if self.is_count else np.float32)

    @property
    def fill_value(self) -> float | int:
        return 0 if self.is_count else float("nan")


@dataclass(frozen=True)
class ScoreLayers:
    """The score of a padded window and the method's extra layers on the same window, by
    name (each of its `ExtraLayer.dtype`, the score's shape; empty for methods with none)."""

    score: np.ndarray
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)


def band_indices(bands: Sequence[str], wanted: Sequence[str], key: str) -> list[int]:
    """Positions of `wanted` band names in `bands` (case-insensitive); SpecError naming the
    parameter otherwise."""
    index = {name.upper(): i for i, name in enumerate(bands)}
    missing = [name for name in wanted if name.upper() not in index]
    if missing:
        # bands without a description (or a distinguishing file-name part) are b1..bN
        unnamed = " (bands without names in the files are called b1..bN)" if any(
            name.lower() == f"b{i + 1}" for i, name in enumerate(bands)) else ""
        raise SpecError(
            f"method_params.{key}: band(s) {', '.join(missing)} not in the imagery (bands: "
            f"{', '.join(bands)}{unnamed}); set {key} to bands the store has, or name the "
            "bands in the files (band descriptions) or with `ruinmap ingest --bands`"
        )
    return [index[name.upper()] for name in wanted]


class Scorer(ABC, Generic[P]):
    """One damage-mapping method (see the module docstring); subclasses fill in the rest."""

    name: ClassVar[str]
    params_model: ClassVar[type[MethodParamsBase]]

    @abstractmethod
    def needed_bands(self, params: P, bands: Sequence[str]) -> tuple[str, list[str]]:
        """(the parameter naming them, the band names) the method reads from `bands`."""

    def check_bands(self, params: P, bands: Sequence[str]) -> None:
        """SpecError, naming the parameter, when the method needs a band the imagery lacks."""
        key, wanted = self.needed_bands(params, bands)
        band_indices(bands, wanted, key)

    @abstractmethod
    def halo_px(self, params: P, pixel_size_m: PixelSize) -> int:
        """Pixels of margin a window needs so that its cropped score equals the whole
        image's: the reaches of the chained focal steps, added."""

    def reads_whole_store(self, params: P) -> bool:
        """Whether `context` reads the store's pixels over the whole image (a pre-pass), so
        every date must be in the store, none read in place (`ingest.inplace`)."""
        return False

    def context(self, params: P, store: StoreInfo, pixel_size_m: PixelSize) -> ScoreContext:
        """What the method needs to know about the store besides the pixels: band names and
        one orbit for every date, unless the method knows better (a whole-image pre-pass)."""
        return ScoreContext(
            bands=store.bands, pre_orbits=(0,) * store.n_times["pre"],
            post_orbits=(0,) * store.n_times["post"], pixel_size_m=pixel_size_m,
        )  # fmt: skip

    @abstractmethod
    def score(self, pre: np.ndarray, post: np.ndarray, params: P,
              context: ScoreContext, mask: np.ndarray | None = None,
              valid: np.ndarray | None = None) -> np.ndarray:
        """The float32 score of a padded window (see the module docstring); `mask` and
        `valid` go to `mask_statistic`."""


    def extra_layers(self, params: P) -> tuple[ExtraLayer, ...]:
        """The layers `score_layers` gives besides the score (none unless the method says)."""
        return ()

    def score_layers(self, pre: np.ndarray, post: np.ndarray, params: P,
                     context: ScoreContext, mask: np.ndarray | None = None,
                     valid: np.ndarray | None = None) -> ScoreLayers:
        """The score and the `extra_layers` of a padded window (cropped like the score);
        `mask` and `valid` go to `mask_statistic`."""
        return ScoreLayers(self.score(pre, post, params, context, mask, valid))


def mask_statistic(statistic: np.ndarray, mask: np.ndarray | None,
                   valid: np.ndarray | None = None) -> np.ndarray:
    """The per-pixel change statistic as the focal steps get it: NaN outside `mask`.

    Every method calls this right before its first focal smoothing step (PWTT's
    `mask_before_smooth`: the built-up mask is applied to the t statistic before the focal
    median and the circular means). `mask`: bool, the statistic's shape, True = built-up; None
    keeps every pixel. `valid`: when given (bool, the same shape), set to where the statistic
    was valid (finite) before masking: the pixels that had imagery to score. The statistic is
    changed in place (it is the method's own array) and returned.
    """
    if valid is not None:
        np.isfinite(statistic, out=valid)
    if mask is not None:
        if mask.shape != statistic.shape:
            raise ValueError(f"mask of shape {mask.shape} for a statistic of {statistic.shape}")
        statistic[~mask] = np.nan
    return statistic


def nanmean_min(stack: np.ndarray, minimum: int) -> np.ndarray:
    """Mean over axis 0 of the valid values; NaN where fewer than `minimum` are valid."""
    valid = np.isfinite(stack)
    count = valid.sum(axis=0)
    total = np.where(valid, stack, 0.0).sum(axis=0, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return np.where(count >= max(1, minimum), mean, np.nan).astype(np.float32)


def directed(change: np.ndarray, direction: str) -> np.ndarray:
    if direction == "decrease":
        return np.negative(change)
    if direction == "increase":
        return change
    return np.abs(change)
