"""Finite-difference gradient checks in float64, as torch.autograd.gradcheck does them.

For a function f and its derivative as softce provides it (a VJP, a fused gradient, a
Jacobian), the analytical Jacobian is assembled row by row from VJPs with one-hot cotangents and
compared with the numerical Jacobian of central differences (eps = 1e-6), every input element
perturbed in turn. The tolerances are tighter than gradcheck's defaults (atol 1e-5, rtol 1e-3).
"""

from __future__ import annotations

import numpy as np
import pytest

import softce

EPS = 1e-6
ATOL, RTOL = 1e-7, 1e-6


def numerical_jacobian(f, x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """J[o, i] = (f(x + eps e_i) - f(x - eps e_i))_o / 2 eps; -inf entries stay -inf."""
    x = np.array(x, np.float64)
    out_size = np.size(f(x))
    jac = np.zeros((out_size, x.size))
    flat = x.reshape(-1)
    for i in range(x.size):
        keep = flat[i]
        flat[i] = keep + eps
        plus = np.asarray(f(x), np.float64).reshape(-1)
        flat[i] = keep - eps
        minus = np.asarray(f(x), np.float64).reshape(-1)
        flat[i] = keep
        with np.errstate(invalid="ignore"):
            d = (plus - minus) / (2 * eps)
        jac[:, i] = np.where(plus == minus, 0.0, d)  # inf - inf at a masked entry: no change
    return jac


def analytical_jacobian(vjp, x: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    """J[o, :] = vjp(x, e_o): backward mode, one one-hot cotangent per output element."""
    size = int(np.prod(out_shape, dtype=np.int64))
    jac = np.zeros((size, x.size))
    for o in range(size):
        v = np.zeros(size)
        v[o] = 1.0
        jac[o] = np.asarray(vjp(x, v.reshape(out_shape)), np.float64).reshape(-1)
    return jac


def gradcheck(f, vjp, x: np.ndarray) -> None:
    out_shape = np.shape(f(x))
    an = analytical_jacobian(vjp, x, out_shape)
    num = numerical_jacobian(f, x)
    np.testing.assert_allclose(an, num, rtol=RTOL, atol=ATOL)
    # the VJP is linear in its cotangent (gradcheck's consistency of backward)
    rng = np.random.default_rng(0)
    v1, v2 = rng.standard_normal(out_shape), rng.standard_normal(out_shape)
    lhs = np.asarray(vjp(x, 2.0 * v1 - v2))
    rhs = 2.0 * np.asarray(vjp(x, v1)) - np.asarray(vjp(x, v2))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-13)


def randn(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape) * 2.0


LAYOUTS = [((3, 5), -1), ((3, 5), 0), ((7,), 0), ((2, 3, 2, 2), 1), ((2, 2, 3), -1),
           ((1, 1), -1)]


@pytest.mark.parametrize("shape, axis", LAYOUTS)
def test_softmax(shape, axis) -> None:
    x = randn(shape, 1)
    gradcheck(lambda z: softce.softmax(z, axis),
              lambda z, v: softce.softmax_vjp(softce.softmax(z, axis), v, axis), x)


@pytest.mark.parametrize("shape, axis", LAYOUTS)
def test_log_softmax(shape, axis) -> None:
    x = randn(shape, 2)
    gradcheck(lambda z: softce.log_softmax(z, axis),
              lambda z, v: softce.log_softmax_vjp(softce.log_softmax(z, axis), v, axis), x)


@pytest.mark.parametrize("shape, axis", LAYOUTS)
def test_logsumexp(shape, axis) -> None:
    x = randn(shape, 3)
    gradcheck(lambda z: softce.logsumexp(z, axis),
              lambda z, v: softce.logsumexp_vjp(z, v, axis), x)


@pytest.mark.parametrize("shape, axis", LAYOUTS)
def test_softmax_jacobian_is_the_derivative_of_softmax(shape, axis) -> None:
    x = randn(shape, 4)
    ax = axis % len(shape)
    num = numerical_jacobian(lambda z: softce.softmax(z, axis), x)
    jac = softce.softmax_jacobian(x, axis)  # (batch..., n, n)
    # place each row's n x n block at its positions in the full Jacobian
    idx = np.moveaxis(np.arange(x.size).reshape(shape), ax, -1).reshape(-1, shape[ax])
    full = np.zeros((x.size, x.size))
    for r, block in enumerate(jac.reshape(-1, shape[ax], shape[ax])):
        full[np.ix_(idx[r], idx[r])] = block
    np.testing.assert_allclose(full, num, rtol=RTOL, atol=ATOL)


def _ce_target(kind: str, shape, ax: int, seed: int):
    rng = np.random.default_rng(seed)
    batch = shape[:ax] + shape[ax + 1:]
    if kind == "labels":
        return rng.integers(0, shape[ax], size=batch)
    y = rng.uniform(0.05, 1.0, shape)
    if kind == "probs":
        return y / y.sum(axis=ax, keepdims=True)
    return y  # unnormalised: sum(y) != 1, where (12) needs sum(y) softmax - y


@pytest.mark.parametrize("kind", ["labels", "probs", "unnormalised"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape, axis", [((4, 5), -1), ((2, 3, 2, 2), 1), ((5, 3), 0),
                                         ((6,), 0), ((3, 1), -1)])
def test_cross_entropy(shape, axis, reduction, kind) -> None:
    ax = axis % len(shape)
    x = randn(shape, 5)
    t = _ce_target(kind, shape, ax, 6)

    def f(z):
        return softce.cross_entropy(z, t, axis=axis, reduction=reduction)

    def vjp(z, v):
        loss, grad = softce.cross_entropy_grad(z, t, axis=axis, reduction=reduction,
                                               grad_output=v)
        np.testing.assert_allclose(loss, f(z), rtol=1e-15, atol=0)  # the fused loss is f
        return grad

    gradcheck(f, vjp, x)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_over_masked_logits(reduction) -> None:
    x = randn((4, 6), 7)
    x[0, [1, 2]] = -np.inf
    x[3, 5] = -np.inf
    c = np.array([0, 5, 3, 1])

    def vjp(z, v):
        return softce.cross_entropy_grad(z, c, reduction=reduction, grad_output=v)[1]

    gradcheck(lambda z: softce.cross_entropy(z, c, reduction=reduction), vjp, x)
    for fn, back in ((softce.softmax, lambda z, v: softce.softmax_vjp(softce.softmax(z), v)),
                     (softce.logsumexp, softce.logsumexp_vjp)):
        gradcheck(fn, back, x)
    # log_softmax is -inf at the masks, its derivative there is not a number: the finite rows
    gradcheck(softce.log_softmax,
              lambda z, v: softce.log_softmax_vjp(softce.log_softmax(z), v), x[[1, 2]])


def test_a_wrong_gradient_fails_the_check() -> None:
    """The checker is not vacuous: (12) as printed, softmax(x) - y, is the gradient only
    when sum(y) = 1; for any other y it fails, and sum(y) softmax(x) - y passes."""
    x = randn((3, 4), 8)
    y = np.random.default_rng(9).uniform(0.1, 1.0, (3, 4))  # rows sum to about 2

    def f(z):
        return softce.cross_entropy(z, y, reduction="sum")

    def printed(z, v):
        return v * (softce.softmax(z) - y)

    with pytest.raises(AssertionError):
        gradcheck(f, printed, x)
    gradcheck(f, lambda z, v: v * (y.sum(axis=-1, keepdims=True) * softce.softmax(z) - y), x)
    gradcheck(f, lambda z, v: softce.cross_entropy_grad(z, y, reduction="sum",
                                                        grad_output=v)[1], x)


@pytest.mark.parametrize("kind", ["labels", "probs", "unnormalised"])
def test_second_derivative_of_cross_entropy(kind) -> None:
    """gradgradcheck: the derivative of dL/dx is sum(y) (diag(s) - s s^T) per row (/N for
    "mean"), the softmax Jacobian softce computes."""
    shape = (3, 5)
    x = randn(shape, 10)
    t = _ce_target(kind, shape, 1, 11)
    num = numerical_jacobian(lambda z: softce.cross_entropy_grad(z, t)[1], x)
    weight = np.ones(3) if kind == "labels" else t.sum(axis=1)
    blocks = softce.softmax_jacobian(x) * (weight / 3)[:, None, None]
    full = np.zeros((15, 15))
    for r in range(3):
        full[5 * r:5 * r + 5, 5 * r:5 * r + 5] = blocks[r]
    np.testing.assert_allclose(full, num, rtol=RTOL, atol=ATOL)
    # the Hessian of logsumexp is the same Jacobian
    num = numerical_jacobian(lambda z: softce.logsumexp_vjp(z, np.ones(3)), x)
    np.testing.assert_allclose(full * 3 / weight.repeat(5)[:, None], num, rtol=RTOL, atol=ATOL)


def test_sigmoid_derivative_through_formula_2() -> None:
    """sigmoid(x) = softmax([x, 0])_1, so its derivative is the (1, 1) entry of that pair's
    softmax Jacobian: s (1 - s)."""
    x = np.array([-30.0, -5.0, -0.3, 0.0, 0.7, 4.0, 25.0])
    num = np.diag(numerical_jacobian(softce.sigmoid, x))
    jac = softce.softmax_jacobian(np.stack([x, np.zeros_like(x)]), axis=0)[:, 0, 0]
    np.testing.assert_allclose(jac, num, rtol=RTOL, atol=ATOL)
    s = softce.sigmoid(x)
    np.testing.assert_allclose(s * (1 - s), num, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("base", [None, 2, 10])
def test_entropy_derivative(base) -> None:
    """dH_b/dp_i = -(ln p_i + 1) / ln b: the entropy values are consistent with their base."""
    p = np.array([[0.1, 0.2, 0.3, 0.4], [0.05, 0.05, 0.6, 0.3]])
    num = numerical_jacobian(lambda q: softce.entropy(q, base=base), p)
    lnb = 1.0 if base is None else np.log(base)
    want = -(np.log(p) + 1) / lnb
    full = np.zeros((2, 8))
    full[0, :4], full[1, 4:] = want[0], want[1]
    np.testing.assert_allclose(full, num, rtol=RTOL, atol=ATOL)
