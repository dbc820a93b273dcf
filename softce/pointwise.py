"""Elementwise losses with PyTorch's meaning: binary cross-entropy with logits [D15] and
kl_div [D16]. Every argument is broadcast to the input's shape and laid out flat; one
generated kernel computes the terms, the reduction follows PyTorch.
"""

from __future__ import annotations

import numpy as np

from .backend import Array, Backend, backend_for
from .checks import check_bool, check_grad_output_shape, check_real_array, check_reduction


def binary_cross_entropy_with_logits(x: object, y: object, *, weight: object = None,
                                     pos_weight: object = None,
                                     reduction: str = "mean") -> Array:
    """-weight (pos_weight y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))) per element, as
    PyTorch's ``F.binary_cross_entropy_with_logits``: softplus through D3's shift, so no
    overflow for any x [D15]. weight and pos_weight broadcast to x (pos_weight along the last
    axis, one per class)."""
    be, arr, operands = _bce_operands(x, y, weight, pos_weight, reduction)
    return _loss(be, "bce_with_logits", arr, operands, reduction)


def binary_cross_entropy_with_logits_grad(x: object, y: object, *, weight: object = None,
                                          pos_weight: object = None, reduction: str = "mean",
                                          grad_output: object = None
                                          ) -> tuple[Array, Array]:
    """(loss, dx): dx = grad_output * weight ((pos_weight y + 1 - y) sigmoid(x) - pos_weight y)
    [D15], divided by the element count for "mean"; grad_output a scalar, or for
    reduction="none" an array of x's shape."""
    be, arr, operands = _bce_operands(x, y, weight, pos_weight, reduction)
    go = 1.0 if grad_output is None else grad_output
    _, go_shape = be.describe(go)
    check_grad_output_shape(len(go_shape), go_shape, reduction)
    dt, shape = np.dtype(arr.dtype), tuple(arr.shape)
    dy = _broadcast(be, go, "grad_output", shape, dt)
    if reduction == "mean" and arr.size:
        dy = dy / dt.type(arr.size)
    loss = _loss(be, "bce_with_logits", arr, operands, reduction)
    grad = _loss(be, "bce_with_logits_grad", arr, {**operands, "dy_in": be.from_host(dy)},
                 "none")
    return loss, grad


def kl_div(input: object, target: object, *, reduction: str = "mean",
           log_target: bool = False) -> Array:
    """PyTorch's ``F.kl_div``: input holds log q; the term is target (log target - input),
    0 where target = 0, or with ``log_target`` exp(target) (target - input) [D16].
    reduction: "none", "mean" (over every element), "sum", "batchmean" (sum / input.shape[0],
    KL's true mean over the batch)."""
    be = backend_for(input)
    arr, tgt = _pair(be, input, target, "input", "target")
    check_reduction(reduction, ("none", "mean", "sum", "batchmean"))
    check_bool(log_target, "log_target")
    if reduction == "batchmean" and arr.ndim == 0:
        raise ValueError("reduction='batchmean' needs an input with a batch axis, got a 0-d "
                         "array")
    flat = _flat(be, {"lq_in": arr, ("lt_in" if log_target else "yt_in"): tgt})
    return _loss(be, "kl_div_log_target" if log_target else "kl_div", arr, flat, reduction)


def _pair(be: Backend, x: object, y: object, xname: str, yname: str) -> tuple[Array, Array]:
    """Both float arrays of one shape, y in x's dtype."""
    arr = be.float_array(x, xname)
    tgt = be.float_array(y, yname)
    if tuple(tgt.shape) != tuple(arr.shape):
        raise ValueError(f"{yname} has shape {tuple(tgt.shape)}, expected the shape of "
                         f"{xname} {tuple(arr.shape)}")
    return arr, be.cast(tgt, arr.dtype)


def _broadcast(be: Backend, value: object, name: str, shape: tuple[int, ...],
               dtype: np.dtype, finite: bool = False) -> np.ndarray:
    """value broadcast to ``shape`` as a flat C-contiguous host array of ``dtype`` (a CUDA
    array's values are checked and broadcast on the host); ``finite``: refuse inf and NaN
    (weights may have any sign, as in PyTorch)."""
    arr = check_real_array(be.to_host(value), name, "array or number")
    try:
        full = np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"{name} has shape {arr.shape}, which does not broadcast to the "
                         f"input's shape {shape}") from None
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must hold finite values")
    return np.ascontiguousarray(full, dtype).reshape(-1)


def _bce_operands(x: object, y: object, weight: object, pos_weight: object, reduction: str
                  ) -> tuple[Backend, Array, dict[str, Array]]:
    be = backend_for(x)
    arr, tgt = _pair(be, x, y, "x", "y")
    check_reduction(reduction)
    dt, shape = np.dtype(arr.dtype), tuple(arr.shape)
    wt = _broadcast(be, 1.0 if weight is None else weight, "weight", shape, dt, True)
    pw = _broadcast(be, 1.0 if pos_weight is None else pos_weight, "pos_weight", shape, dt,
                    True)
    return be, arr, {**_flat(be, {"t_in": arr, "yb_in": tgt}), "wt_in": be.from_host(wt),
                     "pw_in": be.from_host(pw)}


def _flat(be: Backend, arrays: dict[str, Array]) -> dict[str, Array]:
    """Each array laid out flat in C order (a view when it is C-contiguous)."""
    return {name: be.to_flat(a).data for name, a in arrays.items()}


def _loss(be: Backend, kernel: str, arr: Array, operands: dict[str, Array],
          reduction: str) -> Array:
    """The elementwise kernel over flat operands of arr's size, then the reduction."""
    dt, shape = np.dtype(arr.dtype), tuple(arr.shape)
    out = be.empty((arr.size,), dt)
    be.launch(kernel, dt, **operands, out=out)
    if reduction == "none":
        return be.reshape(out, shape)
    divisor = {"sum": 1, "batchmean": shape[0] if shape else 1}.get(reduction, arr.size)
    if not arr.size:  # a sum of nothing is 0; divided by 0, NaN
        return be.scalar(0.0 if divisor else np.nan, dt)
    return be.total(out, divisor)
