"""The CPU backend: NumPy arrays and the parallel Numba kernels of generated/cpu/.

Outputs of 4 MiB or more come from ``softce.buffers`` (pages already mapped); a layout copy is
made only when the class axis cannot be addressed as C-contiguous rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import buffers
from .backend import Backend, Flat
from .checks import float_dtype
from .half import assign, is_bfloat16
from .signature import Library


@dataclass(frozen=True)
class Rows:
    """A (rows, n) C-contiguous view (or copy) of an array with its class axes moved last and
    flattened together (n = the product of their lengths; 1 with no class axes, a 0-d array)."""

    data: np.ndarray
    shape: tuple[int, ...]  # the original shape
    axes: tuple[int, ...]  # the class axes, sorted

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(s for i, s in enumerate(self.shape) if i not in self.axes)

    def restore(self, result: np.ndarray) -> np.ndarray:
        """(rows, n) back to the original shape and axis order."""
        moved = result.reshape(self.batch_shape + tuple(self.shape[a] for a in self.axes))
        last = tuple(range(len(self.shape) - len(self.axes), len(self.shape)))
        return moved if last == self.axes else np.moveaxis(moved, last, self.axes)

    def restore_batch(self, result: np.ndarray) -> np.ndarray:
        """(rows,) back to the shape without the class axes."""
        return result.reshape(self.batch_shape)


KERNELS = Library("cpu")


class CPU(Backend):
    """NumPy arrays in, NumPy arrays out."""

    name = "cpu"
    half_kernels = True

    def float_array(self, value: object, name: str, half: bool = False) -> np.ndarray:
        if isinstance(value, (str, bytes)):
            raise TypeError(f"{name} must be a float32 or float64 array, got "
                            f"{type(value).__name__}")
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a float32 or float64 array: {exc}") from None
        dt = float_dtype(arr.dtype, name)
        if arr.dtype == dt or half and self.half_kernels:
            return arr
        return self.cast(arr, dt)

    def operand(self, value: object) -> np.ndarray:
        return np.asarray(value)

    def describe(self, value: object) -> tuple[np.dtype, tuple[int, ...]]:
        arr = np.asarray(value)
        return arr.dtype, arr.shape

    def to_host(self, value: object) -> np.ndarray:
        return np.asarray(value)

    def from_host(self, arr: np.ndarray) -> np.ndarray:
        # kernels' signatures take writeable arrays; a broadcast view is read-only
        flat = np.ascontiguousarray(arr)
        return flat if flat.flags.writeable else flat.copy()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return buffers.empty(shape, dtype)

    def cast(self, arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
        if is_bfloat16(arr.dtype) != is_bfloat16(dtype):  # bits <-> values
            new = np.empty(arr.shape, dtype)
            assign(new, arr)
            return new
        return arr.astype(dtype, copy=False)

    def reshape(self, arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return arr.reshape(shape)

    def to_rows(self, arr: np.ndarray, axes: tuple[int, ...]) -> Rows:
        last = tuple(range(arr.ndim - len(axes), arr.ndim))
        # a view; C-contiguous when the axes already are
        moved = arr if last == axes else np.moveaxis(arr, axes, last)
        n = math.prod(arr.shape[a] for a in axes)
        rows = math.prod(moved.shape[:arr.ndim - len(axes)])
        return Rows(np.ascontiguousarray(moved).reshape(rows, n), arr.shape, axes)

    def to_flat(self, arr: np.ndarray) -> Flat:
        return Flat(self.from_host(arr).reshape(-1), arr.shape, np.reshape)

    def flatten(self, arr: np.ndarray) -> np.ndarray:
        return arr.reshape(-1)

    def check_out(self, out: object, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        if out.shape != shape:
            raise ValueError(f"out has shape {out.shape}, expected {shape}")
        if out.dtype != dtype:
            raise TypeError(f"out has dtype {out.dtype}, expected {dtype}")
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        return out

    def check_no_partial_overlap(self, out: np.ndarray, *inputs: tuple[str, object]) -> None:
        for name, value in inputs:
            arr = np.asarray(value)
            exact = (out.__array_interface__["data"][0] == arr.__array_interface__["data"][0]
                     and out.strides == arr.strides and out.shape == arr.shape)
            if not exact and np.shares_memory(out, arr):
                raise ValueError(f"out overlaps {name} without being the same array; pass "
                                 f"out={name} for in-place, or a separate buffer")

    def direct_view(self, out: np.ndarray | None, layout: Rows | Flat) -> np.ndarray | None:
        if out is None or not out.flags.c_contiguous:
            return None
        ndim = len(layout.shape)
        if isinstance(layout, Rows) and layout.axes != tuple(range(ndim - len(layout.axes),
                                                                  ndim)):
            return None  # the kernel writes rows with the class axes last
        return out.reshape(layout.data.shape)

    def finish(self, layout: Rows | Flat, dest: np.ndarray, direct: np.ndarray | None,
               out: object, checked_out: np.ndarray | None) -> np.ndarray:
        if checked_out is None:
            return layout.restore(dest)
        if direct is None:
            assign(checked_out, layout.restore(dest))
        return checked_out

    def launch(self, kernel_name: str, dtype: np.dtype, **args: object) -> None:
        kernel, ordered = KERNELS.call(kernel_name, dtype, args)
        kernel(*ordered)

    def labels_in_range(self, labels: np.ndarray, n: int) -> bool:
        return not labels.size or (int(labels.min()) >= 0 and int(labels.max()) < n)

    def zero_uncounted(self, counted: np.ndarray, loss: np.ndarray,
                       grad: np.ndarray | None = None) -> None:
        ignored = counted == 0
        loss[ignored] = 0
        if grad is not None:
            grad[ignored] = 0

    def total(self, values: np.ndarray, divisor: float) -> np.ndarray:
        return values.sum(dtype=values.dtype) / values.dtype.type(divisor)

    def scalar(self, value: float, dtype: np.dtype) -> np.ndarray:
        return np.dtype(dtype).type(value)


BACKEND = CPU()
