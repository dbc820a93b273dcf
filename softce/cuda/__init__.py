"""softce on the GPU: the CPU API's functions for device arrays, over generated/cuda/.

``softce.softmax(x)`` and the other public functions come here by themselves when ``x``
exposes ``__cuda_array_interface__`` (numba device arrays, CuPy arrays, PyTorch CUDA tensors)
or is a numba (or simulator) device array; importing ``softce`` does not import this package.
Kernels compile on first use, so importing it needs no GPU.
"""

from .api import (
    LaunchConfig,
    configure,
    cross_entropy,
    cross_entropy_grad,
    entropy,
    log_softmax,
    log_softmax_vjp,
    logsumexp,
    logsumexp_vjp,
    nll_loss,
    row_launch,
    sigmoid,
    softmax,
    softmax_entropy,
    softmax_entropy_grad,
    softmax_jacobian,
    softmax_vjp,
)
from .runtime import SHUFFLE, SIMULATOR

__all__ = [
    "LaunchConfig",
    "SHUFFLE",
    "SIMULATOR",
    "configure",
    "cross_entropy",
    "cross_entropy_grad",
    "entropy",
    "log_softmax",
    "log_softmax_vjp",
    "logsumexp",
    "logsumexp_vjp",
    "nll_loss",
    "row_launch",
    "sigmoid",
    "softmax",
    "softmax_entropy",
    "softmax_entropy_grad",
    "softmax_jacobian",
    "softmax_vjp",
]
