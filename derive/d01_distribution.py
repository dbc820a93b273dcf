"""D1: softmax is a distribution: every element is positive and they sum to 1 [1]."""

from __future__ import annotations

import random

import sympy as sp

from .checking import DIGITS, all_concrete_zero, numeric_error, numeric_ok, random_point
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .definitions import CONCRETE_ROWS, SYMBOLIC_ROW, softmax, vec
from .rules import pull_out_constants, rename_dummies
from .symbols import i, j, k, n, p, row_sum, x

POSITIVE = "softmax(x)_i > 0"
SUMS_TO_ONE = "sum_i softmax(x)_i = 1"


@derivation("D1", "softmax is a distribution", "(1)")
def distribution(d: Derivation) -> None:
    """exp > 0 gives positivity; the normaliser, free of the summation index, cancels."""
    s = d.step("definition (1)", softmax(SYMBOLIC_ROW, vec(x), i))
    d.results["softmax"] = s
    d.check(POSITIVE, SYMBOLIC, s.is_positive,
            "exp(x_i) > 0 and a sum of n >= 1 exponentials is > 0")
    total = d.step("sum over the row",
                   SYMBOLIC_ROW.sum(lambda r: softmax(SYMBOLIC_ROW, vec(x), r), j))
    reduced = d.step("pull the normaliser, free of j, out of the sum",
                     pull_out_constants(total))
    reduced = d.step("rename the dummy index: the two sums are equal and cancel",
                     rename_dummies(reduced))
    d.check(SUMS_TO_ONE, SYMBOLIC, reduced == 1)
    d.step("folded, p_j = softmax(x)_j: the rule sum_j p_j = 1 used by later derivations",
           sp.Eq(row_sum(p[k]), reduced))

    d.check(POSITIVE, CONCRETE, all(softmax(row, vec(x), r).is_positive
                                    for row in CONCRETE_ROWS for r in range(row.size)),
            "every element for n = 1..8")
    d.check(SUMS_TO_ONE, CONCRETE, *all_concrete_zero(sp.Sum(p[j], (j, 0, n - 1)) - 1))

    rng = random.Random(1)
    low = min(softmax(row, vec(x), r).xreplace(random_point(row.size, rng)).evalf(DIGITS)
              for row in CONCRETE_ROWS for r in range(row.size))
    d.check(POSITIVE, NUMERIC, low > 0, f"smallest element {float(low):.2e}")
    d.check(SUMS_TO_ONE, NUMERIC, *numeric_ok(numeric_error(sp.Sum(p[j], (j, 0, n - 1)), 1)))
