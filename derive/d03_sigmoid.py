"""D3: sigmoid(t) = softmax([t, 0])_1 and 1 - sigmoid(t) = sigmoid(-t) [2]."""

from __future__ import annotations

import sympy as sp

from .checking import numeric_error, numeric_ok
from .core import NUMERIC, SYMBOLIC, Derivation, derivation
from .d02_shift import shift_invariance
from .definitions import sigmoid
from .symbols import i, n, t, x

TWO_CLASS = "softmax_D([t, 0])_1 = 1 / (1 + exp(-t)) for every shift D"
SYMMETRY = "1 - sigmoid(t) = sigmoid(-t)"


@derivation("D3", "sigmoid is the two-class softmax", "(2)")
def two_class(d: Derivation) -> None:
    """D2's shifted softmax at n = 2, on the pair (t, 0), first component."""
    shifted = shift_invariance().results["softmax_shifted"]
    pair = d.step("D2's shifted softmax at n = 2", shifted.subs(n, 2).doit())
    s = d.step("of the pair (x_0, x_1) = (t, 0), first component (i = 0)",
               pair.subs(i, 0).xreplace({x[0]: t, x[1]: 0}))
    d.results["sigmoid"] = s
    d.step("simplified: the definition (2) of sigmoid, whatever D", sp.simplify(s))
    d.check(TWO_CLASS, SYMBOLIC, sp.simplify(s - sigmoid(t)) == 0)
    d.check(TWO_CLASS, NUMERIC, *numeric_ok(numeric_error(s - sigmoid(t), 0, sizes=(1,))))

    other = d.step("the other component: 1 - sigmoid(t)", sp.simplify(1 - s))
    d.check(SYMMETRY, SYMBOLIC, sp.simplify(other - s.subs(t, -t)) == 0)
    d.check(SYMMETRY, NUMERIC,
            *numeric_ok(numeric_error(1 - s - s.subs(t, -t), 0, sizes=(1,))))
