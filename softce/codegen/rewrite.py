"""Stability rewrites applied while lowering: exact identities that avoid inf - inf.

``u - Max(u, v) = Min(0, u - v)``: with u = +inf the left side is inf - inf = NaN, the right
side is 0. Each rule is a pure identity (tests/test_codegen.py proves it with SymPy).
"""

from __future__ import annotations

import sympy as sp


def _shift_to_min(expr: sp.Add) -> sp.Expr:
    for term in expr.args:
        coeff, rest = term.as_coeff_Mul()
        if coeff == -1 and isinstance(rest, sp.Max) and len(rest.args) == 2:
            for u, v in (rest.args, rest.args[::-1]):
                if u in expr.args:
                    others = [a for a in expr.args if a not in (term, u)]
                    return sp.Add(*others, sp.Min(0, u - v))
    return expr


def shift_to_min(expr: sp.Expr) -> sp.Expr:
    """Rewrite every u - Max(u, v) in expr as Min(0, u - v)."""
    return expr.replace(lambda e: e.is_Add, _shift_to_min)
