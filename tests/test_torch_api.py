"""softce.torch against torch.nn.functional: forward and backward of every function and
option, in float64 (1e-10 relative), float32 (2e-5) and the widened 16-bit dtypes; the
modules against torch.nn's; the arguments softce.torch checks itself."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import softce.torch as st  # noqa: E402

TOL = {torch.float64: (1e-10, 1e-12), torch.float32: (2e-5, 2e-6)}


def close(actual, expected, dtype: torch.dtype = torch.float64, msg: str = "") -> None:
    rtol, atol = TOL.get(dtype, (2e-2, 2e-2))
    assert actual.dtype == expected.dtype, f"{msg}: dtype {actual.dtype} != {expected.dtype}"
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True,
                               msg=lambda m: f"{msg}: {m}")


def loss_and_grad(fn, x: torch.Tensor, upstream: float | None, seed: int = 0):
    """fn(x) and d (upstream . fn(x)) / dx: upstream None backprops 1 (loss.backward())."""
    leaf = x.detach().clone().requires_grad_(True)
    out = fn(leaf)
    if upstream is None:
        g = torch.ones_like(out)
    else:
        gen = torch.Generator().manual_seed(seed)
        g = (torch.rand(out.shape, generator=gen, dtype=torch.float64) + upstream).to(out.dtype)
    out.backward(g)
    return out.detach(), leaf.grad


def ce_case(shape: tuple[int, ...], dtype: torch.dtype, kind: str, weight: str | None,
            ignore: bool, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).to(dtype)
    c = shape[0] if len(shape) == 1 else shape[1]
    batch = shape[:0] if len(shape) == 1 else shape[:1] + shape[2:]
    if kind == "labels":
        target = torch.randint(0, c, batch, generator=gen)
        if ignore:
            target = torch.where(torch.rand(batch, generator=gen) < 0.3, 1, target)
            target.view(-1)[0] = 0  # one counted position at least
    else:
        target = F.softmax(torch.randn(shape, generator=gen, dtype=torch.float64),
                           dim=int(len(shape) > 1)).to(dtype)
    w = None
    if weight == "positive":
        w = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5).to(dtype)
    elif weight == "signed":  # any real weights, with a sum well away from 0
        w = (torch.rand(c, generator=gen, dtype=torch.float64) * 2 - 0.5).to(dtype)
        w[0] = 3.0
    return x, target, w


SHAPES = [(7, 5), (6,), (3, 4, 2, 3)]
#: (weight, ignore_index in the labels, label_smoothing, reduction): every pair of values of
#: two options appears in some row
OPTIONS = [
    (None, False, 0.0, "mean"), (None, True, 0.15, "none"), (None, True, 0.0, "sum"),
    ("positive", False, 0.15, "sum"), ("positive", True, 0.0, "mean"),
    ("positive", True, 0.15, "none"), ("signed", False, 0.0, "none"),
    ("signed", True, 0.15, "mean"), ("signed", True, 0.0, "sum"), (None, False, 0.15, "mean"),
]
CE_CASES = [
    (shape, kind, *opts) for shape, kind, opts in itertools.product(
        SHAPES, ("labels", "probs"), OPTIONS)
    if not (kind == "probs" and opts[1])  # PyTorch ignores ignore_index for probabilities
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", CE_CASES, ids=str)
def test_cross_entropy_matches_pytorch(case, dtype):
    shape, kind, weight, ignore, smoothing, reduction = case
    x, target, w = ce_case(shape, dtype, kind, weight, ignore, seed=len(str(case)))
    kw = {"weight": w, "ignore_index": 1 if ignore else -100, "reduction": reduction,
          "label_smoothing": smoothing}
    for upstream in (None, 0.25):  # loss.backward(), and a scaled upstream gradient
        got, g_got = loss_and_grad(lambda v: st.cross_entropy(v, target, **kw), x, upstream)
        ref, g_ref = loss_and_grad(lambda v: F.cross_entropy(v, target, **kw), x, upstream)
        close(got, ref, dtype, f"loss {case} upstream={upstream}")
        close(g_got, g_ref, dtype, f"grad {case} upstream={upstream}")
    with torch.no_grad():  # the forward-only kernel
        close(st.cross_entropy(x, target, **kw), F.cross_entropy(x, target, **kw), dtype,
              f"no_grad {case}")


def _capped_ce(x, target, z_loss, softcap, reduction):
    """A reference from PyTorch's ops: c tanh(x / c) as the logits, z LSE^2 added per
    position (no weights, every position counted)."""
    s = softcap * torch.tanh(x / softcap) if softcap else x
    per = F.cross_entropy(s, target, reduction="none") + z_loss * torch.logsumexp(s, 1) ** 2
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("z_loss,softcap", [(1e-3, None), (0.0, 2.5), (0.01, 4.0)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("inplace", [False, True])
def test_z_loss_and_softcap(z_loss, softcap, reduction, dtype, inplace):
    x, target, _ = ce_case((9, 6), dtype, "labels", None, False, seed=3)
    got, g_got = loss_and_grad(
        lambda v: st.cross_entropy(v * 1, target, reduction=reduction, z_loss=z_loss,
                                   softcap=softcap, inplace_backward=inplace), x, 0.5)
    ref, g_ref = loss_and_grad(lambda v: _capped_ce(v, target, z_loss, softcap, reduction),
                               x, 0.5)
    close(got, ref, dtype, "loss")
    close(g_got, g_ref, dtype, "grad")


@pytest.mark.parametrize("requires_grad", [False, True])
def test_return_lse(requires_grad):
    x, target, _ = ce_case((3, 5, 4), torch.float64, "labels", None, False, seed=1)
    x.requires_grad_(requires_grad)
    loss, lse = st.cross_entropy(x, target, return_lse=True, reduction="sum")
    close(loss.detach(), F.cross_entropy(x, target, reduction="sum").detach())
    close(lse, torch.logsumexp(x, 1).detach())
    assert lse.shape == (3, 4) and not lse.requires_grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("upstream", [None, 0.5])
def test_inplace_backward_writes_the_gradient_over_the_logits(dtype, upstream):
    x, target, w = ce_case((5, 3, 4), dtype, "labels", "positive", True, seed=7)
    kw = {"weight": w, "ignore_index": 1, "label_smoothing": 0.1, "reduction": "none"}
    ref, g_ref = loss_and_grad(lambda v: F.cross_entropy(v, target, **kw), x, upstream)
    h = x.detach().clone().requires_grad_(True)
    logits = h * 2.0  # a non-leaf whose producer does not keep it
    loss = st.cross_entropy(logits, target, **kw, inplace_backward=True)
    close(loss.detach(), F.cross_entropy(x * 2.0, target, **kw), dtype, "loss")
    # the logits' values are gone: they hold d loss / d logits now
    _, g_logits = loss_and_grad(lambda v: F.cross_entropy(v, target, **kw), x * 2.0, None)
    close(logits.detach(), g_logits, dtype, "logits overwritten by the gradient")
    gen = torch.Generator().manual_seed(0)
    g = (torch.ones_like(loss) if upstream is None
         else (torch.rand(loss.shape, generator=gen, dtype=torch.float64) + upstream).to(dtype))
    loss.backward(g)
    _, g_expect = loss_and_grad(lambda v: F.cross_entropy(v * 2.0, target, **kw), x, upstream)
    close(h.grad, g_expect, dtype, "grad through the overwritten logits")


def test_inplace_backward_is_refused_by_autograd_when_the_logits_are_needed():
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    logits = torch.tanh(x)  # tanh's backward reads its output: the logits
    loss = st.cross_entropy(logits, torch.tensor([0, 1, 2, 3]), inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_without_grad_inplace_backward_leaves_the_logits_alone():
    x = torch.randn(4, 6)
    before = x.clone()
    st.cross_entropy(x, torch.tensor([0, 1, 2, 3]), inplace_backward=True)
    assert torch.equal(x, before)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_the_fused_gradient_is_consumed_by_its_backward(scale):
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    loss = st.cross_entropy(x, torch.tensor([0, 1, 2, 3])) * scale
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


NLL_CASES = [(shape, weight, ignore, reduction) for shape, (weight, ignore, _, reduction)
             in itertools.product(SHAPES, OPTIONS)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", NLL_CASES, ids=str)
def test_nll_loss_matches_pytorch(case, dtype):
    shape, weight, ignore, reduction = case
    x, target, w = ce_case(shape, dtype, "labels", weight, ignore, seed=len(str(case)))
    logp = F.log_softmax(x, dim=0 if len(shape) == 1 else 1)
    kw = {"weight": w, "ignore_index": 1 if ignore else -100, "reduction": reduction}
    for upstream in (None, 0.25):
        got, g_got = loss_and_grad(lambda v: st.nll_loss(v, target, **kw), logp, upstream)
        ref, g_ref = loss_and_grad(lambda v: F.nll_loss(v, target, **kw), logp, upstream)
        close(got, ref, dtype, f"loss {case}")
        close(g_got, g_ref, dtype, f"grad {case}")


ROW_CASES = [((6, 9), 1), ((6, 9), 0), ((2, 3, 4, 5), 1), ((2, 3, 4, 5), -1), ((7,), 0)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape,dim", ROW_CASES, ids=str)
def test_softmax_and_log_softmax_match_pytorch(name, shape, dim, dtype):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = (x * 4).to(dtype)
    for view in (x, x.transpose(0, -1)):  # contiguous, and a strided view
        got, g_got = loss_and_grad(lambda v: getattr(st, name)(v, dim), view, 0.5)
        ref, g_ref = loss_and_grad(lambda v: getattr(F, name)(v, dim), view, 0.5)
        close(got, ref, dtype, f"{name} {shape} dim={dim}")
        close(g_got, g_ref, dtype, f"{name} grad {shape} dim={dim}")


def test_softmax_dtype_argument_and_implicit_dim():
    x = torch.randn(3, 4)
    close(st.log_softmax(x, 1, dtype=torch.float64), F.log_softmax(x, 1, dtype=torch.float64))
    with pytest.warns(UserWarning, match="Implicit dimension"):
        got = st.softmax(x)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        ref = F.softmax(x)  # noqa: F841 - PyTorch warns the same
    close(got, ref, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("dim", [1, -1, (0, 2), (1, 2, 3), 0])
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp_matches_pytorch(dim, keepdim, dtype):
    x = torch.randn(3, 4, 5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x = (x * 10).to(dtype)
    x[0, 0] = float("-inf")  # a masked slice
    got, g_got = loss_and_grad(lambda v: st.logsumexp(v, dim, keepdim), x, 0.5)
    ref, g_ref = loss_and_grad(lambda v: torch.logsumexp(v, dim, keepdim), x, 0.5)
    close(got, ref, dtype, "lse")
    close(g_got, g_ref, dtype, "grad")


BCE_CASES = list(itertools.product(((8,), (5, 4), (2, 3, 4)), (None, "weight"),
                                   (None, "pos_weight"), ("mean", "sum", "none")))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", BCE_CASES, ids=str)
def test_binary_cross_entropy_with_logits_matches_pytorch(case, dtype):
    shape, weight, pos_weight, reduction = case
    gen = torch.Generator().manual_seed(len(str(case)))
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 5).to(dtype)
    y = torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype)
    kw = {"reduction": reduction,
          "weight": None if weight is None else torch.randn(shape[-1:], generator=gen,
                                                            dtype=torch.float64).to(dtype),
          "pos_weight": None if pos_weight is None else (
              torch.rand(shape[-1:], generator=gen, dtype=torch.float64) * 3).to(dtype)}
    for upstream in (None, 0.25):
        got, g_got = loss_and_grad(lambda v: st.binary_cross_entropy_with_logits(v, y, **kw),
                                   x, upstream)
        ref, g_ref = loss_and_grad(lambda v: F.binary_cross_entropy_with_logits(v, y, **kw),
                                   x, upstream)
        close(got, ref, dtype, f"loss {case}")
        close(g_got, g_ref, dtype, f"grad {case}")


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_pytorch(reduction, log_target, dtype):
    gen = torch.Generator().manual_seed(11)
    logq = F.log_softmax(torch.randn(6, 5, generator=gen, dtype=torch.float64), 1).to(dtype)
    p = F.softmax(torch.randn(6, 5, generator=gen, dtype=torch.float64), 1)
    if not log_target:
        p[0, :2] = 0  # zero targets: their terms are 0 (log targets of -inf: see README)
    target = (p.log() if log_target else p).to(dtype)
    for upstream in (None, 0.25):
        got, g_got = loss_and_grad(
            lambda v: st.kl_div(v, target, reduction=reduction, log_target=log_target), logq,
            upstream)
        ref, g_ref = loss_and_grad(
            lambda v: F.kl_div(v, target, reduction=reduction, log_target=log_target), logq,
            upstream)
        close(got, ref, dtype, "loss")
        close(g_got, g_ref, dtype, "grad")


# gradients with respect to float targets --------------------------------------------------

def _both_grads(fn, x, y, upstream, seed=0):
    """fn(x, y) and its gradients with respect to x and y, for a random upstream gradient."""
    xl = x.detach().clone().requires_grad_(True)
    yl = y.detach().clone().requires_grad_(True)
    out = fn(xl, yl)
    gen = torch.Generator().manual_seed(seed)
    g = (torch.rand(out.shape, generator=gen, dtype=torch.float64) + upstream).to(out.dtype)
    gx, gy = torch.autograd.grad(out, (xl, yl), g)
    return out.detach(), gx, gy


TARGET_GRADS = {
    "ce probs": lambda m, x, y, r: m.cross_entropy(x, F.softmax(y, 1), WEIGHT5,
                                                   reduction=r, label_smoothing=0.1),
    "ce probs unbatched": lambda m, x, y, r: m.cross_entropy(x[0, :, 0], F.softmax(
        y[0, :, 0], 0), reduction=r),
    "bce": lambda m, x, y, r: m.binary_cross_entropy_with_logits(
        x, torch.sigmoid(y), WEIGHT3, reduction=r, pos_weight=WEIGHT3.flip(0)),
    "kl_div": lambda m, x, y, r: m.kl_div(x, F.softmax(y, 1), reduction=r),
    "kl_div log_target": lambda m, x, y, r: m.kl_div(x, F.log_softmax(y, 1), reduction=r,
                                                     log_target=True),
}
WEIGHT5 = torch.tensor([0.5, 2.0, -0.3, 1.0, 1.5], dtype=torch.float64)
WEIGHT3 = torch.tensor([0.5, 2.0, 1.3], dtype=torch.float64)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(TARGET_GRADS))
def test_gradients_reach_float_targets(name, reduction):
    gen = torch.Generator().manual_seed(len(name))
    x = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
    fn = TARGET_GRADS[name]
    got = _both_grads(lambda a, b: fn(st, a, b, reduction), x, y, 0.5)
    ref = _both_grads(lambda a, b: fn(F, a, b, reduction), x, y, 0.5)
    for what, a, b in zip(("loss", "d/d input", "d/d target"), got, ref):
        close(a, b, msg=f"{name} {reduction} {what}")


def test_target_gradient_with_softcap_and_z_loss():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64) * 4
    y = F.softmax(torch.randn(6, 5, generator=gen, dtype=torch.float64), 1)

    def reference(a, b):  # PyTorch's ops: capped logits, z LSE^2 per position
        s = 3.0 * torch.tanh(a / 3.0)
        return (F.cross_entropy(s, b, reduction="none")
                + 0.01 * torch.logsumexp(s, 1) ** 2).mean()

    got = _both_grads(lambda a, b: st.cross_entropy(a, b, softcap=3.0, z_loss=0.01), x, y, 0.5)
    ref = _both_grads(reference, x, y, 0.5)
    for what, a, b in zip(("loss", "d/d input", "d/d target"), got, ref):
        close(a, b, msg=what)


def test_kl_div_target_gradient_at_zero_is_pytorchs():
    x = F.log_softmax(torch.randn(3, 4, dtype=torch.float64), 1)
    y = F.softmax(torch.randn(3, 4, dtype=torch.float64), 1)
    y[0, 1] = 0
    got = _both_grads(lambda a, b: st.kl_div(a, b, reduction="sum"), x, y, 0.5)
    ref = _both_grads(lambda a, b: F.kl_div(a, b, reduction="sum"), x, y, 0.5)
    assert torch.isnan(ref[2][0, 1]) and torch.isnan(got[2][0, 1])
    close(got[2], ref[2])


# 16-bit logits: computed in float32, returned in their own dtype ---------------------------

HALF = [torch.bfloat16, torch.float16]


def _half_close(actual, expected_f32, dtype, msg, native=None):
    """actual (16-bit) against PyTorch's float32 result on the widened input: within a
    rounding of the 16-bit dtype relative to the result's largest value, or within PyTorch's
    own 16-bit error (``native``, its result on the 16-bit input) plus that rounding (a
    backward from a rounded output cancels to that)."""
    assert actual.dtype == dtype, f"{msg}: dtype {actual.dtype} != {dtype}"
    eps = torch.finfo(dtype).eps
    scale = float(expected_f32.abs().max())
    err = float((actual.float() - expected_f32).abs().max())
    allowed = 2 * eps * scale
    if native is not None:
        allowed += float((native.float() - expected_f32).abs().max())
    assert err <= allowed, f"{msg}: error {err} > {allowed} (result scale {scale})"


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("kind", ["labels", "probs"])
def test_16_bit_cross_entropy(dtype, inplace, kind):
    x, target, w = ce_case((6, 7, 3), torch.float32, kind, "positive", kind == "labels", 4)
    x16 = x.to(dtype)
    t16 = target.to(dtype) if kind == "probs" else target
    kw = {"weight": w, "label_smoothing": 0.1, **({"ignore_index": 1} if kind == "labels"
                                                   else {})}
    got, g_got = loss_and_grad(
        lambda v: st.cross_entropy(v * 1, t16, **kw, inplace_backward=inplace), x16, 0.5)
    ref, g_ref = loss_and_grad(lambda v: F.cross_entropy(v, t16.float() if kind == "probs"
                                                         else t16, **kw), x16.float(), 0.5)
    _half_close(got, ref, dtype, "loss")
    _half_close(g_got, g_ref, dtype, "grad")
    with torch.no_grad():
        _half_close(st.cross_entropy(x16, t16, **kw), ref, dtype, "no_grad loss")


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16_bit_softmax_family_and_elementwise_losses(dtype):
    gen = torch.Generator().manual_seed(9)
    x16 = torch.randn(5, 8, generator=gen).mul(3).to(dtype)
    y16 = torch.rand(5, 8, generator=gen).to(dtype)
    x = x16.float()
    y = y16.float()
    pairs = [
        (lambda v: st.softmax(v, 1), lambda v: F.softmax(v, 1)),
        (lambda v: st.log_softmax(v, 0), lambda v: F.log_softmax(v, 0)),
        (lambda v: st.logsumexp(v, 1), lambda v: torch.logsumexp(v, 1)),
        (lambda v: st.binary_cross_entropy_with_logits(v, y16),
         lambda v: F.binary_cross_entropy_with_logits(v, y)),
        (lambda v: st.kl_div(v, y16, reduction="batchmean"),
         lambda v: F.kl_div(v, y, reduction="batchmean")),
        (lambda v: st.nll_loss(v, torch.arange(5)), lambda v: F.nll_loss(v, torch.arange(5))),
    ]
    for i, (mine, theirs) in enumerate(pairs):
        got, g_got = loss_and_grad(mine, x16, 0.5)
        ref, g_ref = loss_and_grad(theirs, x, 0.5)
        native = loss_and_grad(theirs, x16, 0.5) if i < 3 else (None, None)
        _half_close(got, ref, dtype, f"function {i}", native[0])
        _half_close(g_got, g_ref, dtype, f"grad of function {i}", native[1])


# modules ---------------------------------------------------------------------------------

def test_modules_are_drop_in():
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(6, 5, 3, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 5, (6, 3), generator=gen)
    w = torch.rand(5, generator=gen, dtype=torch.float64) + 0.5
    y = torch.rand(6, 5, 3, generator=gen, dtype=torch.float64)
    pw = torch.rand(3, generator=gen, dtype=torch.float64) + 0.5
    logq = F.log_softmax(x, 1)
    p = F.softmax(torch.randn(6, 5, 3, generator=gen, dtype=torch.float64), 1)
    pairs = [
        (st.CrossEntropyLoss(label_smoothing=0.1), torch.nn.CrossEntropyLoss(
            label_smoothing=0.1), x, labels),
        (st.CrossEntropyLoss(w, ignore_index=2, reduction="sum"),
         torch.nn.CrossEntropyLoss(w, ignore_index=2, reduction="sum"), x, labels),
        (st.NLLLoss(w, reduction="none"), torch.nn.NLLLoss(w, reduction="none"), logq, labels),
        (st.BCEWithLogitsLoss(pos_weight=pw), torch.nn.BCEWithLogitsLoss(pos_weight=pw), x, y),
        (st.KLDivLoss(reduction="batchmean", log_target=False),
         torch.nn.KLDivLoss(reduction="batchmean", log_target=False), logq, p),
    ]
    for mine, theirs, inp, target in pairs:
        assert isinstance(mine, type(theirs))
        assert mine.state_dict().keys() == theirs.state_dict().keys()
        got, g_got = loss_and_grad(lambda v, m=mine, t=target: m(v, t), inp, None)
        ref, g_ref = loss_and_grad(lambda v, m=theirs, t=target: m(v, t), inp, None)
        close(got, ref, msg=type(mine).__name__)
        close(g_got, g_ref, msg=type(mine).__name__)


def test_cross_entropy_module_options():
    m = st.CrossEntropyLoss(z_loss=0.01, softcap=3.0, inplace_backward=True)
    x = torch.randn(5, 4, dtype=torch.float64)
    t = torch.randint(0, 4, (5,))
    close(m(x, t), st.cross_entropy(x, t, z_loss=0.01, softcap=3.0))


def test_deprecated_size_average_and_reduce():
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 2, 1, 1])
    with pytest.warns(UserWarning, match="deprecated"):
        got = st.cross_entropy(x, t, None, False)
    close(got, F.cross_entropy(x, t, reduction="sum"))
    with pytest.warns(UserWarning, match="deprecated"):
        got = st.nll_loss(x, t, reduce=False)
    close(got, F.nll_loss(x, t, reduction="none"))


# arguments -------------------------------------------------------------------------------

BAD = [
    (lambda: st.cross_entropy([[1.0, 2.0]], torch.tensor([0])), TypeError, "input"),
    (lambda: st.cross_entropy(torch.ones(2, 3, dtype=torch.int64), torch.tensor([0, 1])),
     TypeError, "input"),
    (lambda: st.cross_entropy(torch.ones(2, 3), [0, 1]), TypeError, "target"),
    (lambda: st.cross_entropy(torch.tensor(1.0), torch.tensor(0)), ValueError, "input"),
    (lambda: st.cross_entropy(torch.ones(2, 3), torch.tensor([0, 1], device="meta")),
     ValueError, "target is on meta"),
    (lambda: st.cross_entropy(torch.ones(2, 3), torch.tensor([0, 1]),
                              weight=torch.ones(3, device="meta")), ValueError, "weight"),
    (lambda: st.cross_entropy(torch.ones(2, 3), torch.tensor([0, 3])), ValueError, "target"),
    (lambda: st.cross_entropy(torch.ones(2, 3, requires_grad=True), torch.tensor([0, 3])),
     ValueError, "target"),
    (lambda: st.cross_entropy(torch.ones(2, 3), torch.tensor([0, 1]), reduction="avg"),
     ValueError, "reduction"),
    (lambda: st.cross_entropy(torch.ones(2, 3), torch.tensor([0, 1]), label_smoothing=2.0),
     ValueError, "label_smoothing"),
    (lambda: st.cross_entropy(torch.ones(2, 3), torch.tensor([0, 1]), inplace_backward=1),
     TypeError, "inplace_backward"),
    (lambda: st.cross_entropy(torch.ones(2, 3, requires_grad=True), torch.tensor([0, 1]),
                              weight=torch.ones(3, requires_grad=True)), ValueError,
     "weight requires grad"),
    (lambda: st.cross_entropy(torch.ones(2, 3), torch.ones(2, 4)), ValueError, "target"),
    (lambda: st.nll_loss(torch.ones(2, 3), torch.ones(2)), TypeError, "target"),
    (lambda: st.nll_loss(torch.ones(2, 3), torch.tensor([0, 1]), ignore_index=1.5), TypeError,
     "ignore_index"),
    (lambda: st.cross_entropy(torch.ones(2, 3), torch.tensor([0, 1]), label_smoothing=True),
     TypeError, "label_smoothing"),
    (lambda: st.cross_entropy(torch.ones(2, 3), torch.tensor([0, 1]), z_loss="0.1"),
     TypeError, "z_loss"),
    (lambda: st.cross_entropy(torch.ones(2, 3), torch.tensor([0, 1]), softcap=-1.0),
     ValueError, "softcap"),
    (lambda: st.softmax(torch.ones(2, 3), 2), ValueError, "dim"),
    (lambda: st.softmax(torch.ones(2, 3), 1.0), TypeError, "dim"),
    (lambda: st.logsumexp(torch.ones(2, 3), ()), TypeError, "dim"),
    (lambda: st.binary_cross_entropy_with_logits(torch.ones(2), torch.ones(3)), ValueError,
     "y"),
    (lambda: st.binary_cross_entropy_with_logits(torch.ones(2), torch.ones(2),
                                                 pos_weight=torch.ones(2, device="meta")),
     ValueError, "pos_weight"),
    (lambda: st.kl_div(torch.ones(2), torch.ones(2), reduction="batch"), ValueError,
     "reduction"),
]


@pytest.mark.parametrize("call,error,name", BAD, ids=[b[2] for b in BAD])
def test_bad_arguments_are_named(call, error, name):
    with pytest.raises(error, match=name):
        call()


def test_importing_softce_does_not_import_torch():
    code = ("import sys, softce; softce.softmax([1.0, 2.0]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
