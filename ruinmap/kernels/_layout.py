"""Memory-layout helpers every kernel family shares: the jit options of the cores, unit-stride
rows (`contiguous_row`, `unit_stride_x`), checked output buffers (`output_array`) and one dtype
per core call (`core_inputs`).

numba compiles non-contiguous ('A') arrays with run-time strides, which LLVM does not
vectorise; the cores therefore read and write every row through `contiguous_row`, and the
public functions guarantee the unit stride it relies on with the helpers here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
from numba import njit, types
from numba.core import extending
from numba.core.imputils import impl_ret_borrowed

from ruinmap.errors import InputError

# The jit options of every core. error_model="numpy": a float division by zero yields inf/NaN
# instead of raising, which is what lets LLVM vectorise loops that divide. "contract" only fuses
# a*b+c into one FMA (one rounding instead of two); no flag here assumes away NaN or reorders
# sums, so the NaN rules hold.
kernel_jit = njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})


@extending.intrinsic
def _contiguous_row(typingctx, row):  # type: ignore[no-untyped-def]
    """Retype a 1-D view whose stride is one item as C-contiguous (no copy, no check).

    numba compiles non-contiguous ('A') arrays with run-time strides, which LLVM does not
    vectorise; a row of a row strip, a tile window or a time slice of a stack strip has unit
    stride along x even when the whole array is 'A', so each row is retyped before its loop.
    Callers guarantee the unit stride: `unit_stride_x` for inputs, `output_array` for outputs.
    """
    if not isinstance(row, types.Array) or row.ndim != 1:
        return None
    sig = row.copy(layout="C")(row)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return impl_ret_borrowed(context, builder, signature.return_type, args[0])

    return sig, codegen


# A typed view of the intrinsic for mypy; numba sees the intrinsic object itself.
contiguous_row = cast("Callable[[np.ndarray], np.ndarray]", _contiguous_row)


def unit_stride_x(arr: np.ndarray) -> np.ndarray:
    """`arr` itself if its last axis has unit stride, else a C-contiguous copy (transposes,
    x steps): the cores read every row through `contiguous_row`."""
    if arr.shape[-1] <= 1 or arr.strides[-1] == arr.itemsize:
        return arr
    return np.ascontiguousarray(arr)


def output_array(out: np.ndarray | None, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A new `dtype` array of `shape`, or `out` checked to be one the cores can write.

    Passing `out` lets a caller reuse one buffer across calls: a fresh output's pages are
    zeroed by the OS on first touch, which costs about as much as a fast kernel itself
    (64 MB of float32 output: ~4 ms on 2 cores, against ~3.6 ms for `to_db`).
    """
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != shape:
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise InputError(
            f"out: expected a {np.dtype(dtype)} array of shape {shape}, got {got}; "
            "leave out=None to get a new array"
        )
    if not out.flags.writeable:
        raise InputError("out: the array is read-only; pass a writeable array")
    if out.ndim and out.shape[-1] > 1 and out.strides[-1] != out.itemsize:
        raise InputError(
            f"out: its last axis has stride {out.strides[-1]} bytes; it must be contiguous "
            "along x (e.g. a row strip or window of a C-ordered array)"
        )
    return out


def core_inputs(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays as the cores take them: one dtype (mixed float32/float64 become float64, so
    each core is compiled for one dtype) and unit stride along x."""
    if len({a.dtype for a in arrays}) == 1:
        return [unit_stride_x(a) for a in arrays]
    return [unit_stride_x(a.astype(np.float64)) for a in arrays]


