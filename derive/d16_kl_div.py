"""D16: the pointwise terms of PyTorch's ``kl_div`` and their gradients in the input.

``kl_div(input, target)`` takes input = log q and sums (or averages) the pointwise terms

    target (log target - input),   0 where target = 0        (log_target=False)
    exp(target) (target - input)                              (log_target=True)

With lq the input, yt the target and lt a log-target, the term yt (log yt - lq) is extended
to yt = 0 by its limit (the u log u limit of D5), so that summed over a row with lq = log q_k
it is KL(y || q) of the definitions; the kernel's form guards log yt inside the term, so that
at yt = 0 the term is 0 (-lq): the limit 0 where lq is finite, NaN where lq is NaN or infinite
(as the log-target term below). At yt = exp(lt) the term is the log_target one; at
lt = -oo (target probability 0) it is its limit as lt -> -oo, 0: the guard replaces lt by 0 in
lt - lq, and exp(-oo) = 0 gives the limit where lq is finite (0 (-oo) would be NaN), while a NaN
or infinite lq still makes the product NaN (there the limit does not exist). The gradients in
the input are -yt (the two branches agree at yt = 0) and -exp(lt).
"""

from __future__ import annotations

import random

import mpmath
import sympy as sp

from .checking import DIGITS, SIZES, at_size, numeric_ok, termwise_zero
from .core import NUMERIC, SYMBOLIC, Derivation, derivation
from .definitions import SYMBOLIC_ROW, extended, kl, limit_at_zero, u, vec
from .rules import combine_sums
from .symbols import q, y

#: PyTorch's input: a log-probability log q.
lq = sp.Symbol("lq", real=True)
#: The target, a probability (0 allowed).
yt = sp.Symbol("yt", nonnegative=True)
#: The target given as its log (log_target=True): extended real, -oo for a probability 0.
lt = sp.Symbol("lt", extended_real=True)

ZERO_TERM = "lim_{yt -> 0+} yt (log yt - lq) = 0, so the term at yt = 0 is 0"
ROW = "sum_k kl_term(yt = y_k, lq = log q_k) = KL(y || q)"
GUARDED = ("yt (log yt - lq) with log yt guarded at yt = 0 is kl_term; at yt = 0 its value "
           "0 (-lq) carries a NaN or infinite lq")
LOG_TARGET = "kl_term at yt = exp(lt) is exp(lt) (lt - lq)"
LOG_LIMIT = ("lim_{lt -> -oo} exp(lt) (lt - lq) = 0 (finite lq), and the guarded term, lt - lq "
             "with lt = -oo replaced by 0, is that limit at lt = -oo")
GRADIENT = "d kl_term / d lq = -yt"
LOG_GRADIENT = "d kl_term_log_target / d lq = -exp(lt)"


def _one_branch(pw: sp.Piecewise) -> sp.Expr:
    """Piecewise((a, Eq(v, c)), (b, True)) -> b when b at v = c is a: the branches agree."""
    (a, cond), (b, _) = pw.args
    return b if sp.simplify(b.subs(cond.lhs, cond.rhs) - a) == 0 else pw


def _points(seed: int = 16, count: int = 12) -> list[dict[sp.Symbol, sp.Float]]:
    """Random (lq, yt, lt), 50 digits; yt = 0 at every third point."""
    rng = random.Random(seed)
    return [{lq: sp.Float(rng.gauss(-2, 2), DIGITS),
             yt: sp.Float(0 if r % 3 == 0 else rng.uniform(0, 2), DIGITS),
             lt: sp.Float(rng.gauss(-2, 2), DIGITS)} for r in range(count)]


def _error(lhs: sp.Expr, rhs, points) -> sp.Float:
    """The largest |lhs - rhs| (relative to max(1, |rhs|)) at 50 digits; rhs an expression
    or a function of the point."""
    worst = sp.Float(0)
    for pt in points:
        a = lhs.xreplace(pt).evalf(DIGITS)
        b = rhs(pt) if callable(rhs) else rhs.xreplace(pt).evalf(DIGITS)
        worst = max(worst, abs(a - b) / max(1, abs(b)))
    return worst


def _derivative(expr: sp.Expr, point: dict[sp.Symbol, sp.Float]) -> sp.Float:
    """d expr / d lq at point, by mpmath's numerical differentiation at 50 digits."""
    rest = {v: value for v, value in point.items() if v != lq}
    f = sp.lambdify(lq, expr.xreplace(rest), "mpmath")
    with mpmath.workdps(DIGITS):
        return sp.Float(mpmath.diff(f, mpmath.mpf(str(point[lq]))), DIGITS)


def _row_error(lhs: sp.Expr, rhs: sp.Expr, seed: int = 6) -> sp.Float:
    """|lhs - rhs| of two row expressions in y and q, n = 1..8, at random distributions y (with
    zeros) and q, 50 digits."""
    rng = random.Random(seed)
    worst = sp.Float(0)
    for size in SIZES:
        left, right = at_size(lhs, size, unfold_p=False), at_size(rhs, size, unfold_p=False)
        for _ in range(2):
            with mpmath.workdps(DIGITS + 5):
                ys = [mpmath.mpf(0) if r and rng.random() < 0.3 else mpmath.rand()
                      for r in range(size)]
                qs = [mpmath.rand() + mpmath.mpf("0.01") for _ in range(size)]
                point = {**{y[r]: sp.Float(v / sum(ys), DIGITS) for r, v in enumerate(ys)},
                         **{q[r]: sp.Float(v / sum(qs), DIGITS) for r, v in enumerate(qs)}}
            a, b = left.xreplace(point).evalf(DIGITS), right.xreplace(point).evalf(DIGITS)
            worst = max(worst, abs(a - b) / max(1, abs(b)))
    return worst


