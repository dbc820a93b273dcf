"""linear_cross_entropy[_grad] against PyTorch 2.13 live (F.linear_cross_entropy, and F.linear +
F.cross_entropy with autograd for softce's z-loss and soft-cap), against softce's own
cross-entropy on the materialised logits, across chunk boundaries, and on bad input."""

import tracemalloc

import numpy as np
import pytest

import softce
from softce.linear import LinearPlan

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(20)
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def _case(n, feat, c, dtype, positions=(), kind="labels", bias=True, ignore=False):
    h = RNG.standard_normal((n, feat) if n is not None else (feat,)).astype(dtype)
    w = (RNG.standard_normal((c, *positions, feat)) / np.sqrt(feat)).astype(dtype)
    b = RNG.standard_normal((c, *positions)).astype(dtype) if bias else None
    batch = (() if n is None else (n,)) + positions
    if kind == "labels":
        t = RNG.integers(0, c, batch)
        if ignore and t.size:
            t.reshape(-1)[::3] = 7 if c > 7 else -100
    else:
        shape = (() if n is None else (n,)) + (c,) + positions
        raw = RNG.uniform(0, 1, shape)
        t = (raw / raw.sum(axis=0 if n is None else 1, keepdims=True)).astype(dtype)
    return h, w, t, b


