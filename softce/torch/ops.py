"""softce's functions as PyTorch custom operators (``torch.ops.softce.*``).

Each operator runs softce's front end on views of its tensors (``softce.torch.arrays``),
writing new tensors through ``out=`` where the front end takes it, has a fake (meta)
implementation for ``torch.compile`` and,
where it is differentiable, a backward registered with ``register_autograd`` that calls
another softce operator. The cross-entropy of a training step takes a fused route:
``cross_entropy_with_grad`` computes the loss and d loss / d logits in one kernel, and
``attach_grad`` returns the loss to autograd with that gradient saved, so the backward only
scales it by the upstream gradient (``scale_grad_``, in place). ``cross_entropy_with_grad_``
writes the gradient over the logits instead (their values are destroyed, declared by
``mutates_args``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

import softce
from softce.linear import LinearPlan

from .arrays import (
    array,
    compute_dtype,
    empty_like,
    narrowed,
    ordered,
    tensor,
    widened,
)
from .products import TORCH

LIB = "softce"


def class_dim(ndim: int) -> int:
    """PyTorch's class axis: 1 for (N, C, d1, ...), 0 for an unbatched (C,) input."""
    return 0 if ndim == 1 else 1


def batch_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    """The shape of per-position results: the input's shape without its class axis."""
    dim = class_dim(len(shape))
    return tuple(shape[:dim]) + tuple(shape[dim + 1:])


def loss_shape(shape: torch.Size | tuple[int, ...], reduction: str) -> tuple[int, ...]:
    return batch_shape(shape) if reduction == "none" else ()


def _ce_args(input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
             reduction: str, label_smoothing: float, z_loss: float, softcap: float | None
             ) -> dict:
    """softce's arguments of a cross-entropy besides the logits, which the kernels read as
    they are (16-bit ones too): class weights in the dtype it computes in."""
    tgt = target
    if target.is_floating_point() and target.dtype != input.dtype:
        tgt = narrowed(target, compute_dtype(input.dtype))
    kw = {"axis": class_dim(input.ndim), "reduction": reduction, "ignore_index": ignore_index,
          "label_smoothing": label_smoothing, "z_loss": z_loss, "softcap": softcap,
          "weight": None if weight is None else array(weight.to(compute_dtype(input.dtype)))}
    return {"target": array(tgt), **kw}


def _lse(input: Tensor, lse: object | None) -> Tensor:
    if lse is None:
        return input.new_empty((0,))
    return tensor(lse, input.device, input.dtype)


# cross_entropy: the loss alone, differentiable through cross_entropy_backward -------------

@torch.library.custom_op(f"{LIB}::cross_entropy", mutates_args=())
def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
                  reduction: str, label_smoothing: float, z_loss: float,
                  softcap: float | None, return_lse: bool) -> tuple[Tensor, Tensor]:
    """(loss, lse) of softce.cross_entropy with the class axis at dim 1 (0 when unbatched);
    lse is empty unless ``return_lse``."""
    kw = _ce_args(input, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                  softcap)
    with ordered(input, target):
        res = softce.cross_entropy(array(input), **kw, return_lse=return_lse)
    loss, lse = res if return_lse else (res, None)
    return tensor(loss, input.device, input.dtype), _lse(input, lse)


@cross_entropy.register_fake
def _(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
      return_lse):
    lse = batch_shape(input.shape) if return_lse else (0,)
    return input.new_empty(loss_shape(input.shape, reduction)), input.new_empty(lse)


def _ce_setup(ctx, inputs, output) -> None:
    input, target, weight, *options, _ = inputs
    ctx.save_for_backward(input, target, weight)
    ctx.options = options
    ctx.mark_non_differentiable(output[1])


def _ce_backward(ctx, grad_loss, grad_lse):
    input, target, weight = ctx.saved_tensors
    grad = grad_target = None
    if ctx.needs_input_grad[0]:
        grad = cross_entropy_backward(input, target, weight, *ctx.options, grad_loss)
    if ctx.needs_input_grad[1]:
        grad_target = _ce_target_grad(input, weight, *ctx.options, grad_loss)
    return grad, grad_target, None, None, None, None, None, None, None


