"""``torch.nn``'s loss modules, computed by softce.

Each is a subclass of its ``torch.nn`` counterpart, with the same constructor arguments
(softce's extras keyword-only) and the same attributes (``weight`` and ``pos_weight`` buffers,
``reduction``, ...), whose forward calls ``softce.torch.functional``; swapping
``nn.CrossEntropyLoss(label_smoothing=0.1)`` for ``softce.torch.CrossEntropyLoss(
label_smoothing=0.1)`` is the whole change in a training script.
"""

from __future__ import annotations

from torch import Tensor, nn

from . import functional as F


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` through softce's fused kernel; ``z_loss``, ``softcap`` and
    ``inplace_backward`` as in ``softce.torch.cross_entropy``."""

    def __init__(self, weight: Tensor | None = None, size_average: bool | None = None,
                 ignore_index: int = -100, reduce: bool | None = None,
                 reduction: str = "mean", label_smoothing: float = 0.0, *,
                 z_loss: float = 0.0, softcap: float | None = None,
                 inplace_backward: bool = False) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction,
                         label_smoothing)
        self.z_loss = z_loss
        self.softcap = softcap
        self.inplace_backward = inplace_backward

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(input, target, weight=self.weight,
                               ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing, z_loss=self.z_loss,
                               softcap=self.softcap, inplace_backward=self.inplace_backward)


class NLLLoss(nn.NLLLoss):
    """``nn.NLLLoss`` through softce."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``nn.BCEWithLogitsLoss`` through softce."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(input, target, self.weight,
                                                  pos_weight=self.pos_weight,
                                                  reduction=self.reduction)


class KLDivLoss(nn.KLDivLoss):
    """``nn.KLDivLoss`` through softce."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
