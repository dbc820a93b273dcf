"""How a CUDA call reports a label outside [0, C) that is not ``ignore_index``.

By default a call waits for the device once to read the labels' check and raises a
``ValueError`` naming the label, as the CPU does. Inside ``deferred_label_checks(handler)``
the call instead masks the labels on the device (positions to count, their weights, the
mean's divisor: no host round trip; class weights stay there, checked finite there too) and
hands the device flags of a bad label or weight to ``handler``,
which queues a check of its own: softce.torch's is PyTorch's device-side assert
(``torch._assert_async``), so that a plain call on CUDA tensors never waits for the GPU and a
bad label surfaces as PyTorch's own do. A bad label's position is then neither counted nor
read (its row is treated as class 0 with weight 0) until the check fires.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

#: The handler of the device flag of bad labels, or None: checked at once.
_HANDLER: ContextVar[Callable[[object], None] | None] = ContextVar("softce_label_check",
                                                                   default=None)


def deferred_handler() -> Callable[[object], None] | None:
    """The handler calls in this context give their bad-label flag to (None: no deferral)."""
    return _HANDLER.get()


@contextlib.contextmanager
def deferred_label_checks(handler: Callable[[object], None]) -> Iterator[None]:
    """Inside the block, cross-entropy calls mask their labels on the device and call
    ``handler(flags)`` with a two-element int32 device array instead of waiting to read it:
    flags[0] is 1 where a label was outside [0, C) and not ignore_index, flags[1] where a
    class weight was not finite (class weights stay on the device too)."""
    if not callable(handler):
        raise TypeError(f"handler must be callable, got {type(handler).__name__}")
    token = _HANDLER.set(handler)
    try:
        yield
    finally:
        _HANDLER.reset(token)