@derivation("D16", "KL divergence, PyTorch's kl_div terms", "(6), KL")
def kl_div_terms(d: Derivation) -> None:
    """The term extended by its limit; the row sum against the definition of KL; the
    log-target form by substitution; the gradients by sympy.diff."""
    term = u * (sp.log(u) - lq)
    zero = limit_at_zero(term)
    d.step("the term at yt -> 0+: its limit (u log u -> 0, u lq -> 0)",
           sp.Eq(sp.Limit(term, u, 0, "+"), zero))
    d.check(ZERO_TERM, SYMBOLIC, zero == 0, "sympy.limit")
    kl_term = d.step("target (log target - input), extended to yt = 0 by the limit",
                     extended(yt, term))
    d.results["kl_term"] = kl_term
    zero_log = sp.Piecewise((0, sp.Eq(yt, 0)), (sp.log(yt), True))
    guarded = d.step("the guard inside the term: log yt replaced by 0 at yt = 0, so that "
                     "yt (0 - lq) = 0 gives the limit where lq is finite, NaN where it is not",
                     yt * (zero_log - lq))
    d.results["kl_term_guarded"] = guarded
    d.check(GUARDED, SYMBOLIC, guarded.subs(yt, 0) == kl_term.subs(yt, 0)
            and guarded.xreplace({zero_log: sp.log(yt)}) == kl_term.args[-1][0],
            "at yt = 0 both are 0 (lq finite); elsewhere the guard is log yt")

    row = d.step("summed over a row, yt = y_k and lq = log q_k",
                 SYMBOLIC_ROW.sum(lambda r: kl_term.xreplace({yt: y[r], lq: sp.log(q[r])})))
    definition = kl(SYMBOLIC_ROW, vec(y), vec(q), sp.E)
    gap = d.step("minus KL(y || q) of the definitions, as one sum",
                 combine_sums(row - definition))
    d.check(ROW, SYMBOLIC, isinstance(gap, sp.Sum) and termwise_zero(gap.function),
            "every term is 0 (the y_k = 0 term in both by the limit)")
    d.check(ROW, NUMERIC, *numeric_ok(_row_error(row, definition)))

    plain = d.step("yt = exp(lt) > 0 (lt finite): the limit branch drops, log exp(lt) = lt",
                   kl_term.args[-1][0].subs(yt, sp.exp(lt)))
    torch_log = sp.exp(lt) * (lt - lq)
    d.check(LOG_TARGET, SYMBOLIC, sp.simplify(plain - torch_log) == 0,
            "it is PyTorch's exp(target) (target - input)")
    limit = sp.limit(plain, lt, -sp.oo)
    d.step("lt -> -oo (target probability 0): the limit", sp.Eq(sp.Limit(plain, lt, -sp.oo),
                                                                 limit))
    finite = sp.Piecewise((0, sp.Eq(lt, -sp.oo)), (lt, True))
    log_target = d.step("the guard: lt - lq with lt = -oo replaced by 0 (finite), so that "
                        "exp(-oo) = 0 gives the limit",
                        plain.replace(lambda e: e.is_Add and lt in e.args,
                                      lambda e: e.xreplace({lt: finite})))
    d.results["kl_term_log_target"] = log_target
    d.check(LOG_LIMIT, SYMBOLIC, limit == 0 and log_target.subs(lt, -sp.oo) == limit
            and log_target.xreplace({finite: lt}) == plain,
            "sympy.limit; the guarded term at lt = -oo is the limit, elsewhere the term")
    points = _points()
    d.check(LOG_LIMIT, NUMERIC, *numeric_ok(_error(
        log_target.subs(lt, -sp.oo), lambda pt: plain.xreplace({**pt, lt: -10**4}).evalf(DIGITS),
        points)))
    d.check(LOG_TARGET, NUMERIC, *numeric_ok(_error(
        log_target, lambda pt: kl_term.xreplace({**pt, yt: sp.exp(pt[lt])}).evalf(DIGITS),
        points)))

    raw = d.step("d/d lq by sympy.diff, branch by branch", sp.diff(kl_term, lq))
    grad = d.step("at yt = 0 the branch -yt is 0 too: one branch", _one_branch(raw))
    d.results["kl_term_grad"] = grad
    d.check(GRADIENT, SYMBOLIC, termwise_zero(raw - grad), "it is the diff, in each branch")
    d.check(GRADIENT, NUMERIC, *numeric_ok(_error(
        grad, lambda pt: _derivative(kl_term, pt), points)))

    log_grad = d.step("d/d lq of the log-target term by sympy.diff", sp.diff(log_target, lq))
    d.results["kl_term_log_target_grad"] = log_grad
    d.check(LOG_GRADIENT, SYMBOLIC, sp.simplify(log_grad + sp.exp(lt)) == 0)
    d.check(LOG_GRADIENT, NUMERIC, *numeric_ok(_error(
        log_grad, lambda pt: _derivative(log_target, pt), points)))
