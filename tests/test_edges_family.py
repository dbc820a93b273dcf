"""The rest of the cross-entropy family on adversarial inputs, against mpmath at 50 digits.

Same measure as tests/test_edges_mpmath.py: |got - exact| in ulps of the dtype at
max(|exact|, floor), budget 4 ulp. The floors are each function's conditioning, written out
(README, "Guarantees"): BCE with logits is accurate to its weights' scale absolutely (the
softplus of a confident, correct logit, exp(-|x|) below eps, rounds to 0 as in PyTorch);
kl_div to y (|log y| + |lq|) (its two terms cancel); softmax_entropy to the row's scale
max(1, max |x|) (H = LSE - sum p x cancels for a confident row, and for large logits), its
gradient to p_i n max(1, max |x|) (the sum over the row); nll_loss strictly.
``MEASURED`` holds the maxima found (``python tests/test_edges_family.py`` prints them).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import softce

F32, F64 = np.float32, np.float64
BUDGET_ULPS = 4.0
INF = np.inf
LOGITS = [-1e30, -745.0, -100.0, -30.0, -17.5, -1.0, -1e-8, 0.0, 1e-30, 0.5, 3.0, 20.0, 36.0,
          88.0, 700.0, 1e30]
TARGETS = [0.0, 0.25, 1.0]
MEASURED: dict[tuple[str, str], float] = {}


def _mp(v) -> mpmath.mpf:
    return mpmath.mpf(float(v))


def _ulps(got, exact, dtype, floor: float = 0.0) -> float:
    got = float(got)
    if mpmath.isinf(exact) or math.isinf(got) or math.isnan(got):
        return 0.0 if got == float(exact) else math.inf
    scale = max(abs(float(dtype(float(exact)))), floor, float(np.finfo(dtype).tiny))
    return float(abs(_mp(got) - exact) / float(np.spacing(dtype(scale))))


def _record(name: str, dtype, errs: list[float]) -> float:
    worst = max(errs)
    key = (name, np.dtype(dtype).name)
    MEASURED[key] = max(MEASURED.get(key, 0.0), worst)
    return worst


def _softplus(v: mpmath.mpf) -> mpmath.mpf:
    return mpmath.log1p(mpmath.exp(v)) if v < 0 else v + mpmath.log1p(mpmath.exp(-v))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_bce_with_logits(dtype) -> None:
    x = np.array([v for v in LOGITS for _ in TARGETS], dtype)
    y = np.array(TARGETS * len(LOGITS), dtype)
    for pw, wt in ((1.0, 1.0), (2.5, 0.75)):
        loss = softce.binary_cross_entropy_with_logits(x, y, weight=wt, pos_weight=pw,
                                                       reduction="none")
        _, grad = softce.binary_cross_entropy_with_logits_grad(
            x, y, weight=wt, pos_weight=pw, reduction="none")
        errs, gerrs = [], []
        with mpmath.workdps(50):
            for q in range(x.size):
                t, yy = _mp(x[q]), _mp(y[q])
                w, p = _mp(dtype(wt)), _mp(dtype(pw))
                exact = w * (p * yy * _softplus(-t) + (1 - yy) * _softplus(t))
                floor = float(abs(wt) * max(1.0, pw))
                errs.append(_ulps(loss[q], exact, dtype, floor))
                sig = 1 / (1 + mpmath.exp(-t))
                gexact = w * ((p * yy + 1 - yy) * sig - p * yy)
                gerrs.append(_ulps(grad[q], gexact, dtype, floor))
        assert _record("binary_cross_entropy_with_logits", dtype, errs) <= BUDGET_ULPS
        assert _record("binary_cross_entropy_with_logits_grad", dtype, gerrs) <= BUDGET_ULPS


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(dtype, log_target) -> None:
    rng = np.random.default_rng(3)
    y = np.array([0.0, 1e-300, 1e-30, 1e-7, 0.125, 0.5, 1.0, 3.0] * 3)
    lq = np.concatenate([np.log(np.maximum(y[:8], 1e-300)), -rng.exponential(5, 8),
                         [-1e30, -745.0, 0.0, -1e-8, -30.0, -0.5, 2.0, -3.0]])
    tgt = np.log(np.maximum(y, 1e-300)) if log_target else y
    tgt, lq = tgt.astype(dtype), lq.astype(dtype)
    got = softce.kl_div(lq, tgt, reduction="none", log_target=log_target)
    errs = []
    with mpmath.workdps(50):
        for q in range(y.size):
            t, l_q = _mp(tgt[q]), _mp(lq[q])
            if log_target:
                exact, size = mpmath.exp(t) * (t - l_q), mpmath.exp(t) * (abs(t) + abs(l_q))
            elif t == 0:
                exact, size = mpmath.mpf(0), mpmath.mpf(0)
            else:
                exact, size = t * (mpmath.log(t) - l_q), t * (abs(mpmath.log(t)) + abs(l_q))
            errs.append(_ulps(got[q], exact, dtype, float(size)))
    assert _record("kl_div" + ("(log_target)" if log_target else ""), dtype, errs) <= BUDGET_ULPS


ROWS = {
    "confident-by-30": [30.0, 0.0, -1.0, 0.5],
    "masked": [1.0, -INF, 2.0, -INF, -0.5],
    "all-equal": [3.5] * 6,
    "huge-offset": [1e4 + 1.0, 1e4, 1e4 - 2.0],
    "length-1": [0.3],
    "wide": [30.0, -30.0, 0.1, 2.5, -7.75, 4.0, 4.0, -1e-8],
}


@pytest.mark.parametrize("dtype", [F32, F64])
def test_softmax_entropy(dtype) -> None:
    errs, gerrs = [], []
    for row in ROWS.values():
        x = np.array(row, dtype)
        h = softce.softmax_entropy(x)
        _, grad = softce.softmax_entropy_grad(x)
        with mpmath.workdps(60):
            xs = [_mp(v) for v in x if v != -INF]
            m = max(xs)
            z = mpmath.fsum(mpmath.exp(v - m) for v in xs)
            ps = [mpmath.mpf(0) if v == -INF else mpmath.exp(_mp(v) - m) / z for v in x]
            lp = [None if v == -INF else _mp(v) - m - mpmath.log(z) for v in x]
            exact = -mpmath.fsum(p * lv for p, lv in zip(ps, lp) if lv is not None)
            scale = max(1.0, float(max(abs(v) for v in xs)))
            errs.append(_ulps(h, exact, dtype, scale))
            for q, v in enumerate(x):
                g = 0 if v == -INF else -ps[q] * (lp[q] + exact)
                # g_i = p_i (sum_k p_k x_k - x_i): the sum errs by up to n ulp of the scale
                gerrs.append(_ulps(grad[q], g, dtype, len(row) * scale * float(ps[q])))
    assert _record("softmax_entropy", dtype, errs) <= BUDGET_ULPS
    assert _record("softmax_entropy_grad", dtype, gerrs) <= BUDGET_ULPS


@pytest.mark.parametrize("dtype", [F32, F64])
def test_nll_loss(dtype) -> None:
    logp = np.array([[-1e30, -745.0, -1e-8, 0.0], [-0.5, -INF, -3.0, -20.0]], dtype)
    weight = np.array([0.3, 1.0, 2.5, 1e-3])
    for c in range(4):
        labels = np.array([c, c])
        got = softce.nll_loss(logp, labels, weight=weight, reduction="none")
        errs = [_ulps(got[r], -_mp(dtype(weight[c])) * _mp(logp[r, c]), dtype)
                for r in range(2)]
        assert _record("nll_loss", dtype, errs) <= BUDGET_ULPS


if __name__ == "__main__":
    for dt in (F32, F64):
        test_bce_with_logits(dt)
        for lt in (False, True):
            test_kl_div(dt, lt)
        test_softmax_entropy(dt)
        test_nll_loss(dt)
    for (name, dt), worst in sorted(MEASURED.items()):
        print(f"{name:42s} {dt:8s} {worst:.2f} ulp")
