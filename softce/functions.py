"""The public CPU API: NumPy arrays in, NumPy arrays out, one generated kernel per call.

The class axis is moved last and the other axes flattened into rows (a copy only when the
layout needs one); results come back in the caller's shape. Every argument is checked before
a kernel runs.
"""

from __future__ import annotations

import importlib
import numbers
import warnings

import numpy as np

from ._arrays import (
    DTYPE_SUFFIX,
    Rows,
    as_float_array,
    check_axis,
    check_no_partial_overlap,
    check_out,
    rows_view_of,
    to_rows,
    write_result,
)

REDUCTIONS = ("none", "mean", "sum")


def on_device(x: object) -> bool:
    """Whether x lives on a GPU: it exposes ``__cuda_array_interface__`` (numba, CuPy, PyTorch
    CUDA tensors) or is a numba device array (the CUDA simulator's included)."""
    return bool(getattr(type(x), "__cuda_ndarray__", False)) or hasattr(
        x, "__cuda_array_interface__")


def _cuda():
    """softce.cuda, imported on first use (importing softce never imports numba.cuda)."""
    return importlib.import_module("softce.cuda")


def _kernel(name: str, dtype: np.dtype):
    module = importlib.import_module(f"softce.generated.cpu.{name}")
    return getattr(module, f"{name}_{DTYPE_SUFFIX[np.dtype(dtype)]}")


def _rowwise(name: str, arr: np.ndarray, axis: int, out: np.ndarray | None,
             *others: np.ndarray) -> np.ndarray:
    """Run an elementwise-output row kernel: kernel(rows..., out_rows)."""
    rows = to_rows(arr, axis)
    extra = [to_rows(o, axis).data for o in others]
    if out is not None:
        check_out(out, arr.shape, arr.dtype)
        check_no_partial_overlap(out, ("the input", arr), *(("g", o) for o in others))
    direct = rows_view_of(out, rows)
    dest = direct if direct is not None else np.empty_like(rows.data)
    _kernel(name, arr.dtype)(rows.data, *extra, dest)
    return write_result(dest.reshape(arr.shape) if direct is not None else rows.restore(dest),
                        out)


def softmax(x: object, axis: int = -1, *, out: np.ndarray | None = None) -> np.ndarray:
    """softmax(x)_j = exp(x_j - m) / sum_i exp(x_i - m), m = max(x), along ``axis``."""
    if on_device(x):
        return _cuda().softmax(x, axis, out=out)
    arr = as_float_array(x, "x")
    return _rowwise("softmax", arr, check_axis(axis, arr.ndim), out)


def log_softmax(x: object, axis: int = -1, *, out: np.ndarray | None = None) -> np.ndarray:
    """log_softmax(x)_j = x_j - LSE(x) along ``axis``."""
    if on_device(x):
        return _cuda().log_softmax(x, axis, out=out)
    arr = as_float_array(x, "x")
    return _rowwise("log_softmax", arr, check_axis(axis, arr.ndim), out)


def logsumexp(x: object, axis: int = -1, *, keepdims: bool = False) -> np.ndarray:
    """LSE(x) = m + log sum_i exp(x_i - m), reducing ``axis`` (-inf for an empty axis)."""
    if on_device(x):
        return _cuda().logsumexp(x, axis, keepdims=keepdims)
    arr = as_float_array(x, "x")
    ax = check_axis(axis, arr.ndim)
    rows = to_rows(arr, ax)
    lse = np.empty(rows.data.shape[0], arr.dtype)
    _kernel("logsumexp", arr.dtype)(rows.data, lse)
    res = rows.restore_batch(lse)
    return np.expand_dims(res, ax) if keepdims else res


def logsumexp_vjp(x: object, g: object, axis: int = -1) -> np.ndarray:
    """Vector-Jacobian product of logsumexp: g * softmax(x), g of the reduced shape."""
    if on_device(x):
        return _cuda().logsumexp_vjp(x, g, axis)
    arr = as_float_array(x, "x")
    ax = check_axis(axis, arr.ndim)
    rows = to_rows(arr, ax)
    w = _batch_like(g, "g", rows, arr.dtype)
    dest = np.empty_like(rows.data)
    _kernel("logsumexp_grad", arr.dtype)(rows.data, w, dest)
    return rows.restore(dest)


def sigmoid(x: object, *, out: np.ndarray | None = None) -> np.ndarray:
    """sigmoid(x) = softmax([x, 0])_1, elementwise, stable for any sign of x."""
    if on_device(x):
        return _cuda().sigmoid(x, out=out)
    arr = as_float_array(x, "x")
    if out is not None:
        check_out(out, arr.shape, arr.dtype)
        check_no_partial_overlap(out, ("x", arr))
    flat = np.ascontiguousarray(arr).reshape(-1)
    direct = out is not None and out.flags.c_contiguous
    dest = out.reshape(-1) if direct else np.empty_like(flat)
    _kernel("sigmoid", arr.dtype)(flat, dest)
    return out if direct else write_result(dest.reshape(arr.shape), out)


