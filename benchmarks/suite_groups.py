"""The benchmark groups (ours and the peers on the same inputs) and the ratios to report.

Every contender that can use all cores runs over row strips on the same thread pool as
`ruinmap bench` (`ruinmap.bench.map_strips`): our nogil kernels, and the NumPy/SciPy/numba
peers, which release the GIL too. So a ratio compares like with like; the few single-call
contenders say so in their name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from functools import partial
from typing import Any

import numpy as np
from suite_core import (
    SIZE,
    SIZE_LARGE,
    SIZE_PEER,
    SLOW_ROUNDS,
    THREADS,
    Contender,
    Group,
    Ratio,
)
from suite_districts import DISTRICT_CONTENDERS, G_DISTRICTS, build_districts

from ruinmap.bench import map_strips
from ruinmap.bench.bound import triad_kernel
from ruinmap.bench.inputs import Inputs

N_DATES = 8
FOCAL_RADII = (2, 5, 10, 15)
PEER_RADIUS = 10
N_LABELS = 100
EDGES = np.linspace(0.0, 0.5, 65)  # 64 bins over the sigma0 range


def _strips(pool: Executor, func: Callable[..., Any], *arrays: np.ndarray, halo: int = 0) -> Any:
    return map_strips(pool, THREADS, func, arrays, halo=halo)


def _concat(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts, axis=0)


# --- welch_t vs scipy.stats.ttest_ind ---------------------------------------------------------

G_WELCH = f"welch_t {N_DATES}+{N_DATES} {SIZE}x{SIZE}"


def _scipy_welch_t(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    from scipy.stats import ttest_ind

    return ttest_ind(post, pre, equal_var=False, axis=0).statistic


def build_welch(pool: Executor) -> Mapping[str, Contender]:
    from ruinmap.kernels.ttest import welch_t, welch_t_reference

    # No NaN: scipy's fast path propagates NaN, and nan_policy="omit" would time masked arrays.
    d = Inputs(SIZE, pool, THREADS, nan_fraction=0.0)
    pre, post = d.sigma0("pre", N_DATES), d.sigma0("post", N_DATES)
    crop = (pre[:, :256, :256], post[:, :256, :256])
    np.testing.assert_allclose(welch_t(*crop), _scipy_welch_t(*crop), rtol=1e-4, atol=1e-4)
    return {
        "ruinmap welch_t": Contender(lambda: _strips(pool, welch_t, pre, post)),
        "welch_t_reference": Contender(
            lambda: _strips(pool, welch_t_reference, pre, post), SLOW_ROUNDS
        ),
        "scipy ttest_ind": Contender(lambda: _strips(pool, _scipy_welch_t, pre, post), SLOW_ROUNDS),
    }


# --- focal_mean: cost against radius, and against xarray-spatial -------------------------------

G_FOCAL = f"focal_mean radius {SIZE}x{SIZE}"
G_PEER_FOCAL = f"focal_mean r={PEER_RADIUS} vs xarray-spatial {SIZE_PEER}x{SIZE_PEER}"


def build_focal(pool: Executor) -> Mapping[str, Contender]:
    from ruinmap.kernels.focal import focal_mean

    x = Inputs(SIZE, pool, THREADS).sigma0("pre", 1)[0]
    return {
        f"ruinmap focal_mean r={r}": Contender(
            lambda r=r: _strips(pool, partial(focal_mean, radius=r), x, halo=r)
        )
        for r in FOCAL_RADII
    }


def _xrspatial_circle_mean(x: np.ndarray, radius: int) -> np.ndarray:
    import xarray as xr
    from xrspatial.convolution import circle_kernel
    from xrspatial.focal import apply

    return apply(xr.DataArray(x), circle_kernel(1, 1, radius)).data


def build_peer_focal(pool: Executor) -> Mapping[str, Contender]:
    from ruinmap.kernels.focal import focal_mean

    x = Inputs(SIZE_PEER, pool, THREADS).sigma0("pre", 1)[0]
    crop = x[:200, :200]
    np.testing.assert_allclose(
        focal_mean(crop, PEER_RADIUS),
        _xrspatial_circle_mean(crop, PEER_RADIUS),
        rtol=1e-5,
        atol=1e-7,
        err_msg="focal_mean and xarray-spatial's circular focal mean disagree",
    )
    r = PEER_RADIUS
    return {
        f"ruinmap focal_mean r={r}": Contender(
            lambda: _strips(pool, partial(focal_mean, radius=r), x, halo=r)
        ),
        "xarray-spatial focal.apply": Contender(
            lambda: _strips(pool, partial(_xrspatial_circle_mean, radius=r), x, halo=r),
            SLOW_ROUNDS,
        ),
    }


# --- element-wise kernels against a triad moving the same bytes --------------------------------

G_BOUND = f"memory bound {SIZE_LARGE}x{SIZE_LARGE}"
# (kernel, arrays read + written per pixel)
BOUND_KERNELS = (("nd_change", 5), ("log_ratio", 3), ("to_db", 2))


def build_bound(pool: Executor) -> Mapping[str, Contender]:
    from ruinmap.kernels import indices

    d = Inputs(SIZE_LARGE, pool, THREADS)
    pre, post = d.sigma0("pre", 2), d.sigma0("post", 2)
    args = {
        "nd_change": (pre[1], pre[0], post[1], post[0]),
        "log_ratio": (pre[0], post[0]),
        "to_db": (pre[0],),
    }
    pixels = SIZE_LARGE * SIZE_LARGE
    # A triad moves 3 arrays per element, so n = arrays * pixels / 3 elements move the kernel's
    # bytes; one set of buffers sized for the largest, sliced for the others.
    n_max = math.ceil(max(k for _, k in BOUND_KERNELS) * pixels / 3)
    a, b, c = np.zeros(n_max, np.float32), np.ones(n_max, np.float32), np.ones(n_max, np.float32)
    triad = triad_kernel()
    out: dict[str, Contender] = {}
    for name, arrays in BOUND_KERNELS:
        n = math.ceil(arrays * pixels / 3)
        func = getattr(indices, name)
        out[f"ruinmap {name}"] = Contender(lambda f=func, x=args[name]: _strips(pool, f, *x))
        out[f"triad, {name} bytes"] = Contender(
            lambda n=n: triad(a[:n], b[:n], c[:n], np.float32(3.0))
        )
    return out


# --- label_stats against its np.bincount reference --------------------------------------------

G_LABELS = f"label_stats {N_LABELS} labels {SIZE_LARGE}x{SIZE_LARGE}"


def build_labels(pool: Executor) -> Mapping[str, Contender]:
    from ruinmap.kernels.zonal import label_stats, label_stats_reference, merge_label_stats

    d = Inputs(SIZE_LARGE, pool, THREADS)
    labels, values = d.districts(), d.sigma0("pre", 1)[0]
    ours = partial(label_stats, n_labels=N_LABELS, bins=EDGES)
    ref = partial(label_stats_reference, n_labels=N_LABELS, bins=EDGES)
    got = ours(labels[:1000], values[:1000])
    want = ref(labels[:1000], values[:1000])
    np.testing.assert_array_equal(got.count, want.count)
    np.testing.assert_array_equal(got.hist, want.hist)
    np.testing.assert_allclose(got.sum, want.sum, rtol=1e-12)
    return {
        "ruinmap label_stats": Contender(
            lambda: merge_label_stats(_strips(pool, ours, labels, values))
        ),
        "ruinmap label_stats 1 thread": Contender(lambda: ours(labels, values), SLOW_ROUNDS),
        "label_stats_reference": Contender(
            lambda: merge_label_stats(_strips(pool, ref, labels, values)), SLOW_ROUNDS
        ),
    }


GROUPS: tuple[Group, ...] = (
    Group(G_WELCH, ("ruinmap welch_t", "welch_t_reference", "scipy ttest_ind"), build_welch),
    Group(G_FOCAL, tuple(f"ruinmap focal_mean r={r}" for r in FOCAL_RADII), build_focal),
    Group(
        G_PEER_FOCAL,
        (f"ruinmap focal_mean r={PEER_RADIUS}", "xarray-spatial focal.apply"),
        build_peer_focal,
    ),
    Group(
        G_BOUND,
        tuple(f"{who}{name}{tail}" for name, _ in BOUND_KERNELS
              for who, tail in (("ruinmap ", ""), ("triad, ", " bytes"))),
        build_bound,
    ),
    Group(
        G_LABELS,
        ("ruinmap label_stats", "ruinmap label_stats 1 thread", "label_stats_reference"),
        build_labels,
    ),
    Group(G_DISTRICTS, DISTRICT_CONTENDERS, build_districts),
)
GROUP_BY_NAME = {g.name: g for g in GROUPS}

RATIOS: tuple[Ratio, ...] = (
    Ratio("welch_t 8+8: speedup vs scipy ttest_ind", G_WELCH, "scipy ttest_ind", "ruinmap welch_t"),
    Ratio("welch_t 8+8: speedup vs welch_t_reference", G_WELCH, "welch_t_reference",
          "ruinmap welch_t"),
    Ratio("focal_mean: time r=15 / time r=2", G_FOCAL, "ruinmap focal_mean r=15",
          "ruinmap focal_mean r=2", "<=", 1.5),
    Ratio(f"focal_mean r={PEER_RADIUS}: speedup vs xarray-spatial", G_PEER_FOCAL,
          "xarray-spatial focal.apply", f"ruinmap focal_mean r={PEER_RADIUS}", ">=", 20),
    Ratio("nd_change: fraction of triad bound", G_BOUND, "triad, nd_change bytes",
          "ruinmap nd_change", ">=", 0.8),
    Ratio("log_ratio: fraction of triad bound", G_BOUND, "triad, log_ratio bytes",
          "ruinmap log_ratio", ">=", 0.5),
    Ratio("to_db: fraction of triad bound", G_BOUND, "triad, to_db bytes", "ruinmap to_db",
          ">=", 0.5),
    Ratio("label_stats: speedup vs bincount reference", G_LABELS, "label_stats_reference",
          "ruinmap label_stats", ">=", 5),
    Ratio("district stats: speedup vs exactextract", G_DISTRICTS, "exactextract (NumPy raster)",
          "ruinmap rasterize + label_stats", ">=", 3),
    Ratio("district stats: speedup vs exactextract (GeoTIFF)", G_DISTRICTS,
          "exactextract (GeoTIFF)", "ruinmap rasterize + label_stats"),
    Ratio("district stats, ruinmap 1 thread: vs exactextract", G_DISTRICTS,
          "exactextract (NumPy raster)", "ruinmap rasterize + label_stats 1 thread"),
)  # fmt: skip
