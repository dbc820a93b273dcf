"""softce for PyTorch: ``torch.nn.functional``'s softmax family and losses, and
``torch.nn``'s loss modules, as drop-in replacements with autograd and ``torch.compile``
support (``pip install softce[torch]``).

``import softce`` never imports torch; ``import softce.torch`` does, and registers softce's
custom operators (``torch.ops.softce.*``).
"""

from __future__ import annotations

from .functional import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    kl_div,
    linear_cross_entropy,
    log_softmax,
    logsumexp,
    nll_loss,
    softmax,
)
from .modules import BCEWithLogitsLoss, CrossEntropyLoss, KLDivLoss, NLLLoss

__all__ = [
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "KLDivLoss",
    "NLLLoss",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "kl_div",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "softmax",
]