def _torch_reference(h, w, t, b, *, grad_output=None, weight=None, reduction="mean",
                     ignore_index=None, label_smoothing=0.0, z_loss=0.0, softcap=None):
    """(loss, dh, dW[, db]) by torch autograd: F.linear_cross_entropy itself, or, with a
    z-loss or soft-cap, F.linear + (cap tanh) + F.cross_entropy + z LSE^2 written out."""
    th = torch.tensor(h, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    tt = torch.tensor(t)
    tweight = None if weight is None else torch.tensor(weight)
    if not z_loss and softcap is None:
        kw = {} if ignore_index is None else {"ignore_index": ignore_index}
        loss = F.linear_cross_entropy(th, tw, tt, linear_bias=tb, weight=tweight,
                                      reduction=reduction, label_smoothing=label_smoothing,
                                      **kw)
    else:
        c, feat = w.shape[0], w.shape[-1]
        positions = w.shape[1:-1]
        z = F.linear(th, tw.reshape(-1, feat), None if tb is None else tb.reshape(-1))
        z = z.reshape(*h.shape[:-1], c, *positions)
        if softcap is not None:
            z = softcap * torch.tanh(z / softcap)
        ii = -100 if ignore_index is None else ignore_index
        per = F.cross_entropy(z, tt, weight=tweight, reduction="none", ignore_index=ii,
                              label_smoothing=label_smoothing)
        axis = 0 if h.ndim == 1 else 1
        lse = torch.logsumexp(z, dim=axis)
        labels = not torch.is_floating_point(tt)
        counted = (tt != ii) if labels else torch.ones_like(lse, dtype=torch.bool)
        per = per + z_loss * lse**2 * counted
        if reduction == "none":
            loss = per
        elif reduction == "sum":
            loss = per.sum()
        else:
            if labels:
                wt = torch.ones(c, dtype=z.dtype) if tweight is None else tweight
                divisor = wt[tt.clamp(0, c - 1)][counted].sum()
            else:
                divisor = per.numel()
            loss = per.sum() / divisor
    go = torch.ones_like(loss) if grad_output is None else torch.as_tensor(
        grad_output, dtype=loss.dtype).expand_as(loss)
    loss.backward(go)
    grads = [th.grad.numpy(), tw.grad.numpy()] + ([] if tb is None else [tb.grad.numpy()])
    return (loss.detach().numpy(), *grads)


def _close(ours, ref, dtype):
    assert len(ours) == len(ref)
    for a, r in zip(ours, ref):
        assert np.shape(a) == np.shape(r)
        assert np.asarray(a).dtype == dtype
        np.testing.assert_allclose(a, r, **TOL[dtype])


OPTIONS = {
    "plain": {},
    "weight": {"weight": True},
    "ignore": {"ignore_index": 7},
    "smoothing": {"label_smoothing": 0.2},
    "all": {"weight": True, "ignore_index": 7, "label_smoothing": 0.1},
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_torch(dtype, kind, bias, option, reduction):
    """13 rows in chunks of 4 (the last one short): loss and the three gradients."""
    opts = dict(OPTIONS[option])
    if kind == "probs" and "ignore_index" in opts:
        del opts["ignore_index"]  # PyTorch refuses ignore_index with probabilities
    n, feat, c = 13, 6, 11
    h, w, t, b = _case(n, feat, c, dtype, kind=kind, bias=bias, ignore="ignore_index" in opts)
    if opts.pop("weight", False):
        opts["weight"] = RNG.uniform(0.2, 2.0, c).astype(dtype)
    chunk = 4 * c * np.dtype(dtype).itemsize
    go = None
    if reduction == "none":
        go = RNG.standard_normal(n).astype(dtype)
    ours = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b, reduction=reduction,
                                            chunk_bytes=chunk, grad_output=go, **opts)
    ref = _torch_reference(h, w, t, b, grad_output=go, reduction=reduction, **opts)
    _close(ours, ref, dtype)
    loss = softce.linear_cross_entropy(h, w, t, linear_bias=b, reduction=reduction,
                                       chunk_bytes=chunk, **opts)
    np.testing.assert_allclose(loss, ref[0], **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize(("z_loss", "softcap"), [(1e-2, None), (0.0, 2.5), (0.05, 3.0)])
def test_z_loss_and_softcap_match_torch_autograd(dtype, kind, z_loss, softcap):
    n, feat, c = 9, 5, 7
    h, w, t, b = _case(n, feat, c, dtype, kind=kind, ignore=True)
    h *= 3  # logits beyond the cap
    weight = RNG.uniform(0.5, 1.5, c).astype(dtype)
    kw = dict(weight=weight, label_smoothing=0.1, z_loss=z_loss, softcap=softcap)
    if kind == "labels":
        kw["ignore_index"] = -100
    for reduction in ("mean", "sum"):
        ours = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b, reduction=reduction,
                                                chunk_bytes=2 * 3 * c * h.itemsize, **kw)
        _close(ours, _torch_reference(h, w, t, b, reduction=reduction, **kw), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_unbatched_input(dtype, kind, reduction):
    h, w, t, b = _case(None, 6, 9, dtype, kind=kind)
    ours = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b, reduction=reduction)
    assert np.shape(ours[0]) == () and ours[1].shape == (6,)
    _close(ours, _torch_reference(h, w, t, b, reduction=reduction), dtype)


@pytest.mark.parametrize("positions", [(3,), (2, 3)])
@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("chunk_rows", [None, 1.0, 0.5])
def test_k_dimensional(positions, kind, chunk_rows):
    """linear_weight (C, d1, ..., dK, F), bias (C, d1, ..., dK): logits (N, C, d1, ..., dK);
    chunks of whole rows, of one row, and of part of a row's positions."""
    dtype = np.float64
    n, feat, c = 5, 4, 8
    h, w, t, b = _case(n, feat, c, dtype, positions=positions, kind=kind, ignore=True)
    copies = 2 if kind == "probs" else 1  # probabilities laid out as rows share the budget
    width = int(np.prod(positions)) * c
    chunk = None if chunk_rows is None else copies * 8 * max(c, int(width * chunk_rows))
    opts = {"ignore_index": 7} if kind == "labels" else {}
    weight = RNG.uniform(0.5, 1.5, c)
    for reduction in ("mean", "none"):
        ours = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b, weight=weight,
                                                reduction=reduction, chunk_bytes=chunk, **opts)
        ref = _torch_reference(h, w, t, b, weight=weight, reduction=reduction, **opts)
        _close(ours, ref, dtype)


def _materialised(h, w, t, b, **kw):
    """softce.cross_entropy_grad on the whole logits, and G W, G^T h, sum G by hand."""
    z = h @ w.T + (0 if b is None else b)
    loss, g = softce.cross_entropy_grad(z, t, **kw)
    return loss, g @ w, g.T @ h, g.sum(axis=0)


