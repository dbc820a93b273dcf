"""The CUDA stream that softce's work goes on: kernel launches, allocations and copies.

By default that is the CUDA default stream. Inside ``on_stream(s)`` everything a call does is
queued on ``s`` instead (a numba stream, or a raw ``CUstream`` handle as an int, such as
``torch.cuda.current_stream().cuda_stream`` or CuPy's ``cupy.cuda.get_current_stream().ptr``):
the call is ordered after the caller's earlier work on ``s`` and before its later work, and the
host does not wait for it, except where a value comes back to the host (a bad label's index,
a host copy of a result), which waits for ``s`` first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from numba import cuda

_CURRENT: ContextVar[object | None] = ContextVar("softce_cuda_stream", default=None)


def current() -> object:
    """The stream of softce's CUDA work in this context."""
    stream = _CURRENT.get()
    return cuda.default_stream() if stream is None else stream


@contextlib.contextmanager
def on_stream(stream: object) -> Iterator[object]:
    """Queue softce's CUDA work inside the block on ``stream`` (a numba stream or a CUstream
    handle; 0 is the default stream). Yields the numba stream."""
    if isinstance(stream, bool) or not (isinstance(stream, int)
                                        or hasattr(stream, "synchronize")):
        raise TypeError(f"stream must be a numba CUDA stream or a CUstream handle (int), got "
                        f"{type(stream).__name__}")
    if isinstance(stream, int):
        stream = cuda.external_stream(stream) if stream else cuda.default_stream()
    token = _CURRENT.set(stream)
    try:
        yield stream
    finally:
        _CURRENT.reset(token)


def host_copy(arr: object) -> object:
    """A host copy of a device array, once the current stream's work before it is done."""
    stream = current()
    host = arr.copy_to_host(stream=stream)
    stream.synchronize()
    return host
