"""D14-D17: verdicts, the results the generator consumes, and plain-mpmath values.

The numbers here are computed independently of the derivations' own checks: the losses as
PyTorch writes them, evaluated with mpmath at 50 digits.
"""

import mpmath
import numpy as np
import pytest
import sympy as sp

from softce.derive import results, run
from softce.derive.checking import at_size
from softce.derive.core import SYMBOLIC
from softce.derive.d14_softcap import cap
from softce.derive.d15_bce_logits import pw, wt, yb
from softce.derive.d16_kl_div import lq, lt, yt
from softce.derive.symbols import LSE, i, k, p, row_sum, t, x

IDS = ("D14", "D15", "D16", "D17")
NAMES = {
    "D14": {"softcap", "softcap_grad"},
    "D15": {"bce_loss", "bce_grad"},
    "D16": {"kl_term", "kl_term_guarded", "kl_term_log_target", "kl_term_grad",
            "kl_term_log_target_grad"},
    "D17": {"softmax_entropy", "softmax_entropy_grad"},
}


def _max0(e: sp.Expr) -> sp.Expr:
    return sp.Max(e, 0)


def _softplus(s: sp.Expr) -> sp.Expr:
    return _max0(s) + sp.log(sp.exp(s - _max0(s)) + sp.exp(-_max0(s)))


def _sigmoid(s: sp.Expr) -> sp.Expr:
    return sp.exp(s - _max0(s)) / (sp.exp(s - _max0(s)) + sp.exp(-_max0(s)))


_GUARDED = sp.Piecewise((0, sp.Eq(p[k], 0)), (p[k] * x[k], True))

#: The results, exactly (structural equality).
CONTRACT = {
    ("D14", "softcap"): cap * sp.tanh(t / cap),
    ("D14", "softcap_grad"): 1 - sp.tanh(t / cap) ** 2,
    ("D15", "bce_loss"): wt * (pw * yb * _softplus(-t) + (1 - yb) * _softplus(t)),
    ("D15", "bce_grad"): wt * ((pw * yb + 1 - yb) * _sigmoid(t) - pw * yb),
    ("D16", "kl_term"): sp.Piecewise((0, sp.Eq(yt, 0)), (yt * (sp.log(yt) - lq), True)),
    # the guard at lt = -oo (target probability 0): lt - lq with lt replaced by 0 there
    ("D16", "kl_term_log_target"): sp.exp(lt) * (sp.Piecewise((0, sp.Eq(lt, -sp.oo)), (lt, True))
                                                 - lq),
    ("D16", "kl_term_guarded"): yt * (sp.Piecewise((0, sp.Eq(yt, 0)), (sp.log(yt), True)) - lq),
    ("D16", "kl_term_grad"): -yt,
    ("D16", "kl_term_log_target_grad"): -sp.exp(lt),
    ("D17", "softmax_entropy"): LSE - row_sum(_GUARDED),
    ("D17", "softmax_entropy_grad"): sp.Piecewise(
        (0, sp.Eq(p[i], 0)), (p[i] * (row_sum(_GUARDED) - x[i]), True)),
}


@pytest.mark.parametrize("id", IDS)
def test_every_check_passes_and_the_results_exist(id: str) -> None:
    d = run(id)
    assert d.verdict == "proved", [ch for ch in d.checks if not ch.ok]
    assert d.method == SYMBOLIC
    assert set(d.results) == NAMES[id]
    assert d.steps and all(s.latex for s in d.steps)


@pytest.mark.parametrize(("id", "name"), sorted(CONTRACT))
def test_results_contract(id: str, name: str) -> None:
    assert results(id)[name] == CONTRACT[id, name]


def test_the_scalar_results_are_elementwise_and_printable() -> None:
    """Only the scalar arguments, and no sigmoid, softplus or other function to print."""
    allowed = {"D14": {t, cap}, "D15": {t, yb, pw, wt}, "D16": {lq, yt, lt}}
    for id, symbols in allowed.items():
        for expr in results(id).values():
            assert expr.free_symbols <= symbols
            functions = {type(f) for f in expr.atoms(sp.Function)}
            assert functions <= {sp.tanh, sp.exp, sp.log, sp.Max, sp.Piecewise}


def _mp(value) -> mpmath.mpf:
    return mpmath.mpf(str(value))


def _at(expr: sp.Expr, values: dict) -> mpmath.mpf:
    """A result at a point, to 50 digits (SymPy's evaluation, every branch decided)."""
    return _mp(expr.xreplace({s: sp.Float(str(v), 60) for s, v in values.items()}).evalf(50))


def _torch_bce(logit, target, pos_weight, weight) -> mpmath.mpf:
    """-w [pw y log(1 / (1 + e^-t)) + (1 - y) log(1 - 1 / (1 + e^-t))], with enough digits
    that 1 - sigmoid(t) keeps 50."""
    with mpmath.workdps(120):
        s = 1 / (1 + mpmath.exp(-logit))
        return -weight * (pos_weight * target * mpmath.log(s) + (1 - target) * mpmath.log(1 - s))


@pytest.mark.parametrize("logit", ["30", "-30", "0.5", "-7.25"])
def test_bce_against_mpmath(logit: str) -> None:
    loss, grad = results("D15")["bce_loss"], results("D15")["bce_grad"]
    values = {t: logit, yb: "0.3", pw: 2, wt: "1.5"}
    with mpmath.workdps(50):
        got, want = _at(loss, values), _torch_bce(_mp(logit), _mp("0.3"), 2, _mp("1.5"))
        assert abs(got - want) <= mpmath.mpf("1e-40") * max(1, abs(want))
        slope = mpmath.diff(lambda s: _torch_bce(s, _mp("0.3"), 2, _mp("1.5")), _mp(logit))
        assert abs(_at(grad, values) - slope) <= mpmath.mpf("1e-35")


