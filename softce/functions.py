"""The softmax family's front end: NumPy arrays in, NumPy arrays out (CUDA arrays in, CUDA
arrays out), one generated kernel per call.

Each function checks its arguments, lays the class axis out as rows (moved last, the other
axes flattened; a copy only when the memory needs one), picks the kernel and returns results
in the caller's shape; the backend of its first array (``softce.backend``) allocates and
launches.

``axis`` is the class axis as in SciPy and PyTorch: an int, or (except for softmax_jacobian)
a tuple of axes or None (every axis), taken together as one class axis; a 0-d input is one
element along axis 0 / -1 (softmax(3.0) = 1, logsumexp(3.0) = 3).
"""

from __future__ import annotations

import numpy as np

from .backend import Array, Backend, Layout, backend_for
from .checks import (
    check_axes,
    check_axis,
    check_bool,
    check_entropy_base,
    float_dtype,
    kept_shape,
    out_dtypes,
    result_dtype,
)
from .half import OUTPUTS, storage

Axis = int | tuple[int, ...] | None


def softmax(x: object, axis: Axis = -1, *, out: object = None) -> Array:
    """softmax(x)_j = exp(x_j - m) / sum_i exp(x_i - m), m = max(x), along ``axis``."""
    be = backend_for(x)
    arr = be.float_array(x, "x", half=True)
    return rowwise(be, "softmax", arr, check_axes(axis, arr.ndim), out, "x")


def log_softmax(x: object, axis: Axis = -1, *, out: object = None) -> Array:
    """log_softmax(x)_j = x_j - LSE(x) along ``axis``."""
    be = backend_for(x)
    arr = be.float_array(x, "x", half=True)
    return rowwise(be, "log_softmax", arr, check_axes(axis, arr.ndim), out, "x")


def logsumexp(x: object, axis: Axis = -1, *, keepdims: bool = False) -> Array:
    """LSE(x) = m + log sum_i exp(x_i - m), reducing ``axis`` (-inf for an empty axis)."""
    return row_reduction("logsumexp", x, axis, "x", "lse", keepdims=keepdims, half=True)


def online_state(x: object, axis: Axis = -1, *, keepdims: bool = False
                 ) -> tuple[Array, Array]:
    """(m, s) of each row along ``axis``: m = max_i x_i and the normaliser's excess
    s = sum_i exp(x_i - m) - 1, summed without the max's 1 (D18), so LSE = m + log1p(s) to
    s's own accuracy. States of parts of a row merge with D18's merge_s (``softce.dask``
    does); an empty axis gives (-inf, -1)."""
    return row_reduction("online_state", x, axis, "x", ("shift", "excess"), keepdims=keepdims)


def logsumexp_vjp(x: object, g: object, axis: Axis = -1) -> Array:
    """Vector-Jacobian product of logsumexp: g * softmax(x), g of the reduced shape."""
    be = backend_for(x)
    arr = be.float_array(x, "x", half=True)
    rows = be.to_rows(arr, check_axes(axis, arr.ndim))
    w = row_values(be, g, "g", rows, float_dtype(arr.dtype))
    _, dest = output_rows(be, None, rows, arr.dtype)
    be.launch("logsumexp_grad", arr.dtype, x=rows.data, grad_output=w, out=dest)
    return rows.restore(dest)


def sigmoid(x: object, *, out: object = None) -> Array:
    """sigmoid(x) = softmax([x, 0])_1, elementwise, stable for any sign of x."""
    be = backend_for(x)
    arr = be.float_array(x, "x")
    checked = checked_out(be, out, arr, ("x", arr))
    flat = be.to_flat(arr)
    direct = be.direct_view(checked, flat)
    dest = direct if direct is not None else be.empty(flat.data.shape, arr.dtype)
    be.launch("sigmoid", arr.dtype, t_in=flat.data, out=dest)
    return be.finish(flat, dest, direct, out, checked)


def entropy(p: object, axis: Axis = -1, base: float | None = None, *,
            keepdims: bool = False) -> Array:
    """H(p) = -sum_i p_i log_b p_i along ``axis`` (nats when base is None), 0 log 0 = 0.

    p is taken as given (not normalised); a negative entry gives NaN.
    """
    b = check_entropy_base(base)
    if b is None:
        return row_reduction("entropy", p, axis, "p", "h", keepdims=keepdims)
    return row_reduction("entropy_base", p, axis, "p", "h", keepdims=keepdims, b=b)