def entropy(p: object, axis: int = -1, base: float | None = None) -> np.ndarray:
    """H(p) = -sum_i p_i log_b p_i along ``axis`` (nats when base is None), 0 log 0 = 0.

    p is taken as given (not normalised); a negative entry gives NaN.
    """
    if on_device(p):
        return _cuda().entropy(p, axis, base)
    arr = as_float_array(p, "p")
    ax = check_axis(axis, arr.ndim)
    rows = to_rows(arr, ax)
    h = np.empty(rows.data.shape[0], arr.dtype)
    if base is None:
        _kernel("entropy", arr.dtype)(rows.data, h)
    else:
        if (isinstance(base, bool) or not isinstance(base, numbers.Real)
                or not np.isfinite(base) or base <= 0 or base == 1):
            raise ValueError(f"base must be a positive finite number other than 1, got {base!r}")
        _kernel("entropy_base", arr.dtype)(rows.data, arr.dtype.type(base), h)
    return rows.restore_batch(h)


def softmax_vjp(y: object, g: object, axis: int = -1, *,
                out: np.ndarray | None = None) -> np.ndarray:
    """sum_k g_k d softmax_k / d x_i = y_i (g_i - y.g), given y = softmax(x)."""
    if on_device(y):
        return _cuda().softmax_vjp(y, g, axis, out=out)
    arr, grad, ax = _pair(y, g, axis)
    return _rowwise("softmax_vjp", arr, ax, out, grad)


def log_softmax_vjp(y: object, g: object, axis: int = -1, *,
                    out: np.ndarray | None = None) -> np.ndarray:
    """sum_k g_k d log_softmax_k / d x_i = g_i - exp(y_i) sum(g), given y = log_softmax(x)."""
    if on_device(y):
        return _cuda().log_softmax_vjp(y, g, axis, out=out)
    arr, grad, ax = _pair(y, g, axis)
    return _rowwise("log_softmax_vjp", arr, ax, out, grad)


def softmax_jacobian(x: object, axis: int = -1) -> np.ndarray:
    """J[..., i, j] = d softmax(x)_i / d x_j = s_i ([i = j] - s_j), shape (..., n, n)."""
    if on_device(x):
        return _cuda().softmax_jacobian(x, axis)
    arr = as_float_array(x, "x")
    ax = check_axis(axis, arr.ndim)
    rows = to_rows(arr, ax)
    n = arr.shape[ax]
    jac = np.empty((rows.data.shape[0], n, n), arr.dtype)
    _kernel("softmax_jacobian", arr.dtype)(rows.data, jac)
    return jac.reshape(rows.batch_shape + (n, n))


def cross_entropy(logits: object, target: object, *, axis: int = -1,
                  reduction: str = "mean") -> np.ndarray:
    """Cross-entropy of softmax(logits) against integer labels or probabilities, as PyTorch's
    ``F.cross_entropy`` with the class axis at ``axis``.

    Labels (integer dtype, the shape of logits without ``axis``): loss = LSE(x) - x_c.
    Probabilities (float, the shape of logits): loss = LSE(x) sum(y) - x.y.
    """
    if on_device(logits):
        return _cuda().cross_entropy(logits, target, axis=axis, reduction=reduction)
    arr, rows, labels, probs = _ce_inputs(logits, target, axis)
    _check_reduction(reduction)
    loss = np.empty(rows.data.shape[0], arr.dtype)
    if labels is not None:
        _kernel("cross_entropy_label", arr.dtype)(rows.data, labels, loss)
    else:
        _kernel("cross_entropy_prob", arr.dtype)(rows.data, probs, loss)
    return _reduce(rows.restore_batch(loss), reduction)


