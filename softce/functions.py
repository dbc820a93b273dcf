"""The public CPU API: NumPy arrays in, NumPy arrays out, one generated kernel per call.

The class axis is moved last and the other axes flattened into rows (a copy only when the
layout needs one); results come back in the caller's shape. Every argument is checked before
a kernel runs.
"""

from __future__ import annotations

import importlib
import numbers

import numpy as np

from . import buffers
from ._arrays import (
    Rows,
    as_float_array,
    check_axis,
    check_no_partial_overlap,
    check_out,
    device_array,
    host_values,
    on_device,
    rows_view_of,
    to_rows,
    write_result,
)
from .losses import CEOptions, ce_call, check_options
from .losses import kernel as _kernel


def _cuda():
    """softce.cuda, imported on first use (importing softce never imports numba.cuda)."""
    return importlib.import_module("softce.cuda")


def _rowwise(name: str, arr: np.ndarray, axis: int, out: np.ndarray | None,
             *others: np.ndarray) -> np.ndarray:
    """Run an elementwise-output row kernel: kernel(rows..., out_rows)."""
    rows = to_rows(arr, axis)
    extra = [to_rows(o, axis).data for o in others]
    if out is not None:
        check_out(out, arr.shape, arr.dtype)
        check_no_partial_overlap(out, ("the input", arr), *(("g", o) for o in others))
    direct = rows_view_of(out, rows)
    dest = direct if direct is not None else buffers.empty_like(rows.data)
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
    lse = buffers.empty(rows.data.shape[0], arr.dtype)
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
    dest = buffers.empty_like(rows.data)
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
    dest = out.reshape(-1) if direct else buffers.empty_like(flat)
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
    h = buffers.empty(rows.data.shape[0], arr.dtype)
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
    jac = buffers.empty((rows.data.shape[0], n, n), arr.dtype)
    _kernel("softmax_jacobian", arr.dtype)(rows.data, jac)
    return jac.reshape(rows.batch_shape + (n, n))


def cross_entropy(logits: object, target: object, *, axis: int = -1,
                  weight: object = None, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_lse: bool = False,
                  empty_mean: float | None = None):
    """Cross-entropy of softmax(logits) against integer labels or probabilities, as PyTorch's
    ``F.cross_entropy`` with the class axis at ``axis`` [D8, D9, D13].

    Labels (integer dtype, the shape of logits without ``axis``): loss = LSE(x) - x_c, with
    ``weight`` w_c, positions whose label is ``ignore_index`` left out, ``label_smoothing``
    eps mixing in the uniform distribution: (1 - eps) w_c (LSE - x_c) + (eps / C) sum_k w_k
    (LSE - x_k). Probabilities (float, the shape of logits): loss = -sum_k w_k ((1 - eps) y_k
    + eps / C) log softmax(x)_k. "mean" divides by the sum of w[target] over counted positions
    (labels) or by the number of positions (probabilities); with no counted position it is
    NaN as in PyTorch, or ``empty_mean`` when given. Beyond PyTorch: ``z_loss`` z adds
    z LSE(x)^2 at each counted position; ``softcap`` c replaces the logits by c tanh(x / c)
    first [D14]; ``return_lse`` returns (loss, lse) with the per-position LSE.
    """
    if on_device(logits):
        opts = _device_options(logits, axis, weight, ignore_index, label_smoothing, z_loss,
                               softcap, return_lse, empty_mean)
        return _cuda().cross_entropy(logits, target, axis=axis, reduction=reduction,
                                     options=opts)
    ce = ce_call(logits, target, axis, reduction, weight, ignore_index, label_smoothing,
                  z_loss, softcap, return_lse, empty_mean)
    loss = buffers.empty(ce.n_rows, ce.dtype)
    if ce.plain:
        if ce.labels is not None:
            _kernel("cross_entropy_label", ce.dtype)(ce.x, ce.labels, loss)
        else:
            _kernel("cross_entropy_prob", ce.dtype)(ce.x, ce.probs, loss)
        lse = None
    else:
        lse = ce.run_options(loss)
    result = ce.reduce(loss)
    return (result, ce.rows.restore_batch(lse)) if ce.opts.return_lse else result


