"""Automatic thresholds on the job-wide histogram: each rule against its reference on bimodal
scores, the class edges around the chosen threshold, and the errors of a score without two
populations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.filters import threshold_otsu
from sklearn.mixture import GaussianMixture

from ruinmap.cluster.job.partials import counted_pixels, load_partial, save_partial, tile_partial
from ruinmap.cluster.job.thresholds import choose_threshold, threshold_choice
from ruinmap.cluster.methods import LogRatioParams
from ruinmap.errors import InputError, StoreError
from ruinmap.kernels import classify, label_stats
from ruinmap.kernels.thresholds import bin_centers, kittler_illingworth, score_hist_edges

EDGES = score_hist_edges()
CENTERS = bin_centers(EDGES)


def _histogram(values: np.ndarray) -> np.ndarray:
    """Counts of `values` over the job-wide bins, by np.searchsorted (clamped)."""
    finite = values[~np.isnan(values)]
    index = np.clip(np.searchsorted(EDGES, finite, side="right") - 1, 0, EDGES.size - 2)
    return np.bincount(index, minlength=EDGES.size - 1).astype(np.int64)


def _bimodal(seed: int, low: float, high: float, spread: float, fraction: float,
             n: int = 60_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = int(n * fraction)
    values = np.concatenate([rng.normal(low, spread, n - k), rng.normal(high, spread * 1.5, k)])
    return np.abs(values).astype(np.float32)  # scores of direction = "both" are >= 0


def _between_class_variance(counts: np.ndarray, centers: np.ndarray, t: int) -> float:
    """Otsu's criterion for the cut after level t (0 where a side is empty)."""
    w0, w1 = counts[: t + 1].sum(), counts[t + 1 :].sum()
    if w0 == 0 or w1 == 0:
        return 0.0
    m0 = np.average(centers[: t + 1], weights=counts[: t + 1])
    m1 = np.average(centers[t + 1 :], weights=counts[t + 1 :])
    return float(w0 * w1 * (m0 - m1) ** 2)


def _occupied(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nz = np.flatnonzero(counts)
    return counts[nz[0] : nz[-1] + 1].astype(np.float64), CENTERS[nz[0] : nz[-1] + 1]


def test_tiles_histograms_add_up_to_the_whole_image_histogram() -> None:
    rng = np.random.default_rng(1)
    score = (rng.gamma(2.0, 3.0, (70, 90)) * rng.choice([1, -1], (70, 90))).astype(np.float32)
    score[rng.random(score.shape) < 0.1] = np.nan
    score[0, 0], score[0, 1] = 5e6, -np.inf  # beyond the bins: counted in the end bins
    total = np.zeros(EDGES.size - 1, np.int64)
    for r0 in range(0, 70, 32):
        for c0 in range(0, 90, 40):
            win = score[r0 : r0 + 32, c0 : c0 + 40]
            h, w = win.shape
            part = tile_partial(
                win, classify(win, (1.0,)), threshold=1.0, n_classes=2, edges=EDGES[::256],
                district_labels=np.zeros((h, w), np.int32), n_districts=1,
                building_labels=np.zeros((h, w), np.int32), building_index=np.zeros(0, np.int64),
                centroid_index=np.zeros(0, np.int64), centroid_rc=np.zeros((0, 2), np.int64),
                origin=(r0, c0), cell_px=10, hist_edges=EDGES,
            )  # fmt: skip
            total += part.s_hist
    assert np.array_equal(total, _histogram(score))
    assert total.sum() == np.isfinite(score).sum() + 1  # -inf counts, NaN does not


def test_without_hist_edges_the_partial_has_no_histogram() -> None:
    score = np.ones((4, 4), np.float32)
    part = tile_partial(
        score, classify(score, (1.0,)), threshold=1.0, n_classes=2, edges=EDGES[::256],
        district_labels=np.zeros((4, 4), np.int32), n_districts=1,
        building_labels=np.zeros((4, 4), np.int32), building_index=np.zeros(0, np.int64),
        centroid_index=np.zeros(0, np.int64), centroid_rc=np.zeros((0, 2), np.int64),
        origin=(0, 0), cell_px=2,
    )  # fmt: skip
    assert part.s_hist.size == 0 and part.s_counted.size == 0


@pytest.mark.parametrize("shape", [(4, 4), (7, 13)])  # 13 x 7 bits: not whole bytes
def test_partial_keeps_its_counted_pixels_through_a_save_for_the_second_pass(
    tmp_path: Path, shape: tuple[int, int],
) -> None:
    rng = np.random.default_rng(2)
    score = rng.normal(0.0, 2.0, shape).astype(np.float32)
    counted = rng.random(shape) < 0.6
    part = tile_partial(
        score, classify(score, (1.0,)), threshold=np.inf, n_classes=2, edges=EDGES[::256],
        district_labels=np.zeros(shape, np.int32), n_districts=1,
        building_labels=np.zeros(shape, np.int32), building_index=np.zeros(0, np.int64),
        centroid_index=np.zeros(0, np.int64), centroid_rc=np.zeros((0, 2), np.int64),
        origin=(0, 0), cell_px=2, hist_edges=EDGES, counted=counted, observed=counted,
    )  # fmt: skip
    checksum = save_partial(part, tmp_path / "tile.npz", "0/0")
    loaded = load_partial(tmp_path / "tile.npz", "0/0", checksum)
    np.testing.assert_array_equal(counted_pixels(loaded, shape), counted)
    with pytest.raises(StoreError, match="run the job again"):
        counted_pixels(loaded, (shape[0] + 1, shape[1]))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), low=st.floats(0.5, 2.0), gap=st.floats(3.0, 10.0),
       spread=st.floats(0.3, 1.0), fraction=st.floats(0.05, 0.5))