def softmax_vjp(y: object, g: object, axis: Axis = -1, *, out: object = None) -> Array:
    """sum_k g_k d softmax_k / d x_i = y_i (g_i - y.g), given y = softmax(x)."""
    be = backend_for(y)
    arr, grad, ax = _pair(be, y, g, axis)
    return rowwise(be, "softmax_vjp", arr, ax, out, "p", g=grad)


def log_softmax_vjp(y: object, g: object, axis: Axis = -1, *, out: object = None) -> Array:
    """sum_k g_k d log_softmax_k / d x_i = g_i - exp(y_i) sum(g), given y = log_softmax(x)."""
    be = backend_for(y)
    arr, grad, ax = _pair(be, y, g, axis)
    return rowwise(be, "log_softmax_vjp", arr, ax, out, "logp", g=grad)


def softmax_jacobian(x: object, axis: int = -1) -> Array:
    """J[..., i, j] = d softmax(x)_i / d x_j = s_i ([i = j] - s_j), shape (..., n, n)."""
    be = backend_for(x)
    arr = be.float_array(x, "x")
    ax = check_axis(axis, arr.ndim)
    rows = be.to_rows(arr, (ax,))
    n = arr.shape[ax]
    jac = be.empty((rows.data.shape[0], n, n), arr.dtype)
    be.launch("softmax_jacobian", arr.dtype, x=rows.data, out=jac)
    return be.reshape(jac, rows.batch_shape + (n, n))


def softmax_entropy(logits: object, axis: Axis = -1, *, keepdims: bool = False) -> Array:
    """H(softmax(x)) = LSE(x) - sum_k p_k x_k along ``axis``, a -inf logit's term 0 [D17]."""
    return row_reduction("softmax_entropy", logits, axis, "x", "h", name="logits",
                         keepdims=keepdims)


def softmax_entropy_grad(logits: object, axis: Axis = -1, grad_output: object = None
                         ) -> tuple[Array, Array]:
    """(h, dlogits): h = H(softmax(x)), dlogits_i = grad_output * p_i (sum_k p_k x_k - x_i),
    0 at a -inf logit [D17]; grad_output a scalar or an array of h's shape (default 1)."""
    be = backend_for(logits)
    arr = be.float_array(logits, "logits")
    rows = be.to_rows(arr, check_axes(axis, arr.ndim))
    w = row_values(be, 1.0 if grad_output is None else grad_output, "grad_output", rows,
                   arr.dtype)
    h = be.empty((rows.data.shape[0],), arr.dtype)
    grad = be.empty(rows.data.shape, arr.dtype)
    be.launch("softmax_entropy_grad", arr.dtype, x=rows.data, grad_output=w, grad=grad, h=h)
    return rows.restore_batch(h), rows.restore(grad)


# shared by the front end ------------------------------------------------------------------

def row_reduction(kernel: str, value: object, axis: object, row: str,
                  result: str | tuple[str, ...], *, name: str | None = None,
                  keepdims: object = False, half: bool = False, **params: float
                  ) -> Array | tuple[Array, ...]:
    """A kernel reducing each row of ``value`` along ``axis`` to one number per result:
    kernel(<row>=rows, **params, <result>=(rows,) for each result), returned in the batch shape
    (``keepdims``: with the reduced axes kept, of length 1); a tuple of names gives a tuple of
    arrays. ``name`` names the argument in errors (default: ``row``). ``half``: the kernel has
    16-bit variants, which read 16-bit input as it is (results in float32)."""
    be = backend_for(value)
    arr = be.float_array(value, name or row, half=half)
    axes = check_axes(axis, arr.ndim)
    keep = check_bool(keepdims, "keepdims")
    rows = be.to_rows(arr, axes)
    names = (result,) if isinstance(result, str) else result
    outs = [be.empty((rows.data.shape[0],), float_dtype(arr.dtype)) for _ in names]
    be.launch(kernel, arr.dtype, **{row: rows.data}, **params, **dict(zip(names, outs)))
    if keep:
        shape = kept_shape(tuple(arr.shape), axes)
        shaped = tuple(be.reshape(out, shape) for out in outs)
    else:
        shaped = tuple(rows.restore_batch(out) for out in outs)
    return shaped[0] if isinstance(result, str) else shaped