def cross_entropy_grad(logits: object, target: object, *, axis: int = -1,
                       weight: object = None, ignore_index: int = -100,
                       reduction: str = "mean", label_smoothing: float = 0.0,
                       z_loss: float = 0.0, softcap: float | None = None,
                       return_lse: bool = False, empty_mean: float | None = None,
                       grad_output: object = None, out: np.ndarray | None = None):
    """(loss, dlogits) of ``cross_entropy`` (same options) in one fused pass per row, and lse
    too when ``return_lse``.

    dlogits = grad_output * d loss / d logits: (softmax(x) - e_c) per row for plain labels,
    (sum(y) softmax(x) - y) for probabilities, D13's weighted, smoothed forms (plus 2 z LSE
    softmax(x)) with options, divided as the loss is for "mean"; 0 at ignored positions.
    ``grad_output`` is a scalar, or for reduction="none" an array of the loss's shape.
    ``out=logits`` writes the gradient over the logits (no rows x classes temporary when the
    class axis is last and logits is C-contiguous).
    """
    if on_device(logits):
        opts = _device_options(logits, axis, weight, ignore_index, label_smoothing, z_loss,
                               softcap, return_lse, empty_mean)
        return _cuda().cross_entropy_grad(logits, target, axis=axis, reduction=reduction,
                                          grad_output=grad_output, out=out, options=opts)
    ce = ce_call(logits, target, axis, reduction, weight, ignore_index, label_smoothing,
                  z_loss, softcap, return_lse, empty_mean)
    arr, rows = ce.arr, ce.rows
    if out is not None:
        check_out(out, arr.shape, arr.dtype)
        check_no_partial_overlap(out, ("logits", arr))
        # the kernel reads labels or probabilities while it writes out: no overlap at all
        check_no_partial_overlap(out, ("target", ce.target))
    w = _row_weights(grad_output, reduction, rows, arr.dtype, ce.denominator())
    loss = buffers.empty(ce.n_rows, ce.dtype)
    direct = rows_view_of(out, rows)
    grad = direct if direct is not None else buffers.empty_like(rows.data)
    lse = None
    if ce.plain:
        if ce.labels is not None:
            _kernel("cross_entropy_grad_label", ce.dtype)(ce.x, ce.labels, w, grad, loss)
        else:
            _kernel("cross_entropy_grad_prob", ce.dtype)(ce.x, ce.probs, w, grad, loss)
    else:
        lse = ce.run_options(loss, w, grad)
    dlogits = grad.reshape(arr.shape) if direct is not None else rows.restore(grad)
    result = (ce.reduce(loss), write_result(dlogits, out))
    return (*result, rows.restore_batch(lse)) if ce.opts.return_lse else result


def nll_loss(logp: object, target: object, *, axis: int = -1, weight: object = None,
             ignore_index: int = -100, reduction: str = "mean") -> np.ndarray:
    """-weight[c] logp[c] per position, as PyTorch's ``F.nll_loss`` with the class axis at
    ``axis`` [D13]; "mean" divides by the sum of weight[target] over counted positions."""
    labels = host_values(target)  # a CUDA array's labels are masked on the host (one copy)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class labels, got dtype {labels.dtype}")
    if on_device(logp):
        arr = device_array(logp)
        shape = tuple(arr.shape)
        opts = check_options(shape[check_axis(axis, len(shape))], np.dtype(arr.dtype), weight,
                             ignore_index, 0.0, 0.0, None, False, None)
        return _cuda().nll_loss(logp, labels, axis=axis, options=opts, reduction=reduction)
    ce = ce_call(logp, labels, axis, reduction, weight, ignore_index, 0.0, 0.0, None, False,
                 None, name="logp")
    n = ce.rows.data.shape[1]
    cw = ce.opts.weight if ce.opts.weight is not None else np.ones(n, ce.dtype)
    loss = buffers.empty(ce.n_rows, ce.dtype)
    _kernel("nll_loss", ce.dtype)(ce.x, cw, ce.labels, ce.counted.astype(ce.dtype), loss)
    loss[~ce.counted] = 0
    return ce.reduce(loss)


