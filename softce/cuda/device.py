"""Device arrays for the CUDA backend: conversion, strided views, layout copies and checks.

Everything here moves or checks data; none of it computes the softmax family (that is printed
into generated/cuda/). Views are made from (shape, strides) with no copy; a copy is made only
when the rows of the class axis cannot be addressed as one (rows, n) array. The simulator's
device arrays wrap NumPy arrays, so a view there is a NumPy strided view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import cuda

from softce.backend import on_cuda
from softce.half import is_bfloat16

from .allocation import device_copy, device_empty
from .runtime import SIMULATOR, narrow_bf16_to, widen_bf16
from .streams import current, host_copy

#: Threads per block of the helper kernels (layout copies, label checks, loss sums).
HELPER_THREADS = 32 if SIMULATOR else 256
#: Most blocks a helper kernel launches; larger inputs loop in grid strides.
HELPER_BLOCKS = 4 if SIMULATOR else 4096


#: A numba device array (the simulator's too) or any ``__cuda_array_interface__`` object: the
#: arrays the backend registry routes here.
is_device_array = on_cuda


def as_device(obj: object):
    """A numba device array viewing obj's memory (no copy)."""
    if getattr(type(obj), "__cuda_ndarray__", False):
        return obj
    if SIMULATOR:
        raise TypeError(f"the CUDA simulator takes its own device arrays, got {type(obj).__name__}")
    return cuda.as_cuda_array(obj)


def read_only(obj: object) -> bool:
    desc = getattr(obj, "__cuda_array_interface__", None)
    return bool(desc and desc["data"][1])


def _pointer(arr) -> int:
    if SIMULATOR:
        return arr._ary.__array_interface__["data"][0]
    return arr.__cuda_array_interface__["data"][0]


def view(arr, shape: tuple[int, ...], strides: tuple[int, ...], offset: int = 0):
    """A view of arr's memory from its first element (moved by ``offset`` bytes, on a GPU
    only) with the given shape and byte strides, of arr's dtype (``softce.half.BFLOAT16``'s
    mark included): arr itself when it already has that shape and those strides."""
    shape, strides = tuple(int(s) for s in shape), tuple(int(s) for s in strides)
    if not offset and shape == tuple(arr.shape) and strides == tuple(arr.strides):
        return arr
    if SIMULATOR:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        assert offset == 0, "the simulator's views start at their array's first element"
        return FakeCUDAArray(np.lib.stride_tricks.as_strided(arr._ary, shape, strides))
    desc = {"shape": shape, "strides": strides, "typestr": arr.dtype.str,
            "data": (_pointer(arr) + offset if arr.size else 0, False), "version": 3}
    viewed = cuda.from_cuda_array_interface(desc, owner=arr)
    # the interface's typestr carries no dtype metadata: the bfloat16 mark is put back
    return viewed.view(arr.dtype) if arr.dtype.metadata else viewed


def c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for s in reversed(shape):
        strides.append(step)
        step *= max(s, 1)
    return tuple(reversed(strides))


def reshape_c(arr, shape: tuple[int, ...]):
    """A C-ordered view with a new shape of a C-contiguous array."""
    return view(arr, shape, c_strides(shape, arr.dtype.itemsize))


def empty(shape: tuple[int, ...], dtype) -> object:
    return device_empty(shape, dtype)


def is_contiguous(arr) -> bool:
    """Whether arr is C-contiguous (axes of length 1 may have any stride)."""
    return _contiguous(tuple(arr.shape), tuple(arr.strides), arr.dtype.itemsize)


def _contiguous(shape, strides, itemsize) -> bool:
    return all(st == c for s, st, c in zip(shape, strides, c_strides(shape, itemsize)) if s > 1)


def _merge_dims(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int
                ) -> tuple[int, int] | None:
    """(size, stride) of one axis addressing the same elements in C order, if there is one."""
    dims = [(s, st) for s, st in zip(shape, strides) if s != 1]
    if not dims:
        return (int(np.prod(shape, dtype=np.int64)), itemsize)
    size, stride = dims[-1]
    for s, st in reversed(dims[:-1]):
        if st != stride * size:
            return None
        size *= s
    return size, stride


