"""D4: the softmax Jacobian, d softmax(x)_i / d x_j = p_i ([i = j] - p_j) [4, 5].

Read as a matrix, J = diag(p) - p p^T: its rows sum to 0 (1 is a null vector), it is symmetric
and positive semidefinite (v^T J v is the variance of v under p).
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
    random_point,
    symbolic_zero,
    unfold,
)
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .definitions import SYMBOLIC_ROW, softmax, vec
from .rules import collapse_delta, expand_sum_bodies, fold_softmax, sum_of_p_is_one
from .symbols import i, j, k, n, p, row_sum, x

DERIVATIVE = "d softmax(x)_i / d x_j = p_i ([i = j] - p_j)"
ROWS = "rows sum to 0: J 1 = 0, 1 is a null vector"
COLUMNS = "columns sum to 0: 1^T J = 0"
SYMMETRIC = "J is symmetric"
PSD = "J is positive semidefinite: v^T J v = sum_k p_k (v_k - p.v)^2 >= 0"

v = sp.IndexedBase("v", real=True)  # any direction


@derivation("D4", "softmax Jacobian", "(4), (5)")
def jacobian(d: Derivation) -> None:
    """sympy.diff of the definition, the delta collapsed, exp(x_q)/Z folded to p_q."""
    s = softmax(SYMBOLIC_ROW, vec(x), i)
    raw = d.step("d/dx_j of definition (1)", sp.diff(s, x[j]))
    folded = d.step("collapse the delta in the sum, fold exp(x_q) / Z to p_q",
                    fold_softmax(collapse_delta(raw)))
    jac = d.step("take p_i out", sp.factor_terms(folded))
    d.results["jacobian"] = jac
    d.check(DERIVATIVE, SYMBOLIC, symbolic_zero(unfold(jac) - raw), "unfolded, it is the diff")
    check_derivative(d, DERIVATIVE, jac, lambda row, ix: softmax(row, vec(x), ix[i]),
                     lambda ix: x[ix[j]], numeric_sizes=(1, 2, 4))

    for claim, total in ((ROWS, sp.Sum(jac, (j, 0, n - 1))), (COLUMNS, sp.Sum(jac, (i, 0, n - 1)))):
        reduced = d.step(f"{claim.split(':')[0]}: sum, collapse, sum_k p_k = 1",
                         sp.Eq(total, sum_of_p_is_one(collapse_delta(expand_sum_bodies(total)))))
        d.check(claim, SYMBOLIC, reduced.rhs == 0)
        d.check(claim, CONCRETE, *all_concrete_zero(total))

    swapped = jac.xreplace({i: j, j: i})
    d.check(SYMMETRIC, SYMBOLIC, symbolic_zero(jac - swapped), "[i = j] p_i = [i = j] p_j")
    d.check(SYMMETRIC, CONCRETE, *all_concrete_zero(jac - swapped, unfold_p=False))

    quad = sp.Sum(sp.Sum(v[i] * jac * v[j], (j, 0, n - 1)), (i, 0, n - 1))
    mean = row_sum(p[k] * v[k])
    variance = row_sum(p[k] * (v[k] - mean) ** 2)
    d.step("v^T J v, the sums collapsed", collapse_delta(expand_sum_bodies(quad)))
    d.step("= sum_k p_k (v_k - p.v)^2, a sum of terms >= 0", variance)
    d.check(PSD, SYMBOLIC, symbolic_zero(quad - variance, normalised=True)
            and variance.function.is_nonnegative)
    d.check(PSD, CONCRETE, *all_concrete_zero(quad - variance))
    d.check(PSD, NUMERIC, *_eigenvalues(jac))


def _eigenvalues(jac: sp.Expr) -> tuple[bool, str]:
    """The eigenvalues of J at random points, 50 digits: all >= 0, and one is 0."""
    rng = random.Random(4)
    lowest, smallest_abs = mpmath.inf, mpmath.inf
    with mpmath.workdps(DIGITS):
        for size in (2, 5, 8):
            point = random_point(size, rng)
            written = at_size(jac, size)
            m = mpmath.matrix(size, size)
            for a in range(size):
                for bb in range(size):
                    m[a, bb] = mpmath.mpf(str(written.subs({i: a, j: bb}).xreplace(point)
                                              .evalf(DIGITS)))
            eig = mpmath.eigsy(m, eigvals_only=True)
            lowest = min(lowest, min(eig))
            smallest_abs = min(smallest_abs, min(abs(e) for e in eig))
    ok = lowest > -mpmath.mpf(10) ** -40 and smallest_abs < mpmath.mpf(10) ** -40
    return ok, f"lowest eigenvalue {mpmath.nstr(lowest, 3)}, n = 2, 5, 8"
