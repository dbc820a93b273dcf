"""D10: log-softmax, x_i - LSE(x), and the vector-Jacobian products of log-softmax and softmax.

A VJP is sum_k g_k d out_k / d x_i, the gradient of g.out(x) with g held fixed.
"""

from __future__ import annotations

import sympy as sp

from .checking import (
    all_concrete_zero,
    check_derivative,
    numeric_error,
    numeric_ok,
    symbolic_zero,
    unfold,
)
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .definitions import SYMBOLIC_ROW, Row, softmax, vec
from .rules import collapse_delta, expand_sum_bodies, fold_softmax, rename_dummies
from .symbols import g, i, j, row_sum, x

LOG_SOFTMAX = "log softmax(x)_i = x_i - LSE(x)"
LOG_VJP = "sum_k g_k d log softmax(x)_k / d x_i = g_i - softmax(x)_i sum(g)"
SOFTMAX_VJP = "sum_k g_k d softmax(x)_k / d x_i = p_i (g_i - p.g)"


def _log_softmax(row: Row, r: sp.Expr) -> sp.Expr:
    return sp.log(softmax(row, vec(x), r))


def _vjp(d: Derivation, out: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """sum_j g_j d out_j / d x_i: diff, deltas collapsed, p folded, p_i taken out."""
    raw = d.step("sum_j g_j d out_j / d x_i", sp.diff(row_sum(g[j] * out, j), x[i]))
    vjp = fold_softmax(collapse_delta(expand_sum_bodies(raw)))
    vjp = d.step("collapse the deltas, fold p, take p_i out",
                 sp.factor_terms(rename_dummies(vjp)))
    return raw, vjp


@derivation("D10", "log-softmax and the VJPs", "(1), (11)")
def log_softmax_vjps(d: Derivation) -> None:
    """log of the quotient, then the two VJPs by sympy.diff."""
    definition = d.step("log of definition (1)", _log_softmax(SYMBOLIC_ROW, i))
    ls = d.step("log(exp(x_i) / Z) = x_i - log Z, log Z folded to LSE",
                fold_softmax(sp.expand_log(definition)))
    d.results["log_softmax"] = ls
    d.check(LOG_SOFTMAX, SYMBOLIC, symbolic_zero(unfold(ls) - definition))
    d.check(LOG_SOFTMAX, CONCRETE, *all_concrete_zero(ls - definition))
    d.check(LOG_SOFTMAX, NUMERIC, *numeric_ok(numeric_error(ls, definition)))

    for claim, name, out, outputs in (
            (LOG_VJP, "log_softmax_vjp", unfold(ls).subs(i, j), _log_softmax),
            (SOFTMAX_VJP, "softmax_vjp", softmax(SYMBOLIC_ROW, vec(x), j),
             lambda row, r: softmax(row, vec(x), r))):
        raw, vjp = _vjp(d, out)
        d.results[name] = vjp
        d.check(claim, SYMBOLIC, symbolic_zero(unfold(vjp) - raw), "unfolded, it is the diff")
        check_derivative(d, claim, vjp,
                         lambda row, ix, f=outputs: row.sum(lambda r: g[r] * f(row, r)),
                         lambda ix: x[ix[i]])
