"""D2: shift invariance, softmax(x - D) = softmax(x) and LSE(x) = D + LSE(x - D) [3]."""

from __future__ import annotations

import numpy as np
import sympy as sp

from .checking import all_concrete_zero, numeric_error, numeric_ok, symbolic_zero
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .definitions import SYMBOLIC_ROW, lse, softmax, vec
from .rules import expand_sum_bodies
from .symbols import D, i, t, x

SOFTMAX = "softmax(x - D) = softmax(x) for every D"
LSE_SHIFT = "LSE(x) = D + LSE(x - D) for every D"
MAX_SHIFT = "with D = max(x): 0 < exp(x_k - D) <= 1, so the normaliser lies in [1, n]"


def _shifted(r: sp.Expr) -> sp.Expr:
    return x[r] - D


@derivation("D2", "shift invariance and the max shift", "(3)")
def shift_invariance(d: Derivation) -> None:
    """exp(x_k - D) = exp(x_k) exp(-D): the factor exp(-D) leaves every sum and cancels."""
    shifted = d.step("definition (1) applied to x - D", softmax(SYMBOLIC_ROW, _shifted, i))
    split = d.step("exp(x_k - D) = exp(x_k) exp(-D), and exp(-D) leaves the sum",
                   expand_sum_bodies(shifted))
    d.step("exp(-D) cancels: the definition (1) of softmax(x)", sp.powsimp(sp.expand(split)))
    plain = softmax(SYMBOLIC_ROW, vec(x), i)
    d.check(SOFTMAX, SYMBOLIC, symbolic_zero(shifted - plain))
    d.results["softmax_shifted"] = shifted

    lse_shifted = d.step("LSE applied to x - D", lse(SYMBOLIC_ROW, _shifted))
    split = d.step("exp(-D) leaves the sum and the log: LSE(x - D) = LSE(x) - D",
                   sp.expand_log(expand_sum_bodies(lse_shifted)))
    d.check(LSE_SHIFT, SYMBOLIC, symbolic_zero(split - (lse(SYMBOLIC_ROW, vec(x)) - D)))
    d.results["lse_shifted"] = d.step("hence LSE(x) = D + LSE(x - D)", D + lse_shifted)

    for claim, expr in ((SOFTMAX, shifted - plain),
                        (LSE_SHIFT, d.results["lse_shifted"] - lse(SYMBOLIC_ROW, vec(x)))):
        d.check(claim, CONCRETE, *all_concrete_zero(expr))
        d.check(claim, NUMERIC, *numeric_ok(numeric_error(expr, 0)))

    below = sp.solve_univariate_inequality(sp.exp(t) <= 1, t, relational=False)
    d.check(MAX_SHIFT, SYMBOLIC, below == sp.Interval(-sp.oo, 0),
            "exp(s) <= 1 exactly for s <= 0; the term of the max is exp(0) = 1, and the other "
            "n - 1 terms lie in (0, 1]")
    d.check(MAX_SHIFT, NUMERIC, *_float64_max_shift())


def _float64_max_shift() -> tuple[bool, str]:
    """In float64 the naive softmax of (1000, 999, 998) is nan; the max-shifted one is not."""
    v = np.array([1000.0, 999.0, 998.0])
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(v) / np.exp(v).sum()
    e = np.exp(v - v.max())
    shifted = e / e.sum()
    ok = bool(np.isnan(naive).all() and np.isfinite(shifted).all()
              and abs(shifted.sum() - 1) < 1e-15)
    return ok, f"x = (1000, 999, 998): naive {naive}, max-shifted {np.round(shifted, 6)}"