# layout kernels ------------------------------------------------------------------------

@cuda.jit(device=True)
def _strided_offset(q, origin, shape, strides):
    """The element offset of the q-th element, in C order over shape, of the strided array
    whose first element is at ``origin``."""
    off = origin
    for a in range(len(shape) - 1, -1, -1):
        off += (q % shape[a]) * strides[a]
        q //= shape[a]
    return off


@cuda.jit
def _gather(src, origin, shape, strides, dst):
    """dst[q] = the q-th element, in C order over shape, of the strided array at src[origin]."""
    step = cuda.gridDim.x * cuda.blockDim.x
    for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, dst.shape[0], step):
        dst[q] = src[_strided_offset(q, origin, shape, strides)]


@cuda.jit
def _scatter(src, dst, origin, shape, strides):
    """The inverse of _gather: the q-th element of src to its place in the strided dst."""
    step = cuda.gridDim.x * cuda.blockDim.x
    for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, src.shape[0], step):
        dst[_strided_offset(q, origin, shape, strides)] = src[q]


@cuda.jit
def _widen_bf16(src, dst):
    """dst[q] = the value of the bfloat16 bit pattern src[q] (exact)."""
    step = cuda.gridDim.x * cuda.blockDim.x
    for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, dst.shape[0], step):
        dst[q] = widen_bf16(src[q])


@cuda.jit
def _narrow_bf16(src, dst):
    """dst[q] = src[q] as float32 rounded to bfloat16 (nearest even), its bit pattern."""
    step = cuda.gridDim.x * cuda.blockDim.x
    for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, dst.shape[0], step):
        dst[q] = narrow_bf16_to(np.float32(src[q]), dst)


@cuda.jit
def _check_labels(labels, n, first_bad):
    """first_bad[0] = the smallest q with labels[q] outside [0, n) (left as is if none)."""
    step = cuda.gridDim.x * cuda.blockDim.x
    for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, labels.shape[0], step):
        if labels[q] < 0 or labels[q] >= n:
            cuda.atomic.min(first_bad, 0, q)


@cuda.jit
def _zero_ignored(counted, loss, grad, n):
    """loss[r] = 0 and the gradient row r (grad flat, n per row) = 0 where counted[r] == 0:
    ignored positions add nothing, whatever their logits."""
    step = cuda.gridDim.x * cuda.blockDim.x
    for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x,
                   max(loss.shape[0], grad.shape[0]), step):
        if q < loss.shape[0] and counted[q] == 0:
            loss[q] = 0
        if q < grad.shape[0] and counted[q // n] == 0:
            grad[q] = 0


@cuda.jit
def _mask_labels(labels, ignore_index, cw, safe, counted, divisor, bad):
    """One block. Position q: counted where its label is not ignore_index and lies in [0, n),
    n the classes of cw: safe[q] its label (else 0), counted[q] 1 (else 0); divisor[0] = the
    sum of cw[label] over counted positions, in float64 (strided partial sums, then the first
    thread adds the partials in order: the same result on every run); bad[0] = 1 where a
    label is neither ignore_index nor in [0, n), bad[1] = 1 where a class weight is not
    finite (else 0)."""
    partial = cuda.shared.array(HELPER_THREADS, np.float64)
    t = cuda.threadIdx.x
    if t == 0:
        bad[0] = 0
        bad[1] = 0
    cuda.syncthreads()
    n = cw.shape[0]
    for q in range(t, n, cuda.blockDim.x):
        if math.isinf(cw[q]) or math.isnan(cw[q]):
            bad[1] = 1
    acc = np.float64(0)
    for q in range(t, labels.shape[0], cuda.blockDim.x):
        label = labels[q]
        ok = label != ignore_index and label >= 0 and label < n
        if label != ignore_index and not ok:
            bad[0] = 1
        safe[q] = label if ok else 0
        counted[q] = 1 if ok else 0
        if ok:
            acc += np.float64(cw[label])
    partial[t] = acc
    cuda.syncthreads()
    if t == 0:
        for q in range(1, cuda.blockDim.x):
            acc += partial[q]
        divisor[0] = acc


@cuda.jit
def _divide(values, divisor, empty):
    """values[q] /= divisor[0]; values[q] = empty where divisor[0] is 0."""
    step = cuda.gridDim.x * cuda.blockDim.x
    for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, values.shape[0], step):
        values[q] = values[q] / divisor[0] if divisor[0] != 0 else empty