def test_bce_is_finite_at_extreme_logits_in_float64() -> None:
    fixed = {yb: 0.3, pw: 2.0, wt: 1.0}
    for name in ("bce_loss", "bce_grad"):
        f = sp.lambdify(t, results("D15")[name].xreplace(fixed),
                        modules=[{"Max": np.maximum}, "numpy"])
        for logit in (-1000.0, -80.0, 0.0, 80.0, 1000.0):
            with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
                assert np.isfinite(f(np.float64(logit))), (name, logit)
    # softplus(1000) = 1000: the loss at y = 0 and t = 1000 is 1000 (PyTorch's value too)
    assert _at(results("D15")["bce_loss"], {t: 1000, yb: 0, pw: 1, wt: 1}) == 1000


def test_softcap_against_mpmath() -> None:
    s, g = results("D14")["softcap"], results("D14")["softcap_grad"]
    with mpmath.workdps(50):
        for logit, c in (("100", "30"), ("-4.5", "50"), ("0.001", "1")):
            want = _mp(c) * mpmath.tanh(_mp(logit) / _mp(c))
            assert abs(_at(s, {t: logit, cap: c}) - want) < mpmath.mpf("1e-45")
            slope = mpmath.diff(lambda v, c=c: _mp(c) * mpmath.tanh(v / _mp(c)), _mp(logit))
            assert abs(_at(g, {t: logit, cap: c}) - slope) < mpmath.mpf("1e-40")


def test_kl_terms_against_mpmath() -> None:
    r = results("D16")
    with mpmath.workdps(50):
        target, inp = _mp("0.25"), mpmath.log(_mp("0.4"))
        want = target * (mpmath.log(target) - inp)
        assert abs(_at(r["kl_term"], {yt: "0.25", lq: inp}) - want) < mpmath.mpf("1e-45")
        assert _at(r["kl_term"], {yt: 0, lq: inp}) == 0
        lt_value = mpmath.log(target)
        assert abs(_at(r["kl_term_log_target"], {lt: lt_value, lq: inp}) - want) < mpmath.mpf(
            "1e-45")
        # a -inf log-target: the limit of exp(lt) (lt - lq) as lt -> -oo, 0 (mpmath, far out)
        assert r["kl_term_log_target"].subs({lt: -sp.oo, lq: sp.Float(str(inp), 50)}) == 0
        far = mpmath.mpf(-2000)
        assert abs(mpmath.exp(far) * (far - inp)) < mpmath.mpf("1e-800")
        assert _at(r["kl_term_grad"], {yt: "0.25"}) == -target
        assert abs(_at(r["kl_term_log_target_grad"], {lt: lt_value}) + target) < mpmath.mpf(
            "1e-45")


def _entropy_row(expr: sp.Expr, logits: list) -> sp.Expr:
    """A D17 result at the logits: p, LSE and x put in at once, as a kernel has them."""
    size = len(logits)
    with mpmath.workdps(60):
        xs = [mpmath.mpf(v) if v != "-inf" else mpmath.ninf for v in logits]
        z = mpmath.fsum(mpmath.exp(v) for v in xs)
        values = {p[r]: sp.Float(mpmath.exp(v) / z, 60) for r, v in enumerate(xs)}
        values[LSE] = sp.Float(mpmath.log(z), 60)
    values.update({x[r]: -sp.oo if v == "-inf" else sp.Float(v, 60)
                   for r, v in enumerate(logits)})
    return at_size(expr, size, unfold_p=False).xreplace(values).evalf(50)


def _mp_entropy(logits: list) -> mpmath.mpf:
    xs = [mpmath.mpf(v) for v in logits if v != "-inf"]
    z = mpmath.fsum(mpmath.exp(v) for v in xs)
    return -mpmath.fsum(mpmath.exp(v) / z * (v - mpmath.log(z)) for v in xs)


def test_softmax_entropy_against_mpmath() -> None:
    h, grad = results("D17")["softmax_entropy"], results("D17")["softmax_entropy_grad"]
    logits = ["0.3", "-1.7", "2.25", "0"]
    with mpmath.workdps(50):
        assert abs(_mp(_entropy_row(h, logits)) - _mp_entropy(logits)) < mpmath.mpf("1e-45")
        total = 0
        for r in range(len(logits)):
            def entropy_at(v, r=r):
                return _mp_entropy([str(v) if q == r else s for q, s in enumerate(logits)])

            slope = mpmath.diff(entropy_at, _mp(logits[r]))
            got = _mp(_entropy_row(grad.subs(i, r), logits))
            assert abs(got - slope) < mpmath.mpf("1e-40")
            total += got
        assert abs(total) < mpmath.mpf("1e-45")


def test_softmax_entropy_with_a_minus_inf_logit_is_finite() -> None:
    h, grad = results("D17")["softmax_entropy"], results("D17")["softmax_entropy_grad"]
    logits = ["-inf", "0.5", "-1.25"]
    value = _entropy_row(h, logits)
    assert value.is_finite
    with mpmath.workdps(50):
        assert abs(_mp(value) - _mp_entropy(logits)) < mpmath.mpf("1e-45")
    grads = [_entropy_row(grad.subs(i, r), logits) for r in range(3)]
    assert grads[0] == 0 and all(g.is_finite for g in grads)
    # without the guard, p_0 x_0 = 0 (-oo) is nan
    assert _entropy_row(LSE - row_sum(p[k] * x[k]), logits) is sp.nan
