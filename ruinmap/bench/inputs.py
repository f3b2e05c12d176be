"""Synthetic, realistic benchmark inputs, generated in parallel row strips.

Linear sigma0 is speckled: a multi-look SAR intensity over a homogeneous area is gamma
distributed with shape L (the equivalent number of looks) and mean mu (Ulaby & Long, Microwave
Radar and Radiometric Remote Sensing, 2014, ch. 5). We draw L = 4 and mu = 0.1 (-10 dB, typical
of built-up areas at C band) before the event, mu = 0.08 after (damage lowers the double
bounce), and blank a few per cent of pixels to NaN, as layover, shadow and border nodata do.
Each strip has its own seeded generator, so the arrays depend on the seed and the strip layout
only, never on thread timing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from functools import partial

import numpy as np

from ruinmap.bench.strips import strip_bounds

LOOKS = 4.0
MEAN_SIGMA0 = {"pre": 0.1, "post": 0.08}
NAN_FRACTION = 0.02
N_DISTRICTS_SIDE = 10

# Fills `out` (layers, rows, cols) in place from the generator.
_Draw = Callable[[np.random.Generator, np.ndarray], None]


class Inputs:
    """Lazily generated, cached inputs of one benchmark run (side `size` pixels)."""

    def __init__(
        self,
        size: int,
        pool: Executor,
        n_strips: int,
        *,
        seed: int = 20240224,
        nan_fraction: float = NAN_FRACTION,
    ) -> None:
        self.size = size
        self.nan_fraction = nan_fraction
        self._pool = pool
        self._n_strips = n_strips
        self._seed = seed
        self._stacks: dict[str, np.ndarray] = {}
        self._cache: dict[str, np.ndarray] = {}

    def sigma0(self, name: str, count: int) -> np.ndarray:
        """A (count, size, size) float32 stack of speckled linear sigma0 with NaN holes.

        `name` is "pre" or "post", each an independent stream; asking for fewer layers than
        cached returns a view, so the single images of one run are layers of the same stacks.
        """
        have = self._stacks.get(name)
        if have is None or have.shape[0] < count:
            self._stacks.pop(name, None)  # free the smaller stack before drawing the larger
            draw = partial(_draw_sigma0, mean=MEAN_SIGMA0[name], nan_fraction=self.nan_fraction)
            self._stacks[name] = self._fill(count, [self._seed, len(name)], draw)
        return self._stacks[name][:count]

    def score(self) -> np.ndarray:
        """A (size, size) float32 change score (normal, sd 1.5) with NaN holes."""
        if "score" not in self._cache:
            draw = partial(_draw_score, nan_fraction=self.nan_fraction)
            self._cache["score"] = self._fill(1, [self._seed, 7], draw)[0]
        return self._cache["score"]

    def districts(self) -> np.ndarray:
        """A (size, size) int32 label image of N x N rectangular districts, labels 1..N*N.

        Zones are contiguous blocks, as rasterized administrative districts are; the outermost
        ring of pixels is 0 (outside every district) so the "no zone" path is exercised.
        """
        if "districts" not in self._cache:
            n = N_DISTRICTS_SIDE
            idx = (np.arange(self.size, dtype=np.int64) * n) // self.size
            labels = (idx[:, None] * n + idx[None, :] + 1).astype(np.int32)
            labels[[0, -1], :] = 0
            labels[:, [0, -1]] = 0
            self._cache["districts"] = labels
        return self._cache["districts"]

    def _fill(self, count: int, seed: list[int], draw: _Draw) -> np.ndarray:
        out = np.empty((count, self.size, self.size), np.float32)
        bounds = strip_bounds(self.size, self._n_strips)
        streams = np.random.SeedSequence(seed).spawn(len(bounds))

        def one(k: int) -> None:
            r0, r1 = bounds[k]
            draw(np.random.default_rng(streams[k]), out[:, r0:r1])

        list(self._pool.map(one, range(len(bounds))))
        return out


def _draw_sigma0(
    rng: np.random.Generator, out: np.ndarray, *, mean: float, nan_fraction: float
) -> None:
    for layer in out:
        rng.standard_gamma(LOOKS, size=layer.shape, dtype=np.float32, out=layer)
        layer *= np.float32(mean / LOOKS)
        _blank(rng, layer, nan_fraction)


def _draw_score(rng: np.random.Generator, out: np.ndarray, *, nan_fraction: float) -> None:
    for layer in out:
        rng.standard_normal(size=layer.shape, dtype=np.float32, out=layer)
        layer *= np.float32(1.5)
        _blank(rng, layer, nan_fraction)


def _blank(rng: np.random.Generator, layer: np.ndarray, nan_fraction: float) -> None:
    """Set about `nan_fraction` of a contiguous layer to NaN (random positions, may repeat)."""
    flat = layer.reshape(-1)
    flat[rng.integers(0, flat.size, round(nan_fraction * flat.size))] = np.nan
