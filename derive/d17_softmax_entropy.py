"""D17: the entropy of softmax(x), H = LSE(x) - sum_k p_k x_k, and its gradient.

From D5's entropy (base e) at p = softmax(x) and D10's log p_k = x_k - LSE, with sum_k p_k = 1
(D1):

    H = -sum_k p_k log p_k = LSE - sum_k p_k x_k,
    dH/dx_i = p_i (LSE - x_i - H) = -p_i (log p_i + H)     (sympy.diff, then folded).

A logit x_k = -oo gives p_k = 0, where p_k x_k would be 0 (-oo) = NaN in floating point; its
limit is 0 (u exp(u) -> 0 as u -> -oo). The results carry that as D5's 0 log 0 branch, a
guard on p_k = 0: SymPy takes the logits x as real, hence finite, and would decide (and drop)
a condition x_k = -oo at once, while p_k = 0 stays open.
"""

from __future__ import annotations

import random

import mpmath
import sympy as sp

from .checking import (
    DIGITS,
    all_concrete_zero,
    at_size,
    check_derivative,
    concrete_zero,
    numeric_error,
    numeric_ok,
    symbolic_zero,
    termwise_zero,
    unfold,
)
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .d05_entropy import entropy_base_b
from .d10_log_softmax import log_softmax_vjps
from .definitions import SYMBOLIC_ROW, Row, entropy, lse, softmax, vec
from .rules import (
    collapse_delta,
    combine_sums,
    expand_sum_bodies,
    fold_softmax,
    rename_dummies,
    sum_of_p_is_one,
)
from .symbols import LSE, b, i, j, k, n, p, row_sum, x

ENTROPY = "H(softmax(x)) = -sum_k p_k log p_k = LSE - sum_k p_k x_k"
GUARD = ("a logit x_k = -oo: p_k = 0 and p_k x_k -> 0, so the guarded term is 0 and H is "
         "the entropy of the other logits")
GRADIENT = "dH/dx_i = p_i (LSE - x_i - H) = -p_i (log p_i + H)"
ROW_SUM = "sum_i dH/dx_i = 0"

#: Sizes of the checks with x_0 = -oo (one logit removed leaves n - 1 >= 1).
NEG_INF_SIZES = (2, 3, 5, 8)


def _definition(row: Row, ix=None) -> sp.Expr:
    """H(softmax(x)) in nats, from the definitions (6) and (1)."""
    return entropy(row, lambda r: softmax(row, vec(x), r), sp.E)


def _at_neg_inf(expr: sp.Expr, size: int) -> sp.Expr:
    """expr at n = size with x_0 = -oo, p_r = softmax(x)_r (so p_0 = 0) and LSE = LSE(x), all
    put in at once, as a kernel has them: 0 (-oo) is nan, and a guard p_0 = 0 holds."""
    row, low = Row(size), {x[0]: -sp.oo}
    values = {p[r]: softmax(row, vec(x), r).xreplace(low) for r in range(size)}
    values[LSE] = lse(row, vec(x)).xreplace(low)
    return at_size(expr, size, unfold_p=False).xreplace({**values, **low})


def _others(size: int) -> sp.Expr:
    """The definition of H for the logits x_1 .. x_{size-1}."""
    row = Row(size - 1)
    return entropy(row, lambda r: softmax(row, lambda s: x[s + 1], r), sp.E)


def _neg_inf_concrete(h: sp.Expr) -> tuple[bool, str]:
    for size in NEG_INF_SIZES:
        if not concrete_zero(_at_neg_inf(h, size) - _others(size)):
            return False, f"differs at n = {size}"
    return True, f"exact for n = {', '.join(map(str, NEG_INF_SIZES))}, x_0 = -oo"


def _neg_inf_numeric(h: sp.Expr, grad: sp.Expr, unguarded: sp.Expr) -> tuple[bool, str]:
    """At random logits with x_0 = -oo, 50 digits: H equals mpmath's entropy of the other
    logits, the gradient is 0 at i = 0 and finite elsewhere; the unguarded H is NaN."""
    rng = random.Random(17)
    worst, nan = sp.Float(0), True
    for size in NEG_INF_SIZES:
        point = {x[r]: sp.Float(rng.gauss(0, 2), DIGITS) for r in range(1, size)}
        with mpmath.workdps(DIGITS):
            xs = [mpmath.mpf(str(point[x[r]])) for r in range(1, size)]
            z = sum(mpmath.exp(v) for v in xs)
            want = sp.Float(-sum(mpmath.exp(v) / z * (v - mpmath.log(z)) for v in xs), DIGITS)
        got = _at_neg_inf(h, size).xreplace(point).evalf(DIGITS)
        worst = max(worst, abs(got - want) / max(1, abs(want)))
        grads = [_at_neg_inf(grad.subs(i, r), size).xreplace(point).evalf(DIGITS)
                 for r in range(size)]
        if grads[0] != 0 or not all(g.is_finite for g in grads):
            return False, f"gradient {grads} at n = {size}"
        nan &= _at_neg_inf(unguarded, size).xreplace(point).evalf(DIGITS) is sp.nan
    ok, detail = numeric_ok(worst)
    return ok and nan, f"{detail}; dH/dx_0 = 0; without the guard H is nan"


