"""softce.torch's registration with PyTorch: gradcheck of every function in float64,
torch.library.opcheck of every custom op, and torch.compile(fullgraph=True) of a model using
softce.torch.cross_entropy (aot_eager and inductor)."""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import softce.torch as st  # noqa: E402

ops = torch.ops.softce
# opcheck's own machinery calls torch.jit.script_method
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")


def _x(*shape, seed=0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).requires_grad_()


LABELS = torch.tensor([[0, 2], [1, -100], [2, 0]])  # (N=3, d1=2) of 3 classes, one ignored
PROBS = F.softmax(torch.randn(3, 3, 2, dtype=torch.float64), 1)
WEIGHT = torch.tensor([0.5, 2.0, -0.3], dtype=torch.float64)

# cross_entropy's fused route (softce.torch.cross_entropy of logits that require grad)
# consumes its saved gradient in its one backward, and gradcheck backpropagates twice: its
# gradient is held to PyTorch's in test_torch_api.py, and gradcheck takes the op whose
# backward recomputes the gradient with the same kernel (softce.cross_entropy_grad)
GRADCHECKS = {
    "cross_entropy": (lambda x: ops.cross_entropy(x, LABELS, WEIGHT, -100, "mean", 0.1, 0.01,
                                                  4.0, False)[0], (3, 3, 2)),
    "cross_entropy none": (lambda x: ops.cross_entropy(x, LABELS, WEIGHT, -100, "none", 0.2,
                                                       0.01, 3.0, False)[0], (3, 3, 2)),
    "cross_entropy probs": (lambda x: ops.cross_entropy(x, PROBS, WEIGHT, -100, "sum", 0.0,
                                                        0.0, None, False)[0], (3, 3, 2)),
    "nll_loss": (lambda x: st.nll_loss(x, LABELS, WEIGHT, reduction="none"), (3, 3, 2)),
    "nll_loss mean": (lambda x: st.nll_loss(x, LABELS, WEIGHT), (3, 3, 2)),
    "softmax": (lambda x: st.softmax(x, 1), (3, 4, 2)),
    "log_softmax": (lambda x: st.log_softmax(x, -1), (3, 4, 2)),
    "logsumexp": (lambda x: st.logsumexp(x, (0, 2), keepdim=True), (3, 4, 2)),
    "bce": (lambda x: st.binary_cross_entropy_with_logits(
        x, PROBS, pos_weight=torch.tensor([1.0, 2.0], dtype=torch.float64),
        reduction="none"), (3, 3, 2)),
    "kl_div": (lambda x: st.kl_div(x, PROBS, reduction="none"), (3, 3, 2)),
    "kl_div log_target": (lambda x: st.kl_div(x, PROBS.log(), reduction="batchmean",
                                              log_target=True), (3, 3, 2)),
}


@pytest.mark.parametrize("name", list(GRADCHECKS))
def test_gradcheck(name):
    fn, shape = GRADCHECKS[name]
    assert torch.autograd.gradcheck(fn, (_x(*shape),))


# gradients with respect to both the input and a float target
TARGET_GRADCHECKS = {
    "cross_entropy probs": lambda x, y: st.cross_entropy(
        x, F.softmax(y, 1), WEIGHT, reduction="none", label_smoothing=0.1, softcap=3.0),
    "bce": lambda x, y: st.binary_cross_entropy_with_logits(
        x, torch.sigmoid(y), pos_weight=torch.tensor([1.0, 2.0], dtype=torch.float64)),
    "kl_div": lambda x, y: st.kl_div(x, F.softmax(y, 1), reduction="none"),
    "kl_div log_target": lambda x, y: st.kl_div(x, F.log_softmax(y, 1), reduction="batchmean",
                                                log_target=True),
}


@pytest.mark.parametrize("name", list(TARGET_GRADCHECKS))
def test_gradcheck_with_the_target(name):
    assert torch.autograd.gradcheck(TARGET_GRADCHECKS[name],
                                    (_x(3, 3, 2, seed=3), _x(3, 3, 2, seed=4)))


def _opcheck_cases():
    x = _x(4, 5, 3, seed=1)
    xd = x.detach()
    labels = torch.randint(0, 5, (4, 3), generator=torch.Generator().manual_seed(2))
    w = torch.rand(5, dtype=torch.float64) + 0.5
    ce = (labels, w, -100, "mean", 0.1, 0.01, 5.0)
    g = torch.tensor(0.5, dtype=torch.float64)
    y = F.softmax(xd, 1)
    return [
        (ops.cross_entropy, (x, *ce, True)),
        (ops.cross_entropy, (x, PROBS.repeat(2, 2, 2)[:4, :5, :3], None, -100, "none", 0.0,
                             0.0, None, False)),
        (ops.cross_entropy_backward, (xd, *ce, g)),
        (ops.cross_entropy_with_grad, (xd, *ce, False)),
        (ops.cross_entropy_with_grad_, (xd.clone(), *ce, True)),
        (ops.attach_grad, (x, g, y)),
        (ops.scale_grad_, (y.clone(), torch.rand(4, 3, dtype=torch.float64))),
        (ops.nll_loss, (x, labels, w, 1, "sum")),
        (ops.softmax, (x, 1)),
        (ops.log_softmax, (x, 2)),
        (ops.softmax_backward, (y, xd, 1)),
        (ops.log_softmax_backward, (y.log(), xd, 1)),
        (ops.logsumexp, (x, [0, 2], False)),
        (ops.logsumexp_backward, (xd, torch.ones(5, dtype=torch.float64), [0, 2])),
        (ops.binary_cross_entropy_with_logits, (x, y, w[:3], None, "mean")),
        (ops.binary_cross_entropy_with_logits_backward, (xd, y, None, w[:3], "none", y)),
        (ops.kl_div, (x, y, "batchmean", False)),
    ]


@pytest.mark.parametrize("case", range(len(_opcheck_cases())))
def test_opcheck(case):
    op, args = _opcheck_cases()[case]
    torch.library.opcheck(op, args)


class TinyClassifier(torch.nn.Module):
    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(features, classes)

    def forward(self, h, target, loss, **options):
        return loss(self.proj(torch.tanh(h)), target, label_smoothing=0.05, **options)


@pytest.mark.parametrize("backend,options", [("aot_eager", {}), ("inductor", {}),
                                             ("aot_eager", {"inplace_backward": True})],
                         ids=str)
def test_compile_fullgraph(backend, options):
    torch.manual_seed(0)
    model = TinyClassifier(16, 40)
    h = torch.randn(24, 16)
    target = torch.randint(0, 40, (24,))
    target[3] = -100

    def step(loss):
        model.zero_grad()
        value = model(h, target, loss)
        (value * 0.5).backward()
        return value.detach(), model.proj.weight.grad.clone()

    ref, g_ref = step(F.cross_entropy)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    start = time.perf_counter()
    model.zero_grad()
    value = compiled(h, target, st.cross_entropy, **options)
    (value * 0.5).backward()
    seconds = time.perf_counter() - start
    torch.testing.assert_close(value.detach(), ref, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(model.proj.weight.grad, g_ref, rtol=2e-5, atol=2e-6)
    print(f"torch.compile(backend={backend!r}) first step: {seconds:.1f} s")
