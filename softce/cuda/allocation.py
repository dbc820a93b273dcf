"""Where softce's CUDA arrays come from.

By default from numba (``cuda.device_array``: a ``cuMemAlloc`` per array). Inside
``allocating_with(allocate)`` every array a call makes (outputs, per-row results, casts,
host data copied over) comes from ``allocate(shape, dtype)`` instead: softce.torch gives
PyTorch's caching allocator, so that a call on CUDA tensors allocates nothing of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import numpy as np
from numba import cuda

from .streams import current

Allocate = Callable[[tuple[int, ...], np.dtype], object]

#: The allocator of this context, or None: numba's.
_ALLOCATE: ContextVar[Allocate | None] = ContextVar("softce_cuda_allocate", default=None)


@contextlib.contextmanager
def allocating_with(allocate: Allocate) -> Iterator[None]:
    """Inside the block, softce's CUDA arrays come from ``allocate(shape, dtype)``, which
    returns a C-contiguous device array of that shape and dtype (its memory valid for work
    queued on softce's current stream)."""
    if not callable(allocate):
        raise TypeError(f"allocate must be callable, got {type(allocate).__name__}")
    token = _ALLOCATE.set(allocate)
    try:
        yield
    finally:
        _ALLOCATE.reset(token)


def device_empty(shape: tuple[int, ...], dtype: object) -> object:
    """A new C-contiguous device array (its contents undefined)."""
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    allocate = _ALLOCATE.get()
    if allocate is None:
        return cuda.device_array(shape, dtype=dtype, stream=current())
    return allocate(shape, dtype)


def device_copy(host: np.ndarray) -> object:
    """A new device array holding a copy of the host array (queued on the current stream)."""
    host = np.ascontiguousarray(host)
    if _ALLOCATE.get() is None:
        return cuda.to_device(host, stream=current())
    arr = device_empty(host.shape, host.dtype)
    if host.size:
        arr.copy_to_device(host, stream=current())
    return arr
