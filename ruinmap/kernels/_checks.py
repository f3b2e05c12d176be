"""Validation and dtype rules shared by every kernel, applied once at the public boundary.

Kernels take float32 or float64 images (2-D) or stacks (3-D, axis 0 = time or band), in any
memory layout. Integer and boolean inputs are refused rather than silently cast, because a
uint16 reflectance or an int16 dB image almost always needs scaling the caller knows and we do not.
"""

from __future__ import annotations

import numpy as np

from ruinmap.errors import InputError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(x: object, name: str, ndim: int) -> np.ndarray:
    """Return `x` as a float32/float64 NumPy array with `ndim` dimensions, or raise InputError."""
    arr = np.asarray(x)
    if arr.dtype not in FLOAT_DTYPES:
        raise InputError(
            f"{name}: dtype {arr.dtype} is not supported; kernels take float32 or float64 "
            f"(cast with {name}.astype(np.float32), applying any scale factor first)"
        )
    if arr.ndim != ndim:
        what = {2: "a 2-D image (y, x)", 3: "a 3-D stack (time or band, y, x)"}.get(
            ndim, f"{ndim}-D"
        )
        raise InputError(f"{name}: expected {what}, got {arr.ndim}-D with shape {arr.shape}")
    return arr


def as_image(x: object, name: str = "x") -> np.ndarray:
    """A 2-D float image."""
    return as_float_array(x, name, 2)


def as_stack(x: object, name: str = "stack") -> np.ndarray:
    """A 3-D float stack, axis 0 = time or band."""
    return as_float_array(x, name, 3)


def same_shape(**arrays: np.ndarray) -> None:
    """Raise InputError unless every array has the same shape."""
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise InputError(f"shapes differ: {listed}; the inputs must be on one grid")


def same_image_shape(**stacks: np.ndarray) -> None:
    """Raise InputError unless every stack has the same (y, x) shape; axis 0 may differ."""
    shapes = {name: a.shape[1:] for name, a in stacks.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise InputError(f"image shapes (y, x) differ: {listed}; the inputs must be on one grid")


def non_negative_int(value: object, name: str) -> int:
    """Return `value` as an int >= 0, or raise InputError (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise InputError(f"{name} must be >= 0, got {value}")
    return int(value)


def positive_int(value: object, name: str) -> int:
    """Return `value` as an int >= 1, or raise InputError."""
    result = non_negative_int(value, name)
    if result < 1:
        raise InputError(f"{name} must be >= 1, got {value}")
    return result


def contiguous_image(x: object) -> np.ndarray:
    """A C-contiguous float32/float64 image: one compiled variant per dtype, unit-stride rows."""
    img = as_image(x, "x")
    return img if img.flags.c_contiguous else np.ascontiguousarray(img)
