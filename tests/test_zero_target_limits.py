"""Limits instead of NaN where a term is 0 times an infinity.

Probability-target cross-entropy: a term y_k x_k with y_k = 0 is its limit 0 (D8's guard; in
the kernels D19's y_k (m - x_k), guarded the same way), also where x_k = -inf; the references
below are written by hand and evaluated with mpmath at 50 digits, summing only the y_k > 0
terms. kl_div with log_target: exp(lt) (lt - lq) at lt = -inf is its limit 0 where lq is finite
(D16's guard); PyTorch gives NaN there (0 * -inf). At lq = +-inf the limit does not exist (0 as
lt -> -inf first, +-inf as lq -> -+inf first) and softce gives NaN, as PyTorch; NaN inputs give
NaN. The same for kl_div's y (log y - lq) at y = 0, and a masked logit under a positive target
gives +inf, also smoothed or weighted.
"""

import math
import re
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp

import softce
from softce.derive import results, run
from softce.derive.d08_ce_loss import ZERO_TARGET
from softce.derive.d16_kl_div import LOG_LIMIT, lq, lt
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


def test_d16_guard_is_derived_and_checked() -> None:
    d = run("D16")
    assert all(c.ok for c in d.checks)
    assert {c.method for c in d.checks if c.claim == LOG_LIMIT} >= {"numeric"}
    term = results("D16")["kl_term_log_target"]
    assert term.subs(lt, -sp.oo) == 0 and term.subs({lt: -sp.oo, lq: 5}) == 0
    assert sp.limit(sp.exp(lt) * (lt - lq), lt, -sp.oo) == 0


