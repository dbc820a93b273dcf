"""Inputs PyTorch and SciPy accept are accepted here too, with their results.

References: NumPy transcriptions of PyTorch's documented formulas (class weights of any sign)
and SciPy itself (tuple axes, axis=None, 0-d inputs, keepdims).
"""

from __future__ import annotations

import numpy as np
import pytest

import softce

RNG = np.random.default_rng(7)
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _lse(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


# 1. class weights of any finite sign --------------------------------------------------------

def _torch_ce_labels(x, c, w, eps, ignore, reduction):
    """PyTorch's F.cross_entropy for labels: (1 - eps) w_c (LSE - x_c) + eps/C sum_k w_k
    (LSE - x_k), 0 where c == ignore; "mean" divides by sum w[c] over counted positions."""
    n = x.shape[-1]
    counted = c != ignore
    cc = np.where(counted, c, 0)
    logp = x - _lse(x)[:, None]
    nll = -w[cc] * logp[np.arange(len(cc)), cc]
    smooth = -(w * logp).sum(axis=1) / n
    loss = np.where(counted, (1 - eps) * nll + eps * smooth, 0.0)
    p = np.exp(logp)
    onehot = np.eye(n)[cc]
    grad = ((1 - eps) * w[cc][:, None] * (p - onehot)
            + eps / n * (w.sum() * p - w[None, :])) * counted[:, None]
    if reduction == "none":
        return loss, grad
    div = w[c[counted]].sum() if reduction == "mean" else 1.0
    return loss.sum() / div, grad / div


def _torch_ce_probs(x, y, w, eps, reduction):
    """PyTorch's F.cross_entropy for probabilities: -sum_k w_k ((1 - eps) y_k + eps/C)
    log softmax(x)_k; "mean" divides by the number of positions."""
    n = x.shape[-1]
    logp = x - _lse(x)[:, None]
    t = (1 - eps) * y + eps / n
    loss = -(w * t * logp).sum(axis=1)
    grad = (w * t).sum(axis=1, keepdims=True) * np.exp(logp) - w * t
    div = {"none": 1.0, "sum": 1.0, "mean": float(len(x))}[reduction]
    return (loss if reduction == "none" else loss.sum() / div), grad / div


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_negative_weights_labels(dtype, eps, reduction) -> None:
    x = RNG.normal(size=(6, 4))
    c = np.array([0, 1, 2, 3, -100, 1])
    w = np.array([0.5, -1.5, 2.0, -0.25])
    ref_loss, ref_grad = _torch_ce_labels(x, c, w, eps, -100, reduction)
    kw = {"weight": w, "label_smoothing": eps, "reduction": reduction}
    loss = softce.cross_entropy(x.astype(dtype), c, **kw)
    loss2, grad = softce.cross_entropy_grad(x.astype(dtype), c, **kw)
    tol = TOL[dtype]
    np.testing.assert_allclose(loss, ref_loss, rtol=tol * 10, atol=tol)
    np.testing.assert_allclose(loss2, ref_loss, rtol=tol * 10, atol=tol)
    np.testing.assert_allclose(grad, ref_grad, rtol=tol * 10, atol=tol)
    assert np.asarray(loss).dtype == dtype


def test_cross_entropy_negative_weights_class_axis_first() -> None:
    x = RNG.normal(size=(3, 5))  # classes along axis 0
    c = np.array([0, 2, 1, 1, 0])
    w = np.array([-1.0, 2.0, 0.5])
    ref, ref_grad = _torch_ce_labels(x.T, c, w, 0.0, -100, "mean")
    loss, grad = softce.cross_entropy_grad(x, c, axis=0, weight=w)
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad.T, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("eps", [0.0, 0.3])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_negative_weights_probs(eps, reduction) -> None:
    x = RNG.normal(size=(5, 3))
    y = RNG.dirichlet(np.ones(3), size=5)
    w = np.array([1.0, -2.0, 0.5])
    ref_loss, ref_grad = _torch_ce_probs(x, y, w, eps, reduction)
    kw = {"weight": w, "label_smoothing": eps, "reduction": reduction}
    np.testing.assert_allclose(softce.cross_entropy(x, y, **kw), ref_loss, rtol=1e-12)
    loss, grad = softce.cross_entropy_grad(x, y, **kw)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_mean_divisor_negative_and_zero() -> None:
    x = RNG.normal(size=(2, 3))
    w = np.array([1.0, -3.0, 1.0])
    # a negative divisor: sum w[c] = -2
    ref, ref_grad = _torch_ce_labels(x, np.array([0, 1]), w, 0.0, -100, "mean")
    loss, grad = softce.cross_entropy_grad(x, np.array([0, 1]), weight=w)
    assert ref < 0 or ref > 0
    np.testing.assert_allclose(loss, ref, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12)
    # a divisor of exactly 0: NaN (or empty_mean), gradient 0
    w0 = np.array([1.0, -1.0, 1.0])
    assert np.isnan(softce.cross_entropy(x, np.array([0, 1]), weight=w0))
    assert softce.cross_entropy(x, np.array([0, 1]), weight=w0, empty_mean=0.0) == 0.0
    loss, grad = softce.cross_entropy_grad(x, np.array([0, 1]), weight=w0)
    assert np.isnan(loss) and not grad.any()
    assert np.isnan(softce.nll_loss(x, np.array([0, 1]), weight=w0))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_nll_loss_negative_weights(reduction) -> None:
    logp = RNG.normal(size=(5, 3))
    c = np.array([0, 1, 2, -100, 1])
    w = np.array([2.0, -0.75, -1.0])
    counted = c != -100
    cc = np.where(counted, c, 0)
    per = np.where(counted, -w[cc] * logp[np.arange(5), cc], 0.0)
    ref = {"none": per, "sum": per.sum(), "mean": per.sum() / w[c[counted]].sum()}[reduction]
    np.testing.assert_allclose(softce.nll_loss(logp, c, weight=w, reduction=reduction), ref,
                               rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_bce_negative_weights(dtype, reduction) -> None:
    x = RNG.normal(size=(4, 3)) * 3
    y = RNG.uniform(size=(4, 3))
    w = np.array([[1.0], [-2.0], [0.5], [-0.1]])
    pw = np.array([-1.5, 2.0, -0.5])
    log_sig, log_1m = -np.logaddexp(0, -x), -np.logaddexp(0, x)
    per = -w * (pw * y * log_sig + (1 - y) * log_1m)
    sig = 1 / (1 + np.exp(-x))
    dx = w * ((pw * y + 1 - y) * sig - pw * y)
    div = x.size if reduction == "mean" else 1
    ref = per if reduction == "none" else per.sum() / div
    kw = {"weight": w, "pos_weight": pw, "reduction": reduction}
    tol = TOL[dtype]
    xs, ys = x.astype(dtype), y.astype(dtype)
    np.testing.assert_allclose(softce.binary_cross_entropy_with_logits(xs, ys, **kw), ref,
                               rtol=tol * 10, atol=tol)
    loss, grad = softce.binary_cross_entropy_with_logits_grad(xs, ys, **kw)
    np.testing.assert_allclose(loss, ref, rtol=tol * 10, atol=tol)
    np.testing.assert_allclose(grad, dx / div, rtol=tol * 10, atol=tol)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_weights_still_refused(bad) -> None:
    x = RNG.normal(size=(2, 3))
    w = np.array([1.0, bad, 1.0])
    for call in (lambda: softce.cross_entropy(x, np.array([0, 1]), weight=w),
                 lambda: softce.cross_entropy_grad(x, np.array([0, 1]), weight=w),
                 lambda: softce.nll_loss(x, np.array([0, 1]), weight=w)):
        with pytest.raises(ValueError, match="weight"):
            call()
    for name in ("weight", "pos_weight"):
        with pytest.raises(ValueError, match=name):
            softce.binary_cross_entropy_with_logits(x, x * 0, **{name: w})


# 2. 0-d inputs: one element along axis 0 / -1 ------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, -1, None])
def test_0d_inputs(dtype, axis) -> None:
    v = dtype(0.5)
    want = {
        softce.softmax: 1.0, softce.log_softmax: 0.0, softce.logsumexp: 0.5,
        softce.entropy: -0.5 * np.log(0.5), softce.softmax_entropy: 0.0,
    }
    for fn, value in want.items():
        got = fn(v, axis=axis)
        assert isinstance(got, np.ndarray) and got.shape == () and got.dtype == dtype, fn
        np.testing.assert_allclose(got, value, rtol=TOL[dtype])
    assert softce.logsumexp(dtype(3.0), axis=axis) == 3.0
    assert softce.logsumexp(dtype(3.0), axis=axis, keepdims=True).shape == ()
    assert softce.entropy(dtype(0.5), axis=axis, keepdims=True).shape == ()
    # gradients: d LSE/dx = 1, d softmax = 0, d log_softmax = 0 (one element)
    g = dtype(2.5)
    for fn, value in ((softce.logsumexp_vjp, 2.5), (softce.softmax_vjp, 0.0),
                      (softce.log_softmax_vjp, 0.0)):
        y = {softce.logsumexp_vjp: v, softce.softmax_vjp: dtype(1.0),
             softce.log_softmax_vjp: dtype(0.0)}[fn]
        got = fn(y, g, axis=axis)
        assert got.shape == () and got.dtype == dtype
        assert got == value, fn
    h, grad = softce.softmax_entropy_grad(v, axis=axis)
    assert h.shape == grad.shape == () and h == 0 and grad == 0


def test_0d_matches_scipy() -> None:
    from scipy import special

    assert softce.softmax(3.0) == special.softmax(3.0) == 1.0
    assert softce.log_softmax(3.0) == special.log_softmax(3.0)
    assert softce.logsumexp(3.0) == special.logsumexp(3.0)
    with pytest.raises(ValueError, match="axis"):
        softce.softmax(3.0, axis=1)
    with pytest.raises(ValueError, match="axis"):
        softce.logsumexp(3.0, axis=(0, -1))  # the one axis, twice


# 3-4. tuple axes, axis=None, keepdims -------------------------------------------------------

AXES = [(0, 2), (1, 2), (2, 0), (-1, 0), (0, 1, 2), None, (), (1,), 1]


def _layouts(dtype) -> dict[str, np.ndarray]:
    base = RNG.normal(size=(3, 4, 5)).astype(dtype)
    big = RNG.normal(size=(5, 8, 6)).astype(dtype)
    return {"c": base, "transposed": base.transpose(2, 0, 1),
            "negative": big[::-2, ::-2, ::-1][:, :4], "fortran": np.asfortranarray(base)}


def _entr_sum(p: np.ndarray, axis: object, keepdims: bool = False) -> np.ndarray:
    from scipy import special

    return special.entr(p).sum(axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", AXES, ids=str)
def test_tuple_axes_match_scipy(dtype, axis) -> None:
    from scipy import special, stats

    tol = {"rtol": TOL[dtype] * 10, "atol": TOL[dtype]}
    for name, x in _layouts(dtype).items():
        for keep in (False, True):
            want = special.logsumexp(x, axis=axis, keepdims=keep)
            got = softce.logsumexp(x, axis=axis, keepdims=keep)
            assert got.shape == want.shape and got.dtype == dtype, (name, keep)
            np.testing.assert_allclose(got, want, **tol)
        for fn, ref in ((softce.softmax, special.softmax),
                        (softce.log_softmax, special.log_softmax)):
            got = fn(x, axis=axis)
            assert got.shape == x.shape and got.dtype == dtype
            np.testing.assert_allclose(got, ref(x, axis=axis), **tol)
        p = special.softmax(x.astype(np.float64), axis=axis).astype(dtype)
        for keep in (False, True):
            want = _entr_sum(p.astype(np.float64), axis, keep)
            got = softce.entropy(p, axis=axis, keepdims=keep)
            assert got.shape == np.shape(want) and got.dtype == dtype
            np.testing.assert_allclose(got, want, **tol)
            got = softce.softmax_entropy(x, axis=axis, keepdims=keep)
            assert got.shape == np.shape(want)
            np.testing.assert_allclose(got, want, **tol)
        np.testing.assert_allclose(softce.entropy(p, axis=axis, base=2.0),
                                   _entr_sum(p.astype(np.float64), axis) / np.log(2), **tol)
        if axis is None:  # scipy.stats.entropy over every element (p sums to 1)
            np.testing.assert_allclose(softce.entropy(p, axis=None),
                                       stats.entropy(p.astype(np.float64), axis=None), **tol)


@pytest.mark.parametrize("axis", AXES, ids=str)
def test_tuple_axes_gradients(axis) -> None:
    from scipy import special

    x = _layouts(np.float64)["transposed"]
    g = RNG.normal(size=x.shape)
    s = special.softmax(x, axis=axis)
    red = special.logsumexp(x, axis=axis)
    gr = RNG.normal(size=np.shape(red))
    kept = np.reshape(gr, special.logsumexp(x, axis=axis, keepdims=True).shape)
    np.testing.assert_allclose(softce.logsumexp_vjp(x, gr, axis=axis), kept * s, rtol=1e-12)
    np.testing.assert_allclose(softce.softmax_vjp(s, g, axis=axis),
                               s * (g - (s * g).sum(axis=axis, keepdims=True)), atol=1e-14)
    logs = np.log(s)
    np.testing.assert_allclose(softce.log_softmax_vjp(logs, g, axis=axis),
                               g - s * g.sum(axis=axis, keepdims=True), atol=1e-14)
    h, dx = softce.softmax_entropy_grad(x, axis=axis, grad_output=gr)
    np.testing.assert_allclose(h, _entr_sum(s, axis), rtol=1e-12)
    np.testing.assert_allclose(dx, kept * s * ((s * x).sum(axis=axis, keepdims=True) - x),
                               atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [(1, 2), (0, 2), None, (0,)], ids=str)
@pytest.mark.parametrize("out_layout", ["c", "transposed"])
def test_tuple_axes_out(dtype, axis, out_layout) -> None:
    from scipy import special

    x = RNG.normal(size=(3, 4, 5)).astype(dtype)
    for fn, ref in ((softce.softmax, special.softmax), (softce.log_softmax,
                                                        special.log_softmax)):
        out = np.full(x.shape, 7, dtype)
        if out_layout == "transposed":
            out = np.full(x.shape[::-1], 7, dtype).T
        assert fn(x, axis=axis, out=out) is out
        np.testing.assert_allclose(out, ref(x, axis=axis), rtol=TOL[dtype] * 10,
                                   atol=TOL[dtype])
        same = x.copy()  # in place
        assert fn(same, axis=axis, out=same) is same
        np.testing.assert_allclose(same, ref(x, axis=axis), rtol=TOL[dtype] * 10,
                                   atol=TOL[dtype])


def test_contiguous_class_axes_are_views_not_copies(monkeypatch) -> None:
    cpu = softce.backend.backend("cpu")
    x = RNG.normal(size=(3, 4, 5))
    for axes in ((1, 2), (0, 1, 2), (2,)):
        assert np.shares_memory(cpu.to_rows(x, axes).data, x), axes
    assert not np.shares_memory(cpu.to_rows(x, (0, 2)).data, x)  # these need a copy
    z = np.array(2.0)
    assert np.shares_memory(cpu.to_rows(z, ()).data, z)  # a 0-d array: one row of one

    laid_out = []
    to_rows = cpu.to_rows

    def spy(arr, axes):
        rows = to_rows(arr, axes)
        laid_out.append(np.shares_memory(rows.data, x))
        return rows

    monkeypatch.setattr(cpu, "to_rows", spy)
    for axis in ((1, 2), (2, 1), (-2, -1), None):
        softce.softmax(x, axis=axis)
        softce.logsumexp(x, axis=axis)
        softce.entropy(x, axis=axis)
    assert laid_out and all(laid_out)
    out = np.empty_like(x)  # trailing class axes: the kernel writes out itself
    assert np.shares_memory(cpu.direct_view(out, to_rows(x, (1, 2))), out)
    assert cpu.direct_view(out, to_rows(x, (0, 2))) is None


def test_tuple_axes_zero_size_and_float16() -> None:
    from scipy import special

    x = np.zeros((0, 3, 4))
    assert softce.logsumexp(x, axis=(1, 2)).shape == (0,)
    got = softce.logsumexp(x, axis=(0, 1))  # rows of no element: -inf, as NumPy's log(0)
    np.testing.assert_array_equal(got, np.full(4, -np.inf))
    assert softce.softmax(x, axis=None).shape == x.shape
    half = RNG.normal(size=(2, 3, 4)).astype(np.float16)
    got = softce.softmax(half, axis=(0, 2))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, special.softmax(half.astype(np.float32), axis=(0, 2)),
                               rtol=2e-6)


def test_keepdims_must_be_a_bool() -> None:
    for fn in (softce.logsumexp, softce.entropy, softce.softmax_entropy):
        with pytest.raises(TypeError, match="keepdims"):
            fn(np.ones((2, 3)), keepdims="yes")


# Dask: the same axes, block-wise ---------------------------------------------------------------

@pytest.mark.parametrize("axis", [(1, 2), (0, 2), (2, 0), None, (), 1], ids=str)
@pytest.mark.parametrize("chunks", [(2, 4, 5), (2, 3, 2)], ids=["whole", "split"])
def test_dask_tuple_axes(axis, chunks) -> None:
    import dask.array as da
    from scipy import special

    from softce import dask as sd

    x = RNG.normal(size=(3, 4, 5))
    X = da.from_array(x, chunks=chunks)
    tol = {"rtol": 1e-12, "atol": 1e-14}
    for keep in (False, True):
        got = sd.logsumexp(X, axis=axis, keepdims=keep)
        want = special.logsumexp(x, axis=axis, keepdims=keep)
        assert got.shape == want.shape
        np.testing.assert_allclose(got.compute(), want, **tol)
    for fn, ref in ((sd.softmax, special.softmax), (sd.log_softmax, special.log_softmax)):
        got = fn(X, axis=axis)
        assert got.shape == x.shape
        np.testing.assert_allclose(got.compute(), ref(x, axis=axis), **tol)
    p = special.softmax(x, axis=axis)
    for keep in (False, True):
        got = sd.entropy(da.from_array(p, chunks=chunks), axis=axis, keepdims=keep)
        want = _entr_sum(p, axis, keep)
        assert got.shape == np.shape(want)
        np.testing.assert_allclose(got.compute(), want, **tol)


def test_dask_0d_and_bad_axes() -> None:
    import dask.array as da

    from softce import dask as sd

    assert sd.logsumexp(da.asarray(3.0)).compute() == 3.0
    assert sd.softmax(da.asarray(3.0)).compute() == 1.0
    assert sd.entropy(da.asarray(0.5), keepdims=True).shape == ()
    X = da.ones((2, 3), chunks=1)
    for axis in ((0, 0), (0, 2)):
        with pytest.raises(ValueError, match="axis"):
            sd.softmax(X, axis=axis)
    with pytest.raises(TypeError, match="keepdims"):
        sd.entropy(X, keepdims=1)
