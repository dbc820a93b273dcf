"""The note's closed forms, written by hand: what the derived results are compared with.

No derivation imports this module (tests/test_derive.py checks it): a derivation reaches its
result from the definitions alone, and only the audit and the tests hold it against these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from .symbols import LSE, D, b, c, d1, d2, g, i, j, k, m1, m2, p, q, row_sum, t, x, y

KD = sp.KroneckerDelta
Z = row_sum(sp.exp(x[k]))
M = sp.Max(m1, m2)


@dataclass(frozen=True)
class ClosedForm:
    """A derived result's closed form as the note writes it (index notation)."""

    derivation: str
    result: str
    formula: str
    expr: sp.Expr
    #: The note's form holds only for a target with sum(y) = 1.
    sum_y_one: bool = False
    #: Substituted into the derived result first (the note's natural log: b = e).
    at: tuple[tuple[sp.Basic, sp.Expr], ...] = ()


CLOSED_FORMS: tuple[ClosedForm, ...] = (
    ClosedForm("D1", "softmax", "(1)", sp.exp(x[i]) / Z),
    ClosedForm("D2", "softmax_shifted", "(3)", sp.exp(x[i] - D) / row_sum(sp.exp(x[k] - D))),
    ClosedForm("D2", "lse_shifted", "LSE(x)", sp.log(Z)),
    ClosedForm("D3", "sigmoid", "(2)", 1 / (1 + sp.exp(-t))),
    ClosedForm("D4", "jacobian", "(4)", p[i] * KD(i, j) - p[i] * p[j]),
    ClosedForm("D4", "jacobian", "(5)", sp.exp(x[i]) * KD(i, j) / Z - p[i] * p[j]),
    ClosedForm("D5", "entropy", "(6)",
               -row_sum(sp.Piecewise((0, sp.Eq(p[k], 0)), (p[k] * sp.log(p[k], b), True)))),
    ClosedForm("D6", "cross_entropy_grad", "(8)", -p[i] / q[i], at=((b, sp.E),)),
    ClosedForm("D7", "grad_lse", "(11)", p[i]),
    ClosedForm("D8", "ce_loss", "(10)", LSE * row_sum(y[k]) - row_sum(x[k] * y[k])),
    ClosedForm("D8", "ce_loss", "(10), last step", LSE - row_sum(x[k] * y[k]), sum_y_one=True),
    ClosedForm("D9", "ce_grad", "(12)", p[i] - y[i], sum_y_one=True),
    ClosedForm("D9", "ce_loss_label", "(10), y = e_c", LSE - x[c]),
    ClosedForm("D9", "ce_grad_label", "(12), y = e_c", p[i] - KD(i, c)),
    ClosedForm("D10", "log_softmax", "log (1)", x[i] - LSE),
    ClosedForm("D10", "log_softmax_vjp", "g - softmax sum(g)", g[i] - p[i] * row_sum(g[k])),
    ClosedForm("D10", "softmax_vjp", "(4) times g", p[i] * g[i] - p[i] * row_sum(p[k] * g[k])),
    ClosedForm("D11", "merge_m", "max", M),
    ClosedForm("D11", "merge_d", "rescaled sums", d1 * sp.exp(m1 - M) + d2 * sp.exp(m2 - M)),
    ClosedForm("D11", "lse_of_pair", "(3), LSE", m1 + sp.log(d1)),
    ClosedForm("D12", "ce_grad", "(12)", p[i] - y[i], sum_y_one=True),
)


def jacobian_matrix(size: int) -> sp.Matrix:
    """(4) diag(s) - s s^T, with s = (p_0, ..., p_{size-1})."""
    s = sp.Matrix([p[r] for r in range(size)])
    diag = sp.Matrix(size, size, lambda r, c: s[r] if r == c else 0)
    return diag - s * s.T


def cross_entropy_gradient_vector(size: int) -> sp.Matrix:
    """(9) -p ⊘ q (elementwise division)."""
    return sp.Matrix([-p[r] / q[r] for r in range(size)])


def note_gradient(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The note's check, softmax(x) - y, in float64."""
    e = np.exp(logits - logits.max())
    return e / e.sum() - target
