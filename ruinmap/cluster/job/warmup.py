"""Every worker's compiled kernels loaded while the ingest runs, so that no tile pays for it.

A worker's first tile used to load (or compile) the method's numba kernels, those of the
classes and of the tile's reductions, about 1.4 s a worker at 4096^2: a tenth of a small
scene's tile phase on two workers, on the critical path of each. `start_kernel_warmup` asks
every worker (`Client.run`) to start one thread that scores a tiny synthetic window with the
job's own parameters, bands and dates, classifies it and reduces it as `task.run_tile` does,
so the same kernel specialisations (dtypes, layouts) are loaded. The thread runs beside the
ingest's tasks (which mostly wait on reads, codecs and fsync) and never fails the job: a
kernel it did not load is loaded by the first tile, as before. numba's own lock makes a tile
that starts first wait for a kernel the thread is loading rather than load it twice.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from distributed import Client

from ruinmap.cluster.job.partials import automatic_score_edges, score_edges, tile_partial
from ruinmap.cluster.job.task import first_pass_classes, first_pass_threshold
from ruinmap.cluster.methods import compute_layers
from ruinmap.cluster.methods.base import ScoreContext
from ruinmap.cluster.methods.params import MethodParamsBase, PixelSize
from ruinmap.kernels.thresholds import score_hist_edges

__all__ = ["WARMUP_THREAD", "start_kernel_warmup", "warm_tile_kernels"]

log = logging.getLogger(__name__)

WARMUP_THREAD = "ruinmap-kernel-warmup"
# pixels a side of the synthetic window: room for a few valid pixels and a 2 x 2 cell grid
_SIDE = 16


def warm_tile_kernels(params: MethodParamsBase, bands: tuple[str, ...], n_pre: int,
                      n_post: int, pixel_size_m: PixelSize, *, masked: bool) -> float:
    """Run a tile's kernels once on a tiny synthetic window; returns the seconds it took.

    The window is (time, band, y, x) float32 gamma speckle like SAR backscatter, `n_pre` +
    `n_post` dates of `bands`; scored with `params` (with a built-up mask when `masked`),
    classified and reduced into a partial with one district and one footprint, as
    `task.run_tile` does. The results are thrown away.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    shape = (_SIDE, _SIDE)
    pre = rng.gamma(5.0, 0.02, (n_pre, len(bands), *shape)).astype(np.float32)
    post = rng.gamma(5.0, 0.02, (n_post, len(bands), *shape)).astype(np.float32)
    context = ScoreContext(bands=bands, pre_orbits=(0,) * n_pre, post_orbits=(0,) * n_post,
                           pixel_size_m=pixel_size_m, band_scale=(1.0,) * len(bands))
    built = np.ones(shape, bool) if masked else None
    valid = np.zeros(shape, bool)
    layers = compute_layers(pre, post, params, context, built, valid)
    score = np.ascontiguousarray(layers.score)
    automatic = params.is_automatic
    classes = first_pass_classes(score, params)
    n_post_layer = layers.extra.get("n_post")
    footprint = np.zeros(shape, np.int32)
    footprint[2:6, 2:6] = 1
    tile_partial(
        score, classes, threshold=first_pass_threshold(params),
        n_classes=len(params.class_edges_given) + 1,
        edges=automatic_score_edges() if automatic else score_edges(params.class_thresholds),
        district_labels=np.ones((1, *shape), np.int32), n_districts=1,
        building_labels=footprint, building_index=np.zeros(1, np.int64),
        centroid_index=np.zeros(1, np.int64), centroid_rc=np.array([[3, 3]], np.int64),
        origin=(0, 0), cell_px=_SIDE // 2,
        n_post=None if n_post_layer is None else np.ascontiguousarray(n_post_layer),
        hist_edges=score_hist_edges() if automatic else None, counted=valid, observed=valid,
    )  # fmt: skip
    return time.perf_counter() - started


def _warm_quietly(params: MethodParamsBase, bands: tuple[str, ...], n_pre: int, n_post: int,
                  pixel_size_m: PixelSize, masked: bool) -> None:
    try:
        seconds = warm_tile_kernels(params, bands, n_pre, n_post, pixel_size_m, masked=masked)
        log.debug("tile kernels loaded in %.2f s", seconds)
    except Exception:  # the first tile loads them then, and reports any real error itself
        log.warning("loading the tile kernels ahead of the tiles failed", exc_info=True)


def _start_thread(params: MethodParamsBase, bands: tuple[str, ...], n_pre: int, n_post: int,
                  pixel_size_m: PixelSize, masked: bool) -> bool:
    # on the worker: return at once, so its event loop (heartbeats, the ingest's task
    # results) is never blocked while the kernels load
    if any(t.name == WARMUP_THREAD and t.is_alive() for t in threading.enumerate()):
        return False
    threading.Thread(target=_warm_quietly, name=WARMUP_THREAD, daemon=True,
                     args=(params, bands, n_pre, n_post, pixel_size_m, masked)).start()
    return True


def start_kernel_warmup(client: Client, params: MethodParamsBase, bands: tuple[str, ...],
                        n_pre: int, n_post: int, pixel_size_m: PixelSize, *,
                        masked: bool) -> None:
    """Start loading the tile kernels on every worker of `client` (module doc); returns at
    once. A worker that joins later loads them with its first tile."""
    try:
        client.run(_start_thread, params, bands, n_pre, n_post, pixel_size_m, masked)
    except Exception:  # an optimisation only: never the reason a job fails
        log.warning("could not start loading the tile kernels on the workers", exc_info=True)
