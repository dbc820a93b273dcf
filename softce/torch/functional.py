"""``torch.nn.functional``'s softmax-family functions and losses, computed by softce.

Same names, argument order, defaults and return types as ``torch.nn.functional`` (and
``torch.logsumexp``); softce's own options are keyword-only. Gradients flow through autograd
(``softce.torch.ops``), and ``torch.compile(fullgraph=True)`` captures every function without
a graph break. Tensors are used in place on the CPU (NumPy views) and on CUDA devices (numba
views); bfloat16 and float16 are computed in float32 and returned in their own dtype, as
PyTorch returns them: the cross-entropy and the softmax family's rows read them as 16 bits
(no copy, on the CPU and on CUDA), elsewhere they are widened by a copy
(``softce.torch.arrays``). Gradients
flow to ``input`` and to float targets (probabilities, BCE and kl_div targets); class weights
are constants (a weight that requires grad is refused).
"""

from __future__ import annotations

import numbers
import warnings

import torch
from torch import Tensor

from . import ops
from .arrays import NATIVE, WIDENED

REDUCTIONS = ("none", "mean", "sum")


def _float_tensor(value: object, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in NATIVE + WIDENED:
        raise TypeError(f"{name} must be a float32, float64, bfloat16 or float16 tensor, got "
                        f"dtype {value.dtype}")
    return value


def _companion(value: object, name: str, input: Tensor, *, floating: bool | None = None,
               optional: bool = False, differentiable: bool = False) -> Tensor | None:
    """A tensor argument beside ``input``: on its device, of a floating (True) or integer
    (False) dtype when asked, and constant for autograd unless ``differentiable``."""
    if value is None and optional:
        return None
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{' or None' if optional else ''}, got "
                        f"{type(value).__name__}")
    if value.device != input.device:
        raise ValueError(f"{name} is on {value.device} but input is on {input.device}; move "
                         f"them to one device")
    if floating is True and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if floating is False and (value.is_floating_point() or value.is_complex()
                              or value.dtype == torch.bool):
        raise TypeError(f"{name} must hold integer class labels, got dtype {value.dtype}")
    if value.requires_grad and torch.is_grad_enabled() and not differentiable:
        raise ValueError(f"{name} requires grad, but softce.torch takes it as a constant; "
                         f"pass {name}.detach()")
    return value