@pytest.mark.parametrize("chunk", [None, 1, 3, 64])
@pytest.mark.parametrize("options", [{}, {"z_loss": 1e-3}, {"weight": True, "z_loss": 0.1}])
def test_chunks_agree_with_the_materialised_logits(chunk, options):
    """Chunks of 1, 3 and 64 rows (N = 67: none divides it), and by class blocks of
    3 classes (chunk = 1: the class split), against the whole logits at once."""
    n, feat, c = 67, 8, 23
    h, w, t, b = _case(n, feat, c, np.float64, ignore=True)
    kw = dict(options)
    if kw.pop("weight", False):
        kw["weight"] = RNG.uniform(0.1, 3.0, c)
    kw["ignore_index"] = 7
    ref = _materialised(h, w, t, b, **kw)
    nbytes = {None: None, 1: 3 * 8, 3: 3 * c * 8, 64: 64 * c * 8}[chunk]
    ours = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b, chunk_bytes=nbytes, **kw)
    for a, r in zip(ours, ref):
        np.testing.assert_allclose(a, r, rtol=1e-13, atol=1e-14)
    loss = softce.linear_cross_entropy(h, w, t, linear_bias=b, chunk_bytes=nbytes, **kw)
    np.testing.assert_allclose(loss, ref[0], rtol=1e-13)


@pytest.mark.parametrize("block", [1, 5, 7, 12])
def test_class_split_matches_torch(block):
    """The classes in blocks of 1, 5, 7 and 12 of 12 (D11's merge of the blocks' LSEs), with
    weights, ignored rows and a per-position grad_output, float32."""
    n, feat, c = 6, 5, 12
    h, w, t, b = _case(n, feat, c, np.float32, ignore=True)
    weight = RNG.uniform(0.5, 1.5, c).astype(np.float32)
    go = RNG.standard_normal(n).astype(np.float32)
    ours = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b, weight=weight,
                                            ignore_index=7, reduction="none", grad_output=go,
                                            chunk_bytes=block * 2 * 4)
    ref = _torch_reference(h, w, t, b, weight=weight, ignore_index=7, reduction="none",
                           grad_output=go)
    _close(ours, ref, np.float32)


SPLIT_OPTIONS = {
    "smoothing": {"label_smoothing": 0.2},
    "weighted smoothing": {"weight": True, "label_smoothing": 0.1},
    "softcap": {"softcap": 2.0},
    "z-loss": {"z_loss": 0.05},
    "everything": {"weight": True, "label_smoothing": 0.15, "z_loss": 0.02, "softcap": 3.0},
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["labels", "probs"])
@pytest.mark.parametrize("option", sorted(SPLIT_OPTIONS))
@pytest.mark.parametrize("block", [1, 4, 6])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_class_split_serves_every_option(dtype, kind, option, block, reduction):
    """Label smoothing, weights, soft-cap, z-loss, labels and probabilities with the classes
    in blocks of 1, 4 and 6 of 13 (D13's target y' shared out over the blocks): loss and
    the three gradients against PyTorch's autograd, the loss alone too."""
    n, feat, c = 5, 4, 13
    h, w, t, b = _case(n, feat, c, dtype, kind=kind, ignore=kind == "labels")
    h *= 3  # logits beyond the cap
    opts = dict(SPLIT_OPTIONS[option])
    if opts.pop("weight", False):
        opts["weight"] = RNG.uniform(0.2, 2.0, c).astype(dtype)
    if kind == "labels":
        opts["ignore_index"] = 7
    go = RNG.standard_normal(n).astype(dtype) if reduction == "none" else None
    copies = 2 + ("softcap" in opts)
    chunk = block * copies * np.dtype(dtype).itemsize
    plan = LinearPlan.check(h, w, t, b, opts.get("weight"), reduction, opts.get("ignore_index"),
                            opts.get("label_smoothing", 0.0), opts.get("z_loss", 0.0),
                            opts.get("softcap"), chunk)
    assert plan.chunking() == (1, 1, block)
    ours = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b, reduction=reduction,
                                            chunk_bytes=chunk, grad_output=go, **opts)
    ref = _torch_reference(h, w, t, b, reduction=reduction, grad_output=go, **opts)
    _close(ours, ref, dtype)
    loss = softce.linear_cross_entropy(h, w, t, linear_bias=b, reduction=reduction,
                                       chunk_bytes=chunk, **opts)
    np.testing.assert_allclose(loss, ref[0], **TOL[dtype])


def test_class_split_of_k_dimensional_probabilities():
    """Probabilities of a K-dimensional loss (N, C, d1) with the classes split, smoothed and
    weighted, float64."""
    n, feat, c, positions = 3, 4, 9, (2,)
    h, w, t, b = _case(n, feat, c, np.float64, positions=positions, kind="probs")
    weight = RNG.uniform(0.5, 1.5, c)
    kw = dict(weight=weight, label_smoothing=0.1)
    ours = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b, chunk_bytes=2 * 8 * 4,
                                            **kw)
    _close(ours, _torch_reference(h, w, t, b, **kw), np.float64)