@derivation("D17", "entropy of softmax and its gradient", "(1), (6)")
def softmax_entropy(d: Derivation) -> None:
    """D5's entropy at p = softmax(x), D10's log p_k, D1's sum p = 1; sympy.diff of the
    unfolded result, folded; the guards at p = 0 from D5's 0 log 0 branch."""
    definition = d.step("definitions (6) and (1): H(softmax(x)) in nats",
                        _definition(SYMBOLIC_ROW))
    h = d.step("D5's entropy, b = e, in p (the p_k = 0 term 0 by the limit of p log p)",
               entropy_base_b().results["entropy"].subs(b, sp.E))
    d.check(ENTROPY, SYMBOLIC, symbolic_zero(unfold(h) - definition),
            "at p = softmax(x), it is the definition")
    log_p = log_softmax_vjps().results["log_softmax"].subs(i, k)
    h = d.step("D10: log p_k = x_k - LSE", h.xreplace({sp.log(p[k]): log_p}))
    split = d.step("the term -p_k LSE is 0 at p_k = 0 too: it leaves the guard and the sum; "
                   "p_k leaves the guard (both branches are 0 at p_k = 0)",
                   LSE * row_sum(p[k]) - row_sum(p[k] * sp.Piecewise((0, sp.Eq(p[k], 0)),
                                                                     (x[k], True))))
    gap = combine_sums(h - split)
    d.check(ENTROPY, SYMBOLIC, isinstance(gap, sp.Sum) and termwise_zero(gap.function),
            "the split is exact term by term, on either branch")
    h = d.step("D1: sum_k p_k = 1", sum_of_p_is_one(split))
    d.results["softmax_entropy"] = h
    d.check(ENTROPY, SYMBOLIC, symbolic_zero(unfold(h) - definition), "unfolded, it is (6)")
    d.check(ENTROPY, CONCRETE, *all_concrete_zero(h - definition))
    d.check(ENTROPY, NUMERIC, *numeric_ok(numeric_error(h, definition)))

    v, a = sp.Symbol("v", real=True), sp.Symbol("a", positive=True)
    limit = d.step("x_k = v -> -oo, a = sum of the other exp(x_r): p_k x_k -> 0",
                   sp.Limit(v * sp.exp(v) / (sp.exp(v) + a), v, -sp.oo).doit())
    d.check(GUARD, SYMBOLIC, limit == 0 and sp.limit(v * sp.exp(v), v, -sp.oo) == 0,
            "sympy.limit, and v exp(v) -> 0 as v -> -oo")
    d.check(GUARD, CONCRETE, *_neg_inf_concrete(h))

    raw = d.step("d/dx_i by sympy.diff of H, p and LSE unfolded (finite logits)",
                 sp.diff(unfold(h), x[i]))
    folded = d.step("collapse the deltas, fold p, take p_i out",
                    sp.factor_terms(rename_dummies(fold_softmax(collapse_delta(
                        expand_sum_bodies(raw))))))
    d.check(GRADIENT, SYMBOLIC, symbolic_zero(unfold(folded) - raw), "unfolded, it is the diff")
    d.check(GRADIENT, SYMBOLIC, symbolic_zero(unfold(-p[i] * (sp.log(p[i]) + h)) - raw),
            "-p_i (log p_i + H) unfolded is the diff")
    body = d.step("sum_k p_k x_k = LSE - H: p_i (LSE - x_i - H), H written out (the LSE cancel)",
                  p[i] * (LSE - x[i] - h))
    d.check(GRADIENT, SYMBOLIC, symbolic_zero(unfold(body - folded)), "H put in, as folded")
    grad = d.step("guarded: 0 at p_i = 0, its limit (p_i x_i -> 0 and p_i -> 0)",
                  sp.Piecewise((0, sp.Eq(p[i], 0)), (body, True)))
    d.results["softmax_entropy_grad"] = grad
    d.check(GRADIENT, SYMBOLIC, symbolic_zero(unfold(grad) - raw), "unfolded, it is the diff")
    check_derivative(d, GRADIENT, grad, _definition, lambda ix: x[ix[i]])
    d.check(GUARD, NUMERIC, *_neg_inf_numeric(h, grad, LSE - row_sum(p[k] * x[k])))

    total = d.step("summed over the row", sp.Sum(grad.xreplace({i: j}), (j, 0, n - 1)))
    d.check(ROW_SUM, SYMBOLIC, symbolic_zero(unfold(total)), "unfolded, sum p = 1")
    d.check(ROW_SUM, NUMERIC, *numeric_ok(numeric_error(total, 0)))