def _reduction(size_average: bool | None, reduce: bool | None, reduction: str,
               allowed: tuple[str, ...] = REDUCTIONS) -> str:
    """PyTorch's reduction, from the deprecated size_average/reduce when either is given."""
    if size_average is not None or reduce is not None:
        warnings.warn("size_average and reduce are deprecated, please use reduction='mean', "
                      "'sum' or 'none' instead", UserWarning, stacklevel=3)
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else "mean" if size_average else "sum"
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
    return reduction


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def _real(value: object, name: str) -> float:
    """A real number's value (its range is checked by softce's front end)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _batched(input: Tensor) -> None:
    if input.ndim == 0:
        raise ValueError("input must have a class axis: shape (C,), (N, C) or (N, C, d1, ...), "
                         "got a 0-d tensor")


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average: bool | None = None, ignore_index: int = -100,
                  reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0, *, z_loss: float = 0.0,
                  softcap: float | None = None, return_lse: bool = False,
                  inplace_backward: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """``F.cross_entropy``: LSE(x) - x_c per position (class axis 1, or 0 for an unbatched
    (C,) input), with PyTorch's weight, ignore_index, reduction and label_smoothing; targets are
    class labels (integer, the input's shape without the class axis) or probabilities (float,
    the input's shape).

    softce's options: ``z_loss`` z adds z LSE(x)^2 per counted position, ``softcap`` c takes
    c tanh(x / c) as the logits first, ``return_lse`` returns (loss, lse) with the per-position
    LSE (without gradient).

    When input requires grad, the forward runs softce's fused loss-and-gradient kernel and
    keeps d loss / d input (one input-sized tensor) for the backward, which only scales it by
    the upstream gradient. ``inplace_backward=True`` writes that gradient over the input's
    own memory instead: no extra input-sized tensor, but the input's values are destroyed,
    so use it only when nothing reads the logits after the loss (autograd raises if a saved
    tensor was overwritten). Backward through the loss once (no second backward with
    retain_graph=True). A probability target that requires grad gets its gradient too; the
    call then takes the unfused route (the backward computes d loss / d input again, with the
    same kernel) and ``inplace_backward`` does not apply.
    """
    _float_tensor(input, "input")
    _batched(input)
    target = _companion(target, "target", input, differentiable=True)
    weight = _companion(weight, "weight", input, floating=True, optional=True)
    reduction = _reduction(size_average, reduce, reduction)
    for name, flag in (("return_lse", return_lse), ("inplace_backward", inplace_backward)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    options = (_int(ignore_index, "ignore_index"), reduction,
               _real(label_smoothing, "label_smoothing"), _real(z_loss, "z_loss"),
               None if softcap is None else _real(softcap, "softcap"), return_lse)
    if torch.is_grad_enabled() and input.requires_grad and not target.requires_grad:
        # one fused kernel: the loss now, the gradient kept for the backward
        if inplace_backward:
            grad = input.detach()
            loss, lse = ops.cross_entropy_with_grad_(grad, target, weight, *options)
        else:
            loss, lse, grad = ops.cross_entropy_with_grad(input.detach(), target, weight,
                                                          *options)
        loss = ops.attach_grad(input, loss, grad)
    else:
        loss, lse = ops.cross_entropy(input, target, weight, *options)
    return (loss, lse) if return_lse else loss


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
             size_average: bool | None = None, ignore_index: int = -100,
             reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """``F.nll_loss``: -weight[c] input[c] per position (input holds log-probabilities, class
    axis 1, or 0 unbatched); "mean" divides by the sum of weight[c] over counted positions."""
    _float_tensor(input, "input")
    _batched(input)
    target = _companion(target, "target", input, floating=False)
    weight = _companion(weight, "weight", input, floating=True, optional=True)
    reduction = _reduction(size_average, reduce, reduction)
    return ops.nll_loss(input, target, weight, _int(ignore_index, "ignore_index"), reduction)


def _softmax_dim(input: Tensor, dim: int | None, name: str) -> int:
    if dim is None:  # PyTorch's implicit choice, deprecated there too
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the "
                      f"call to include dim=X as an argument.", UserWarning, stacklevel=3)
        return 0 if input.ndim in (0, 1, 3) else 1
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -max(input.ndim, 1) <= dim < max(input.ndim, 1):
        raise ValueError(f"dim={dim} is out of range for a tensor of {input.ndim} dimensions")
    return dim


def _cast(input: Tensor, dtype: torch.dtype | None) -> Tensor:
    return input if dtype is None else input.to(dtype)


def softmax(input: Tensor, dim: int | None = None, *, dtype: torch.dtype | None = None
            ) -> Tensor:
    """``F.softmax``: exp(x_j - m) / sum_i exp(x_i - m) along ``dim`` (input cast to ``dtype``
    first when given)."""
    x = _float_tensor(_cast(input, dtype), "input")
    return ops.softmax(x, _softmax_dim(x, dim, "softmax"))


def log_softmax(input: Tensor, dim: int | None = None, *, dtype: torch.dtype | None = None
                ) -> Tensor:
    """``F.log_softmax``: x_j - LSE(x) along ``dim`` (input cast to ``dtype`` first when
    given)."""
    x = _float_tensor(_cast(input, dtype), "input")
    return ops.log_softmax(x, _softmax_dim(x, dim, "log_softmax"))


def logsumexp(input: Tensor, dim: int | tuple[int, ...] | list[int], keepdim: bool = False
              ) -> Tensor:
    """``torch.logsumexp``: m + log sum exp(x - m) over ``dim`` (an int or a tuple of dims,
    taken together); -inf over an all -inf slice."""
    _float_tensor(input, "input")
    dims = [dim] if isinstance(dim, int) and not isinstance(dim, bool) else list(dim)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) for d in dims):
        raise TypeError(f"dim must be an int or a non-empty tuple of ints, got {dim!r}")
    if not isinstance(keepdim, bool):
        raise TypeError(f"keepdim must be a bool, got {type(keepdim).__name__}")
    return ops.logsumexp(input, dims, keepdim)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Tensor | None = None,
                                     size_average: bool | None = None,
                                     reduce: bool | None = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """``F.binary_cross_entropy_with_logits``: -weight (pos_weight y log sigmoid(x) + (1 - y)
    log(1 - sigmoid(x))) per element, finite for any x; weight broadcasts to input,
    pos_weight along the last axis."""
    _float_tensor(input, "input")
    target = _companion(target, "target", input, floating=True, differentiable=True)
    weight = _companion(weight, "weight", input, floating=True, optional=True)
    pos_weight = _companion(pos_weight, "pos_weight", input, floating=True, optional=True)
    reduction = _reduction(size_average, reduce, reduction)
    return ops.binary_cross_entropy_with_logits(input, target, weight, pos_weight, reduction)


def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None,
           reduce: bool | None = None, reduction: str = "mean", log_target: bool = False
           ) -> Tensor:
    """``F.kl_div``: input holds log q; the term is target (log target - input), 0 where
    target = 0, or with ``log_target`` exp(target) (target - input). reduction "batchmean"
    divides the sum by input.shape[0]."""
    _float_tensor(input, "input")
    target = _companion(target, "target", input, floating=True, differentiable=True)
    reduction = _reduction(size_average, reduce, reduction, REDUCTIONS + ("batchmean",))
    if not isinstance(log_target, bool):
        raise TypeError(f"log_target must be a bool, got {type(log_target).__name__}")
    return ops.kl_div(input, target, reduction, log_target)


def linear_cross_entropy(input: Tensor, linear_weight: Tensor, target: Tensor, *,
                         linear_bias: Tensor | None = None, weight: Tensor | None = None,
                         reduction: str = "mean", ignore_index: int | None = None,
                         label_smoothing: float = 0.0, z_loss: float = 0.0,
                         softcap: float | None = None, chunk_bytes: int | None = None
                         ) -> Tensor:
    """``F.linear_cross_entropy``: cross_entropy(F.linear(input, linear_weight, linear_bias),
    target) with PyTorch's weight, reduction, ignore_index (None: -100 for labels) and
    label_smoothing, computed by softce.linear_cross_entropy in row chunks of at most
    ``chunk_bytes`` of logits (the logits are never materialised) [D20]. Gradients flow to
    input, linear_weight and linear_bias; the backward computes each chunk's logits again
    (one more product per chunk, no logits kept between forward and backward). CPU tensors.
    """
    _float_tensor(input, "input")
    linear_weight = _companion(linear_weight, "linear_weight", input, floating=True,
                               differentiable=True)
    linear_bias = _companion(linear_bias, "linear_bias", input, floating=True, optional=True,
                             differentiable=True)
    target = _companion(target, "target", input)
    weight = _companion(weight, "weight", input, floating=True, optional=True)
    reduction = _reduction(None, None, reduction)
    if ignore_index is not None:
        ignore_index = _int(ignore_index, "ignore_index")
    if chunk_bytes is not None:
        chunk_bytes = _int(chunk_bytes, "chunk_bytes")
    return ops.linear_cross_entropy(
        input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
        _real(label_smoothing, "label_smoothing"), _real(z_loss, "z_loss"),
        None if softcap is None else _real(softcap, "softcap"), chunk_bytes)
