"""D15: binary cross-entropy with logits (PyTorch's ``binary_cross_entropy_with_logits``).

For a logit t, a target yb, a positive-class weight pw and a weight wt, the definition is

    L = -wt (pw yb log sigmoid(t) + (1 - yb) log(1 - sigmoid(t))).

With log sigmoid(t) = -softplus(-t), log(1 - sigmoid(t)) = -softplus(t) and softplus(s) =
log(1 + exp(s)) = LSE([s, 0]), D2's shifted LSE with D = max(s, 0) gives

    softplus(s) = max(s, 0) + log(exp(s - max(s, 0)) + exp(-max(s, 0))),

in which no exponent is positive and the log's argument lies in [1, 2]: the loss is finite
and accurate for a logit of any sign and size. sympy.diff of the definition, written in
sigmoid and then in D3's shifted sigmoid (D = max(t, 0)), gives the gradient

    dL/dt = wt ((pw yb + 1 - yb) sigmoid(t) - pw yb).
"""

from __future__ import annotations

import random

import numpy as np
import sympy as sp

from .checking import DIGITS, ScalarPoint, numeric_ok, scalar_error, scalar_values
from .core import NUMERIC, SYMBOLIC, Derivation, derivation
from .d02_shift import shift_invariance
from .d03_sigmoid import two_class
from .definitions import sigmoid
from .symbols import D, n, t, x

#: The target: 1 for the positive class, 0 for the negative one (any real is allowed).
yb = sp.Symbol("yb", real=True)
#: PyTorch's ``pos_weight``: the weight of the positive-class term.
pw = sp.Symbol("pw", positive=True)
#: PyTorch's ``weight``: the weight of the whole term.
wt = sp.Symbol("wt", real=True)

LOG_SIGMOID = "log sigmoid(t) = -softplus(-t), log(1 - sigmoid(t)) = -softplus(t)"
SOFTPLUS = "softplus(s) = log(1 + exp(s)) = LSE([s, 0]) = D + log(exp(s - D) + exp(-D))"
LOSS = "bce_loss = -wt (pw yb log sigmoid(t) + (1 - yb) log(1 - sigmoid(t)))"
TORCH = ("PyTorch's form wt ((1 - yb) t + (1 + (pw - 1) yb) (log(1 + exp(-|t|)) "
         "+ max(-t, 0))) = bce_loss")
GRADIENT = "bce_grad = dL/dt = wt ((pw yb + 1 - yb) sigmoid(t) - pw yb)"
STABLE = "with D = max(., 0) no exponent is positive: finite at t = +-1000 in float32, float64"

#: Working digits of the reference values: 1 - sigmoid(1000) = exp(-1000) / (1 + exp(-1000))
#: needs about 435 digits beyond the 50 kept.
EXTRA_DIGITS = DIGITS + 600
#: Logits far from 0, where the naive definition overflows or rounds to log(0).
FAR = (-1000, -100, -30, 30, 100, 1000)

#: The variables of the numeric checks, in the order of their functions' arguments.
VARIABLES = (t, yb, pw, wt)
Point = ScalarPoint

#: A nonnegative variable: the cases t = tau and t = -tau cover every real t.
tau = sp.Symbol("tau", nonnegative=True)
#: softplus as a function object, for the steps; replaced by its forms before any result.
softplus = sp.Function("softplus")


def _softplus(s: sp.Expr) -> sp.Expr:
    """softplus(s) = log(1 + exp(s))."""
    return sp.log(1 + sp.exp(s))


