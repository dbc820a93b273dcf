"""Large output arrays, from a small cache of buffers that earlier outputs gave back.

A fresh NumPy array of hundreds of MiB costs a page fault per page on its first write, and the
kernel zeroes each page: for a 500 MiB softmax that is a whole extra write pass, as much as
the kernel itself. So outputs of at least ``MIN_BYTES`` come from here: each is a new array
(a caller never shares memory with a live array), backed by a buffer that a dead output of
the same byte size gave back, whose pages are already mapped. When the last array viewing a
buffer is collected the buffer returns to the cache, which keeps at most ``max_bytes`` in
all (``configure``; 0 turns the cache off and frees what it holds). Smaller outputs are plain
``np.empty``. PyTorch's CUDA caching allocator works the same way; its CPU allocator does not.
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np

#: Outputs below this size are plain np.empty (their page faults are cheap).
MIN_BYTES = 1 << 22
#: Cached outputs start on a cache line (a whole AVX-512 vector).
ALIGN = 64

_lock = threading.Lock()
_free: dict[int, list[np.ndarray]] = {}
_held = 0
_max_bytes = int(os.environ.get("SOFTCE_OUTPUT_CACHE_MB", "1024")) << 20


def configure(max_bytes: int) -> int:
    """Keep at most ``max_bytes`` of returned buffers (0: none, and free what is held).
    Returns the previous limit."""
    global _max_bytes, _held
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
    with _lock:
        old, _max_bytes = _max_bytes, max_bytes
        while _held > _max_bytes:
            size = max(_free)
            _free[size].pop()
            _held -= size
            if not _free[size]:
                del _free[size]
    return old


def held_bytes() -> int:
    """Bytes of returned buffers waiting in the cache."""
    return _held


def _give_back(raw: np.ndarray) -> None:
    global _held
    with _lock:
        if _held + raw.nbytes <= _max_bytes:
            _free.setdefault(raw.nbytes, []).append(raw)
            _held += raw.nbytes


def _take(nbytes: int) -> np.ndarray | None:
    """A cached buffer of nbytes + ALIGN bytes, or None."""
    global _held
    with _lock:
        stack = _free.get(nbytes + ALIGN)
        if not stack:
            return None
        raw = stack.pop()
        if not stack:
            del _free[raw.nbytes]
        _held -= raw.nbytes
        return raw


class _Lease:
    """Owner of one buffer while arrays view it: NumPy keeps it as their ``base`` and its
    ``__del__`` runs once the last of them is gone."""

    def __init__(self, raw: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._raw = raw
        start = raw.ctypes.data + (-raw.ctypes.data) % ALIGN
        self.__array_interface__ = {"data": (start, False), "shape": shape,
                                    "typestr": dtype.str, "version": 3}

    def __del__(self) -> None:
        if _give_back is not None:  # None while the interpreter shuts down
            _give_back(self._raw)


def empty(shape: int | tuple[int, ...], dtype: object) -> np.ndarray:
    """A new C-contiguous array, as ``np.empty(shape, dtype)``."""
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or _max_bytes == 0:
        return np.empty(shape, dtype)
    raw = _take(nbytes)
    if raw is None:
        raw = np.empty(nbytes + ALIGN, np.uint8)
    arr = np.asarray(_Lease(raw, shape, dtype))
    # the array interface carries no dtype metadata (softce.half.BFLOAT16's marking)
    return arr.view(dtype) if dtype.metadata else arr


def empty_like(arr: np.ndarray) -> np.ndarray:
    """A new C-contiguous array of arr's shape and dtype."""
    return empty(arr.shape, arr.dtype)