def _ce_target_grad(input: Tensor, weight: Tensor | None, ignore_index: int, reduction: str,
                    label_smoothing: float, z_loss: float, softcap: float | None,
                    grad_loss: Tensor) -> Tensor:
    """d loss / d target of probability targets: -(1 - eps) w_k log softmax(s)_k times the
    upstream gradient, s the (soft-capped) logits; "mean" divides by the number of
    positions."""
    dim = class_dim(input.ndim)
    s = input if softcap is None else softcap * torch.tanh(input / softcap)
    t = -(1.0 - label_smoothing) * log_softmax(s, dim)
    if weight is not None:
        shape = [1] * input.ndim
        shape[dim] = -1
        t = t * weight.to(input.dtype).reshape(shape)
    g = grad_loss.unsqueeze(dim) if grad_loss.ndim else grad_loss
    if reduction == "mean":
        g = g / (input.numel() // input.shape[dim])
    return t * g


cross_entropy.register_autograd(_ce_backward, setup_context=_ce_setup)


@torch.library.custom_op(f"{LIB}::cross_entropy_backward", mutates_args=())
def cross_entropy_backward(input: Tensor, target: Tensor, weight: Tensor | None,
                           ignore_index: int, reduction: str, label_smoothing: float,
                           z_loss: float, softcap: float | None, grad_output: Tensor
                           ) -> Tensor:
    """grad_output * d loss / d input of ``cross_entropy`` (softce.cross_entropy_grad)."""
    kw = _ce_args(input, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                  softcap)
    grad = empty_like(input)
    go = grad_output.to(compute_dtype(input.dtype))
    with ordered(input, target, grad_output):
        softce.cross_entropy_grad(array(input), **kw, grad_output=array(go), out=array(grad))
    return grad


@cross_entropy_backward.register_fake
def _(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
      grad_output):
    return torch.empty(input.shape, dtype=input.dtype, device=input.device)


# the fused route of a training step -------------------------------------------------------

@torch.library.custom_op(f"{LIB}::cross_entropy_with_grad", mutates_args=())
def cross_entropy_with_grad(input: Tensor, target: Tensor, weight: Tensor | None,
                            ignore_index: int, reduction: str, label_smoothing: float,
                            z_loss: float, softcap: float | None, return_lse: bool
                            ) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, lse, d loss / d input) in one fused kernel (softce.cross_entropy_grad with
    grad_output 1); the gradient in a new tensor of the input's shape and dtype."""
    kw = _ce_args(input, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                  softcap)
    # a new gradient in the input's dtype, 16-bit ones written in 16 bits by the kernel
    grad = empty_like(input)
    with ordered(input, target):
        res = softce.cross_entropy_grad(array(input), **kw, return_lse=return_lse,
                                        out=array(grad))
    loss, lse = res[0], (res[2] if return_lse else None)
    return tensor(loss, input.device, input.dtype), _lse(input, lse), grad


@cross_entropy_with_grad.register_fake
def _(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
      return_lse):
    lse = batch_shape(input.shape) if return_lse else (0,)
    return (input.new_empty(loss_shape(input.shape, reduction)), input.new_empty(lse),
            torch.empty(input.shape, dtype=input.dtype, device=input.device))


@torch.library.custom_op(f"{LIB}::cross_entropy_with_grad_", mutates_args=("input",))
def cross_entropy_with_grad_(input: Tensor, target: Tensor, weight: Tensor | None,
                             ignore_index: int, reduction: str, label_smoothing: float,
                             z_loss: float, softcap: float | None, return_lse: bool
                             ) -> tuple[Tensor, Tensor]:
    """(loss, lse), writing d loss / d input over ``input`` (its values are destroyed)."""
    kw = _ce_args(input, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                  softcap)
    with ordered(input, target):
        res = softce.cross_entropy_grad(array(input), **kw, return_lse=return_lse,
                                        out=array(input))
    loss, lse = res[0], (res[2] if return_lse else None)
    return tensor(loss, input.device, input.dtype), _lse(input, lse)


@cross_entropy_with_grad_.register_fake
def _(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
      return_lse):
    lse = batch_shape(input.shape) if return_lse else (0,)
    return input.new_empty(loss_shape(input.shape, reduction)), input.new_empty(lse)