def softmax_entropy(logits: object, axis: int = -1) -> np.ndarray:
    """H(softmax(x)) = LSE(x) - sum_k p_k x_k along ``axis``, a -inf logit's term 0 [D17]."""
    if on_device(logits):
        return _cuda().softmax_entropy(logits, axis)
    arr = as_float_array(logits, "logits")
    rows = to_rows(arr, check_axis(axis, arr.ndim))
    h = buffers.empty(rows.data.shape[0], arr.dtype)
    _kernel("softmax_entropy", arr.dtype)(rows.data, h)
    return rows.restore_batch(h)


def softmax_entropy_grad(logits: object, axis: int = -1, grad_output: object = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(h, dlogits): h = H(softmax(x)), dlogits_i = grad_output * p_i (sum_k p_k x_k - x_i),
    0 at a -inf logit [D17]; grad_output a scalar or an array of h's shape (default 1)."""
    if on_device(logits):
        return _cuda().softmax_entropy_grad(logits, axis, grad_output)
    arr = as_float_array(logits, "logits")
    rows = to_rows(arr, check_axis(axis, arr.ndim))
    w = _batch_like(1.0 if grad_output is None else grad_output, "grad_output", rows,
                    arr.dtype)
    h = buffers.empty(rows.data.shape[0], arr.dtype)
    grad = buffers.empty_like(rows.data)
    _kernel("softmax_entropy_grad", arr.dtype)(rows.data, w, grad, h)
    return rows.restore_batch(h), rows.restore(grad)


# helpers ---------------------------------------------------------------------------------

def _pair(y: object, g: object, axis: int) -> tuple[np.ndarray, np.ndarray, int]:
    arr = as_float_array(y, "y")
    grad = as_float_array(g, "g")
    if grad.shape != arr.shape:
        raise ValueError(f"g has shape {grad.shape}, expected the shape of y {arr.shape}")
    return arr, grad.astype(arr.dtype, copy=False), check_axis(axis, arr.ndim)


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


def _row_weights(grad_output: object, reduction: str, rows: Rows, dtype: np.dtype,
                 denominator: float | None = None) -> np.ndarray:
    """Per-row chain-rule weights: grad_output, divided for "mean" by ``denominator`` (the
    row count when None; a mean over nothing has weights 0: there is no row to weigh)."""
    go = 1.0 if grad_output is None else grad_output
    if reduction != "none" and np.ndim(go) != 0:
        raise ValueError(f"grad_output must be a scalar for reduction={reduction!r}, got shape "
                         f"{np.shape(go)}")
    w = _batch_like(go, "grad_output", rows, dtype)
    if reduction == "mean":
        divisor = w.size if denominator is None else denominator
        w = w / dtype.type(divisor) if divisor else np.zeros_like(w)
    return w


def _device_options(logits: object, axis: object, weight: object, ignore_index: object,
                    label_smoothing: object, z_loss: object, softcap: object,
                    return_lse: object, empty_mean: object) -> CEOptions | None:
    """The options of a CUDA call, checked as on the CPU; None when all are the defaults (the
    plain kernels, labels checked on the device)."""
    arr = device_array(logits)
    shape = tuple(arr.shape)
    n = shape[check_axis(axis, len(shape))]
    opts = check_options(n, np.dtype(arr.dtype), weight, ignore_index, label_smoothing,
                         z_loss, softcap, return_lse, empty_mean)
    default = (opts.weight is None and opts.ignore_index == -100 and not opts.label_smoothing
               and not opts.z_loss and opts.softcap is None and not opts.return_lse
               and opts.empty_mean is None)
    return None if default else opts
