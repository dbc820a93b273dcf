"""torch's arrays and matrix products for ``softce.linear``'s chunk loop.

``softce.linear.LinearPlan`` runs on NumPy arrays by default; given ``TORCH`` it keeps the
input, weight, bias, probabilities and results as tensors on their device, computes each
chunk's logits and the gradients' products with ``torch.matmul`` (BLAS on the CPU, cuBLAS on
a GPU), and hands each chunk to softce's cross-entropy kernels as a view
(``softce.torch.arrays.array``: NumPy for a CPU tensor, a numba device array for a CUDA one).
Labels and class weights are checked on the host, as the NumPy path does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from softce.linear import Products

from .arrays import array, empty, tensor


class TorchProducts(Products):
    """A plan's arrays as tensors on their device, products by torch."""

    def float_array(self, value: object, name: str) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(value).__name__}")
        if value.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name} must be float32 or float64, got {value.dtype}")
        return value.detach()

    def describe(self, value: object) -> tuple[np.dtype, tuple[int, ...]]:
        if not isinstance(value, torch.Tensor):
            return super().describe(value)
        return self.numpy_dtype(value), tuple(value.shape)

    def host(self, value: object) -> np.ndarray:
        if not isinstance(value, torch.Tensor):
            return np.asarray(value)
        return value.detach().cpu().numpy()

    def numpy_dtype(self, arr: Any) -> np.dtype:
        if not isinstance(arr, torch.Tensor):
            return np.dtype(arr.dtype)
        return torch.empty(0, dtype=arr.dtype).numpy().dtype

    def asarray(self, host: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(host), dtype=like.dtype, device=like.device)

    def zeros(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)

    def empty(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        return empty(shape, like.dtype, like.device)

    def matmul(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor,
               accumulate: bool = False) -> None:
        if not accumulate:
            torch.matmul(a, b, out=out)
        elif out.ndim == 2:
            out.addmm_(a, b)  # BLAS beta = 1, no temporary
        else:
            out += a @ b

    def add_gt_h(self, g: torch.Tensor, h: torch.Tensor, dest: torch.Tensor) -> None:
        """dest += G^T h by one GEMM accumulating into dest (BLAS beta = 1, no temporary)."""
        dest.addmm_(g.T, h)

    def moveaxis(self, a: torch.Tensor, source: int, destination: int) -> torch.Tensor:
        return torch.movedim(a, source, destination)

    def contiguous(self, a: torch.Tensor) -> torch.Tensor:
        return a.contiguous()

    def sum64(self, a: torch.Tensor) -> float:
        return float(a.sum(dtype=torch.float64))

    def item(self, value: object) -> float:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        return float(t.reshape(-1)[0])

    def kernel(self, a: torch.Tensor) -> object:
        return array(a)

    def wrap(self, result: object, like: torch.Tensor) -> torch.Tensor:
        if isinstance(result, torch.Tensor):
            return result
        return tensor(result, like.device, like.dtype)


TORCH = TorchProducts()