def _by_sign(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """expr at t = tau and at t = -tau (tau >= 0): each max and |.| of t decided."""
    return expr.subs(t, tau), expr.subs(t, -tau)


def _zero_by_sign(expr: sp.Expr) -> bool:
    """expr = 0 for every real t, proved separately for t >= 0 and t <= 0."""
    return all(sp.simplify(sp.expand_log(e, force=True)) == 0 for e in _by_sign(expr))


def _points(count: int = 30, seed: int = 15) -> list[Point]:
    """Random (t, yb, pw, wt): |t| from 0.01 to 1000 and the logits of FAR, yb in [0, 1]
    (0 and 1 included), pw from 0.1 to 10, wt from -2 to 2."""
    rng = random.Random(seed)
    logits = [rng.choice((-1, 1)) * 10 ** rng.uniform(-2, 3) for _ in range(count)]
    points = []
    for r, logit in enumerate([*logits, *FAR]):
        points.append({t: logit, yb: (0, 1, rng.uniform(0, 1))[r % 3],
                       pw: rng.uniform(0.1, 10), wt: rng.uniform(-2, 2)})
    return [{v: sp.Float(value, DIGITS) for v, value in pt.items()} for pt in points]


def _values(expr: sp.Expr, points: list[Point], *, derivative: bool = False) -> list[sp.Float]:
    """expr (or d expr / dt) at each point, with EXTRA_DIGITS working digits."""
    return scalar_values(expr, VARIABLES, points, derivative=derivative, dps=EXTRA_DIGITS)


def _error(lhs: sp.Expr, rhs: sp.Expr, points: list[Point], *,
           derivative: bool = False) -> sp.Float:
    """scalar_error over the points, with EXTRA_DIGITS working digits."""
    return scalar_error(lhs, rhs, VARIABLES, points, derivative=derivative, dps=EXTRA_DIGITS)


def _floats(expr: sp.Expr, definition: sp.Expr) -> tuple[bool, str]:
    """expr in float32 and float64 at t = +-1000 (yb = 0.3, pw = 2, wt = 1): finite and within
    a few ulps of the 50-digit value; the naive definition in float64 is not finite there."""
    fixed = {yb: sp.Float("0.3", DIGITS), pw: 2, wt: 1}
    f = sp.lambdify(t, expr.xreplace(fixed), modules=[{"Max": np.maximum}, "numpy"])
    naive = sp.lambdify(t, definition.xreplace(fixed), "numpy")
    report, ok = [], True
    for logit in (-1000, 1000):
        (exact,) = map(float, _values(expr, [{t: logit, **fixed}]))
        for dtype, tolerance in ((np.float32, 1e-6), (np.float64, 1e-14)):
            with np.errstate(all="ignore"):
                value = f(dtype(logit))
            ok &= bool(value.dtype == dtype and np.isfinite(value)
                       and abs(value - exact) <= tolerance * max(1, abs(exact)))
        with np.errstate(all="ignore"):
            bad = naive(np.float64(logit))
        ok &= not np.isfinite(bad)
        report.append(f"t = {logit}: {exact:.6g} (naive float64: {bad})")
    return ok, "; ".join(report)


def _exponents_nonpositive(expr: sp.Expr) -> bool:
    """Every exp in expr has an argument <= 0, for t >= 0 and for t <= 0."""
    return all(a.args[0].is_nonpositive for e in _by_sign(expr) for a in e.atoms(sp.exp))


@derivation("D15", "binary cross-entropy with logits", "(2), (3)")
def bce_logits(d: Derivation) -> None:
    """The logs of sigmoid as softplus; softplus as D2's LSE of (s, 0) shifted by max(s, 0);
    sympy.diff of the definition, written in D3's shifted sigmoid."""
    definition = d.step("definition, sigmoid from (2)",
                        -wt * (pw * yb * sp.log(sigmoid(t)) + (1 - yb) * sp.log(1 - sigmoid(t))))
    soft = d.step("log sigmoid(t) = -log(1 + exp(-t)) = -softplus(-t); "
                  "1 - sigmoid(t) = sigmoid(-t), so log(1 - sigmoid(t)) = -softplus(t)",
                  wt * (pw * yb * softplus(-t) + (1 - yb) * softplus(t)))
    d.check(LOG_SIGMOID, SYMBOLIC, sp.simplify(soft.replace(softplus, _softplus) - definition)
            == 0)

    s = sp.Symbol("s", real=True)
    lse2 = shift_invariance().results["lse_shifted"].subs(n, 2).doit()
    pair = d.step("softplus(s) = LSE([s, 0]): D2's shifted LSE at n = 2 on (x_0, x_1) = (s, 0)",
                  lse2.xreplace({x[0]: s, x[1]: 0}))
    d.check(SOFTPLUS, SYMBOLIC, sp.simplify(pair - _softplus(s)) == 0, "for every shift D")
    stable = d.step("the shift D = max(s, 0): both exponents s - D and -D are <= 0",
                    pair.xreplace({D: sp.Max(s, 0)}))
    loss = d.step("each softplus in its shifted form",
                  soft.replace(softplus, lambda a: stable.xreplace({s: a})))
    d.results["bce_loss"] = loss
    d.check(LOSS, SYMBOLIC, _zero_by_sign(loss - definition),
            "for t >= 0 and for t <= 0, each max decided")
    points = _points()
    d.check(LOSS, NUMERIC, *numeric_ok(_error(loss, definition, points)))
    d.check(SOFTPLUS, NUMERIC, *numeric_ok(_error(stable.xreplace({s: t}), _softplus(t),
                                                  points)))
    d.check(LOG_SIGMOID, NUMERIC, *numeric_ok(_error(soft.replace(softplus, _softplus),
                                                     definition, points)))

    torch = d.step("PyTorch's form (ATen Loss.cpp), -log sigmoid(t) = log(1 + exp(-|t|)) "
                   "+ max(-t, 0)",
                   wt * ((1 - yb) * t + (1 + (pw - 1) * yb)
                         * (sp.log(1 + sp.exp(-sp.Abs(t))) + sp.Max(-t, 0))))
    d.check(TORCH, SYMBOLIC, _zero_by_sign(torch - loss), "for t >= 0 and for t <= 0")
    d.check(TORCH, NUMERIC, *numeric_ok(_error(torch, loss, points)))

    raw = d.step("dL/dt by sympy.diff of the definition", sp.diff(definition, t))
    sig = sp.Dummy("sigma", positive=True)
    in_sigmoid = sp.cancel(sp.together(raw.subs(sp.exp(-t), (1 - sig) / sig)))
    in_sigmoid = d.step("written in sigma = sigmoid(t): exp(-t) = (1 - sigma) / sigma",
                        wt * sp.collect(sp.expand(in_sigmoid / wt), sig))
    d.check(GRADIENT, SYMBOLIC, t not in in_sigmoid.free_symbols
            and sp.simplify(in_sigmoid.xreplace({sig: sigmoid(t)}) - raw) == 0,
            "sigma = sigmoid(t) put back, it is the diff")
    shifted = two_class().results["sigmoid"]
    general = in_sigmoid.xreplace({sig: shifted})
    d.check(GRADIENT, SYMBOLIC, sp.simplify(general - raw) == 0,
            "with D3's sigmoid shifted by any D, it is the diff")
    grad = d.step("sigma by D3's shifted sigmoid, D = max(t, 0)",
                  general.xreplace({D: sp.Max(t, 0)}))
    d.results["bce_grad"] = grad
    d.check(GRADIENT, SYMBOLIC, _zero_by_sign(grad - raw), "for t >= 0 and for t <= 0")
    d.check(GRADIENT, NUMERIC, *numeric_ok(_error(grad, definition, points, derivative=True)))

    d.check(STABLE, SYMBOLIC, _exponents_nonpositive(loss) and _exponents_nonpositive(grad),
            "every exponent of bce_loss and bce_grad is <= 0 for t >= 0 and for t <= 0")
    d.check(STABLE, NUMERIC, *_floats(loss, definition))
    d.check(STABLE, NUMERIC, *_floats(grad, raw))
