"""softce: the softmax family, derived with SymPy and compiled with Numba.

NumPy arrays in, NumPy arrays out; each function runs one generated kernel (compiled on
first use, then loaded from Numba's on-disk cache).
"""

from . import _numba_cache  # noqa: F401 - first: a corrupted cache must not break imports
from .functions import (
    cross_entropy,
    cross_entropy_grad,
    entropy,
    log_softmax,
    log_softmax_vjp,
    logsumexp,
    logsumexp_vjp,
    sigmoid,
    softmax,
    softmax_jacobian,
    softmax_vjp,
)

__version__ = "0.1.0"

__all__ = [
    "cross_entropy",
    "cross_entropy_grad",
    "entropy",
    "log_softmax",
    "log_softmax_vjp",
    "logsumexp",
    "logsumexp_vjp",
    "sigmoid",
    "softmax",
    "softmax_jacobian",
    "softmax_vjp",
]