def _kl_log_ref(inp: float, target: float):
    """exp(lt) (lt - lq) by hand: at lt = -inf the limit 0 for a finite lq, NaN for an
    infinite one (no limit); NaN in, NaN out."""
    if math.isnan(inp) or math.isnan(target):
        return math.nan
    if target == -INF:
        return 0.0 if math.isfinite(inp) else math.nan
    return mpmath.exp(mpmath.mpf(target)) * (mpmath.mpf(target) - mpmath.mpf(inp))


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_div_log_target_minus_inf_is_the_limit(dtype) -> None:
    rng = np.random.default_rng(16)
    inp = np.log(rng.random(40)).astype(dtype)
    target = np.log(rng.random(40)).astype(dtype)
    target[::4] = -np.inf  # probability 0, finite lq
    specials = [(-np.inf, -np.inf), (np.inf, -np.inf), (np.nan, -np.inf), (-1.0, np.nan),
                (-np.inf, -1.0), (np.inf, -1.0), (-1.0, np.inf)]
    for q, (a, b) in enumerate(specials):
        inp[1 + 4 * q], target[1 + 4 * q] = a, b
    got = softce.kl_div(inp, target, reduction="none", log_target=True)
    assert got.dtype == dtype
    for g, a, b in zip(got.tolist(), inp.tolist(), target.tolist()):
        want = _kl_log_ref(a, b)
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(g), (a, b, g)
        elif mpmath.isinf(want):
            assert g == float(want), (a, b, g)
        else:
            tol = 4 * float(np.spacing(dtype(max(abs(float(want)), 1e-30))))
            assert abs(g - float(want)) <= tol, (a, b, g, want)
    zero = target == -np.inf
    finite = zero & np.isfinite(inp)
    assert np.all(got[finite] == 0) and np.isnan(got[zero & ~np.isfinite(inp)]).all()
    # a row whose zero-probability targets are -inf: a finite sum, the same as without them
    clean = np.isfinite(inp) & ~np.isnan(target) & (target != np.inf)
    total = softce.kl_div(inp[clean], target[clean], reduction="sum", log_target=True)
    want = mpmath.fsum(_kl_log_ref(a, b) for a, b in zip(inp[clean].tolist(),
                                                         target[clean].tolist()))
    assert abs(float(total) - float(want)) <= 1e-5 * max(1.0, abs(float(want)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_div_zero_target_without_log_target(dtype) -> None:
    """yt (log yt - lq) at yt = 0 is D16's limit 0 for a finite lq; for a NaN or infinite lq
    the limit does not exist and the term is NaN (0 (0 - lq), as PyTorch, and as the
    log-target term at lt = -inf)."""
    inp = np.array([-1.0, -np.inf, np.inf, np.nan, -2.0, 3.0], dtype)
    target = np.array([0.0, 0.0, 0.0, 0.0, 0.5, 0.0], dtype)
    got = softce.kl_div(inp, target, reduction="none")
    assert got[0] == 0 and got[5] == 0
    assert np.isnan(got[1:4]).all()
    want = 0.5 * (mpmath.log(mpmath.mpf("0.5")) + 2)
    assert abs(float(got[4]) - float(want)) <= 4 * float(np.spacing(dtype(1)))


def test_select_factor_reuses_the_kernels_products() -> None:
    """The guard becomes a select on x[k] (times cw[k] y[k]), or on cw[k] x[k] (times y[k])
    where cw[k] x[k] is summed on its own: no product of its own, and no select left on the
    summand (which LLVM would fold into the sum, stopping vectorisation)."""
    from softce.codegen.numerics import SelectFactor
    from softce.derive.d13_ce_options import cw
    from softce.derive.symbols import k

    guard = sp.Piecewise((0, sp.Eq(y[k], 0)), (cw[k] * x[k] * y[k], True))
    on_x = SelectFactor()(guard)
    assert on_x == sp.Piecewise((0, sp.Eq(y[k], 0)), (x[k], True)) * cw[k] * y[k]
    on_wx = SelectFactor(frozenset({cw[k] * x[k]}))(guard)
    assert on_wx == sp.Piecewise((0, sp.Eq(y[k], 0)), (cw[k] * x[k], True)) * y[k]
    for e in (on_x, on_wx):
        assert sp.piecewise_fold(e) == sp.Piecewise((0, sp.Eq(y[k], 0)),
                                                    (cw[k] * x[k] * y[k], True))


def test_generated_guards_are_selects_on_loads() -> None:
    """In generated/cpu/cross_entropy_prob*.py the guarded term of D19's shifted sum is one
    select on m_c - x[k], times the target: no function call in the element loop but the
    16-bit variants' widening of each load (float32, float64, bfloat16, float16 variants)."""
    root = Path(__file__).resolve().parents[1] / "generated" / "cpu"
    load = r"(?:x_chunk(?:_sub)?_r\[k\]|widen_(?:bf16|f16)\(x_chunk_r\[k\]\))"
    select = (r"\(np\.float(32|64)\(0\) if \((?P<a>[^=]+) == np\.float(32|64)\(0\)\) else "
              rf"-{load} \+ m_c\)")
    files = sorted(root.glob("cross_entropy*prob*.py"))
    assert len(files) == 6
    for path in files:
        stripped = [ln.strip() for ln in path.read_text().splitlines()]
        # float64 adds each 256-element block's sum t_sub into t_c: that line holds no term
        assert sum(ln == "t_c += t_sub" for ln in stripped) == 1, path.name
        lines = [ln for ln in stripped if ln.startswith(("t_c +=", "t_sub +="))
                 and ln != "t_c += t_sub"]
        assert len(lines) == 4, path.name
        assert sum("widen_" in line for line in lines) == 2, path.name
        for line in lines:
            match = re.search(select, line)
            assert match, (path.name, line)
            # the rest of the line: loads, products, sums and the select's condition only
            rest = re.sub(r"widen_(bf16|f16)\(", "", line.replace(match.group(0), ""))
            assert not re.search(r"[a-z_]\w*\(", rest.replace("np.float32(", "").replace(
                "np.float64(", "")), (path.name, line)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_masked_logit_under_a_positive_target_gives_plus_inf(dtype) -> None:
    """-y_k log softmax(x)_k at x_k = -inf and y_k > 0 is +inf; the smoothed and the weighted
    losses, whose row sums of w x y meet with two coefficients, give it too (each sum's terms
    collected: (eps - 1) (-inf), not -(-inf) + eps (-inf) = NaN), as PyTorch does."""
    x_row = np.array([[-INF, 0.0, 1.0]], dtype)
    target = np.array([[0.2, 0.3, 0.5]], dtype)
    weight = np.array([1.0, 2.0, 3.0], dtype)
    for kw in ({}, {"label_smoothing": 0.1}, {"weight": weight},
               {"weight": weight, "label_smoothing": 0.1}):
        assert softce.cross_entropy(x_row, target, reduction="none", **kw)[0] == INF, kw
        loss, _ = softce.cross_entropy_grad(x_row, target, reduction="none", **kw)
        assert loss[0] == INF, kw
    assert softce.cross_entropy(x_row, np.array([1]), label_smoothing=0.1) == INF
