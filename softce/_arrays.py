"""Argument checks and the (rows, n) layout every row kernel takes.

Kernels do not bounds-check, so everything a kernel could misread is rejected here first,
with a ValueError or TypeError that names the argument.
"""

from __future__ import annotations

import importlib
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
DTYPE_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def on_device(x: object) -> bool:
    """Whether x lives on a GPU: it exposes ``__cuda_array_interface__`` (numba, CuPy, PyTorch
    CUDA tensors) or is a numba device array (the CUDA simulator's included)."""
    return bool(getattr(type(x), "__cuda_ndarray__", False)) or hasattr(
        x, "__cuda_array_interface__")


def device_array(x: object) -> Any:
    """A numba device array viewing x's memory, no copy (x from numba, CuPy or PyTorch)."""
    return importlib.import_module("softce.cuda._device").as_device(x)


def host_values(x: object) -> np.ndarray:
    """x as a NumPy array: a CUDA array is copied to the host, anything else as np.asarray."""
    return device_array(x).copy_to_host() if on_device(x) else np.asarray(x)


def as_float_array(value: object, name: str) -> np.ndarray:
    """A float32 or float64 array; float16 is upcast to float32, anything else is refused."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a float32 or float64 array, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be a float32 or float64 array: {exc}") from None
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}")
    return arr


def check_axis(axis: object, ndim: int, name: str = "axis") -> int:
    """Normalise a class axis; 0-d arrays have none."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
    if ndim == 0:
        raise ValueError(f"{name}={axis} needs an array with at least one dimension, got a 0-d "
                         "array")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array of {ndim} dimensions")
    return int(axis) % ndim


@dataclass(frozen=True)
class Rows:
    """A (rows, n) C-contiguous view (or copy) of an array with its class axis moved last."""

    data: np.ndarray
    shape: tuple[int, ...]  # the original shape
    axis: int

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.shape[: self.axis] + self.shape[self.axis + 1:]

    def restore(self, flat: np.ndarray) -> np.ndarray:
        """(rows, n) back to the original shape and axis order."""
        moved = flat.reshape(self.batch_shape + (self.shape[self.axis],))
        return np.moveaxis(moved, -1, self.axis)

    def restore_batch(self, flat: np.ndarray) -> np.ndarray:
        """(rows,) back to the shape without the class axis."""
        return flat.reshape(self.batch_shape)


def to_rows(arr: np.ndarray, axis: int) -> Rows:
    """Move the class axis last and flatten the rest; copies only when the layout needs it."""
    moved = np.moveaxis(arr, axis, -1)
    n = arr.shape[axis]
    rows = int(np.prod(moved.shape[:-1], dtype=np.int64))
    return Rows(np.ascontiguousarray(moved).reshape(rows, n), arr.shape, axis)


def rows_view_of(out: np.ndarray | None, rows: Rows) -> np.ndarray | None:
    """out itself as (rows, n) when it can take the kernel's writes directly, else None."""
    if out is None or rows.axis != len(rows.shape) - 1 or not out.flags.c_contiguous:
        return None
    return out.reshape(rows.data.shape)


def check_out(out: object, shape: tuple[int, ...], dtype: np.dtype, name: str = "out"
              ) -> np.ndarray:
    """A caller's output buffer: an ndarray of the exact shape and dtype, writeable."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def check_no_partial_overlap(out: np.ndarray, *inputs: tuple[str, np.ndarray]) -> None:
    """out may be exactly an input (in place) but must not partly overlap one."""
    for name, arr in inputs:
        exact = (out.__array_interface__["data"][0] == arr.__array_interface__["data"][0]
                 and out.strides == arr.strides and out.shape == arr.shape)
        if not exact and np.shares_memory(out, arr):
            raise ValueError(f"out overlaps {name} without being the same array; pass "
                             f"out={name} for in-place, or a separate buffer")


def write_result(result: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return result
    if result is not out:
        out[...] = result
    return out
