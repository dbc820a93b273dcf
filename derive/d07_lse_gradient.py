"""D7: the gradient of LSE is softmax, d LSE(x) / d x_i = p_i [11]."""

from __future__ import annotations

import sympy as sp

from .checking import check_derivative, symbolic_zero, unfold
from .core import SYMBOLIC, Derivation, derivation
from .definitions import SYMBOLIC_ROW, lse, vec
from .rules import collapse_delta, fold_softmax
from .symbols import i, x

GRADIENT = "d LSE(x) / d x_i = softmax(x)_i"


@derivation("D7", "gradient of LSE is softmax", "(11)")
def lse_gradient(d: Derivation) -> None:
    """sympy.diff of log sum_k exp(x_k), the delta collapsed, exp(x_i) / Z folded to p_i."""
    f = d.step("LSE", lse(SYMBOLIC_ROW, vec(x)))
    raw = d.step("d/dx_i", sp.diff(f, x[i]))
    grad = d.step("collapse the delta, fold exp(x_i) / Z to p_i", fold_softmax(collapse_delta(raw)))
    d.results["grad_lse"] = grad
    d.check(GRADIENT, SYMBOLIC, symbolic_zero(unfold(grad) - raw), "unfolded, it is the diff")
    check_derivative(d, GRADIENT, grad, lambda row, ix: lse(row, vec(x)), lambda ix: x[ix[i]])