def cross_entropy_grad(logits: object, target: object, *, axis: int = -1,
                       reduction: str = "mean", grad_output: object = None,
                       out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(loss, dlogits) of ``cross_entropy`` in one fused pass per row.

    dlogits = grad_output * d loss / d logits: (softmax(x) - e_c) per row for labels,
    (sum(y) softmax(x) - y) for probabilities, divided by the number of rows for "mean".
    ``grad_output`` is a scalar, or for reduction="none" an array of the loss's shape.
    ``out=logits`` writes the gradient over the logits (no rows x classes temporary when the
    class axis is last and logits is C-contiguous).
    """
    if on_device(logits):
        return _cuda().cross_entropy_grad(logits, target, axis=axis, reduction=reduction,
                                          grad_output=grad_output, out=out)
    arr, rows, labels, probs = _ce_inputs(logits, target, axis)
    _check_reduction(reduction)
    n_rows = rows.data.shape[0]
    if out is not None:
        check_out(out, arr.shape, arr.dtype)
        check_no_partial_overlap(out, ("logits", arr))
        # the kernel reads labels or probabilities while it writes out: no overlap at all
        check_no_partial_overlap(out, ("target", probs if probs is not None else labels))
    w = _row_weights(grad_output, reduction, rows, arr.dtype)
    loss = np.empty(n_rows, arr.dtype)
    direct = rows_view_of(out, rows)
    grad = direct if direct is not None else np.empty_like(rows.data)
    if labels is not None:
        _kernel("cross_entropy_grad_label", arr.dtype)(rows.data, labels, w, grad, loss)
    else:
        _kernel("cross_entropy_grad_prob", arr.dtype)(rows.data, probs, w, grad, loss)
    dlogits = grad.reshape(arr.shape) if direct is not None else rows.restore(grad)
    return _reduce(rows.restore_batch(loss), reduction), write_result(dlogits, out)


# helpers ---------------------------------------------------------------------------------

def _pair(y: object, g: object, axis: int) -> tuple[np.ndarray, np.ndarray, int]:
    arr = as_float_array(y, "y")
    grad = as_float_array(g, "g")
    if grad.shape != arr.shape:
        raise ValueError(f"g has shape {grad.shape}, expected the shape of y {arr.shape}")
    return arr, grad.astype(arr.dtype, copy=False), check_axis(axis, arr.ndim)


def _check_reduction(reduction: object) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum(dtype=loss.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of no rows is NaN
        return loss.mean(dtype=loss.dtype)


def _ce_inputs(logits: object, target: object, axis: int):
    """Checked logits rows and either labels (rows,) or probability rows (rows, n)."""
    arr = as_float_array(logits, "logits")
    ax = check_axis(axis, arr.ndim)
    rows = to_rows(arr, ax)
    tgt = np.asarray(target)
    if tgt.dtype.kind in "iu":
        if tgt.shape != rows.batch_shape:
            raise ValueError(f"target holds class labels and must have the shape of logits "
                             f"without axis {ax}, {rows.batch_shape}; got {tgt.shape}")
        n = arr.shape[ax]
        bad = (tgt < 0) | (tgt >= n)
        if bad.any():
            pos = tuple(int(q) for q in np.argwhere(bad)[0])
            raise ValueError(f"target has label {tgt[pos]} at position {pos}, outside the "
                             f"classes [0, {n})")
        labels = np.ascontiguousarray(tgt.reshape(-1).astype(
            tgt.dtype if tgt.dtype in (np.int32, np.int64) else np.int64, copy=False))
        return arr, rows, labels, None
    if tgt.dtype.kind == "f":
        if tgt.shape != arr.shape:
            raise ValueError(f"target holds probabilities and must have the shape of logits "
                             f"{arr.shape}; got {tgt.shape}")
        return arr, rows, None, to_rows(tgt.astype(arr.dtype, copy=False), ax).data
    raise TypeError(f"target must hold integer class labels or float probabilities, got dtype "
                    f"{tgt.dtype}")


def _batch_like(value: object, name: str, rows: Rows, dtype: np.dtype) -> np.ndarray:
    """A per-row float array from a scalar or an array of the batch shape."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must be a real number or array, got dtype {arr.dtype}")
    if arr.ndim and arr.shape != rows.batch_shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {rows.batch_shape} or a "
                         "scalar")
    n_rows = rows.data.shape[0]
    # a fresh, writeable array: np.broadcast_to gives a read-only view, which ascontiguousarray
    # keeps as is for 0 or 1 rows, and the kernels' signatures take writeable arrays only
    return (np.full(n_rows, arr, dtype=dtype) if not arr.ndim
            else np.ascontiguousarray(arr.astype(dtype).reshape(n_rows)))


def _row_weights(grad_output: object, reduction: str, rows: Rows, dtype: np.dtype
                 ) -> np.ndarray:
    """Per-row chain-rule weights: grad_output, divided by the row count for "mean"."""
    go = 1.0 if grad_output is None else grad_output
    if reduction != "none" and np.ndim(go) != 0:
        raise ValueError(f"grad_output must be a scalar for reduction={reduction!r}, got shape "
                         f"{np.shape(go)}")
    w = _batch_like(go, "grad_output", rows, dtype)
    if reduction == "mean" and w.size:
        w = w / dtype.type(w.size)
    return w