@cuda.jit
def _fill_divided(values, value, divisor):
    """values[q] = value / divisor[0], or 0 where divisor[0] is 0."""
    step = cuda.gridDim.x * cuda.blockDim.x
    for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, values.shape[0], step):
        values[q] = value / divisor[0] if divisor[0] != 0 else 0


class SumKernels(NamedTuple):
    """The one-block sums of a dtype: by a host number, and by a one-element device array."""

    by_number: object
    by_array: object


def _sum_kernel(dtype: type) -> SumKernels:
    zero = dtype(0)

    @cuda.jit(device=True, inline="always")
    def _block_sum(values):
        """sum(values) on the block's first thread: strided partial sums, then that thread adds
        the partials in order (the same result on every run)."""
        partial = cuda.shared.array(1024, dtype)
        t = cuda.threadIdx.x
        acc = zero
        for q in range(t, values.shape[0], cuda.blockDim.x):
            acc += values[q]
        partial[t] = acc
        cuda.syncthreads()
        if t == 0:
            for q in range(1, cuda.blockDim.x):
                acc += partial[q]
        return acc

    @cuda.jit
    def _sum(values, divisor, out):
        """out[0] = sum(values) / divisor in values' dtype, one block."""
        acc = _block_sum(values)
        if cuda.threadIdx.x == 0:
            out[0] = acc / divisor

    @cuda.jit
    def _sum_over(values, divisor, empty, out):
        """out[0] = sum(values) / divisor[0], or empty where divisor[0] is 0; one block."""
        acc = _block_sum(values)
        if cuda.threadIdx.x == 0:
            out[0] = acc / divisor[0] if divisor[0] != 0 else empty

    return SumKernels(_sum, _sum_over)


_SUMS = {np.dtype(t): _sum_kernel(t) for t in (np.float32, np.float64)}