@torch.library.custom_op(f"{LIB}::attach_grad", mutates_args=())
def attach_grad(input: Tensor, loss: Tensor, grad: Tensor) -> Tensor:
    """loss, as a function of ``input`` whose gradient (for an upstream gradient of 1) is
    ``grad``, computed already."""
    return loss.clone()


@attach_grad.register_fake
def _(input, loss, grad):
    return torch.empty_like(loss)


def _attach_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[2])


def _attach_backward(ctx, grad_loss):
    """The saved gradient, scaled in place by the upstream one (``scale_grad_``): the backward
    consumes it, so a second backward through the same loss raises autograd's error for a
    saved tensor modified in place."""
    (grad,) = ctx.saved_tensors
    scale_grad_(grad, grad_loss)
    return grad, None, None


attach_grad.register_autograd(_attach_backward, setup_context=_attach_setup)


@torch.library.custom_op(f"{LIB}::scale_grad_", mutates_args=("grad",))
def scale_grad_(grad: Tensor, grad_output: Tensor) -> None:
    """grad *= grad_output in place (a per-position grad_output along the class axis). A CPU
    grad_output of exactly 1 leaves grad as it is; on a GPU it always multiplies (checking
    would wait for the device)."""
    g = grad_output
    if g.ndim and g.ndim == grad.ndim - 1:
        g = g.unsqueeze(class_dim(grad.ndim))
    if grad.device.type == "cpu" and bool((g == 1).all()):
        return
    grad.mul_(g)


@scale_grad_.register_fake
def _(grad, grad_output):
    return None


# nll_loss -------------------------------------------------------------------------------

@torch.library.custom_op(f"{LIB}::nll_loss", mutates_args=())
def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
             reduction: str) -> Tensor:
    """softce.nll_loss with the class axis at dim 1 (0 when unbatched)."""
    x = widened(input)
    w = None if weight is None else array(weight.to(x.dtype))
    with ordered(input, target):
        loss = softce.nll_loss(array(x), array(target), axis=class_dim(x.ndim), weight=w,
                               ignore_index=ignore_index, reduction=reduction)
    return tensor(loss, input.device, input.dtype)


@nll_loss.register_fake
def _(input, target, weight, ignore_index, reduction):
    return input.new_empty(loss_shape(input.shape, reduction))


def _nll_setup(ctx, inputs, output) -> None:
    input, target, weight, ignore_index, reduction = inputs
    ctx.save_for_backward(target, weight)
    ctx.shape, ctx.dtype = input.shape, input.dtype
    ctx.ignore_index, ctx.reduction = ignore_index, reduction


def _nll_backward(ctx, grad_loss):
    """d loss / d input: -w[c] g at each counted position's label, divided by the sum of
    w[c] over counted positions for "mean"; 0 elsewhere."""
    target, weight = ctx.saved_tensors
    dim = class_dim(len(ctx.shape))
    counted = target != ctx.ignore_index
    labels = torch.where(counted, target, 0)
    w = counted.to(ctx.dtype)
    if weight is not None:
        w = w * weight.to(ctx.dtype)[labels]
    if ctx.reduction == "mean":
        w = w / w.sum()
    g = grad_loss.to(ctx.dtype)
    grad = torch.zeros(ctx.shape, dtype=ctx.dtype, device=target.device)
    return grad.scatter(dim, labels.unsqueeze(dim), (-w * g).unsqueeze(dim)), None, None, \
        None, None


nll_loss.register_autograd(_nll_backward, setup_context=_nll_setup)


# the softmax family -----------------------------------------------------------------------

def _rowwise(name: str, x: Tensor, dim: int) -> Tensor:
    """softce's ``name`` of x (16-bit x read as it is) into a new tensor of x's dtype."""
    out = empty_like(x)
    with ordered(x):
        getattr(softce, name)(array(x), dim, out=array(out))
    return out


@torch.library.custom_op(f"{LIB}::softmax", mutates_args=())
def softmax(input: Tensor, dim: int) -> Tensor:
    """softce.softmax along ``dim``."""
    return _rowwise("softmax", input, dim)


@torch.library.custom_op(f"{LIB}::log_softmax", mutates_args=())
def log_softmax(input: Tensor, dim: int) -> Tensor:
    """softce.log_softmax along ``dim``."""
    return _rowwise("log_softmax", input, dim)