def test_class_split_keeps_limits():
    """A masked class (bias -inf) under a zero probability adds nothing; under a positive
    one the loss is +inf, as with the whole row."""
    n, feat, c = 2, 3, 6
    h, w, t, b = _case(n, feat, c, np.float64, kind="probs")
    b[2] = -np.inf
    t[:, 2] = 0.0
    t /= t.sum(axis=1, keepdims=True)
    whole = softce.linear_cross_entropy(h, w, t, linear_bias=b, reduction="none")
    split = softce.linear_cross_entropy(h, w, t, linear_bias=b, reduction="none",
                                        chunk_bytes=2 * 8 * 2)
    assert np.isfinite(split).all()
    np.testing.assert_allclose(split, whole, rtol=1e-13)
    t[0, 2] = 0.5
    split = softce.linear_cross_entropy(h, w, t, linear_bias=b, reduction="none",
                                        chunk_bytes=2 * 8 * 2)
    assert split[0] == np.inf and np.isfinite(split[1])


def test_plan_chunking():
    h, w, t, _ = _case(10, 4, 100, np.float32)
    chunks = {cb: LinearPlan.check(h, w, t, None, None, "mean", None, 0.0, 0.0, None,
                                   cb).chunking() for cb in (None, 400, 1199, 399, 4)}
    # the class split holds a block's row and its targets: 2 x 4 bytes a class
    assert chunks == {None: (10, 1, 100), 400: (1, 1, 100), 1199: (2, 1, 100),
                      399: (1, 1, 49), 4: (1, 1, 1)}
    soft = LinearPlan.check(h, w, t, None, None, "mean", None, 0.0, 0.0, 2.0, 1600)
    assert soft.chunking() == (2, 1, 100)  # the soft-capped copy shares the budget
    soft_split = LinearPlan.check(h, w, t, None, None, "mean", None, 0.0, 0.0, 2.0, 1200)
    assert soft_split.chunking() == (1, 1, 100)  # raw, row, targets: 3 x 4 bytes a class


def test_memory_stays_within_one_chunk():
    """32 MiB of float32 logits, chunks of 1 MiB: the traced peak stays a few MiB (the
    outputs are 4096 x 16 and 2048 x 16)."""
    n, feat, c = 2048, 16, 4096
    h, w, t, b = _case(n, feat, c, np.float32)
    softce.linear_cross_entropy_grad(h[:8], w, t[:8], linear_bias=b)  # compiled first
    tracemalloc.start()
    try:
        softce.linear_cross_entropy_grad(h, w, t, linear_bias=b, chunk_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 << 20, peak
    assert n * c * 4 == 32 << 20


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_accumulates_block_by_block(dtype):
    """dest += G^T h into a block of the weight gradient: the sum of the products, with a
    temporary of one block of GRAD_BLOCK classes, never of dest's size (traced)."""
    from softce.linear import GRAD_BLOCK, NUMPY

    rng = np.random.default_rng(5)
    g = rng.standard_normal((37, 20000)).astype(dtype)
    h = rng.standard_normal((37, 24)).astype(dtype)
    full = rng.standard_normal((20010, 24)).astype(dtype)
    want = full.astype(np.float64)
    want[5:20005] += g.astype(np.float64).T @ h.astype(np.float64)
    NUMPY.add_gt_h(g[:, :2], h, np.zeros((2, 24), dtype))  # BLAS loaded first
    tracemalloc.start()
    try:
        NUMPY.add_gt_h(g, h, full[5:20005])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert GRAD_BLOCK * 24 * full.itemsize <= peak < 1.1 * GRAD_BLOCK * 24 * full.itemsize, peak
    assert GRAD_BLOCK * 4 < 20000
    np.testing.assert_allclose(full, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-11)


def test_empty_batch_and_everything_ignored():
    h, w, _, b = _case(0, 4, 5, np.float64)
    loss, dh, dw, db = softce.linear_cross_entropy_grad(h, w, np.zeros(0, int), linear_bias=b)
    assert np.isnan(loss) and dh.shape == (0, 4) and not dw.any() and not db.any()
    assert softce.linear_cross_entropy(h, w, np.zeros(0, int), reduction="sum") == 0
    h, w, _, b = _case(3, 4, 5, np.float64)
    t = np.full(3, -100)
    loss, dh, dw, db = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b)
    ref = _torch_reference(h, w, t, b)
    assert np.isnan(loss) and np.isnan(ref[0])
    for a, r in zip((dh, dw, db), ref[1:]):
        np.testing.assert_array_equal(a, r)  # zeros, as PyTorch's


