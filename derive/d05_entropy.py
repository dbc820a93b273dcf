"""D5: entropy in base b, its examples, 0 log 0 = 0 by the limit, the uniform maximum [6]."""

from __future__ import annotations

import random

import mpmath
import sympy as sp

from .checking import (
    SIZES,
    all_concrete_zero,
    at_size,
    evaluate,
    numeric_error,
    numeric_ok,
    random_point,
    termwise_zero,
)
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .definitions import SYMBOLIC_ROW, entropy, information, kl, limit_at_zero, u, vec
from .lemmas import gibbs
from .rules import combine_sums, pull_out_constants
from .symbols import b, k, n, p, row_sum, x

ZERO_LOG_ZERO = "lim_{p -> 0+} p log p = 0, so 0 log 0 = 0"
BASE = "H_b = H_e / ln b"
EXAMPLE = "H(1/2, 1/4, 1/4) = 3/2 bits, the mean length of the code (0, 10, 11)"
CERTAIN = "H(0, 1) = 0"
UNIFORM = "H(1/n, ..., 1/n) = log_b n"
MAXIMUM = "H(p) <= log_b n: log_b n - H(p) = KL(p || uniform) >= 0"


@derivation("D5", "entropy", "(6)")
def entropy_base_b(d: Derivation) -> None:
    """H = sum_k p_k I(p_k), I = -log_b p, the 0 log 0 term given by its computed limit."""
    d.step("information (6)", information(p[k], b))
    zero = limit_at_zero(u * sp.log(u))
    d.step("the term p log p at p = 0: its limit", sp.Eq(sp.Limit(u * sp.log(u), u, 0, "+"),
                                                         zero))
    d.check(ZERO_LOG_ZERO, SYMBOLIC, zero == 0)
    h = d.step("H = sum_k p_k I(p_k), the p_k = 0 term by the limit",
               entropy(SYMBOLIC_ROW, vec(p), b))
    h = d.step("1 / log b leaves the sum", pull_out_constants(h))
    d.results["entropy"] = h

    d.check(BASE, SYMBOLIC, sp.simplify(h * sp.log(b) - h.subs(b, sp.E)) == 0)
    example = _at(h, 3, 2, (sp.Rational(1, 2), sp.Rational(1, 4), sp.Rational(1, 4)))
    lengths = [-sp.log(sp.Rational(1, 2), 2), -sp.log(sp.Rational(1, 4), 2)]
    d.check(EXAMPLE, SYMBOLIC, example == sp.Rational(3, 2) and lengths == [1, 2],
            f"H = {example}; code lengths -log2 p = 1, 2, 2, mean 1/2 + 2/4 + 2/4 = 3/2")
    certain = _at(h, 2, b, (0, 1))
    d.check(CERTAIN, SYMBOLIC, certain == 0, "the 0 term takes the branch of the limit")

    uniform = d.step("uniform p_k = 1/n", pull_out_constants(h.xreplace({p[k]: 1 / n})))
    uniform = d.step("simplified", sp.simplify(sp.expand_log(uniform, force=True)))
    d.check(UNIFORM, SYMBOLIC, sp.simplify(uniform - sp.log(n) / sp.log(b)) == 0)
    d.check(UNIFORM, CONCRETE, all(
        _at(h, size, b, [sp.Rational(1, size)] * size).equals(sp.log(size) / sp.log(b))
        for size in SIZES), "exact for n = 1..8")

    gap = sp.log(n) / sp.log(b) * row_sum(p[k]) - h
    d.step("log_b n - H(p), with log_b n = log_b n sum_k p_k", gap)
    kl_uniform = kl(SYMBOLIC_ROW, vec(p), lambda r: 1 / n, b)
    combined = d.step("minus KL(p || uniform), as one sum", combine_sums(gap - kl_uniform))
    identity = isinstance(combined, sp.Sum) and termwise_zero(combined.function)
    d.check(MAXIMUM, SYMBOLIC, identity and gibbs(d, "KL(p || uniform) >= 0", lambda r: 1 / n),
            "every term is 0 (the p_k = 0 term by the limit); Gibbs' inequality")
    d.check(MAXIMUM, CONCRETE, *all_concrete_zero(gap - kl_uniform))
    d.check(MAXIMUM, NUMERIC, *_numeric_maximum(h))
    d.check(BASE, NUMERIC, *numeric_ok(numeric_error(
        h, lambda size, point, ix: _mp_entropy(size, point))))


def _at(h: sp.Expr, size: int, base: sp.Expr, probs) -> sp.Expr:
    """H written out for a concrete distribution, simplified exactly."""
    written = at_size(h, size, unfold_p=False).subs(b, base)
    return sp.simplify(written.xreplace({p[r]: sp.sympify(v) for r, v in enumerate(probs)}))


def _mp_entropy(size: int, point: dict) -> sp.Float:
    """-sum p log p / log b with mpmath, p = softmax(x) at the point."""
    with mpmath.workdps(50):
        xs = [mpmath.mpf(str(point[x[r]])) for r in range(size)]
        z = sum(mpmath.exp(v) for v in xs)
        ps = [mpmath.exp(v) / z for v in xs]
        h = -sum(v * mpmath.log(v) for v in ps) / mpmath.log(mpmath.mpf(str(point[b])))
        return sp.Float(h, 50)


def _numeric_maximum(h: sp.Expr) -> tuple[bool, str]:
    """H(p) <= log_b n at random distributions, 50 digits."""
    rng = random.Random(5)
    worst = sp.oo
    for size in SIZES:
        for _ in range(3):
            point = random_point(size, rng)
            value = evaluate(at_size(h, size), point)
            worst = min(worst, (sp.log(size) / sp.log(point[b])).evalf(50) - value)
    return bool(worst >= 0), f"smallest log_b n - H(p) = {float(worst):.3g}"
