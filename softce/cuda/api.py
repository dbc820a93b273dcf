"""The CUDA API: the functions of ``softce`` on device arrays, with the same arguments, checks
and errors as the CPU side, running the kernels of generated/cuda/.

Inputs: numba device arrays or any object exposing ``__cuda_array_interface__`` (CuPy arrays,
PyTorch CUDA tensors), viewed without a copy; other arguments (targets, upstream gradients)
may be device or host arrays. Results are numba device arrays (with ``out=``, ``out`` itself).
Labels are checked on the device: one index comes back, never the logits.
"""

from __future__ import annotations

import importlib
import numbers
from dataclasses import dataclass, replace

import numpy as np

from softce._arrays import DTYPE_SUFFIX, FLOAT_DTYPES, check_axis
from softce.functions import _batch_like, _row_weights
from softce.losses import CEOptions, labels_and_mask, mean_divisor
from softce.losses import check_reduction as _check_reduction

from . import _device as dev
from .runtime import MAX_THREADS, SIMULATOR


@dataclass(frozen=True)
class LaunchConfig:
    """How row kernels are launched.

    threads_per_row: threads of the group that reduces one row (a power of two, 32..512);
        None picks by row length: one warp for rows of up to 1024 elements, else about 32
        elements per thread, up to max_threads_per_row.
    max_threads_per_row: the cap of that choice (the simulator runs a Python thread per CUDA
        thread).
    block_threads: threads per block for short rows; a block holds
        max(1, block_threads // threads_per_row) rows.
    max_blocks: the grid's size limit; more rows than that loop in grid strides.
    """

    threads_per_row: int | None = None
    max_threads_per_row: int = 64 if SIMULATOR else MAX_THREADS
    block_threads: int = 64 if SIMULATOR else 256
    max_blocks: int = 4 if SIMULATOR else 65535


CONFIG = LaunchConfig()


def configure(**changes: object) -> LaunchConfig:
    """Change the launch configuration (fields of LaunchConfig); returns the previous one."""
    global CONFIG
    new = replace(CONFIG, **changes)
    for name in ("threads_per_row", "max_threads_per_row"):
        t = getattr(new, name)
        if t is not None and (t < 32 or t > MAX_THREADS or t & (t - 1)):
            raise ValueError(f"{name} must be a power of two in [32, {MAX_THREADS}], got {t}")
    if not 32 <= new.block_threads <= MAX_THREADS or new.block_threads % 32:
        raise ValueError(f"block_threads must be a multiple of 32 in [32, {MAX_THREADS}], got "
                         f"{new.block_threads}")
    if new.max_blocks < 1:
        raise ValueError(f"max_blocks must be positive, got {new.max_blocks}")
    old, CONFIG = CONFIG, new
    return old


