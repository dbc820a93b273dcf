"""D8: the cross-entropy loss, -sum_k y_k log softmax(x)_k = LSE(x) sum(y) - x.y [10].

A term y_k x_k of x.y with y_k = 0 is given its limit as y_k -> 0+, which is 0 for every
logit x_k and stays 0 as x_k -> -oo (a masked logit, softmax 0): the guarded loss drops it,
where the plain product would be 0 (-oo) = NaN.
"""

from __future__ import annotations

import sympy as sp

from .checking import all_concrete_zero, numeric_error, numeric_ok, symbolic_zero, unfold
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .definitions import SYMBOLIC_ROW, ce_loss, limit_at_zero, u, vec
from .rules import expand_sum_bodies, fold_softmax
from .symbols import k, row_sum, x, y

LOSS = "L(x) = -sum_k y_k log softmax(x)_k = LSE(x) sum(y) - x.y"
NORMALISED = "with sum(y) = 1: L(x) = LSE(x) - x.y"
ZERO_TARGET = ("a term y_k x_k at y_k = 0: its limit as y_k -> 0+ is 0, and stays 0 as "
               "x_k -> -oo (a masked logit)")
GUARDED = "the guarded loss is the loss wherever y_k != 0, and its y_k = 0 branch is the limit"

#: A logit's value in the limits (x_k, finite, then -> -oo).
a = sp.Symbol("a", real=True)


def guard_zero_targets(expr: sp.Expr) -> sp.Expr:
    """Each product t = r y[k] x[k] in a sum body -> r Piecewise((L, Eq(y[k], 0)), (x[k], True))
    with L = lim_{y_k -> 0+} t by sympy.limit: t where y_k != 0 and, when L = 0, L at y_k = 0.
    (The select is on the factor x[k], so that a kernel's sum stays a plain reduction.)"""
    def guarded(term: sp.Expr) -> bool:
        bases = {f.base for f in term.args if isinstance(f, sp.Indexed)} if term.is_Mul else ()
        return y in bases and x in bases

    def guard(term: sp.Mul) -> sp.Expr:
        yk, xk = (next(f for f in term.args if isinstance(f, sp.Indexed) and f.base == base)
                  for base in (y, x))
        zero = limit_at_zero(term.xreplace({yk: u}))
        return term / xk * sp.Piecewise((zero, sp.Eq(yk, 0)), (xk, True))

    return expr.replace(lambda e: isinstance(e, sp.Sum),
                        lambda s: s.func(s.function.replace(guarded, guard), *s.limits))


def guards_ok(guarded: sp.Expr, loss: sp.Expr) -> bool:
    """Every guard's default branch taken gives ``loss`` back, and every guarded term, folded
    (sympy.piecewise_fold), is 0 at y_k = 0: the limit."""
    pieces = guarded.atoms(sp.Piecewise)
    unguarded = guarded.xreplace({pw: pw.args[-1][0] for pw in pieces})
    bodies = [s.function for s in guarded.atoms(sp.Sum) if s.function.has(sp.Piecewise)]
    folded = [sp.piecewise_fold(sp.expand(b)) for b in bodies]
    return (bool(pieces) and unguarded == loss and len(folded) == len(pieces)
            and all(isinstance(f, sp.Piecewise) and f.args[0][0] == 0 for f in folded))


@derivation("D8", "cross-entropy loss", "(10)")
def ce_loss_form(d: Derivation) -> None:
    """log of the quotient, log exp(x_k) = x_k, the sums split, log Z folded to LSE; the
    zero-target terms by their limit."""
    definition = d.step("definition (10)", ce_loss(SYMBOLIC_ROW, vec(x), vec(y)))
    split = d.step("log(exp(x_k) / Z) = x_k - log Z (both positive)", sp.expand_log(definition))
    split = d.step("the sum split, factors free of k taken out", expand_sum_bodies(split))
    loss = d.step("log Z folded to LSE", fold_softmax(split))
    d.results["ce_loss"] = loss
    d.check(LOSS, SYMBOLIC, symbolic_zero(unfold(loss) - definition), "unfolded, it is (10)")
    d.check(LOSS, CONCRETE, *all_concrete_zero(loss - definition))
    d.check(LOSS, NUMERIC, *numeric_ok(numeric_error(loss, definition)))

    normalised = d.step("with sum(y) = 1", loss.xreplace({row_sum(y[k]): 1}))
    gap = expand_sum_bodies(sp.expand_log(unfold(normalised) - definition))
    d.check(NORMALISED, SYMBOLIC, sp.simplify(gap.xreplace({row_sum(y[k]): 1})) == 0)
    d.check(NORMALISED, NUMERIC, *numeric_ok(numeric_error(normalised, definition,
                                                           y_distribution=True)))

    at_zero = d.step("the term y_k x_k at y_k -> 0+, x_k = a finite",
                     sp.Eq(sp.Limit(u * a, u, 0, "+"), limit_at_zero(u * a)))
    masked = d.step("then a -> -oo (a masked logit)",
                    sp.Eq(sp.Limit(at_zero.rhs, a, -sp.oo), sp.limit(at_zero.rhs, a, -sp.oo)))
    d.check(ZERO_TARGET, SYMBOLIC, at_zero.rhs == 0 and masked.rhs == 0, "sympy.limit")
    guarded = d.step("x.y with each y_k = 0 term given its limit", guard_zero_targets(loss))
    d.results["ce_loss_guarded"] = guarded
    d.check(GUARDED, SYMBOLIC, guards_ok(guarded, loss),
            "the default branches give the loss back; each y_k = 0 branch is 0")
    d.check(GUARDED, NUMERIC, *numeric_ok(numeric_error(guarded, definition)))