def test_ignore_index_none_is_minus_100_for_labels():
    h, w, t, b = _case(6, 3, 4, np.float64)
    t[1] = -100
    a = softce.linear_cross_entropy(h, w, t, ignore_index=None)
    assert a == softce.linear_cross_entropy(h, w, t, ignore_index=-100)
    np.testing.assert_allclose(a, _torch_reference(h, w, t, None)[0], rtol=1e-13)


def test_grad_output_scales_every_gradient():
    h, w, t, b = _case(7, 3, 5, np.float64)
    one = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b)
    two = softce.linear_cross_entropy_grad(h, w, t, linear_bias=b, grad_output=-2.5)
    assert one[0] == two[0]
    for a, r in zip(two[1:], one[1:]):
        # the scale enters before the products: a sum that cancels differs by its rounding
        np.testing.assert_allclose(a, -2.5 * r, rtol=1e-14, atol=1e-14 * np.abs(r).max())


def _bad(**changes):
    h, w, t, b = _case(4, 3, 5, np.float32)
    args = {"input": h, "linear_weight": w, "target": t, "linear_bias": b, **changes}
    return args


BAD = [
    ("in_features", dict(linear_weight=np.zeros((5, 4), np.float32)), ValueError,
     "in_features"),
    ("input 3-D", dict(input=np.zeros((2, 4, 3), np.float32)), ValueError, "input"),
    ("weight 1-D", dict(linear_weight=np.zeros(3, np.float32)), ValueError, "linear_weight"),
    ("bias shape", dict(linear_bias=np.zeros(4, np.float32)), ValueError, "linear_bias"),
    ("bias dtype", dict(linear_bias=np.zeros(5)), TypeError, "linear_bias"),
    ("weight dtype", dict(linear_weight=np.zeros((5, 3))), TypeError, "linear_weight"),
    ("integer input", dict(input=np.zeros((4, 3), int)), TypeError, "input"),
    ("label range", dict(target=np.array([0, 5, 1, 2])), ValueError, "target"),
    ("negative label", dict(target=np.array([0, -1, 1, 2])), ValueError, "target"),
    ("label shape", dict(target=np.array([0, 1, 2])), ValueError, "target"),
    ("prob shape", dict(target=np.full((4, 4), 0.25, np.float32)), ValueError, "target"),
    ("K-dim unbatched", dict(input=np.zeros(3, np.float32),
                             linear_weight=np.zeros((5, 2, 3), np.float32), linear_bias=None,
                             target=np.zeros(2, int)), ValueError, "batched input"),
    ("chunk 0", dict(chunk_bytes=0), ValueError, "chunk_bytes"),
    ("chunk negative", dict(chunk_bytes=-8), ValueError, "chunk_bytes"),
    ("chunk float", dict(chunk_bytes=1.5), TypeError, "chunk_bytes"),
    ("chunk bool", dict(chunk_bytes=True), TypeError, "chunk_bytes"),
    ("reduction", dict(reduction="avg"), ValueError, "reduction"),
    ("probs and ignore_index", dict(target=np.full((4, 5), 0.2, np.float32), ignore_index=-100),
     ValueError, "ignore_index"),
    ("class weight shape", dict(weight=np.ones(4)), ValueError, "weight"),
    ("smoothing", dict(label_smoothing=1.5), ValueError, "label_smoothing"),
    ("grad_output shape", dict(grad_output=np.ones(4)), ValueError, "grad_output"),
    ("grad_output none shape", dict(reduction="none", grad_output=np.ones(3)), ValueError,
     "grad_output"),
]


@pytest.mark.parametrize(("changes", "error", "match"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_input_names_the_argument(changes, error, match):
    args = _bad(**changes)
    with pytest.raises(error, match=match):
        softce.linear_cross_entropy_grad(**args)
    if "grad_output" not in changes:
        with pytest.raises(error, match=match):
            softce.linear_cross_entropy(**args)


def test_the_package_exports_both_functions():
    from softce import linear

    for name in ("linear_cross_entropy", "linear_cross_entropy_grad"):
        assert getattr(softce, name) is getattr(linear, name) and name in softce.__all__
