"""Limits instead of NaN where a term is 0 times an infinity (issue "Exact at the edges").

Probability-target cross-entropy: a term y_k x_k with y_k = 0 is its limit 0 (D8's guard),
also where x_k = -inf; the references below are written by hand and evaluated with mpmath at
50 digits, summing only the y_k > 0 terms.
"""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp

import softce
from softce.derive import results, run
from softce.derive.d08_ce_loss import ZERO_TARGET
from softce.derive.symbols import x, y

DTYPES = [np.float32, np.float64]
INF = math.inf


@pytest.fixture(autouse=True)
def _fifty_digits():
    with mpmath.workdps(50):
        yield


def _ce_ref(row, target, weight=None, eps=0.0) -> mpmath.mpf:
    """-sum_k w_k ((1 - eps) y_k + eps / n) log softmax(x)_k, terms with a 0 target left out."""
    n = len(row)
    lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row if v != -INF))
    total = mpmath.mpf(0)
    for k, (v, t) in enumerate(zip(row, target)):
        tk = (1 - mpmath.mpf(eps)) * mpmath.mpf(float(t)) + mpmath.mpf(eps) / n
        tk *= 1 if weight is None else mpmath.mpf(float(weight[k]))
        if tk != 0:
            total -= tk * (mpmath.mpf(float(v)) - lse if v != -INF else mpmath.mpf("-inf"))
    return total


def _rows(dtype):
    """Logits with -inf where the target is 0 (rows 0, 1), one clean row, one -inf under a
    positive target (row 3)."""
    rng = np.random.default_rng(8)
    x_ = (rng.standard_normal((4, 37)) * 3).astype(dtype)
    y_ = rng.random((4, 37)).astype(dtype)
    y_[:2, ::3] = 0
    x_[0, ::3] = -np.inf
    x_[1, 6] = -np.inf
    x_[3, 4] = -np.inf
    y_ /= y_.sum(-1, keepdims=True)
    return x_, y_


def _close(got, want, dtype, ulps=16):
    for g, w in zip(np.ravel(got).tolist(), want):
        if mpmath.isinf(w):
            assert g == float(w), (g, w)
            continue
        tol = ulps * float(np.spacing(dtype(max(abs(float(w)), 1.0))))
        assert abs(g - float(w)) <= tol, (g, mpmath.nstr(w, 17))


def test_d8_guard_is_derived_and_checked() -> None:
    d = run("D8")
    assert all(c.ok for c in d.checks)
    assert any(c.claim == ZERO_TARGET for c in d.checks)
    guarded = results("D8")["ce_loss_guarded"]
    (pw,) = guarded.atoms(sp.Piecewise)
    assert pw.args[0][0] == 0 and pw.args[0][1].lhs.base == y
    assert guarded.xreplace({pw: pw.args[1][0]}) == results("D8")["ce_loss"]
    assert x in {a.base for a in pw.atoms(sp.Indexed)}
    prob = results("D13")["ce_loss_prob_opts"]
    assert len(prob.atoms(sp.Piecewise)) == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_minus_inf_under_zero_target_is_the_limit(dtype) -> None:
    x_, y_ = _rows(dtype)
    want = [_ce_ref(r, t) for r, t in zip(x_, y_)]
    assert mpmath.isinf(want[3]) and all(mpmath.isfinite(w) for w in want[:3])
    _close(softce.cross_entropy(x_, y_, reduction="none"), want, dtype)
    loss, grad = softce.cross_entropy_grad(x_, y_, reduction="none")
    _close(loss, want, dtype)
    assert np.isfinite(grad[:3]).all()
    np.testing.assert_array_equal(grad[0, ::3], 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_and_smoothed(dtype) -> None:
    x_, y_ = _rows(dtype)
    w = (np.arange(37) % 5 + 1).astype(dtype) / 3
    want = [_ce_ref(r, t, w) for r, t in zip(x_, y_)]
    _close(softce.cross_entropy(x_, y_, weight=w, reduction="none"), want, dtype)
    loss, _ = softce.cross_entropy_grad(x_, y_, weight=w, reduction="none")
    _close(loss, want, dtype)
    # label smoothing: the smoothed target is eps / n > 0 at a -inf logit under a 0 target,
    # the loss +inf (as PyTorch); the clean row is the finite smoothed loss
    smooth = softce.cross_entropy(x_, y_, weight=w, label_smoothing=0.1, reduction="none")
    want = [_ce_ref(r, t, w, 0.1) for r, t in zip(x_, y_)]
    assert np.isposinf(smooth[:2]).all() and all(mpmath.isinf(v) for v in want[:2])
    _close(smooth[2:3], want[2:3], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_still_propagates(dtype) -> None:
    x_, y_ = _rows(dtype)
    y_[0, 1] = np.nan  # a NaN target next to the guarded terms
    x_[2, 0], y_[2, 0] = np.nan, 0  # a NaN logit under a zero target: LSE is NaN
    for w in (None, np.ones(37, dtype)):
        loss = softce.cross_entropy(x_, y_, weight=w, reduction="none")
        assert np.isnan(loss[[0, 2]]).all() and np.isfinite(loss[1])
