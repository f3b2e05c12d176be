"""Block reductions for damage grids: the kernel against its pad-and-reshape reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruinmap.errors import InputError
from ruinmap.kernels.grid import HOWS, block_reduce, block_reduce_reference

THRESHOLD_HOWS = ("count_above", "fraction_above")
EXACT_HOWS = ("count", "max", "min", "count_above")


def threshold_for(how: str) -> float | None:
    return 0.5 if how in THRESHOLD_HOWS else None


def assert_grid_close(got: np.ndarray, want: np.ndarray, how: str) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    if how in EXACT_HOWS:
        np.testing.assert_array_equal(got, want)
    else:
        # Both accumulate in float64 and round once to float32; only summation order differs.
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def make_image(
    rng: np.random.Generator, shape: tuple[int, int], dtype: str, nan_pattern: str
) -> np.ndarray:
    x = rng.uniform(-1.0, 2.0, shape).astype(dtype)
    if nan_pattern == "some":
        x[rng.random(shape) < 0.3] = np.nan
    elif nan_pattern == "all":
        x[:] = np.nan
    elif nan_pattern == "blocks":  # whole NaN rows and columns, so some blocks are all NaN
        x[::3] = np.nan
        x[:, 1::2] = np.nan
    return x


@st.composite
def images(draw: st.DrawFn) -> np.ndarray:
    shape = (draw(st.integers(0, 23)), draw(st.integers(0, 23)))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    nan_pattern = draw(st.sampled_from(["none", "some", "all", "blocks"]))
    x = make_image(
        np.random.default_rng(draw(st.integers(0, 2**32 - 1))), shape, dtype, nan_pattern
    )
    layout = draw(st.sampled_from(["C", "F", "transposed"]))
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "transposed":
        return np.ascontiguousarray(x.T).T
    return x


@settings(max_examples=100, deadline=None)
@given(images(), st.integers(1, 7), st.sampled_from(HOWS), st.data())
def test_block_reduce_matches_reference(
    x: np.ndarray, factor: int, how: str, data: st.DataObject
) -> None:
    offset = (data.draw(st.integers(0, factor - 1)), data.draw(st.integers(0, factor - 1)))
    kw = {"threshold": threshold_for(how), "block_offset": offset}
    assert_grid_close(
        block_reduce(x, factor, how, **kw), block_reduce_reference(x, factor, how, **kw), how
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("shape", [(1, 1), (4, 8), (5, 7), (13, 3)])
def test_block_reduce_shapes_dtypes_and_hows_match_reference(
    dtype: str, how: str, shape: tuple[int, int]
) -> None:
    x = make_image(np.random.default_rng(0), shape, dtype, "some")
    got = block_reduce(x, 4, how, threshold_for(how))
    assert got.shape == (-(-shape[0] // 4), -(-shape[1] // 4))
    assert_grid_close(got, block_reduce_reference(x, 4, how, threshold_for(how)), how)


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
@pytest.mark.parametrize("how", HOWS)
def test_block_reduce_empty_image_gives_empty_grid(shape: tuple[int, int], how: str) -> None:
    got = block_reduce(np.zeros(shape, np.float32), 3, how, threshold_for(how), block_offset=(1, 1))
    assert got.shape == (0 if shape[0] == 0 else 2, 0 if shape[1] == 0 else 2)
    assert got.dtype == np.float32


def test_block_reduce_partial_edge_blocks_use_the_pixels_they_have() -> None:
    x = np.arange(15, dtype=np.float64).reshape(3, 5)
    np.testing.assert_array_equal(
        block_reduce(x, 2, "mean"), [[(0 + 1 + 5 + 6) / 4, 5.0, 6.5], [10.5, 12.5, 14.0]]
    )
    np.testing.assert_array_equal(block_reduce(x, 2, "count"), [[4, 4, 2], [2, 2, 1]])


@pytest.mark.parametrize(
    ("how", "want"),
    [
        ("mean", np.nan),
        ("max", np.nan),
        ("min", np.nan),
        ("fraction_above", np.nan),
        ("sum", 0.0),
        ("count", 0.0),
        ("count_above", 0.0),
    ],
)
def test_block_reduce_block_without_valid_pixels(how: str, want: float) -> None:
    x = np.full((4, 4), np.nan, np.float32)
    x[2:, 2:] = 1.0
    got = block_reduce(x, 2, how, threshold_for(how))
    np.testing.assert_array_equal(got[0, 0], np.float32(want))
    assert not np.isnan(got[1, 1])


def test_block_reduce_fraction_above_counts_only_valid_pixels_strictly_above() -> None:
    x = np.array([[0.5, 0.7], [np.nan, 0.2]], np.float32)
    assert block_reduce(x, 2, "fraction_above", 0.5)[0, 0] == np.float32(1 / 3)
    assert block_reduce(x, 2, "count_above", 0.5)[0, 0] == 1.0


def test_block_reduce_threshold_is_compared_with_the_exact_pixel_value() -> None:
    # float32(0.1) is 0.10000000149..., strictly above the float64 threshold 0.1.
    x = np.full((2, 2), 0.1, np.float32)
    assert block_reduce(x, 2, "fraction_above", 0.1)[0, 0] == 1.0
    assert block_reduce_reference(x, 2, "fraction_above", 0.1)[0, 0] == 1.0


def test_block_reduce_factor_one_keeps_every_pixel() -> None:
    x = make_image(np.random.default_rng(1), (6, 5), "float32", "some")
    np.testing.assert_array_equal(block_reduce(x, 1, "mean"), x)
    np.testing.assert_array_equal(block_reduce(x, 1, "count"), (~np.isnan(x)).astype(np.float32))


def test_block_reduce_factor_larger_than_image_gives_one_cell() -> None:
    x = make_image(np.random.default_rng(2), (5, 3), "float64", "some")
    got = block_reduce(x, 100, "max")
    assert got.shape == (1, 1) and got[0, 0] == np.float32(np.nanmax(x))


@st.composite
def aligned_cuts(draw: st.DrawFn, n: int, factor: int) -> list[int]:
    inner = draw(st.lists(st.integers(0, -(-n // factor)), max_size=3))
    return [0, *sorted(min(k * factor, n) for k in inner), n]


@settings(max_examples=60, deadline=None)
@given(images(), st.integers(1, 6), st.sampled_from(HOWS), st.data())
def test_block_reduce_tiles_aligned_to_factor_equal_whole_image(
    x: np.ndarray, factor: int, how: str, data: st.DataObject
) -> None:
    rows = data.draw(aligned_cuts(x.shape[0], factor))
    cols = data.draw(aligned_cuts(x.shape[1], factor))
    thr = threshold_for(how)
    tiled = np.block(
        [
            [block_reduce(x[r0:r1, c0:c1], factor, how, thr) for c0, c1 in itertools.pairwise(cols)]
            for r0, r1 in itertools.pairwise(rows)
        ]
    )
    whole = block_reduce(x, factor, how, thr)
    if whole.size:
        np.testing.assert_array_equal(tiled, whole)  # bit for bit, NaN where NaN


@settings(max_examples=60, deadline=None)
@given(images(), st.integers(1, 6), st.data())
def test_block_reduce_partials_of_unaligned_chunks_merge_to_whole_image(
    x: np.ndarray, factor: int, data: st.DataObject
) -> None:
    # The pipeline's recipe for chunks not aligned to the factor (see grid.py docstring).
    h, w = x.shape
    r_cut = data.draw(st.integers(0, h))
    c_cut = data.draw(st.integers(0, w))
    nby, nbx = -(-h // factor), -(-w // factor)
    merged = {how: np.zeros((nby, nbx), np.float64) for how in ("sum", "count", "count_above")}
    merged["max"] = np.full((nby, nbx), np.nan)
    for r0, r1 in ((0, r_cut), (r_cut, h)):
        for c0, c1 in ((0, c_cut), (c_cut, w)):
            chunk = x[r0:r1, c0:c1]
            if chunk.size == 0:
                continue
            kw = {"block_offset": (r0 % factor, c0 % factor)}
            part = {
                how: block_reduce(chunk, factor, how, threshold_for(how), **kw)
                for how in ("sum", "count", "count_above", "max")
            }
            cells = np.s_[r0 // factor : r0 // factor + part["sum"].shape[0],
                          c0 // factor : c0 // factor + part["sum"].shape[1]]  # fmt: skip
            for how in ("sum", "count", "count_above"):
                merged[how][cells] += part[how]
            merged["max"][cells] = np.fmax(merged["max"][cells], part["max"])
    np.testing.assert_array_equal(merged["count"], block_reduce(x, factor, "count"))
    np.testing.assert_array_equal(merged["max"].astype(np.float32), block_reduce(x, factor, "max"))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(merged["count"] > 0, merged["sum"] / merged["count"], np.nan)
        frac = np.where(merged["count"] > 0, merged["count_above"] / merged["count"], np.nan)
    np.testing.assert_allclose(mean, block_reduce(x, factor, "mean"), rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(
        frac, block_reduce(x, factor, "fraction_above", 0.5), rtol=1e-6, atol=1e-7
    )


# --- bad inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0, -2, 2.0, True, "4", None])
def test_block_reduce_refuses_bad_factor(factor: object) -> None:
    with pytest.raises(InputError, match="factor"):
        block_reduce(np.zeros((4, 4)), factor, "mean")  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["median", "MEAN", "", None])
def test_block_reduce_refuses_unknown_how(how: object) -> None:
    with pytest.raises(InputError, match="how must be one of"):
        block_reduce(np.zeros((4, 4)), 2, how)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", THRESHOLD_HOWS)
def test_block_reduce_refuses_missing_threshold(how: str) -> None:
    with pytest.raises(InputError, match="needs a threshold"):
        block_reduce(np.zeros((4, 4)), 2, how)


@pytest.mark.parametrize("threshold", [float("nan"), "0.5", True])
def test_block_reduce_refuses_bad_threshold(threshold: object) -> None:
    with pytest.raises(InputError, match="threshold"):
        block_reduce(np.zeros((4, 4)), 2, "fraction_above", threshold)  # type: ignore[arg-type]


def test_block_reduce_refuses_threshold_it_would_ignore() -> None:
    with pytest.raises(InputError, match="threshold applies only"):
        block_reduce(np.zeros((4, 4)), 2, "mean", 0.5)


@pytest.mark.parametrize("offset", [(2, 0), (0, 5), (-1, 0), (0,), 3, (0.0, 1)])
def test_block_reduce_refuses_bad_block_offset(offset: object) -> None:
    with pytest.raises(InputError, match="block_offset"):
        block_reduce(np.zeros((4, 4)), 2, "mean", block_offset=offset)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((4, 4), np.int16), "dtype int16"),
        (np.zeros((2, 4, 4), np.float32), "2-D"),
        (np.zeros(4, np.float32), "2-D"),
    ],
)
def test_block_reduce_refuses_bad_arrays(x: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        block_reduce(x, 2, "mean")
