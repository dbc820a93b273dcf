"""Tensors as softce's arrays and back, without copies where the memory allows.

A CPU tensor is viewed as a NumPy array (``Tensor.numpy()`` shares its memory, strides
included), a CUDA tensor as a numba device array (``numba.cuda.as_cuda_array(t, sync=False)``);
results come back as tensors viewing the same memory. softce computes in float32 and float64.
bfloat16 and float16 logits of the softmax family's rows and of the cross-entropy are read by
the kernels' 16-bit variants as they are, on the CPU and on CUDA (``softce.half``: a bfloat16
tensor is viewed as int16, then as uint16 bit patterns of dtype ``softce.half.BFLOAT16``, a
float16 one as float16), and their results of the logits' shape are written in 16 bits;
elsewhere (the other functions) 16-bit tensors are widened to float32 by a copy. Results are
returned in the input's dtype, as PyTorch returns them.

New CPU tensors of 4 MiB or more (gradients, softmax outputs, widened copies) take their
memory from ``softce.buffers``: PyTorch's CPU allocator maps fresh pages for every large
tensor, and a training step would pay a page fault per page of its logits-sized gradient at
every step; a buffer that last step's dead gradient gave back has its pages mapped already.
CUDA tensors come from PyTorch's caching allocator.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch

from softce import buffers
from softce.half import BFLOAT16, is_bfloat16

#: dtypes computed as they are; 16-bit floats are computed in float32.
NATIVE = (torch.float32, torch.float64)
WIDENED = (torch.bfloat16, torch.float16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype softce computes a tensor of ``dtype`` in."""
    return dtype if dtype in NATIVE else torch.float32


def empty(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype, device: torch.device
          ) -> torch.Tensor:
    """A new contiguous tensor, as ``torch.empty``; on the CPU its memory comes from
    softce's output buffers (returned to them when the tensor is freed)."""
    if device.type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    nbytes = math.prod(shape) * dtype.itemsize
    return torch.from_numpy(buffers.empty(nbytes, np.uint8)).view(dtype).view(shape)


def empty_like(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A new contiguous tensor of t's shape and device (and dtype unless given)."""
    return empty(t.shape, t.dtype if dtype is None else dtype, t.device)


def widened(t: torch.Tensor) -> torch.Tensor:
    """t itself when float32/float64, else a float32 copy (16-bit floats)."""
    return t if t.dtype in NATIVE else empty_like(t, torch.float32).copy_(t)


def narrowed(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t itself when of ``dtype``, else a copy of it in ``dtype``."""
    return t if t.dtype == dtype else empty_like(t, dtype).copy_(t)


def array(t: torch.Tensor) -> object:
    """A view of t's memory as softce's array: NumPy for a CPU tensor, numba for CUDA."""
    t = t.detach()
    if t.device.type == "cuda":
        from numba import cuda

        if t.dtype == torch.bfloat16:  # no bfloat16 in numba either: its bit patterns
            return cuda.as_cuda_array(t.view(torch.int16), sync=False).view(BFLOAT16)
        return cuda.as_cuda_array(t, sync=False)
    t = t.resolve_conj().resolve_neg()
    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: its bit patterns, no copy
        return t.view(torch.int16).numpy().view(BFLOAT16)
    return t.numpy()


def tensor(result: object, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """softce's result (a NumPy array or scalar, a numba device array, or a tensor) as a tensor of
    ``dtype`` on ``device``: a view of its memory when the dtype is the same."""
    if isinstance(result, torch.Tensor):
        return result.to(device=device, dtype=dtype)
    if device.type == "cuda":
        if is_bfloat16(result.dtype):
            t = torch.as_tensor(result.view(np.int16), device=device).view(torch.bfloat16)
        else:
            t = torch.as_tensor(result, device=device)
    else:
        arr = np.asarray(result)
        if is_bfloat16(arr.dtype):
            t = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(arr)
    return t.to(dtype)


@contextlib.contextmanager
def ordered(*tensors: torch.Tensor) -> Iterator[None]:
    """softce's CUDA work inside the block queued on PyTorch's current stream of the tensors'
    device (``softce.cuda.on_stream``): after PyTorch's earlier work on that stream and before
    its later work, with no host synchronisation; labels are masked on the device and a bad
    one raises PyTorch's device-side assert (``softce.cuda.deferred_label_checks``); every
    device array the call makes comes from PyTorch's caching allocator
    (``softce.cuda.allocating_with``), none from a cuMemAlloc of its own. Nothing to do for
    CPU tensors."""
    dev = next((t.device for t in tensors if t.device.type == "cuda"), None)
    if dev is None:
        yield
        return
    from softce.cuda import allocating_with, deferred_label_checks, on_stream

    def assert_labels(flags: object) -> None:
        bad = torch.as_tensor(flags, device=dev)
        torch._assert_async((bad == 0).all(), "softce: a target label lies outside [0, C) "
                                              "and is not ignore_index, or a class weight is "
                                              "not finite")

    def allocate(shape: tuple[int, ...], dtype: np.dtype) -> object:
        torch_dtype = (torch.bfloat16 if is_bfloat16(dtype)
                       else torch.from_numpy(np.empty(0, dtype)).dtype)
        return array(torch.empty(shape, dtype=torch_dtype, device=dev))

    with on_stream(torch.cuda.current_stream(dev).cuda_stream), \
            deferred_label_checks(assert_labels), allocating_with(allocate):
        yield
