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
