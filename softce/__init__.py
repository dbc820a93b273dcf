"""softce: the softmax family, derived with SymPy and compiled with Numba.

NumPy arrays in, NumPy arrays out; each function runs one generated kernel (compiled on
first use, then loaded from Numba's on-disk cache).
"""

from . import numba_cache  # noqa: F401 - first: a corrupted cache must not break imports
from .functions import (
    entropy,
    log_softmax,
    log_softmax_vjp,
    logsumexp,
    logsumexp_vjp,
    online_state,
    sigmoid,
    softmax,
    softmax_entropy,
    softmax_entropy_grad,
    softmax_jacobian,
    softmax_vjp,
)
from .linear import linear_cross_entropy, linear_cross_entropy_grad
from .losses import cross_entropy, cross_entropy_grad, nll_loss
from .pointwise import (
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    kl_div,
)

__version__ = "0.1.0"

__all__ = [
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "entropy",
    "kl_div",
    "linear_cross_entropy",
    "linear_cross_entropy_grad",
    "log_softmax",
    "log_softmax_vjp",
    "logsumexp",
    "logsumexp_vjp",
    "online_state",
    "nll_loss",
    "sigmoid",
    "softmax",
    "softmax_entropy",
    "softmax_entropy_grad",
    "softmax_jacobian",
    "softmax_vjp",
]
