"""Focal kernels (circular mean and median, Lee filter) against their NumPy references.

Tolerances, and why:
- focal_mean vs focal_mean_reference, and tiles vs the whole image: rtol 1e-6 plus an absolute
  1e-9 * max|x|. The kernel sums float64 prefix sums (restarted per column block), the
  reference adds the shifted images; both round the float64 mean to float32, so they differ
  only when float64 rounding of a sum that mixes magnitudes reaches float32 resolution.
- focal_median: equal to the reference exactly (a selection; the even-count mean is computed
  in float64 by both), and tiles equal the whole image bitwise.
- lee_filter vs lee_filter_reference: rtol 1e-5 plus 1e-6 * max|x| (the kernel's variance is
  E[x^2] - m^2, the reference's np.nanvar is two-pass). Tiles equal the whole image bitwise.
- lee_log_filter vs lee_log_filter_reference (the log of the floored Lee reference): compared
  in linear power (exp of both) with lee_filter's tolerance plus 1e-6 relative for the fast
  log, since the Lee tolerance is absolute in max|x|; equal to the log of lee_filter's own
  float32 output within 4e-7 (the fast log's ulps), and tiles equal the whole image bitwise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ruinmap.errors import InputError
from ruinmap.kernels import focal
from ruinmap.kernels.focal import (
    disk_half_widths,
    disk_offsets,
    focal_halo,
    focal_mean,
    focal_mean_reference,
)
from ruinmap.kernels.focal_median import MAX_MEDIAN_RADIUS, focal_median, focal_median_reference
from ruinmap.kernels.lee import (
    lee_filter,
    lee_filter_reference,
    lee_log_filter,
    lee_log_filter_reference,
)

DTYPES = [np.float32, np.float64]
# (rows, cols): single pixels, single rows and columns, empty, smaller than the window, wide.
SHAPES = [(1, 1), (1, 9), (9, 1), (0, 5), (5, 0), (0, 0), (2, 3), (4, 4), (13, 17), (31, 8)]
NAN_PATTERNS = ["none", "sparse", "dense", "all", "rows", "late"]
Kernel = Callable[[np.ndarray], np.ndarray]


def make_image(shape: tuple[int, int], dtype: type, nan_pattern: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.gamma(4.0, 0.025, size=shape).astype(dtype)  # speckled linear sigma0, mean 0.1
    if nan_pattern == "sparse":
        x[rng.random(shape) < 0.05] = np.nan
    elif nan_pattern == "dense":
        x[rng.random(shape) < 0.7] = np.nan
    elif nan_pattern == "all":
        x[...] = np.nan
    elif nan_pattern == "rows":
        x[::3] = np.nan
    elif nan_pattern == "late":  # NaN-free at the top: the kernel starts counting mid-image
        x[2 * shape[0] // 3 :][rng.random(x[2 * shape[0] // 3 :].shape) < 0.2] = np.nan
    return x


def scale_of(x: np.ndarray) -> float:
    finite = np.abs(x[np.isfinite(x)])
    return float(finite.max()) if finite.size else 0.0


def assert_mean_close(got: np.ndarray, want: np.ndarray, x: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9 * scale_of(x), equal_nan=True)


def tiled(kernel: Kernel, x: np.ndarray, halo: int, tile: tuple[int, int]) -> np.ndarray:
    """Run `kernel` on tiles cut with `halo` pixels each side (clipped), cropped, reassembled."""
    rows, cols = x.shape
    out = np.full(x.shape, -12345.0, dtype=np.float32)
    for r0 in range(0, rows, tile[0]):
        for c0 in range(0, cols, tile[1]):
            r1, c1 = min(r0 + tile[0], rows), min(c0 + tile[1], cols)
            a0, a1 = max(r0 - halo, 0), min(r1 + halo, rows)
            b0, b1 = max(c0 - halo, 0), min(c1 + halo, cols)
            part = kernel(x[a0:a1, b0:b1])
            out[r0:r1, c0:c1] = part[r0 - a0 : r1 - a0, c0 - b0 : c1 - b0]
    return out


# Images for hypothesis: any 2-D shape up to 24 a side, float32 or float64, values of mixed
# sign and magnitude (|x| <= 1e6, including subnormals), NaN anywhere.
finite_or_nan = st.floats(-1e6, 1e6, width=32) | st.just(float("nan"))
images = hnp.arrays(
    dtype=st.sampled_from(DTYPES),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=24),
    elements=finite_or_nan,
)


# --- the disk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", range(12))
def test_disk_offsets_are_the_pixels_within_radius(radius: int) -> None:
    r = radius
    want = {(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy**2 + dx**2 <= r**2}
    got = disk_offsets(radius)
    assert got.dtype == np.int64 and got.shape == (len(want), 2)
    assert {tuple(o) for o in got.tolist()} == want


@pytest.mark.parametrize("radius", range(12))
def test_disk_half_widths_span_each_disk_row(radius: int) -> None:
    offsets = disk_offsets(radius)
    widths = disk_half_widths(radius)
    assert widths.shape == (radius + 1,)
    for d in range(radius + 1):
        assert np.abs(offsets[offsets[:, 0] == d, 1]).max() == widths[d]


def test_focal_halo_is_the_radius() -> None:
    assert focal_halo(0) == 0
    assert focal_halo(15) == 15


# --- elliptical windows: (radius_y, radius_x) ----------------------------------------------

RADII_YX = [(0, 0), (0, 3), (3, 0), (1, 2), (2, 1), (3, 5), (5, 3), (4, 7), (6, 6)]
radius_pairs = st.tuples(st.integers(0, 9), st.integers(0, 9))


@pytest.mark.parametrize("radii", RADII_YX)
def test_ellipse_offsets_are_the_pixels_within_the_ellipse(radii: tuple[int, int]) -> None:
    ry, rx = radii

    def inside(dy: int, dx: int) -> bool:
        if ry == 0 or rx == 0:  # a segment along the other axis
            return (dy == 0 and abs(dx) <= rx) if ry == 0 else (dx == 0 and abs(dy) <= ry)
        return (dy / ry) ** 2 + (dx / rx) ** 2 <= 1 + 1e-12

    want = {(dy, dx) for dy in range(-ry, ry + 1) for dx in range(-rx, rx + 1) if inside(dy, dx)}
    got = disk_offsets(radii)
    assert {tuple(o) for o in got.tolist()} == want and len(got) == len(want)
    assert disk_half_widths(radii).shape == (ry + 1,)


@pytest.mark.parametrize("radius", range(12))
def test_equal_radii_are_the_circle(radius: int) -> None:
    np.testing.assert_array_equal(disk_offsets((radius, radius)), disk_offsets(radius))
    x = make_image((17, 23), np.float32, "sparse")
    np.testing.assert_array_equal(focal_mean(x, (radius, radius)), focal_mean(x, radius))


def test_focal_halo_of_an_ellipse_is_its_larger_radius() -> None:
    assert focal_halo((3, 7)) == 7
    assert focal_halo((9, 2)) == 9


@settings(max_examples=80, deadline=None)
@given(x=images, radii=radius_pairs)
def test_focal_mean_of_an_ellipse_matches_reference(x: np.ndarray, radii: tuple[int, int]
                                                    ) -> None:
    assert_mean_close(focal_mean(x, radii), focal_mean_reference(x, radii), x)


@pytest.mark.parametrize("nan_pattern", NAN_PATTERNS)
@pytest.mark.parametrize("radii", RADII_YX)
def test_focal_mean_of_an_ellipse_matches_reference_on_nan_patterns(
    nan_pattern: str, radii: tuple[int, int]
) -> None:
    x = make_image((31, 29), np.float64, nan_pattern)
    assert_mean_close(focal_mean(x, radii), focal_mean_reference(x, radii), x)


@settings(max_examples=40, deadline=None)
@given(x=images, radii=radius_pairs, tile=st.tuples(st.integers(1, 12), st.integers(1, 12)))
def test_focal_mean_of_an_ellipse_tiles_with_halo_equal_whole_image(
    x: np.ndarray, radii: tuple[int, int], tile: tuple[int, int]
) -> None:
    whole = focal_mean(x, radii)
    parts = tiled(lambda a: focal_mean(a, radii), x, focal_halo(radii), tile)
    assert_mean_close(parts, whole, x)


@settings(max_examples=60, deadline=None)
@given(x=images, radii=st.tuples(st.integers(0, 4), st.integers(0, 4)))
def test_focal_median_of_an_ellipse_matches_reference(x: np.ndarray, radii: tuple[int, int]
                                                      ) -> None:
    np.testing.assert_array_equal(focal_median(x, radii), focal_median_reference(x, radii))


@settings(max_examples=30, deadline=None)
@given(x=images, radii=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       tile=st.tuples(st.integers(1, 12), st.integers(1, 12)))
def test_focal_median_of_an_ellipse_tiles_with_halo_equal_whole_image(
    x: np.ndarray, radii: tuple[int, int], tile: tuple[int, int]
) -> None:
    whole = focal_median(x, radii)
    parts = tiled(lambda a: focal_median(a, radii), x, focal_halo(radii), tile)
    np.testing.assert_array_equal(parts, whole)


@pytest.mark.parametrize("radius", [(1, 2, 3), (1,), (-1, 2), (2, 1.5), (True, 1)])
def test_bad_radius_pair_raises_input_error(radius: object) -> None:
    with pytest.raises(InputError, match="radius"):
        focal_mean(IMAGE, radius)  # type: ignore[arg-type]


def test_focal_median_radius_pair_above_limit_is_refused() -> None:
    with pytest.raises(InputError, match="focal_mean"):
        focal_median(IMAGE, (1, MAX_MEDIAN_RADIUS + 1))


# --- focal_mean -------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(x=images, radius=st.integers(0, 12))
def test_focal_mean_matches_reference(x: np.ndarray, radius: int) -> None:
    assert_mean_close(focal_mean(x, radius), focal_mean_reference(x, radius), x)


# Shape x NaN pattern are the cases; every dtype and radius is checked inside each (a loop,
# not a cross product of test items: the same checks at a third of the per-item overhead).
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nan_pattern", NAN_PATTERNS)
def test_focal_mean_matches_reference_on_shapes_and_nan_patterns(
    shape: tuple[int, int], nan_pattern: str
) -> None:
    for dtype in DTYPES:
        x = make_image(shape, dtype, nan_pattern)
        for radius in (1, 2, 5):
            assert_mean_close(focal_mean(x, radius), focal_mean_reference(x, radius), x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_mean_radius_zero_is_identity(dtype: type) -> None:
    x = make_image((7, 9), dtype, "sparse")
    np.testing.assert_array_equal(focal_mean(x, 0), x.astype(np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [0.1, -3.75, 1e-30, 2.5e30, 0.0])
@pytest.mark.parametrize("radius", [1, 4, 15])
def test_focal_mean_of_constant_image_is_exact(dtype: type, value: float, radius: int) -> None:
    x = np.full((40, 37), value, dtype=dtype)
    x[5:9, 20] = np.nan
    np.testing.assert_array_equal(focal_mean(x, radius), np.full(x.shape, np.float32(value)))


def test_focal_mean_without_valid_pixels_is_nan() -> None:
    x = np.full((6, 8), np.nan, dtype=np.float32)
    x[0, 0] = 1.0
    out = focal_mean(x, 2)
    assert out[0, 0] == 1.0 and out[0, 2] == 1.0 and out[2, 0] == 1.0
    assert np.isnan(out[1, 2]) and np.isnan(out[5, 7])
    assert np.isnan(focal_mean(np.full((5, 5), np.nan), 3)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_focal_mean_holds_at_extreme_magnitudes(dtype: type, scale: float) -> None:
    x = (make_image((30, 40), np.float64, "sparse") * scale).astype(dtype)
    got, want = focal_mean(x, 4), focal_mean_reference(x, 4)
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)


def test_focal_mean_of_mixed_magnitudes_stays_within_tolerance() -> None:
    x = make_image((30, 300), np.float64, "sparse")
    x[::7, ::11] *= 1e6  # bright targets among the speckle
    assert_mean_close(focal_mean(x, 6), focal_mean_reference(x, 6), x)


def test_focal_mean_follows_numpy_for_infinities() -> None:
    x = make_image((40, 50), np.float32, "sparse")
    x[5, 5] = np.inf
    x[20, 30] = -np.inf
    x[22, 33] = np.inf  # windows that hold both are NaN
    for radius in (1, 3, 9):
        got, want = focal_mean(x, radius), focal_mean_reference(x, radius)
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        assert_mean_close(got, want, x)


@pytest.mark.parametrize("layout", ["strided", "transposed", "fortran"])
def test_focal_mean_accepts_non_contiguous_input(layout: str) -> None:
    base = make_image((40, 46), np.float32, "sparse")
    x = {
        "strided": base[::2, 1::3],
        "transposed": base.T,
        "fortran": np.asfortranarray(base),
    }[layout]
    assert not x.flags.c_contiguous
    assert_mean_close(focal_mean(x, 3), focal_mean_reference(np.ascontiguousarray(x), 3), x)


@pytest.mark.parametrize("nan_pattern", ["none", "sparse", "late"])
@pytest.mark.parametrize("block", [1, 3, 7])
def test_focal_mean_agrees_across_column_blocks(
    monkeypatch: pytest.MonkeyPatch, nan_pattern: str, block: int
) -> None:
    monkeypatch.setattr(focal, "_BLOCK_COLUMNS", block)
    x = make_image((23, 29), np.float32, nan_pattern)
    for radius in (1, 4):
        assert_mean_close(focal_mean(x, radius), focal_mean_reference(x, radius), x)


def test_focal_mean_of_wide_image_spans_blocks() -> None:
    x = make_image((5, 4500), np.float64, "sparse")
    assert_mean_close(focal_mean(x, 3), focal_mean_reference(x, 3), x)


def test_focal_mean_of_tall_image_reanchors_group_sums() -> None:
    # More rows than the re-anchoring period; radius 10 has multi-row groups of equal width.
    x = make_image((700, 24), np.float64, "late")
    x[::5] *= 1e3
    assert_mean_close(focal_mean(x, 10), focal_mean_reference(x, 10), x)


def test_focal_mean_with_int32_counts_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # Windows over 65535 pixels count in int32; force that path on a small image.
    monkeypatch.setattr(focal, "_UINT16_COUNTS_MAX", 0)
    x = make_image((30, 33), np.float32, "sparse")
    assert_mean_close(focal_mean(x, 6), focal_mean_reference(x, 6), x)


def test_focal_mean_radius_larger_than_image_covers_it() -> None:
    x = make_image((4, 6), np.float64, "sparse")
    assert_mean_close(focal_mean(x, 40), focal_mean_reference(x, 40), x)
    np.testing.assert_allclose(focal_mean(x, 40), np.float32(np.nanmean(x)), rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    x=images,
    radius=st.integers(0, 8),
    tile=st.tuples(st.integers(1, 12), st.integers(1, 12)),
)
def test_focal_mean_tiles_with_halo_equal_whole_image(
    x: np.ndarray, radius: int, tile: tuple[int, int]
) -> None:
    whole = focal_mean(x, radius)
    parts = tiled(lambda a: focal_mean(a, radius), x, focal_halo(radius), tile)
    assert_mean_close(parts, whole, x)


@pytest.mark.parametrize("radius", [2, 5, 15])
def test_focal_mean_tiles_of_sigma0_equal_whole_image_bitwise(radius: int) -> None:
    # float32 sigma0 rounded to 3 decimals: no magnitude below 0.001, so every float64 partial
    # sum is exact and tiles agree with the whole image bit for bit.
    x = np.round(make_image((90, 120), np.float32, "sparse"), 3)
    whole = focal_mean(x, radius)
    np.testing.assert_array_equal(
        tiled(lambda a: focal_mean(a, radius), x, radius, (32, 45)), whole
    )


# --- focal_median -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(x=images, radius=st.integers(0, 4))
def test_focal_median_matches_reference(x: np.ndarray, radius: int) -> None:
    got = focal_median(x, radius)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, focal_median_reference(x, radius))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nan_pattern", NAN_PATTERNS)
def test_focal_median_matches_reference_on_shapes_and_nan_patterns(
    shape: tuple[int, int], nan_pattern: str
) -> None:
    for dtype in DTYPES:
        x = make_image(shape, dtype, nan_pattern)
        for radius in (1, 2):
            np.testing.assert_array_equal(focal_median(x, radius),
                                          focal_median_reference(x, radius))


@pytest.mark.parametrize("radius", range(MAX_MEDIAN_RADIUS + 1))
def test_focal_median_matches_reference_up_to_max_radius(radius: int) -> None:
    x = make_image((20, 21), np.float64, "sparse", seed=radius)
    x[3:6, 4:9] = 0.05  # ties
    np.testing.assert_array_equal(focal_median(x, radius), focal_median_reference(x, radius))


def test_focal_median_of_even_count_is_mean_of_middle_values() -> None:
    x = np.array([[1.0, 4.0], [np.nan, 10.0]], dtype=np.float32)
    # radius 1 at (0, 0): 1, 4 and (below) NaN -> median of [1, 4] is 2.5
    assert focal_median(x, 1)[0, 0] == 2.5
    # at (1, 1): 4, NaN, 10 -> 7
    assert focal_median(x, 1)[1, 1] == 7.0


def test_focal_median_follows_numpy_for_infinities() -> None:
    x = make_image((12, 14), np.float64, "sparse")
    x[3, 3] = np.inf
    x[3, 4] = -np.inf
    x[8, 8:11] = np.inf
    with np.errstate(invalid="ignore"):
        want = focal_median_reference(x, 1)
    np.testing.assert_array_equal(focal_median(x, 1), want)


def test_focal_median_radius_zero_is_identity() -> None:
    x = make_image((7, 9), np.float64, "sparse")
    np.testing.assert_array_equal(focal_median(x, 0), x.astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(
    x=images,
    radius=st.integers(0, 3),
    tile=st.tuples(st.integers(1, 10), st.integers(1, 10)),
)
def test_focal_median_tiles_with_halo_equal_whole_image(
    x: np.ndarray, radius: int, tile: tuple[int, int]
) -> None:
    whole = focal_median(x, radius)
    parts = tiled(lambda a: focal_median(a, radius), x, focal_halo(radius), tile)
    np.testing.assert_array_equal(parts, whole)


def test_focal_median_accepts_non_contiguous_input() -> None:
    x = make_image((30, 26), np.float32, "sparse")[::2, ::-1]
    want = focal_median_reference(np.ascontiguousarray(x), 2)
    np.testing.assert_array_equal(focal_median(x, 2), want)


# --- lee_filter -------------------------------------------------------------------------------

positive_or_nan = st.floats(0.0, 1e3, width=32) | st.just(float("nan"))
power_images = hnp.arrays(
    dtype=st.sampled_from(DTYPES),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=20),
    elements=positive_or_nan,
)


def assert_lee_close(got: np.ndarray, want: np.ndarray, x: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale_of(x), equal_nan=True)


@settings(max_examples=80, deadline=None)
@given(x=power_images, size=st.sampled_from([1, 3, 5, 7]), enl=st.floats(0.5, 50.0))
def test_lee_filter_matches_reference(x: np.ndarray, size: int, enl: float) -> None:
    assert_lee_close(lee_filter(x, size, enl), lee_filter_reference(x, size, enl), x)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nan_pattern", NAN_PATTERNS)
def test_lee_filter_matches_reference_on_shapes_and_nan_patterns(
    shape: tuple[int, int], nan_pattern: str
) -> None:
    for dtype in DTYPES:
        x = make_image(shape, dtype, nan_pattern)
        for size in (3, 5):
            assert_lee_close(lee_filter(x, size), lee_filter_reference(x, size), x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_lee_filter_holds_at_extreme_magnitudes(dtype: type, scale: float) -> None:
    x = (make_image((20, 25), np.float64, "sparse") * scale).astype(dtype)
    np.testing.assert_allclose(
        lee_filter(x, 3), lee_filter_reference(x, 3), rtol=1e-5, equal_nan=True
    )


def test_lee_filter_size_one_is_identity() -> None:
    x = make_image((9, 11), np.float64, "sparse")
    np.testing.assert_array_equal(lee_filter(x, 1), x.astype(np.float32))


@pytest.mark.parametrize("value", [0.0, 0.1, 1e-30, 3e30])
def test_lee_filter_of_constant_image_is_exact(value: float) -> None:
    x = np.full((10, 12), value, dtype=np.float32)
    x[4, 4] = np.nan
    want = np.full(x.shape, np.float32(value))
    want[4, 4] = np.nan
    np.testing.assert_array_equal(lee_filter(x, 3), want)


def test_lee_filter_smooths_speckle_and_keeps_a_bright_target() -> None:
    rng = np.random.default_rng(3)
    x = rng.gamma(5.0, 0.1 / 5.0, size=(60, 60))  # 5-look speckle, homogeneous
    x[30, 30] = 50.0  # a corner reflector
    out = lee_filter(x, 5, enl=5.0)
    assert np.std(out[:20, :20]) < 0.6 * np.std(x[:20, :20])
    # b <= 1 / (1 + 1/enl) = 5/6, so the target keeps at least 5/6 of its excess over the mean
    assert out[30, 30] > 0.8 * 50.0


def test_lee_filter_keeps_nan() -> None:
    x = make_image((15, 15), np.float32, "sparse")
    np.testing.assert_array_equal(np.isnan(lee_filter(x, 3)), np.isnan(x))


@settings(max_examples=40, deadline=None)
@given(
    x=power_images,
    size=st.sampled_from([1, 3, 5]),
    tile=st.tuples(st.integers(1, 10), st.integers(1, 10)),
)
def test_lee_filter_tiles_with_halo_equal_whole_image(
    x: np.ndarray, size: int, tile: tuple[int, int]
) -> None:
    whole = lee_filter(x, size)
    parts = tiled(lambda a: lee_filter(a, size), x, size // 2, tile)
    np.testing.assert_array_equal(parts, whole)


def test_lee_filter_accepts_non_contiguous_input() -> None:
    x = make_image((30, 26), np.float64, "sparse").T
    assert_lee_close(lee_filter(x, 3), lee_filter_reference(np.ascontiguousarray(x), 3), x)


@pytest.mark.parametrize(
    ("kernel", "reference"),
    [
        (lambda a: focal_mean(a, 3), lambda a: focal_mean_reference(a, 3)),
        (lambda a: focal_median(a, 2), lambda a: focal_median_reference(a, 2)),
        (lambda a: lee_filter(a, 3), lambda a: lee_filter_reference(a, 3)),
    ],
    ids=["focal_mean", "focal_median", "lee_filter"],
)
def test_kernels_accept_read_only_input(kernel: Kernel, reference: Kernel) -> None:
    # Zarr and Dask may hand out read-only chunks.
    x = make_image((20, 30), np.float32, "sparse")
    x.setflags(write=False)
    np.testing.assert_allclose(kernel(x), reference(x), rtol=1e-5, equal_nan=True)


# --- bad inputs -------------------------------------------------------------------------------

IMAGE = np.zeros((4, 4), dtype=np.float32)


@pytest.mark.parametrize("radius", [-1, 1.5, 2.0, True, "3", None])
@pytest.mark.parametrize("kernel", [focal_mean, focal_median, disk_offsets])
def test_bad_radius_raises_input_error(kernel: Callable[..., np.ndarray], radius: object) -> None:
    args = (radius,) if kernel is disk_offsets else (IMAGE, radius)
    with pytest.raises(InputError, match="radius"):
        kernel(*args)


def test_focal_median_radius_above_limit_points_to_focal_mean() -> None:
    with pytest.raises(InputError, match="focal_mean"):
        focal_median(IMAGE, MAX_MEDIAN_RADIUS + 1)


@pytest.mark.parametrize(
    "x",
    [np.zeros(5, np.float32), np.zeros((2, 3, 3), np.float32), np.zeros((3, 3), np.int16)],
    ids=["1-D", "3-D", "int16"],
)
@pytest.mark.parametrize(
    "kernel", [lambda a: focal_mean(a, 1), lambda a: focal_median(a, 1), lambda a: lee_filter(a)]
)
def test_bad_image_raises_input_error(kernel: Kernel, x: np.ndarray) -> None:
    with pytest.raises(InputError, match="x"):
        kernel(x)


@pytest.mark.parametrize("size", [0, -3, 2, 4, 3.0, True, "3"])
def test_lee_filter_bad_size_raises_input_error(size: object) -> None:
    with pytest.raises(InputError, match="size"):
        lee_filter(IMAGE, size)  # type: ignore[arg-type]


@pytest.mark.parametrize("enl", [0, -1.0, float("nan"), float("inf"), "5", True, None])
def test_lee_filter_bad_enl_raises_input_error(enl: object) -> None:
    with pytest.raises(InputError, match="enl"):
        lee_filter(IMAGE, 3, enl)  # type: ignore[arg-type]


@pytest.mark.parametrize("kernel", [focal_mean_reference, focal_median_reference])
def test_references_validate_too(kernel: Callable[..., np.ndarray]) -> None:
    with pytest.raises(InputError):
        kernel(IMAGE, -1)


# --- lee_log_filter ---------------------------------------------------------------------------

FLOOR = 1e-6


def assert_lee_log_close(got: np.ndarray, want: np.ndarray, x: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(np.exp(got.astype(np.float64)), np.exp(want.astype(np.float64)),
                               rtol=1e-5 + 1e-6, atol=1e-6 * max(scale_of(x), FLOOR))


@settings(max_examples=80, deadline=None)
@given(x=power_images, size=st.sampled_from([1, 3, 5, 7]), enl=st.floats(0.5, 50.0))
def test_lee_log_filter_matches_reference(x: np.ndarray, size: int, enl: float) -> None:
    assert_lee_log_close(lee_log_filter(x, size, enl, FLOOR),
                         lee_log_filter_reference(x, size, enl, FLOOR), x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nan_pattern", NAN_PATTERNS)
def test_lee_log_filter_is_the_log_of_the_floored_lee_filter(dtype: type, nan_pattern: str
                                                             ) -> None:
    x = make_image((31, 23), dtype, nan_pattern)
    x[0, :4] = [0.0, 1e-9, 2e-6, np.inf]  # under the floor, near it, +inf (log not finite)
    filtered = lee_filter(x, 3)
    floored = np.where(filtered < np.float32(FLOOR), np.float32(FLOOR), filtered)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.log(floored)
    want[~np.isfinite(want)] = np.nan
    got = lee_log_filter(x, 3, 5.0, FLOOR)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=4e-7 * np.nanmax(np.abs(want), initial=1))


@settings(max_examples=40, deadline=None)
@given(
    x=power_images,
    size=st.sampled_from([1, 3, 5]),
    tile=st.tuples(st.integers(1, 10), st.integers(1, 10)),
)
def test_lee_log_filter_tiles_with_halo_equal_whole_image(
    x: np.ndarray, size: int, tile: tuple[int, int]
) -> None:
    whole = lee_log_filter(x, size)
    parts = tiled(lambda a: lee_log_filter(a, size), x, size // 2, tile)
    np.testing.assert_array_equal(parts, whole)


def test_lee_log_filter_writes_into_a_slice_of_a_stack() -> None:
    x = make_image((12, 9), np.float32, "sparse")
    stack = np.full((2, 12, 9), -1.0, np.float32)
    returned = lee_log_filter(x, 3, out=stack[1])
    assert np.shares_memory(returned, stack)
    np.testing.assert_array_equal(stack[1], lee_log_filter(x, 3), strict=False)
    assert (stack[0] == -1.0).all()


@pytest.mark.parametrize("bad", [{"floor": 0.0}, {"floor": float("nan")}, {"floor": -1.0},
                                 {"out": np.empty((3, 3), np.float32)},
                                 {"out": np.empty((12, 9), np.float64)}])
def test_lee_log_filter_refuses_bad_floor_and_out(bad: dict[str, object]) -> None:
    with pytest.raises(InputError):
        lee_log_filter(make_image((12, 9), np.float32, "none"), 3, **bad)  # type: ignore[arg-type]