def helper_grid(size: int) -> int:
    """Blocks of ``HELPER_THREADS`` for a helper kernel over ``size`` elements."""
    return max(1, min(HELPER_BLOCKS, -(-size // HELPER_THREADS)))


def _base(arr):
    """(1-D element view covering arr's memory, element offset of arr[0, ..., 0], element
    strides): the addressing _gather/_scatter take, for any signs of the strides."""
    item = arr.dtype.itemsize
    shape, strides = tuple(arr.shape), tuple(arr.strides)
    if any(st % item for st in strides):
        raise ValueError("CUDA arrays with strides that are not a multiple of the item size "
                         "are not supported")
    el = tuple(st // item for st in strides)
    low = sum((s - 1) * e for s, e in zip(shape, el) if e < 0 and s > 0)
    high = sum((s - 1) * e for s, e in zip(shape, el) if e > 0 and s > 0)
    if SIMULATOR:  # NumPy views: flipping the reversed axes starts at the lowest element
        flipped = arr[tuple(slice(None, None, -1) if e < 0 else slice(None) for e in el)]
        return view(flipped, (high - low + 1,), (item,)), -low, el
    # On a GPU the span starts `low` elements before arr[0, ..., 0]. (numba-cuda's own slicing
    # is not used: reversing an axis whose stride is already negative gives it length 0.)
    return view(arr, (high - low + 1,), (item,), offset=low * item), -low, el


def gather_c(arr):
    """A new C-contiguous copy of any strided device array (1-D, C order)."""
    flat = empty((arr.size,), arr.dtype)
    if arr.size:
        base, origin, el = _base(arr)
        _gather[helper_grid(arr.size), HELPER_THREADS, current()](
            base, origin, tuple(arr.shape), el, flat)
    return flat


def scatter_into(flat, arr) -> None:
    """Copy a C-ordered 1-D array into any strided device array of the same size."""
    if arr.size:
        base, origin, el = _base(arr)
        _scatter[helper_grid(arr.size), HELPER_THREADS, current()](flat, base, origin,
                                                             tuple(arr.shape), el)


def cast(arr, dtype):
    """arr as a C-contiguous 1-D array of dtype (a copy when the dtype or layout differs),
    converted by value; ``softce.half.BFLOAT16`` bit patterns widened from or rounded to
    (nearest even, through float32)."""
    flat = contiguous_flat(arr)
    dtype = np.dtype(dtype)
    if flat.dtype == dtype and is_bfloat16(flat.dtype) == is_bfloat16(dtype):
        return flat
    out = empty((flat.size,), dtype)
    if flat.size:
        grid = helper_grid(flat.size), HELPER_THREADS, current()
        if is_bfloat16(flat.dtype):
            _widen_bf16[grid](flat, out)
        elif is_bfloat16(dtype):
            _narrow_bf16[grid](flat, out)
        else:
            _gather[grid](flat, 0, (flat.size,), (1,), out)
    return out


def contiguous_flat(arr):
    """arr in C order as a 1-D array: a view when arr is C-contiguous, else a copy."""
    if is_contiguous(arr):
        return view(arr, (arr.size,), (arr.dtype.itemsize,)) if arr.size else empty(
            (0,), arr.dtype)
    return gather_c(arr)


def first_bad_label(labels, n: int) -> int | None:
    """The flat index of the first label outside [0, n), found on the device (one int back)."""
    found = device_copy(np.array([labels.size], np.int64))
    if labels.size:
        _check_labels[helper_grid(labels.size), HELPER_THREADS, current()](labels, n, found)
    q = int(host_copy(found)[0])
    return None if q == labels.size else q


def zero_ignored(counted, loss, grad=None) -> None:
    """Zero the loss (and gradient rows, (rows, n) C-contiguous) of positions not counted."""
    flat = empty((0,), loss.dtype) if grad is None else contiguous_flat(grad)
    n = 1 if grad is None else max(1, int(grad.shape[1]))
    size = max(loss.size, flat.size)
    if size:
        _zero_ignored[helper_grid(size), HELPER_THREADS, current()](counted, loss, flat, n)


def mask_labels(labels, ignore_index: int, cw, dtype):
    """(safe labels, counted values of ``dtype``, the sum of cw[label] over counted positions
    as a one-element float64 array, the flags: a two-element int32 array, bad labels and
    non-finite class weights), queued on the device in one launch (``_mask_labels``)."""
    rows = labels.size
    safe, counted = empty((rows,), labels.dtype), empty((rows,), dtype)
    divisor, bad = empty((1,), np.float64), empty((2,), np.int32)
    _mask_labels[1, HELPER_THREADS, current()](labels, ignore_index, cw, safe, counted,
                                               divisor, bad)
    return safe, counted, divisor, bad


def divide(values, divisor, empty_value: float) -> None:
    """values /= divisor[0] on the device (values = empty_value where it is 0)."""
    flat = contiguous_flat(values)
    if flat.size:
        _divide[helper_grid(flat.size), HELPER_THREADS, current()](flat, divisor,
                                                             flat.dtype.type(empty_value))


def element(arr, q: int):
    """One element of a 1-D device array, on the host."""
    return host_copy(arr[q:q + 1])[0]


def divided(value: float, divisor, size: int, dtype):
    """A new device array of ``size`` elements of ``dtype``, each value / divisor[0] (a
    one-element device array), or 0 where it is 0, in one launch."""
    values = empty((size,), dtype)
    if size:
        _fill_divided[helper_grid(size), HELPER_THREADS, current()](
            values, np.dtype(dtype).type(value), divisor)
    return values


def total_over(values, divisor, empty_value: float):
    """sum(values) / divisor[0] (a one-element device array), or empty_value where it is 0,
    as a 0-d device array of values' dtype, in one launch."""
    out = empty((1,), values.dtype)
    _SUMS[np.dtype(values.dtype)].by_array[1, HELPER_THREADS, current()](
        values, divisor, values.dtype.type(empty_value), out)
    return view(out, (), ())


def total(values, divisor: int):
    """sum(values) / divisor as a 0-d device array of values' dtype (values not empty)."""
    out = empty((1,), values.dtype)
    _SUMS[np.dtype(values.dtype)].by_number[1, HELPER_THREADS, current()](
        values, values.dtype.type(divisor), out)
    return view(out, (), ())


def scalar(value, dtype):
    """A 0-d device array holding value."""
    return view(device_copy(np.array([value], dtype)), (), ())


def overlaps(a, b) -> bool:
    """Whether the byte ranges of two device arrays intersect (a conservative overlap test)."""
    if not a.size or not b.size:
        return False

    def extent(arr):
        start = _pointer(arr)
        lo = sum((s - 1) * st for s, st in zip(arr.shape, arr.strides) if st < 0)
        hi = sum((s - 1) * st for s, st in zip(arr.shape, arr.strides) if st > 0)
        return start + lo, start + hi + arr.dtype.itemsize

    (a0, a1), (b0, b1) = extent(a), extent(b)
    return a0 < b1 and b0 < a1


def same_array(a, b) -> bool:
    return (_pointer(a) == _pointer(b) and tuple(a.shape) == tuple(b.shape)
            and tuple(a.strides) == tuple(b.strides))


@dataclass(frozen=True)
class DeviceRows:
    """A (rows, n) device array of the class axes moved last and flattened together (a view
    when possible); n = 1 with no class axes (a 0-d array)."""

    data: object
    shape: tuple[int, ...]
    axes: tuple[int, ...]  # the class axes, sorted

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(s for i, s in enumerate(self.shape) if i not in self.axes)

    def restore(self, flat):
        """A C-contiguous (rows, n) result back to the original shape and axis order (a view)."""
        order = axes_last(len(self.shape), self.axes)
        moved = tuple(self.shape[a] for a in order)
        strides = c_strides(moved, flat.dtype.itemsize)
        place = {a: q for q, a in enumerate(order)}  # where each original axis went
        return view(flat, self.shape, tuple(strides[place[a]] for a in range(len(self.shape))))

    def restore_batch(self, flat):
        return reshape_c(flat, self.batch_shape)


def axes_last(ndim: int, axes: tuple[int, ...]) -> tuple[int, ...]:
    """The axis order with ``axes`` (sorted) moved last, the others first in their order."""
    return tuple(a for a in range(ndim) if a not in axes) + axes


def moved_last(arr, axes: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(shape, strides) of arr with ``axes`` moved last."""
    order = axes_last(len(arr.shape), axes)
    return (tuple(arr.shape[a] for a in order), tuple(arr.strides[a] for a in order))


def _rows_strides(shape: tuple[int, ...], strides: tuple[int, ...], k: int, itemsize: int
                  ) -> tuple[int, int] | None:
    """The (row, class) strides of a (rows, n) view of an array whose last k axes (already
    moved last) are the class axes, if one addresses its elements; None if not."""
    nb = len(shape) - k
    batch = _merge_dims(shape[:nb], strides[:nb], itemsize)
    classes = _merge_dims(shape[nb:], strides[nb:], itemsize)
    if batch is None or classes is None or min(strides, default=0) < 0:
        return None
    return batch[1], classes[1]


def to_rows(arr, axes: tuple[int, ...]) -> DeviceRows:
    """Move the class axes last, flatten them to one and the rest to rows; copies only when
    no (rows, n) view addresses the elements."""
    shape, strides = moved_last(arr, axes)
    nb = len(shape) - len(axes)
    rows, n = math.prod(shape[:nb]), math.prod(shape[nb:])
    found = _rows_strides(shape, strides, len(axes), arr.dtype.itemsize) if arr.size else None
    if found is not None:
        data = view(arr, (rows, n), found)
    elif arr.size:
        data = reshape_c(gather_c(view(arr, shape, strides)), (rows, n))
    else:
        data = empty((rows, n), arr.dtype)
    return DeviceRows(data, tuple(arr.shape), axes)


def rows_view_of(out, rows: DeviceRows):
    """out itself as (rows, n) when the kernel can write it directly (class axes last and
    the batch axes, and the class axes, addressable as one each), else None."""
    ndim, k = len(rows.shape), len(rows.axes)
    if out is None or not out.size or rows.axes != tuple(range(ndim - k, ndim)):
        return None
    found = _rows_strides(tuple(out.shape), tuple(out.strides), k, out.dtype.itemsize)
    return None if found is None else view(out, tuple(rows.data.shape), found)