def threads_for(work: int) -> int:
    """Threads per row for rows of ``work`` elements."""
    if CONFIG.threads_per_row is not None:
        return CONFIG.threads_per_row
    if work <= 1024:
        return 32  # one warp
    t = 1 << max(6, (-(-work // 32) - 1).bit_length())
    return max(32, min(t, CONFIG.max_threads_per_row))


def row_launch(rows: int, work: int) -> tuple[int, tuple[int, int]]:
    """(grid, (threads per row, rows per block)) for a row kernel."""
    width = threads_for(work)
    groups = max(1, CONFIG.block_threads // width)
    grid = max(1, min(-(-rows // groups), CONFIG.max_blocks))
    return grid, (width, groups)


def _kernel(name: str, dtype: np.dtype):
    module = importlib.import_module(f"softce.generated.cuda.{name}")
    return getattr(module, f"{name}_{DTYPE_SUFFIX[np.dtype(dtype)]}")


def _run_rows(name: str, dtype: np.dtype, rows: int, work: int, *args: object) -> None:
    if rows:
        grid, block = row_launch(rows, work)
        _kernel(name, dtype)[grid, block](*args)


# arguments ----------------------------------------------------------------------------

def _float_array(value: object, name: str):
    """A float32/float64 device array; float16 is upcast to float32 (a copy)."""
    arr = _operand(value)
    if arr.dtype == np.float16:
        return dev.reshape_c(dev.cast(arr, np.float32), tuple(arr.shape))
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}")
    return arr


def _operand(value: object):
    """A device array: device inputs are viewed, host inputs copied to the device."""
    if dev.is_device_array(value):
        return dev.as_device(value)
    if isinstance(value, (str, bytes)):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(value))


def _host_or_device(value: object):
    return dev.as_device(value) if dev.is_device_array(value) else np.asarray(value)


def _check_out(out: object, shape: tuple[int, ...], dtype: np.dtype, name: str = "out"):
    if not dev.is_device_array(out):
        raise TypeError(f"{name} must be a CUDA array (like the input), got "
                        f"{type(out).__name__}")
    arr = dev.as_device(out)
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    if arr.dtype != dtype:
        raise TypeError(f"{name} has dtype {arr.dtype}, expected {dtype}")
    if dev.read_only(out):
        raise ValueError(f"{name} is read-only")
    return arr


def _check_no_partial_overlap(out, *inputs: tuple[str, object]) -> None:
    for name, arr in inputs:
        if not dev.same_array(out, arr) and dev.overlaps(out, arr):
            raise ValueError(f"out overlaps {name} without being the same array; pass "
                             f"out={name} for in-place, or a separate buffer")


def _same_dtype(arr, dtype):
    """arr (any layout) with dtype, as arr itself or a C-contiguous copy of its shape."""
    if arr.dtype == dtype:
        return arr
    return dev.reshape_c(dev.cast(arr, dtype), tuple(arr.shape))


def _finish(rows: dev.DeviceRows, dest, direct, out, out_dev):
    """The caller's result: out (written directly or through a copy) or a view of dest."""
    if direct is not None:
        return out
    if out is None:
        return rows.restore(dest)
    shape, strides = dev.moved_last(out_dev, rows.axis)
    dev.scatter_into(dev.contiguous_flat(dest), dev.view(out_dev, shape, strides))
    return out


def _rowwise(name: str, arr, axis: int, out, *others):
    rows = dev.to_rows(arr, axis)
    extra = [dev.to_rows(o, axis).data for o in others]
    out_dev = None
    if out is not None:
        out_dev = _check_out(out, tuple(arr.shape), arr.dtype)
        _check_no_partial_overlap(out_dev, ("the input", arr), *(("g", o) for o in others))
    direct = dev.rows_view_of(out_dev, rows)
    dest = direct if direct is not None else dev.empty(rows.data.shape, arr.dtype)
    n_rows, n = rows.data.shape
    _run_rows(name, arr.dtype, n_rows, n, rows.data, *extra, dest)
    return _finish(rows, dest, direct, out, out_dev)


# the API ------------------------------------------------------------------------------

def softmax(x: object, axis: int = -1, *, out: object = None):
    """softmax along ``axis`` on the GPU; see ``softce.softmax``."""
    arr = _float_array(x, "x")
    return _rowwise("softmax", arr, check_axis(axis, arr.ndim), out)


def log_softmax(x: object, axis: int = -1, *, out: object = None):
    """log_softmax along ``axis`` on the GPU; see ``softce.log_softmax``."""
    arr = _float_array(x, "x")
    return _rowwise("log_softmax", arr, check_axis(axis, arr.ndim), out)


def logsumexp(x: object, axis: int = -1, *, keepdims: bool = False):
    """LSE reducing ``axis`` on the GPU; see ``softce.logsumexp``."""
    arr = _float_array(x, "x")
    ax = check_axis(axis, arr.ndim)
    rows = dev.to_rows(arr, ax)
    n_rows, n = rows.data.shape
    lse = dev.empty((n_rows,), arr.dtype)
    _run_rows("logsumexp", arr.dtype, n_rows, n, rows.data, lse)
    res = rows.restore_batch(lse)
    if keepdims:
        shape = list(rows.batch_shape)
        shape.insert(ax, 1)
        return dev.reshape_c(lse, tuple(shape))
    return res


def _batch_weights(g: object, name: str, rows: dev.DeviceRows, dtype: np.dtype):
    """A per-row device array from a scalar, or a host or device array of the batch shape."""
    if not dev.is_device_array(g):
        return _operand(_batch_like(g, name, rows, dtype))
    arr = dev.as_device(g)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must be a real number or array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        return _operand(_batch_like(dev.element(dev.view(arr, (1,), (arr.dtype.itemsize,)), 0),
                                    name, rows, dtype))
    if tuple(arr.shape) != rows.batch_shape:
        raise ValueError(f"{name} has shape {tuple(arr.shape)}, expected {rows.batch_shape} or "
                         "a scalar")
    return dev.cast(arr, dtype)


def logsumexp_vjp(x: object, g: object, axis: int = -1):
    """g * softmax(x) on the GPU; see ``softce.logsumexp_vjp``."""
    arr = _float_array(x, "x")
    ax = check_axis(axis, arr.ndim)
    rows = dev.to_rows(arr, ax)
    w = _batch_weights(g, "g", rows, arr.dtype)
    dest = dev.empty(rows.data.shape, arr.dtype)
    n_rows, n = rows.data.shape
    _run_rows("logsumexp_grad", arr.dtype, n_rows, n, rows.data, w, dest)
    return rows.restore(dest)


def sigmoid(x: object, *, out: object = None):
    """Elementwise sigmoid on the GPU; see ``softce.sigmoid``."""
    arr = _float_array(x, "x")
    out_dev = None
    if out is not None:
        out_dev = _check_out(out, tuple(arr.shape), arr.dtype)
        _check_no_partial_overlap(out_dev, ("x", arr))
    flat = dev.contiguous_flat(arr)
    direct = out_dev is not None and out_dev.size and dev.is_contiguous(out_dev)
    dest = dev.view(out_dev, (arr.size,), (arr.dtype.itemsize,)) if direct else dev.empty(
        (arr.size,), arr.dtype)
    if arr.size:
        threads = CONFIG.block_threads
        grid = max(1, min(-(-arr.size // threads), CONFIG.max_blocks))
        _kernel("sigmoid", arr.dtype)[grid, threads](flat, dest)
    if out is None:
        return dev.reshape_c(dest, tuple(arr.shape))
    if not direct:
        dev.scatter_into(dest, out_dev)
    return out


def entropy(p: object, axis: int = -1, base: float | None = None):
    """H(p) along ``axis`` on the GPU; see ``softce.entropy``."""
    arr = _float_array(p, "p")
    ax = check_axis(axis, arr.ndim)
    rows = dev.to_rows(arr, ax)
    n_rows, n = rows.data.shape
    h = dev.empty((n_rows,), arr.dtype)
    if base is None:
        _run_rows("entropy", arr.dtype, n_rows, n, rows.data, h)
    else:
        if (isinstance(base, bool) or not isinstance(base, numbers.Real)
                or not np.isfinite(base) or base <= 0 or base == 1):
            raise ValueError(f"base must be a positive finite number other than 1, got {base!r}")
        _run_rows("entropy_base", arr.dtype, n_rows, n, rows.data, arr.dtype.type(base), h)
    return rows.restore_batch(h)


def _pair(y: object, g: object, axis: int):
    arr = _float_array(y, "y")
    grad = _float_array(g, "g")
    if tuple(grad.shape) != tuple(arr.shape):
        raise ValueError(f"g has shape {tuple(grad.shape)}, expected the shape of y "
                         f"{tuple(arr.shape)}")
    return arr, _same_dtype(grad, arr.dtype), check_axis(axis, arr.ndim)


def softmax_vjp(y: object, g: object, axis: int = -1, *, out: object = None):
    """y * (g - y.g) on the GPU; see ``softce.softmax_vjp``."""
    arr, grad, ax = _pair(y, g, axis)
    return _rowwise("softmax_vjp", arr, ax, out, grad)


def log_softmax_vjp(y: object, g: object, axis: int = -1, *, out: object = None):
    """g - exp(y) sum(g) on the GPU; see ``softce.log_softmax_vjp``."""
    arr, grad, ax = _pair(y, g, axis)
    return _rowwise("log_softmax_vjp", arr, ax, out, grad)


def softmax_jacobian(x: object, axis: int = -1):
    """d softmax / dx, shape (..., n, n), on the GPU; see ``softce.softmax_jacobian``."""
    arr = _float_array(x, "x")
    ax = check_axis(axis, arr.ndim)
    rows = dev.to_rows(arr, ax)
    n_rows, n = rows.data.shape
    jac = dev.empty((n_rows, n, n), arr.dtype)
    _run_rows("softmax_jacobian", arr.dtype, n_rows, n * n, rows.data, jac)
    return dev.reshape_c(jac, rows.batch_shape + (n, n))


def _ce_inputs(logits: object, target: object, axis: int, options: CEOptions | None = None):
    """Checked logits rows, either labels (rows,) or probability rows (rows, n), and the
    options in effect. With options, labels come as (device labels, host labels, host counted
    mask), ignore_index masked on the host; a label outside [0, C) in a plain call (it may be
    PyTorch's default ignore_index, -100) turns the call into one with the default options."""
    arr = _float_array(logits, "logits")
    ax = check_axis(axis, arr.ndim)
    rows = dev.to_rows(arr, ax)
    tgt = _host_or_device(target)
    shape = tuple(tgt.shape)
    if tgt.dtype.kind in "iu":
        if shape != rows.batch_shape:
            raise ValueError(f"target holds class labels and must have the shape of logits "
                             f"without axis {ax}, {rows.batch_shape}; got {shape}")
        n = arr.shape[ax]
        keep = tgt.dtype in (np.int32, np.int64)
        if options is not None:
            host = tgt if isinstance(tgt, np.ndarray) else tgt.copy_to_host()
            labels, counted = labels_and_mask(np.asarray(host), n, options.ignore_index)
            return arr, rows, (_operand(labels), labels, counted), None, options
        if isinstance(tgt, np.ndarray):
            if ((tgt < 0) | (tgt >= n)).any():  # ignore_index=-100, or a bad label
                return _ce_inputs(logits, target, axis, DEFAULT_OPTIONS)
            labels = _operand(tgt.reshape(-1).astype(tgt.dtype if keep else np.int64,
                                                     copy=False))
        else:
            labels = dev.cast(tgt, tgt.dtype if keep else np.int64)
            if dev.first_bad_label(labels, n) is not None:
                return _ce_inputs(logits, target, axis, DEFAULT_OPTIONS)
        return arr, rows, labels, None, None
    if tgt.dtype.kind == "f":
        if shape != tuple(arr.shape):
            raise ValueError(f"target holds probabilities and must have the shape of logits "
                             f"{tuple(arr.shape)}; got {shape}")
        probs = _same_dtype(_operand(tgt), arr.dtype)
        return arr, rows, None, dev.to_rows(probs, ax).data, options
    raise TypeError(f"target must hold integer class labels or float probabilities, got dtype "
                    f"{tgt.dtype}")


def _reduce(rows: dev.DeviceRows, loss, reduction: str):
    if reduction == "none":
        return rows.restore_batch(loss)
    n_rows = loss.shape[0]
    if not n_rows:  # the sum of no rows is 0, their mean NaN (as NumPy)
        return dev.scalar(0 if reduction == "sum" else np.nan, loss.dtype)
    return dev.total(loss, 1 if reduction == "sum" else n_rows)


def cross_entropy(logits: object, target: object, *, axis: int = -1,
                  reduction: str = "mean", options: CEOptions | None = None):
    """Cross-entropy on the GPU; see ``softce.cross_entropy`` (``options`` checked there)."""
    arr, rows, labels, probs, options = _ce_inputs(logits, target, axis, options)
    _check_reduction(reduction)
    n_rows, n = rows.data.shape
    loss = dev.empty((n_rows,), arr.dtype)
    if options is None:
        if labels is not None:
            _run_rows("cross_entropy_label", arr.dtype, n_rows, n, rows.data, labels, loss)
        else:
            _run_rows("cross_entropy_prob", arr.dtype, n_rows, n, rows.data, probs, loss)
        return _reduce(rows, loss, reduction)
    run = _OptionsRun(arr, rows, labels, probs, options)
    lse = run.launch(loss)
    result = run.reduce(loss, reduction)
    return (result, rows.restore_batch(lse)) if options.return_lse else result


def cross_entropy_grad(logits: object, target: object, *, axis: int = -1,
                       reduction: str = "mean", grad_output: object = None,
                       out: object = None, options: CEOptions | None = None):
    """(loss, dlogits) in one fused pass per row on the GPU; see
    ``softce.cross_entropy_grad``. ``out=logits`` writes the gradient over the logits."""
    arr, rows, labels, probs, options = _ce_inputs(logits, target, axis, options)
    _check_reduction(reduction)
    n_rows, n = rows.data.shape
    out_dev = None
    if out is not None:
        out_dev = _check_out(out, tuple(arr.shape), arr.dtype)
        _check_no_partial_overlap(out_dev, ("logits", arr))
        # the kernel reads labels or probabilities while it writes out: no overlap at all
        if probs is not None or dev.is_device_array(target):
            _check_no_partial_overlap(out_dev, ("target", probs if probs is not None
                                                else dev.as_device(target)))
    run = None if options is None else _OptionsRun(arr, rows, labels, probs, options)
    if dev.is_device_array(grad_output):
        go = dev.as_device(grad_output)
        if reduction != "none" and go.ndim != 0:
            raise ValueError(f"grad_output must be a scalar for reduction={reduction!r}, got "
                             f"shape {tuple(go.shape)}")
        if go.ndim == 0:
            grad_output = dev.element(dev.view(go, (1,), (go.dtype.itemsize,)), 0)
    if dev.is_device_array(grad_output):
        w = _batch_weights(grad_output, "grad_output", rows, arr.dtype)
    else:
        divisor = None if run is None else run.denominator()
        w = _operand(_row_weights(grad_output, reduction, rows, arr.dtype, divisor))
    loss = dev.empty((n_rows,), arr.dtype)
    direct = dev.rows_view_of(out_dev, rows)
    grad = direct if direct is not None else dev.empty(rows.data.shape, arr.dtype)
    if run is not None:
        lse = run.launch(loss, w, grad)
        result = (run.reduce(loss, reduction), _finish(rows, grad, direct, out, out_dev))
        return (*result, rows.restore_batch(lse)) if options.return_lse else result
    if labels is not None:
        _run_rows("cross_entropy_grad_label", arr.dtype, n_rows, n, rows.data, labels, w, grad,
                  loss)
    else:
        _run_rows("cross_entropy_grad_prob", arr.dtype, n_rows, n, rows.data, probs, w, grad,
                  loss)
    return _reduce(rows, loss, reduction), _finish(rows, grad, direct, out, out_dev)


#: PyTorch's defaults: what a plain call becomes when its labels hold ignore_index.
DEFAULT_OPTIONS = CEOptions(None, -100, 0.0, 0.0, None, False, None)


@dataclass
class _OptionsRun:
    """D13's kernels on the GPU: weights, the ignore mask, smoothing, z-loss, soft-cap [D14].

    The labels of an options call are masked on the host (a device target makes one copy of
    its labels to the host); ignored positions get loss 0 and gradient rows 0 exactly.
    """

    arr: object
    rows: dev.DeviceRows
    labels: object  # (labels on the device, counted mask on the host) or None
    probs: object
    opts: CEOptions

    def denominator(self) -> float:
        """PyTorch's divisor for "mean"."""
        host = (None, None) if self.labels is None else self.labels[1:]
        return mean_divisor(self.rows.data.shape[0], *host, self.opts.weight)

    def launch(self, loss, w=None, grad=None):
        """Run the kernel; returns the per-row LSE (a device array)."""
        dt = np.dtype(self.arr.dtype)
        n_rows, n = self.rows.data.shape
        o = self.opts
        cw = _operand(o.weight if o.weight is not None else np.ones(n, dt))
        x = self.rows.data
        if o.softcap is not None:
            x = dev.empty(self.rows.data.shape, dt)
            _run_flat("softcap", dt, self.rows.data, dt.type(o.softcap), x)
        params = ([dt.type(o.label_smoothing)] if o.label_smoothing else []) + [
            dt.type(o.z_loss)]
        variant = "smoothed" if o.label_smoothing else "weighted"
        mask = None
        if self.labels is not None:
            mask = _operand(self.labels[2].astype(dt))
            target, inputs = "label", [x, cw, self.labels[0], mask]
        else:
            target, inputs = "prob", [x, self.probs, cw]
        lse = dev.empty((n_rows,), dt)
        if grad is None:
            _run_rows(f"cross_entropy_{target}_{variant}", dt, n_rows, n, *inputs, *params,
                      loss, lse)
        else:
            dest = grad if o.softcap is None else x  # d loss / d s over the capped copy
            _run_rows(f"cross_entropy_grad_{target}_{variant}", dt, n_rows, n, *inputs, w,
                      *params, dest, loss, lse)
            if o.softcap is not None:
                _run_flat("softcap_grad", dt, self.rows.data, dest, dt.type(o.softcap), grad)
        if mask is not None and not self.labels[2].all():
            dev.zero_ignored(mask, loss, grad)
        return lse

    def reduce(self, loss, reduction: str):
        if reduction == "none":
            return self.rows.restore_batch(loss)
        if reduction == "sum":
            return _reduce(self.rows, loss, "sum")
        divisor = self.denominator()
        if divisor == 0:
            empty = self.opts.empty_mean
            return dev.scalar(np.nan if empty is None else empty, loss.dtype)
        return dev.total(loss, divisor)


def _run_flat(name: str, dtype: np.dtype, *args: object) -> None:
    """An elementwise kernel over C-contiguous device arrays (viewed flat) and scalars."""
    flat = [dev.contiguous_flat(a) if dev.is_device_array(a) else a for a in args]
    size = max(a.size for a in flat if dev.is_device_array(a))
    if size:
        threads = CONFIG.block_threads
        grid = max(1, min(-(-size // threads), CONFIG.max_blocks))
        _kernel(name, dtype)[grid, threads](*flat)


# the rest of the cross-entropy family ----------------------------------------------------

def nll_loss(logp: object, target: object, *, axis: int = -1, options: CEOptions,
             reduction: str = "mean"):
    """-weight[c] logp[c] per position on the GPU; see ``softce.nll_loss``."""
    arr, rows, labels, _, options = _ce_inputs(logp, target, axis, options)
    _check_reduction(reduction)
    n_rows, n = rows.data.shape
    dt = np.dtype(arr.dtype)
    cw = _operand(options.weight if options.weight is not None else np.ones(n, dt))
    loss = dev.empty((n_rows,), dt)
    mask = _operand(labels[2].astype(dt))
    _run_rows("nll_loss", dt, n_rows, n, rows.data, cw, labels[0], mask, loss)
    run = _OptionsRun(arr, rows, labels, None, options)
    if not labels[2].all():
        dev.zero_ignored(mask, loss)
    return run.reduce(loss, reduction)


def softmax_entropy(logits: object, axis: int = -1):
    """H(softmax(x)) along ``axis`` on the GPU; see ``softce.softmax_entropy``."""
    arr = _float_array(logits, "logits")
    rows = dev.to_rows(arr, check_axis(axis, arr.ndim))
    n_rows, n = rows.data.shape
    h = dev.empty((n_rows,), arr.dtype)
    _run_rows("softmax_entropy", arr.dtype, n_rows, n, rows.data, h)
    return rows.restore_batch(h)


def softmax_entropy_grad(logits: object, axis: int = -1, grad_output: object = None):
    """(h, dlogits) on the GPU; see ``softce.softmax_entropy_grad``."""
    arr = _float_array(logits, "logits")
    rows = dev.to_rows(arr, check_axis(axis, arr.ndim))
    n_rows, n = rows.data.shape
    w = _batch_weights(1.0 if grad_output is None else grad_output, "grad_output", rows,
                       arr.dtype)
    h = dev.empty((n_rows,), arr.dtype)
    grad = dev.empty(rows.data.shape, arr.dtype)
    _run_rows("softmax_entropy_grad", arr.dtype, n_rows, n, rows.data, w, grad, h)
    return rows.restore_batch(h), rows.restore(grad)


def elementwise_loss(name: str, shape: tuple[int, ...], dtype: np.dtype, operands: list,
                     reduction: str, divisor: float):
    """An elementwise loss kernel over flat operands (device arrays or host arrays of the
    input's size); reduction "none" (the input's shape) or the sum divided by ``divisor``."""
    flat = [dev.contiguous_flat(_same_dtype(_operand(a), dtype)) for a in operands]
    out = dev.empty((int(np.prod(shape, dtype=np.int64)),), dtype)
    _run_flat(name, dtype, *flat, out)
    if reduction == "none":
        return dev.reshape_c(out, shape)
    if not out.size:
        return dev.scalar(0 if reduction == "sum" else np.nan, dtype)
    return dev.total(out, divisor)
