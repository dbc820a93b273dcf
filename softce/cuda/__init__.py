"""softce on the GPU: the CUDA backend of softce's functions, over generated/cuda/.

``softce.softmax(x)`` and the other public functions run here by themselves when ``x``
exposes ``__cuda_array_interface__`` (numba device arrays, CuPy arrays, PyTorch CUDA tensors)
or is a numba (or simulator) device array; importing ``softce`` does not import this package.
Kernels compile on first use, so importing it needs no GPU. ``configure`` sets how row
kernels are launched; ``on_stream`` the stream a call's work is queued on;
``deferred_label_checks`` hands the check of the labels to a handler instead of waiting for it;
``allocating_with`` takes a call's device arrays from the caller's allocator.
"""

from .allocation import allocating_with
from .label_checks import deferred_label_checks
from .launch import LaunchConfig, configure, row_launch, threads_for
from .runtime import SHUFFLE, SIMULATOR
from .streams import on_stream

__all__ = ["SHUFFLE", "SIMULATOR", "LaunchConfig", "allocating_with", "configure",
           "deferred_label_checks", "on_stream", "row_launch", "threads_for"]
