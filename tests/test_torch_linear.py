"""softce.torch.linear_cross_entropy against torch.nn.functional.linear_cross_entropy (and
F.linear + F.cross_entropy): forward, the gradients of input, weight and bias through
autograd, gradcheck, opcheck and torch.compile."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
st = pytest.importorskip("softce.torch")


def _case(dtype, *, bias=True, probs=False, rows=9, hidden=5, classes=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(rows, hidden, dtype=dtype, generator=g, requires_grad=True)
    w = torch.randn(classes, hidden, dtype=dtype, generator=g, requires_grad=True)
    b = torch.randn(classes, dtype=dtype, generator=g, requires_grad=True) if bias else None
    if probs:
        t = torch.softmax(torch.randn(rows, classes, dtype=dtype, generator=g), -1)
    else:
        t = torch.randint(0, classes, (rows,), generator=g)
        t[2] = -100
    return h, w, b, t


def _reference(h, w, b, t, **kw):
    return F.cross_entropy(F.linear(h, w, b), t, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("options", [{}, {"reduction": "sum"}, {"reduction": "none"},
                                     {"label_smoothing": 0.2},
                                     {"weight": "w"}])
def test_forward_and_gradients_equal_pytorch(dtype, probs, bias, options) -> None:
    h, w, b, t = _case(dtype, bias=bias, probs=probs)
    kw = dict(options)
    if kw.get("weight") == "w":
        kw["weight"] = torch.rand(w.shape[0], dtype=dtype) + 0.5
    got = st.linear_cross_entropy(h, w, t, linear_bias=b, chunk_bytes=3 * 7 * 8, **kw)
    want = _reference(h, w, b, t, **kw)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5,
                                                                          "atol": 1e-6}
    torch.testing.assert_close(got, want, **tol)
    up = torch.randn_like(want)
    params = [p for p in (h, w, b) if p is not None]
    g_got = torch.autograd.grad(got, params, up)
    g_want = torch.autograd.grad(want, params, up)
    for a, e in zip(g_got, g_want):
        torch.testing.assert_close(a, e, **tol)


def test_matches_torch_linear_cross_entropy() -> None:
    h, w, b, t = _case(torch.float64)
    got = st.linear_cross_entropy(h, w, t, linear_bias=b, label_smoothing=0.1)
    want = F.linear_cross_entropy(h, w, t, linear_bias=b, label_smoothing=0.1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_gradcheck_in_float64() -> None:
    h, w, b, t = _case(torch.float64, rows=4, hidden=3, classes=5)
    assert torch.autograd.gradcheck(
        lambda h, w, b: st.linear_cross_entropy(h, w, t, linear_bias=b, chunk_bytes=80),
        (h, w, b))


def test_opcheck() -> None:
    h, w, b, t = _case(torch.float64, rows=4, hidden=3, classes=5)
    args = (h.detach().requires_grad_(), w.detach().requires_grad_(),
            t, b.detach().requires_grad_(), None, "mean", None, 0.0, 0.0, None, None)
    torch.library.opcheck(torch.ops.softce.linear_cross_entropy.default, args)


def test_compiles_without_graph_breaks() -> None:
    h, w, b, t = _case(torch.float32)

    def step(h, w, b):
        return st.linear_cross_entropy(torch.tanh(h), w, t, linear_bias=b)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    got = compiled(h, w, b)
    got.backward()
    want = _reference(torch.tanh(h), w, b, t)
    torch.testing.assert_close(got, want, rtol=2e-5, atol=1e-6)
    assert h.grad is not None and w.grad is not None and b.grad is not None


def test_bad_input_names_the_argument() -> None:
    h, w, b, t = _case(torch.float32)
    with pytest.raises(TypeError, match="linear_weight"):
        st.linear_cross_entropy(h, np.zeros((7, 5)), t)
    with pytest.raises(ValueError, match="linear_weight|in_features|input"):
        st.linear_cross_entropy(h, w[:, :3], t)
    with pytest.raises(TypeError, match="chunk_bytes"):
        st.linear_cross_entropy(h, w, t, chunk_bytes=1.5)


def test_unbatched_and_k_dimensional_shapes_as_pytorch() -> None:
    g = torch.Generator().manual_seed(3)
    h1 = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(7, 5, dtype=torch.float64, generator=g, requires_grad=True)
    t1 = torch.tensor(4)
    got = st.linear_cross_entropy(h1, w, t1)
    want = F.linear_cross_entropy(h1, w, t1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(got, (h1, w)),
                               torch.autograd.grad(want, (h1, w)), rtol=1e-10, atol=1e-12)
    hk = torch.randn(6, 5, dtype=torch.float64, generator=g, requires_grad=True)
    wk = torch.randn(7, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    bk = torch.randn(7, 3, dtype=torch.float64, generator=g, requires_grad=True)
    tk = torch.randint(0, 7, (6, 3), generator=g)
    for reduction in ("none", "mean"):
        got = st.linear_cross_entropy(hk, wk, tk, linear_bias=bk, reduction=reduction)
        want = F.linear_cross_entropy(hk, wk, tk, linear_bias=bk, reduction=reduction)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        up = torch.randn_like(want)
        torch.testing.assert_close(torch.autograd.grad(got, (hk, wk, bk), up),
                                   torch.autograd.grad(want, (hk, wk, bk), up),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize("options", [{"label_smoothing": 0.2, "weight": "w"},
                                     {"softcap": 2.0, "z_loss": 0.01},
                                     {"label_smoothing": 0.1, "softcap": 3.0, "weight": "w",
                                      "reduction": "none"}])
def test_class_split_equals_pytorch(probs, options) -> None:
    """Rows split into class blocks of 3 of 7 (chunk_bytes below one row): label smoothing,
    class weights, soft-cap, z-loss and probabilities through the tensors' own chunk loop,
    forward and gradients against F.linear + (cap tanh) + F.cross_entropy + z LSE^2."""
    dtype = torch.float64
    h, w, b, t = _case(dtype, probs=probs)
    kw = dict(options)
    if kw.get("weight") == "w":
        kw["weight"] = torch.rand(w.shape[0], dtype=dtype) + 0.5
    cap, z_loss = kw.pop("softcap", None), kw.pop("z_loss", 0.0)
    got = st.linear_cross_entropy(h, w, t, linear_bias=b, softcap=cap, z_loss=z_loss,
                                  chunk_bytes=3 * 3 * 8, **kw)
    logits = F.linear(h, w, b)
    if cap is not None:
        logits = cap * torch.tanh(logits / cap)
    want = F.cross_entropy(logits, t, **kw)
    if z_loss:
        counted = torch.ones(t.shape[0], dtype=torch.bool) if probs else t != -100
        per = z_loss * torch.logsumexp(logits, -1) ** 2 * counted
        want = want + per.sum() / counted.sum()  # "mean" over the counted rows, unweighted
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    up = torch.randn_like(want)
    params = (h, w, b)
    for a, e in zip(torch.autograd.grad(got, params, up), torch.autograd.grad(want, params, up)):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_the_chunk_loop_runs_on_tensors(monkeypatch) -> None:
    """The plan keeps the tensors as tensors (so that CUDA tensors stay on their device):
    each chunk's logits and the gradients' products come from torch.matmul, the chunk's loss
    from softce's kernel on a view of the chunk."""
    from softce.torch.products import TORCH

    h, w, b, t = _case(torch.float32, rows=10)
    calls = []
    real = TORCH.matmul

    def recording(a, x, out, accumulate=False):
        assert all(isinstance(v, torch.Tensor) for v in (a, x, out))
        calls.append(tuple(out.shape))
        return real(a, x, out, accumulate)

    monkeypatch.setattr(TORCH, "matmul", recording)
    got = st.linear_cross_entropy(h, w, t, linear_bias=b, chunk_bytes=4 * 7 * 4)
    got.backward()
    assert (4, 7) in calls and (2, 7) in calls  # the chunks' logits: 4 + 4 + 2 rows
    assert (4, 5) in calls  # d input of a chunk, G W
    want = _reference(h, w, b, t)
    torch.testing.assert_close(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("chunk_bytes", [None, 3 * 7 * 4, 5 * 4])  # whole, row chunks, split
def test_cuda_tensors_match_pytorch(chunk_bytes) -> None:
    """The chunk loop on CUDA tensors (torch.matmul, softce's CUDA kernel on each chunk),
    the class split included, against F.linear + F.cross_entropy on the device."""
    dev = torch.device("cuda")
    h, w, b, t = (a.detach().to(dev).requires_grad_(a.requires_grad) for a in
                  _case(torch.float32))
    kw = {"label_smoothing": 0.1, "weight": torch.rand(7, device=dev) + 0.5}
    got = st.linear_cross_entropy(h, w, t, linear_bias=b, chunk_bytes=chunk_bytes, **kw)
    want = _reference(h, w, b, t, **kw)
    tol = {"rtol": 2e-5, "atol": 1e-6}
    torch.testing.assert_close(got, want, **tol)
    for a, e in zip(torch.autograd.grad(got, (h, w, b)), torch.autograd.grad(want, (h, w, b))):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a, e, **tol)
