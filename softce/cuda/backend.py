"""The CUDA backend: device arrays and the kernels of generated/cuda/.

Inputs: numba device arrays or any object exposing ``__cuda_array_interface__`` (CuPy arrays,
PyTorch CUDA tensors), viewed without a copy; host arguments (targets, upstream gradients,
weights) are copied to the device. Results are numba device arrays (with ``out=``, ``out``
itself). Labels are range-checked on the device: one index comes back, never the logits.

16-bit logits of the kernels with 16-bit variants are read as they are, as on the CPU
(``softce.half``): float16 device arrays, and bfloat16 ones as uint16 bit patterns of dtype
``softce.half.BFLOAT16`` (a PyTorch bfloat16 tensor viewed as int16, then as that dtype);
elsewhere they are widened to float32 on the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from softce.backend import Backend, Flat
from softce.checks import float_dtype
from softce.half import is_bfloat16
from softce.signature import Library

from . import device as dev
from . import launch
from .allocation import device_copy
from .label_checks import deferred_handler
from .streams import current, host_copy

KERNELS = Library("cuda")


class CUDA(Backend):
    """Device arrays in, numba device arrays out."""

    name = "cuda"
    half_kernels = True

    def float_array(self, value: object, name: str, half: bool = False) -> Any:
        arr = self.operand(value)
        dt = float_dtype(arr.dtype, name)
        if arr.dtype == dt or half and self.half_kernels:
            return arr
        return self.cast(arr, dt)

    def operand(self, value: object) -> Any:
        if dev.is_device_array(value):
            return dev.as_device(value)
        if isinstance(value, (str, bytes)):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        return device_copy(np.asarray(value))

    def describe(self, value: object) -> tuple[np.dtype, tuple[int, ...]]:
        arr = dev.as_device(value) if dev.is_device_array(value) else np.asarray(value)
        return np.dtype(arr.dtype), tuple(arr.shape)

    def to_host(self, value: object) -> np.ndarray:
        if dev.is_device_array(value):
            return np.asarray(host_copy(dev.as_device(value)))
        return np.asarray(value)

    def from_host(self, arr: np.ndarray) -> Any:
        return device_copy(arr)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        return dev.empty(shape, dtype)

    def cast(self, arr: Any, dtype: np.dtype) -> Any:
        if arr.dtype == dtype and is_bfloat16(arr.dtype) == is_bfloat16(dtype):
            return arr
        return dev.reshape_c(dev.cast(arr, dtype), tuple(arr.shape))

    def reshape(self, arr: Any, shape: tuple[int, ...]) -> Any:
        return dev.reshape_c(arr, shape)

    def to_rows(self, arr: Any, axes: tuple[int, ...]) -> dev.DeviceRows:
        return dev.to_rows(arr, axes)

    def to_flat(self, arr: Any) -> Flat:
        return Flat(dev.contiguous_flat(arr), tuple(arr.shape), dev.reshape_c)

    def flatten(self, arr: Any) -> Any:
        return dev.contiguous_flat(arr)

    def check_out(self, out: object, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        if not dev.is_device_array(out):
            raise TypeError(f"out must be a CUDA array (like the input), got "
                            f"{type(out).__name__}")
        arr = dev.as_device(out)
        if tuple(arr.shape) != tuple(shape):
            raise ValueError(f"out has shape {tuple(arr.shape)}, expected {tuple(shape)}")
        if arr.dtype != dtype:
            raise TypeError(f"out has dtype {arr.dtype}, expected {dtype}")
        if dev.read_only(out):
            raise ValueError("out is read-only")
        return arr

    def check_no_partial_overlap(self, out: Any, *inputs: tuple[str, object]) -> None:
        for name, value in inputs:
            if not dev.is_device_array(value):
                continue  # host data cannot overlap device memory
            arr = dev.as_device(value)
            if not dev.same_array(out, arr) and dev.overlaps(out, arr):
                raise ValueError(f"out overlaps {name} without being the same array; pass "
                                 f"out={name} for in-place, or a separate buffer")

    def direct_view(self, out: Any, layout: dev.DeviceRows | Flat) -> Any:
        if out is None:
            return None
        if isinstance(layout, Flat):
            if not out.size or not dev.is_contiguous(out):
                return None
            return dev.view(out, (out.size,), (out.dtype.itemsize,))
        return dev.rows_view_of(out, layout)

    def finish(self, layout: dev.DeviceRows | Flat, dest: Any, direct: Any, out: object,
               checked_out: Any) -> Any:
        if direct is not None:
            return out
        if checked_out is None:
            return layout.restore(dest)
        # the kernel's rows in out's dtype (bfloat16 bit patterns converted by value)
        src = dev.cast(dest, checked_out.dtype)
        if isinstance(layout, Flat):
            dev.scatter_into(src, checked_out)
        else:
            shape, strides = dev.moved_last(checked_out, layout.axes)
            dev.scatter_into(src, dev.view(checked_out, shape, strides))
        return out

    def launch(self, kernel_name: str, dtype: np.dtype, **args: object) -> None:
        kernel, ordered = KERNELS.call(kernel_name, dtype, args)
        table = KERNELS.table(kernel_name)
        rows = next((a for p, a in zip(table, ordered) if p.role == "rows"), None)
        if rows is not None:  # a thread group per row
            n_rows, n = rows.shape
            pairs = any(p.role == "out_pairs" for p in table)
            if n_rows:
                grid, block = launch.row_launch(n_rows, n * n if pairs else n)
                kernel[grid, block, current()](*ordered)
            return
        size = max(a.size for p, a in zip(table, ordered) if p.role != "param")
        if size:  # a thread per element, in grid strides
            grid, block = launch.flat_launch(size)
            kernel[grid, block, current()](*ordered)

    def labels_in_range(self, labels: Any, n: int) -> bool:
        return dev.first_bad_label(labels, n) is None

    def device_mask(self) -> bool:
        return deferred_handler() is not None

    def mask_labels(self, labels: Any, ignore_index: int, class_weights: Any,
                    dtype: np.dtype) -> tuple[Any, Any, Any]:
        safe, counted, divisor, bad = dev.mask_labels(labels, ignore_index, class_weights,
                                                      dtype)
        deferred_handler()(bad)
        return safe, counted, divisor

    def divide(self, values: Any, divisor: Any, empty: float) -> None:
        dev.divide(values, divisor, empty)

    def divided(self, value: float, divisor: Any, size: int, dtype: np.dtype) -> Any:
        return dev.divided(value, divisor, size, dtype)

    def total_over(self, values: Any, divisor: Any, empty: float) -> Any:
        return dev.total_over(values, divisor, empty)

    def zero_uncounted(self, counted: Any, loss: Any, grad: Any = None) -> None:
        dev.zero_ignored(counted, loss, grad)

    def total(self, values: Any, divisor: float) -> Any:
        return dev.total(values, divisor)

    def scalar(self, value: float, dtype: np.dtype) -> Any:
        return dev.scalar(value, dtype)


BACKEND = CUDA()