def _vjp(name: str, y: Tensor, g: Tensor, dim: int) -> Tensor:
    """y and g as the kernels read them when of one dtype (16-bit ones as they are), else
    both widened; the result in y's dtype."""
    yr = y if g.dtype == y.dtype else widened(y)
    gr = g if g.dtype == y.dtype else widened(g).to(yr.dtype)
    out = empty_like(y, yr.dtype)
    with ordered(y, g):
        getattr(softce, name)(array(yr), array(gr), dim, out=array(out))
    return narrowed(out, y.dtype)


@torch.library.custom_op(f"{LIB}::softmax_backward", mutates_args=())
def softmax_backward(output: Tensor, grad: Tensor, dim: int) -> Tensor:
    """softce.softmax_vjp: y (g - y.g) along ``dim``, y = softmax(x)."""
    return _vjp("softmax_vjp", output, grad, dim)


@torch.library.custom_op(f"{LIB}::log_softmax_backward", mutates_args=())
def log_softmax_backward(output: Tensor, grad: Tensor, dim: int) -> Tensor:
    """softce.log_softmax_vjp: g - exp(y) sum(g) along ``dim``, y = log_softmax(x)."""
    return _vjp("log_softmax_vjp", output, grad, dim)


for _op in (softmax, log_softmax, softmax_backward, log_softmax_backward):
    _op.register_fake(lambda input, *rest: torch.empty_like(input,
                                                            memory_format=torch.contiguous_format))


def _rowwise_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(output)
    ctx.dim = inputs[1]


softmax.register_autograd(
    lambda ctx, g: (softmax_backward(ctx.saved_tensors[0], g, ctx.dim), None),
    setup_context=_rowwise_setup)
log_softmax.register_autograd(
    lambda ctx, g: (log_softmax_backward(ctx.saved_tensors[0], g, ctx.dim), None),
    setup_context=_rowwise_setup)


def _reduced_shape(shape: tuple[int, ...], dims: list[int], keepdim: bool) -> tuple[int, ...]:
    axes = {d % max(len(shape), 1) for d in dims}
    if keepdim:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


@torch.library.custom_op(f"{LIB}::logsumexp", mutates_args=())
def logsumexp(input: Tensor, dim: list[int], keepdim: bool) -> Tensor:
    """softce.logsumexp over the axes ``dim`` taken together."""
    with ordered(input):
        lse = softce.logsumexp(array(input), tuple(dim), keepdims=keepdim)
    return tensor(lse, input.device, input.dtype)


@logsumexp.register_fake
def _(input, dim, keepdim):
    return input.new_empty(_reduced_shape(tuple(input.shape), dim, keepdim))


@torch.library.custom_op(f"{LIB}::logsumexp_backward", mutates_args=())
def logsumexp_backward(input: Tensor, grad: Tensor, dim: list[int]) -> Tensor:
    """softce.logsumexp_vjp: g softmax(x) over ``dim``, g of the reduced shape."""
    x = input
    g = widened(grad).to(compute_dtype(x.dtype))
    with ordered(input, grad):
        out = softce.logsumexp_vjp(array(x), array(g), tuple(dim))
    return tensor(out, input.device, input.dtype).contiguous()


@logsumexp_backward.register_fake
def _(input, grad, dim):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def _lse_setup(ctx, inputs, output) -> None:
    input, dim, keepdim = inputs
    ctx.save_for_backward(input)
    ctx.dim = dim
    ctx.reduced = _reduced_shape(tuple(input.shape), dim, False)


def _lse_backward(ctx, grad):
    (input,) = ctx.saved_tensors
    return logsumexp_backward(input, grad.reshape(ctx.reduced), ctx.dim), None, None


logsumexp.register_autograd(_lse_backward, setup_context=_lse_setup)


# elementwise losses -----------------------------------------------------------------------

def _optional(t: Tensor | None, dtype: torch.dtype) -> object:
    return None if t is None else array(widened(t).to(dtype))


@torch.library.custom_op(f"{LIB}::binary_cross_entropy_with_logits", mutates_args=())
def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None,
                                     pos_weight: Tensor | None, reduction: str) -> Tensor:
    """softce.binary_cross_entropy_with_logits."""
    x = widened(input)
    with ordered(input, target):
        loss = softce.binary_cross_entropy_with_logits(
            array(x), array(widened(target).to(x.dtype)), weight=_optional(weight, x.dtype),
            pos_weight=_optional(pos_weight, x.dtype), reduction=reduction)
    return tensor(loss, input.device, input.dtype)