def test_otsu_equals_the_between_class_variance_reference(
    seed: int, low: float, gap: float, spread: float, fraction: float,
) -> None:
    counts, centers = _occupied(_histogram(_bimodal(seed, low, low + gap, spread, fraction)))
    got = choose_threshold("otsu", counts, centers)
    criterion = [_between_class_variance(counts, centers, t) for t in range(centers.size - 1)]
    # the cut maximises the criterion (cuts across empty bins tie: any of them will do)
    at = _between_class_variance(counts, centers, int(np.searchsorted(centers, got)))
    assert at == pytest.approx(max(criterion), rel=1e-9)


def test_otsu_on_the_histogram_matches_skimage_on_the_pixels() -> None:
    values = _bimodal(3, 1.0, 8.0, 0.7, 0.3)
    counts, centers = _occupied(_histogram(values))
    # skimage bins the pixels in 256 equal bins: agree to one of those bins
    step = (values.max() - values.min()) / 256
    assert abs(choose_threshold("otsu", counts, centers) - threshold_otsu(values)) <= step


def test_kittler_illingworth_rule_is_the_kernel_on_the_occupied_range() -> None:
    counts, centers = _occupied(_histogram(_bimodal(5, 1.0, 6.0, 0.5, 0.2)))
    assert choose_threshold("kittler-illingworth", counts, centers) == kittler_illingworth(
        counts, centers)


@pytest.mark.parametrize("seed", [0, 7])
def test_gmm_cut_matches_a_mixture_fitted_to_the_pixels(seed: int) -> None:
    values = _bimodal(seed, 1.0, 7.0, 0.6, 0.25)
    counts, centers = _occupied(_histogram(values))
    got = choose_threshold("gmm", counts, centers)
    mixture = GaussianMixture(2, random_state=0).fit(values.reshape(-1, 1).astype(np.float64))
    high = int(np.argmax(mixture.means_.ravel()))
    grid = np.linspace(1.0, 7.0, 6001)
    crossing = grid[np.argmax(mixture.predict_proba(grid.reshape(-1, 1))[:, high] > 0.5)]
    assert abs(got - crossing) < 0.05


@pytest.mark.parametrize("rule", ["otsu", "kittler-illingworth", "gmm"])
def test_every_rule_separates_two_well_apart_populations(rule: str) -> None:
    values = _bimodal(11, 1.0, 9.0, 0.5, 0.3)
    params = LogRatioParams(threshold=rule)
    choice = threshold_choice(params, _histogram(values))
    assert 2.5 < choice.threshold < 7.0
    assert choice.class_thresholds == tuple(choice.threshold * m for m in (0.5, 1.0, 1.5, 2.0))
    assert choice.threshold in choice.class_thresholds
    assert choice.n_valid == values.size
    # the threshold is a bin centre: within half a bin of any score it stands for
    k = int(np.searchsorted(EDGES, choice.threshold) - 1)
    assert choice.resolution == pytest.approx(0.5 * (EDGES[k + 1] - EDGES[k]))
    assert choice.resolution < 1e-3 * choice.threshold + 1e-3
    report = choice.report()
    assert report["rule"] == rule and report["histogram"]["bins"] == EDGES.size - 1


@pytest.mark.parametrize("rule", ["otsu", "kittler-illingworth", "gmm"])
def test_a_constant_score_is_a_clear_error(rule: str) -> None:
    counts = _histogram(np.full(1000, 2.5, np.float32))
    with pytest.raises(InputError, match=r"the score is constant \(about 2.50\d*\).*1000 valid"):
        threshold_choice(LogRatioParams(threshold=rule), counts)


def test_a_score_without_valid_pixels_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="no valid pixel"):
        threshold_choice(LogRatioParams(threshold="otsu"), np.zeros(EDGES.size - 1, np.int64))


def test_a_threshold_at_or_below_zero_cannot_place_the_class_multiples() -> None:
    values = np.concatenate([np.full(500, -4.0), np.full(500, -1.0)]).astype(np.float32)
    with pytest.raises(InputError, match="not a positive score"):
        threshold_choice(LogRatioParams(threshold="otsu"), _histogram(values))


def test_label_stats_histogram_is_the_searchsorted_histogram() -> None:
    values = np.array([[0.0, 1e-4, -3.0, 2e7]], np.float32)
    hist = label_stats(np.ones(values.shape, np.uint8), values, 1, EDGES).hist[0]
    assert np.array_equal(hist, _histogram(values))
