"""D9: the gradient of the cross-entropy loss, sum(y) softmax(x) - y, and integer labels [12]."""

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
from .d08_ce_loss import ce_loss_form
from .definitions import SYMBOLIC_ROW, ce_loss, vec
from .rules import collapse_delta, fold_softmax
from .symbols import c, i, k, row_sum, x, y

GRADIENT = "d L / d x_i = sum(y) softmax(x)_i - y_i"
NORMALISED = "with sum(y) = 1: d L / d x_i = softmax(x)_i - y_i"
LABEL_LOSS = "label c (y = e_c): L = LSE(x) - x_c"
LABEL_GRADIENT = "label c (y = e_c): d L / d x_i = softmax(x)_i - [i = c]"


def _one_hot(expr: sp.Expr) -> sp.Expr:
    """y_q -> [q = c]: the target of an integer label c."""
    return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == y,
                        lambda e: sp.KroneckerDelta(e.indices[0], c))


@derivation("D9", "cross-entropy gradient", "(12)")
def ce_gradient(d: Derivation) -> None:
    """sympy.diff of D8's loss (LSE unfolded), deltas collapsed, p folded; then y = e_c."""
    loss = ce_loss_form().results["ce_loss"]
    raw = d.step("d/dx_i of D8's loss, LSE unfolded", sp.diff(unfold(loss), x[i]))
    grad = d.step("collapse the deltas, fold p_i", fold_softmax(collapse_delta(raw)))
    d.results["ce_grad"] = grad
    d.check(GRADIENT, SYMBOLIC, symbolic_zero(unfold(grad) - raw), "unfolded, it is the diff")
    check_derivative(d, GRADIENT, grad, lambda row, ix: ce_loss(row, vec(x), vec(y)),
                     lambda ix: x[ix[i]])

    normalised = d.step("with sum(y) = 1", grad.xreplace({row_sum(y[k]): 1}))
    d.check(NORMALISED, SYMBOLIC, (grad - normalised).xreplace({row_sum(y[k]): 1}) == 0,
            "the two differ by p_i (sum(y) - 1)")
    d.check(NORMALISED, NUMERIC, *numeric_ok(numeric_error(
        normalised, grad, y_distribution=True)))

    label_loss = d.step("D8's loss at y = e_c, the deltas collapsed",
                        collapse_delta(_one_hot(loss)))
    d.results["ce_loss_label"] = label_loss
    definition = ce_loss(SYMBOLIC_ROW, vec(x), lambda r: sp.KroneckerDelta(r, c))
    d.check(LABEL_LOSS, SYMBOLIC, symbolic_zero(unfold(label_loss) - definition))
    d.check(LABEL_LOSS, CONCRETE, *all_concrete_zero(label_loss - definition))
    d.check(LABEL_LOSS, NUMERIC, *numeric_ok(numeric_error(label_loss, definition)))

    label_grad = d.step("the gradient at y = e_c", collapse_delta(_one_hot(grad)))
    d.results["ce_grad_label"] = label_grad
    d.check(LABEL_GRADIENT, SYMBOLIC,
            symbolic_zero(unfold(label_grad) - collapse_delta(_one_hot(raw))))
    check_derivative(d, LABEL_GRADIENT, label_grad,
                     lambda row, ix: ce_loss(row, vec(x), lambda r: sp.KroneckerDelta(r, ix[c])),
                     lambda ix: x[ix[i]])