@binary_cross_entropy_with_logits.register_fake
def _(input, target, weight, pos_weight, reduction):
    return input.new_empty(tuple(input.shape) if reduction == "none" else ())


@torch.library.custom_op(f"{LIB}::binary_cross_entropy_with_logits_backward", mutates_args=())
def binary_cross_entropy_with_logits_backward(input: Tensor, target: Tensor,
                                              weight: Tensor | None,
                                              pos_weight: Tensor | None, reduction: str,
                                              grad_output: Tensor) -> Tensor:
    """grad_output * d loss / d input (softce.binary_cross_entropy_with_logits_grad)."""
    x = widened(input)
    with ordered(input, target, grad_output):
        _, grad = softce.binary_cross_entropy_with_logits_grad(
            array(x), array(widened(target).to(x.dtype)), weight=_optional(weight, x.dtype),
            pos_weight=_optional(pos_weight, x.dtype), reduction=reduction,
            grad_output=array(widened(grad_output).to(x.dtype)))
    return tensor(grad, input.device, input.dtype).contiguous()


@binary_cross_entropy_with_logits_backward.register_fake
def _(input, target, weight, pos_weight, reduction, grad_output):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def _bce_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:4])
    ctx.reduction = inputs[4]


def _bce_backward(ctx, grad):
    input, target, weight, pos_weight = ctx.saved_tensors
    dx = dy = None
    if ctx.needs_input_grad[0]:
        dx = binary_cross_entropy_with_logits_backward(input, target, weight, pos_weight,
                                                       ctx.reduction, grad)
    if ctx.needs_input_grad[1]:
        # d loss / d y = -weight (pos_weight log sigmoid(x) - log sigmoid(-x))
        pw = 1.0 if pos_weight is None else pos_weight
        dy = -(pw * F.logsigmoid(input) - F.logsigmoid(-input))
        if weight is not None:
            dy = dy * weight
        dy = dy * (grad / input.numel() if ctx.reduction == "mean" else grad)
    return dx, dy, None, None, None


binary_cross_entropy_with_logits.register_autograd(_bce_backward, setup_context=_bce_setup)


@torch.library.custom_op(f"{LIB}::kl_div", mutates_args=())
def kl_div(input: Tensor, target: Tensor, reduction: str, log_target: bool) -> Tensor:
    """softce.kl_div: input holds log q."""
    x = widened(input)
    with ordered(input, target):
        loss = softce.kl_div(array(x), array(widened(target).to(x.dtype)),
                             reduction=reduction, log_target=log_target)
    return tensor(loss, input.device, input.dtype)


@kl_div.register_fake
def _(input, target, reduction, log_target):
    return input.new_empty(tuple(input.shape) if reduction == "none" else ())


def _kl_setup(ctx, inputs, output) -> None:
    input, target, reduction, log_target = inputs
    ctx.save_for_backward(input, target)
    ctx.numel, ctx.batch = input.numel(), (input.shape[0] if input.ndim else 1)
    ctx.dtype = input.dtype
    ctx.reduction, ctx.log_target = reduction, log_target


def _kl_backward(ctx, grad):
    """d loss / d input = -target (-exp(target) with log_target); d loss / d target =
    log(target) + 1 - input (PyTorch's: NaN at target = 0), or exp(target) (target - input + 1)
    with log_target; times the upstream gradient, divided by the element count for "mean" and
    by the batch size for "batchmean"."""
    input, target = ctx.saved_tensors
    divisor = {"mean": ctx.numel, "batchmean": ctx.batch}.get(ctx.reduction, 1)
    g = grad / divisor
    dx = dt = None
    if ctx.needs_input_grad[0]:
        p = target.exp() if ctx.log_target else target
        dx = (-p * g).to(ctx.dtype)
    if ctx.needs_input_grad[1]:
        if ctx.log_target:
            dt = target.exp() * (target - input + 1) * g
        else:
            dt = (torch.where(target == 0, 0.0, target.log()) + target / target - input) * g
    return dx, dt, None, None


