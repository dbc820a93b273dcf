"""Device arrays and matrix products for ``softce.linear``'s chunk loop.

``softce.linear_cross_entropy`` given numba device arrays, or CuPy arrays and other
``__cuda_array_interface__`` objects (viewed without a copy), keeps the input, weight, bias,
probabilities, logits chunk and gradients on the device: each chunk's logits and the
gradients' products by ``softce.cuda.linalg.matmul``, softce's CUDA cross-entropy kernels on
each chunk in place, the updates of the chunk loop by the kernels of ``softce.cuda.linalg``.
Labels and class weights are checked on the host, as the NumPy path does. Results are numba
device arrays, as every CUDA call of softce returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from softce.linear import Products

from . import device as dev
from . import linalg
from .allocation import device_copy
from .streams import host_copy


def _host(a: Any) -> np.ndarray:
    """A device array's elements on the host, in C order (1-D)."""
    return np.asarray(host_copy(dev.contiguous_flat(a)))


class CudaProducts(Products):
    """A plan's arrays as numba device arrays, products by ``softce.cuda.linalg``."""

    backend = "cuda"

    def asarray(self, host: np.ndarray, like: Any) -> Any:
        return device_copy(np.asarray(host, like.dtype))

    def zeros(self, shape: tuple[int, ...], like: Any) -> Any:
        arr = dev.empty(shape, like.dtype)
        linalg.fill(arr, 0.0)
        return arr

    def empty(self, shape: tuple[int, ...], like: Any) -> Any:
        return dev.empty(shape, like.dtype)

    def reshape(self, a: Any, shape: tuple[int, ...]) -> Any:
        size = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        shape = tuple(a.size // max(size, 1) if s == -1 else s for s in shape)
        if a.size and not dev.is_contiguous(a):
            a = dev.gather_c(a)
        return dev.reshape_c(a, shape) if a.size else dev.empty(shape, a.dtype)

    def matmul(self, a: Any, b: Any, out: Any, accumulate: bool = False) -> None:
        linalg.matmul(a, b, out, accumulate)

    def transpose(self, a: Any) -> Any:
        return dev.view(a, tuple(a.shape)[::-1], tuple(a.strides)[::-1])

    def moveaxis(self, a: Any, source: int, destination: int) -> Any:
        source, destination = source % a.ndim, destination % a.ndim
        order = [q for q in range(a.ndim) if q != source]
        order.insert(destination, source)
        return dev.view(a, tuple(a.shape[q] for q in order), tuple(a.strides[q] for q in order))

    def add(self, dest: Any, src: Any) -> None:
        linalg.add(dest, src)

    def add_column_sums(self, g: Any, dest: Any) -> None:
        linalg.add_column_sums(g, dest)

    def add_outer(self, g: Any, h: Any, dest: Any) -> None:
        linalg.matmul(linalg.as_matrix(g, column=True), linalg.as_matrix(h), dest,
                      accumulate=True)

    def add_gt_h(self, g: Any, h: Any, dest: Any) -> None:
        """dest += G^T h (one product accumulating into dest, no temporary)."""
        linalg.matmul(self.transpose(g), h, dest, accumulate=True)

    def assign(self, dest: Any, src: object) -> None:
        flat = dev.cast(self.wrap(src, dest), dest.dtype)
        dev.scatter_into(flat, dest)

    def set_item(self, arr: Any, index: tuple[int, ...], value: float) -> None:
        dev.scatter_into(device_copy(np.array([value], arr.dtype)),
                         arr[tuple(slice(q, q + 1) for q in index)])

    def any(self, a: Any) -> bool:
        return bool(_host(a).any())

    def smoothed_target(self, y: Any, source: Any | None, label: int | None, eps: float,
                        n_classes: int, weights: Any | None) -> None:
        linalg.smoothed_target(y, source, label, eps, n_classes, weights)

    def contiguous(self, a: Any) -> Any:
        return a if dev.is_contiguous(a) else dev.reshape_c(dev.gather_c(a), tuple(a.shape))

    def sum64(self, a: Any) -> float:
        return float(_host(a).sum(dtype=np.float64))

    def item(self, value: object) -> float:
        flat = _host(dev.as_device(value)) if dev.is_device_array(value) else np.asarray(value)
        return float(flat.reshape(-1)[0])

    def wrap(self, result: object, like: Any) -> Any:
        if dev.is_device_array(result):
            return dev.as_device(result)
        return device_copy(np.asarray(result, like.dtype))


CUDA_PRODUCTS = CudaProducts()
