"""D8: the cross-entropy loss, -sum_k y_k log softmax(x)_k = LSE(x) sum(y) - x.y [10]."""

from __future__ import annotations

import sympy as sp

from .checking import all_concrete_zero, numeric_error, numeric_ok, symbolic_zero, unfold
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .definitions import SYMBOLIC_ROW, ce_loss, vec
from .rules import expand_sum_bodies, fold_softmax
from .symbols import k, row_sum, x, y

LOSS = "L(x) = -sum_k y_k log softmax(x)_k = LSE(x) sum(y) - x.y"
NORMALISED = "with sum(y) = 1: L(x) = LSE(x) - x.y"


@derivation("D8", "cross-entropy loss", "(10)")
def ce_loss_form(d: Derivation) -> None:
    """log of the quotient, log exp(x_k) = x_k, the sums split, log Z folded to LSE."""
    definition = d.step("definition (10)", ce_loss(SYMBOLIC_ROW, vec(x), vec(y)))
    split = d.step("log(exp(x_k) / Z) = x_k - log Z (both positive)", sp.expand_log(definition))
    split = d.step("the sum split, factors free of k taken out", expand_sum_bodies(split))
    loss = d.step("log Z folded to LSE", fold_softmax(split))
    d.results["ce_loss"] = loss
    d.check(LOSS, SYMBOLIC, symbolic_zero(unfold(loss) - definition), "unfolded, it is (10)")
    d.check(LOSS, CONCRETE, *all_concrete_zero(loss - definition))
    d.check(LOSS, NUMERIC, *numeric_ok(numeric_error(loss, definition)))

    normalised = d.step("with sum(y) = 1", loss.xreplace({row_sum(y[k]): 1}))
    gap = expand_sum_bodies(sp.expand_log(unfold(normalised) - definition))
    d.check(NORMALISED, SYMBOLIC, sp.simplify(gap.xreplace({row_sum(y[k]): 1})) == 0)
    d.check(NORMALISED, NUMERIC, *numeric_ok(numeric_error(normalised, definition,
                                                           y_distribution=True)))