kl_div.register_autograd(_kl_backward, setup_context=_kl_setup)


# linear_cross_entropy: the logits never materialised; the backward computes them again ----

def _linear_plan(input: Tensor, linear_weight: Tensor, target: Tensor,
                 linear_bias: Tensor | None, weight: Tensor | None, reduction: str,
                 ignore_index: int | None, label_smoothing: float, z_loss: float,
                 softcap: float | None, chunk_bytes: int | None) -> LinearPlan:
    """softce.linear's plan over the tensors themselves (16-bit ones widened), on their
    device: torch's matrix products, softce's cross-entropy kernels on each chunk."""
    h = widened(input)
    w = narrowed(linear_weight, h.dtype)
    b = None if linear_bias is None else narrowed(linear_bias, h.dtype)
    tgt = narrowed(target, h.dtype) if target.is_floating_point() else target
    return LinearPlan.check(h, w, tgt, b, None if weight is None else weight.to(h.dtype),
                            reduction, ignore_index, label_smoothing, z_loss, softcap,
                            chunk_bytes, products=TORCH)


@torch.library.custom_op(f"{LIB}::linear_cross_entropy", mutates_args=())
def linear_cross_entropy(input: Tensor, linear_weight: Tensor, target: Tensor,
                         linear_bias: Tensor | None, weight: Tensor | None, reduction: str,
                         ignore_index: int | None, label_smoothing: float, z_loss: float,
                         softcap: float | None, chunk_bytes: int | None) -> Tensor:
    """softce.linear_cross_entropy: cross_entropy(input W^T + b, target), chunked [D20]."""
    with ordered(input, target):
        loss = _linear_plan(input, linear_weight, target, linear_bias, weight, reduction,
                            ignore_index, label_smoothing, z_loss, softcap, chunk_bytes).loss()
    return tensor(loss, input.device, input.dtype)


@linear_cross_entropy.register_fake
def _(input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
      label_smoothing, z_loss, softcap, chunk_bytes):
    batch = tuple(input.shape[:-1]) + tuple(linear_weight.shape[1:-1])
    return input.new_empty(batch if reduction == "none" else ())


@torch.library.custom_op(f"{LIB}::linear_cross_entropy_backward", mutates_args=())
def linear_cross_entropy_backward(input: Tensor, linear_weight: Tensor, target: Tensor,
                                  linear_bias: Tensor | None, weight: Tensor | None,
                                  reduction: str, ignore_index: int | None,
                                  label_smoothing: float, z_loss: float,
                                  softcap: float | None, chunk_bytes: int | None,
                                  grad_output: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """grad_output times (G W, G^T h, sum G) of linear_cross_entropy, G = d loss / d logits
    [D20]; the bias gradient is empty without a bias."""
    with ordered(input, target, grad_output):
        plan = _linear_plan(input, linear_weight, target, linear_bias, weight, reduction,
                            ignore_index, label_smoothing, z_loss, softcap, chunk_bytes)
        res = plan.gradients(widened(grad_output).to(plan.h.dtype))
    d_bias = (tensor(res[3], input.device, linear_bias.dtype) if linear_bias is not None
              else input.new_empty((0,)))
    return (tensor(res[1], input.device, input.dtype),
            tensor(res[2], input.device, linear_weight.dtype), d_bias)


@linear_cross_entropy_backward.register_fake
def _(input, linear_weight, target, linear_bias, weight, reduction, ignore_index,
      label_smoothing, z_loss, softcap, chunk_bytes, grad_output):
    bias = torch.empty_like(linear_bias) if linear_bias is not None else input.new_empty((0,))
    return torch.empty_like(input), torch.empty_like(linear_weight), bias


def _linear_setup(ctx, inputs, output) -> None:
    ctx.options = inputs[3:]
    ctx.save_for_backward(*inputs[:3])


def _linear_backward(ctx, grad_loss):
    input, linear_weight, target = ctx.saved_tensors
    d_input, d_weight, d_bias = linear_cross_entropy_backward(
        input, linear_weight, target, *ctx.options, grad_loss)
    return (d_input, d_weight, None, d_bias if ctx.options[0] is not None else None,
            None, None, None, None, None, None, None)


linear_cross_entropy.register_autograd(_linear_backward, setup_context=_linear_setup)
