"""Gibbs' inequality, KL(P||Q) >= 0 with equality at Q = P, for rows of symbolic length.

From the scalar lemma log z <= z - 1 (z > 0, equality only at z = 1), termwise
P_k log(Q_k / P_k) <= Q_k - P_k, and summed: -KL <= sum Q - sum P = 0.
"""

from __future__ import annotations

import functools

import sympy as sp
from sympy.calculus.util import minimum

from .core import SYMBOLIC, Derivation
from .definitions import SYMBOLIC_ROW, Vector, kl, vec
from .rules import pull_out_constants, sum_of_p_is_one
from .symbols import b, k, p, q, row_sum

z = sp.Symbol("z", positive=True)


@functools.cache
def log_bound() -> tuple[sp.Expr, list]:
    """min over z > 0 of z - 1 - log z, and where it is 0."""
    gap = z - 1 - sp.log(z)
    return minimum(gap, z, sp.Interval.open(0, sp.oo)), sp.solve(gap, z)


def gibbs(d: Derivation, claim: str, pred: Vector) -> bool:
    """Check KL(p || pred) >= 0 with equality at pred = p, for p and pred distributions
    (pred positive: the uniform row, or the row q)."""
    low, zeros = log_bound()
    d.step("lemma: z - 1 - log z >= 0 for z > 0, with equality only at z = 1",
           rf"\min_{{z > 0}} (z - 1 - \log z) = {sp.latex(low)}, \quad "
           rf"z - 1 - \log z = 0 \iff z \in {sp.latex(sp.FiniteSet(*zeros))}")
    scalar = low == 0 and zeros == [1]
    u, w = p[k], pred(k)
    termwise = sp.expand(u * (w / u - 1)) == w - u
    d.step("z = Q_k / P_k, times P_k > 0 (a term with P_k = 0 is 0 <= Q_k):",
           sp.LessThan(u * sp.log(w / u), w - u))
    total = pull_out_constants(row_sum(w - u))
    d.step("summed: -KL(P||Q) <= sum_k Q_k - sum_k P_k", total)
    summed = sum_of_p_is_one(sum_of_p_is_one(total), q) == 0
    at_p = pull_out_constants(kl(SYMBOLIC_ROW, vec(p), vec(p), b))
    d.step("KL(P||P)", at_p)
    return d.check(claim, SYMBOLIC, scalar and termwise and summed and at_p == 0,
                   "log z <= z - 1 termwise, summed; the sums of P and Q are 1; KL(P||P) = 0")