def rowwise(be: Backend, kernel: str, arr: Array, axes: tuple[int, ...], out: object,
            input_name: str, **others: Array) -> Array:
    """An elementwise-output row kernel: kernel(<input_name>=rows, **others, out=rows), its
    result in the caller's shape or written into ``out``."""
    checked = checked_out(be, out, arr, ("the input", arr), *(("g", o) for o in others.values()))
    rows = be.to_rows(arr, axes)
    extra = {name: be.to_rows(o, axes).data for name, o in others.items()}
    direct, dest = output_rows(be, checked, rows, arr.dtype)
    be.launch(kernel, arr.dtype, **{input_name: rows.data}, **extra, out=dest)
    return be.finish(rows, dest, direct, out, checked)


def checked_out(be: Backend, out: object, arr: Array, *inputs: tuple[str, object]
                ) -> Array | None:
    """The caller's ``out`` for a result of arr's shape, checked (None if none): of the
    result's dtype (``checks.result_dtype``), or for 16-bit input also of its own dtype."""
    if out is None:
        return None
    allowed = out_dtypes(np.dtype(arr.dtype))
    got = getattr(out, "dtype", None)
    dtype = next((d for d in allowed if got == d and storage(got) == storage(d)), allowed[0])
    checked = be.check_out(out, tuple(arr.shape), dtype)
    be.check_no_partial_overlap(checked, *inputs)
    return checked


def writes(kernel_dtype: np.dtype, dtype: np.dtype) -> bool:
    """Whether the kernel variant for ``kernel_dtype`` writes outputs of rows of ``dtype``
    (a 16-bit variant: its own 16-bit dtype, float16's also float32)."""
    half = storage(kernel_dtype)
    if half is None:
        return np.dtype(dtype) == kernel_dtype and storage(dtype) is None
    return storage(dtype) == half or (dtype == np.float32 and "float32" in OUTPUTS[half])


def output_rows(be: Backend, checked: Array | None, rows: Layout, kernel_dtype: np.dtype
                ) -> tuple[Array | None, Array]:
    """(direct, dest): the caller's ``out`` laid out as rows when the kernel writes it itself
    (else None), and the rows the kernel writes: ``direct``, or a new array of the out's
    dtype (when the kernel writes it) or of the result's dtype."""
    direct = be.direct_view(checked, rows)
    if direct is not None and writes(kernel_dtype, direct.dtype):
        return direct, direct
    dtype = result_dtype(kernel_dtype)
    if checked is not None and writes(kernel_dtype, checked.dtype):
        dtype = checked.dtype
    return None, be.empty(rows.data.shape, dtype)


def row_values(be: Backend, value: object, name: str, rows: Layout, dtype: np.dtype,
               divisor: float | None = None) -> Array:
    """A per-row array of ``dtype`` (a dtype kernels compute in) from a scalar (divided by
    ``divisor`` when given: 0 for a divisor of 0, a mean over nothing), or from an array of the
    batch shape (host data or this backend's array)."""
    vdt, shape = be.describe(value)
    if vdt.kind not in "fiu" or vdt == np.bool_:
        raise TypeError(f"{name} must be a real number or array, got dtype {vdt}")
    n_rows = rows.data.shape[0]
    if not shape:
        w = np.full(n_rows, be.to_host(value)[()], dtype=dtype)
        if divisor is not None:
            w = w / dtype.type(divisor) if divisor else np.zeros_like(w)
        return be.from_host(w)
    if shape != rows.batch_shape:
        raise ValueError(f"{name} has shape {shape}, expected {rows.batch_shape} or a scalar")
    return be.cast(be.to_flat(be.operand(value)).data, dtype)


def _pair(be: Backend, y: object, g: object, axis: object
          ) -> tuple[Array, Array, tuple[int, ...]]:
    """y and g as one kernel variant reads them: both as they are when they are 16-bit of
    the same type (the 16-bit variant), else both in y's computing dtype."""
    arr = be.float_array(y, "y", half=True)
    grad = be.float_array(g, "g", half=True)
    if tuple(grad.shape) != tuple(arr.shape):
        raise ValueError(f"g has shape {tuple(grad.shape)}, expected the shape of y "
                         f"{tuple(arr.shape)}")
    if storage(arr.dtype) is None or storage(grad.dtype) != storage(arr.dtype):
        arr = be.float_array(arr, "y")  # a 16-bit y widened, when g is not of its type
        grad = be.cast(be.float_array(grad, "g"), arr.dtype)
    return arr, grad, check_axes(axis, arr.ndim)

