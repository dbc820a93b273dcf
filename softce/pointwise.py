"""Elementwise losses with PyTorch's meaning: binary cross-entropy with logits [D15] and
kl_div [D16]. Every argument is broadcast to the input's shape and laid out flat; one
generated kernel (CPU, or CUDA for CUDA arrays) computes the terms, the reduction follows
PyTorch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import buffers
from ._arrays import as_float_array, host_values, on_device
from .losses import check_reduction, kernel


def _flat(value: object, name: str, shape: tuple[int, ...], dtype: np.dtype,
          nonnegative: bool = False) -> np.ndarray:
    """value broadcast to ``shape`` as a flat C-contiguous array of ``dtype`` (a CUDA array's
    values are checked and broadcast on the host)."""
    arr = host_values(value)  # a CUDA array's values are checked on the host
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must be a real array or number, got dtype {arr.dtype}")
    try:
        full = np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"{name} has shape {arr.shape}, which does not broadcast to the "
                         f"input's shape {shape}") from None
    if nonnegative and (not np.all(np.isfinite(arr)) or (arr < 0).any()):
        raise ValueError(f"{name} must hold finite values >= 0")
    return _contiguous(full, dtype)


def _contiguous(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A flat, C-contiguous, writeable array (the kernels' signatures take no read-only
    arrays; a broadcast view is read-only)."""
    flat = np.ascontiguousarray(arr, dtype).reshape(-1)
    return flat if flat.flags.writeable else flat.copy()


def _pair(x: object, y: object, xname: str, yname: str) -> tuple[Any, Any]:
    """Both float arrays of one shape: NumPy arrays, or CUDA arrays when x is one (y may then
    be either)."""
    if on_device(x):
        from .cuda.api import _float_array

        arr = _float_array(x, xname)
        tgt = _float_array(y, yname) if on_device(y) else as_float_array(y, yname)
        if tuple(tgt.shape) != tuple(arr.shape):
            raise ValueError(f"{yname} has shape {tuple(tgt.shape)}, expected the shape of "
                             f"{xname} {tuple(arr.shape)}")
        return arr, tgt
    arr = as_float_array(x, xname)
    tgt = as_float_array(y, yname)
    if tgt.shape != arr.shape:
        raise ValueError(f"{yname} has shape {tgt.shape}, expected the shape of {xname} "
                         f"{arr.shape}")
    return arr, tgt


def _reduce(terms: np.ndarray, shape: tuple[int, ...], reduction: str) -> np.ndarray:
    if reduction == "none":
        return terms.reshape(shape)
    total = terms.sum(dtype=terms.dtype)
    if reduction == "sum":
        return total
    if reduction == "batchmean":
        return total / terms.dtype.type(shape[0])
    return total / terms.dtype.type(terms.size) if terms.size else terms.dtype.type(np.nan)


def _bce_inputs(x: object, y: object, weight: object, pos_weight: object, reduction: str):
    arr, tgt = _pair(x, y, "x", "y")
    check_reduction(reduction)
    dt, shape = np.dtype(arr.dtype), tuple(arr.shape)
    wt = _flat(1.0 if weight is None else weight, "weight", shape, dt, nonnegative=True)
    pw = _flat(1.0 if pos_weight is None else pos_weight, "pos_weight", shape, dt,
               nonnegative=True)
    if on_device(x):
        return arr, [arr, tgt, wt, pw]
    return arr, [_contiguous(arr, dt), _contiguous(tgt, dt), wt, pw]


def _run(name: str, arr: Any, operands: list, reduction: str) -> Any:
    """The elementwise kernel ``name`` over the operands, then the reduction (CPU or CUDA)."""
    shape = tuple(arr.shape)
    if on_device(arr):
        from .cuda.api import elementwise_loss

        size = int(np.prod(shape, dtype=np.int64))
        divisor = {"sum": 1, "batchmean": shape[0] if shape else 1}.get(reduction, size)
        return elementwise_loss(name, shape, np.dtype(arr.dtype), operands, reduction, divisor)
    out = buffers.empty(arr.size, arr.dtype)
    kernel(name, arr.dtype)(*operands, out)
    return _reduce(out, shape, reduction)


def binary_cross_entropy_with_logits(x: object, y: object, *, weight: object = None,
                                     pos_weight: object = None,
                                     reduction: str = "mean") -> np.ndarray:
    """-weight (pos_weight y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))) per element, as
    PyTorch's ``F.binary_cross_entropy_with_logits``: softplus through D3's shift, so no
    overflow for any x [D15]. weight and pos_weight broadcast to x (pos_weight along the last
    axis, one per class)."""
    arr, flat = _bce_inputs(x, y, weight, pos_weight, reduction)
    return _run("bce_with_logits", arr, flat, reduction)


def binary_cross_entropy_with_logits_grad(x: object, y: object, *, weight: object = None,
                                          pos_weight: object = None, reduction: str = "mean",
                                          grad_output: object = None
                                          ) -> tuple[np.ndarray, np.ndarray]:
    """(loss, dx): dx = grad_output * weight ((pos_weight y + 1 - y) sigmoid(x) - pos_weight y)
    [D15], divided by the element count for "mean"; grad_output a scalar, or for
    reduction="none" an array of x's shape."""
    arr, flat = _bce_inputs(x, y, weight, pos_weight, reduction)
    go = 1.0 if grad_output is None else grad_output
    if reduction != "none" and np.ndim(go) != 0:
        raise ValueError(f"grad_output must be a scalar for reduction={reduction!r}, got shape "
                         f"{np.shape(go)}")
    dt = np.dtype(arr.dtype)
    dy = _flat(go, "grad_output", tuple(arr.shape), dt)
    if reduction == "mean" and arr.size:
        dy = dy / dt.type(arr.size)
    loss = _run("bce_with_logits", arr, flat, reduction)
    return loss, _run("bce_with_logits_grad", arr, [*flat, dy], "none")


def kl_div(input: object, target: object, *, reduction: str = "mean",
           log_target: bool = False) -> np.ndarray:
    """PyTorch's ``F.kl_div``: input holds log q; the term is target (log target - input),
    0 where target = 0, or with ``log_target`` exp(target) (target - input) [D16].
    reduction: "none", "mean" (over every element), "sum", "batchmean" (sum / input.shape[0],
    KL's true mean over the batch)."""
    arr, tgt = _pair(input, target, "input", "target")
    check_reduction(reduction, ("none", "mean", "sum", "batchmean"))
    if not isinstance(log_target, (bool, np.bool_)):
        raise TypeError(f"log_target must be a bool, got {type(log_target).__name__}")
    if reduction == "batchmean" and arr.ndim == 0:
        raise ValueError("reduction='batchmean' needs an input with a batch axis, got a 0-d "
                         "array")
    name = "kl_div_log_target" if log_target else "kl_div"
    if on_device(arr):
        return _run(name, arr, [arr, tgt], reduction)
    return _run(name, arr, [_contiguous(arr, arr.dtype), _contiguous(tgt, arr.dtype)],
                reduction)
