"""The symbols every derivation and the generator share.

A row of the class axis has symbolic length ``n`` and 0-based indices; ``i`` and ``j`` index
elements of an output, ``k`` is the summation index of every row reduction.
"""

from __future__ import annotations

import sympy as sp

n = sp.Symbol("n", integer=True, positive=True)
i, j, k = sp.symbols("i j k", integer=True, nonnegative=True)

x = sp.IndexedBase("x", real=True)  # logits row
y = sp.IndexedBase("y", real=True)  # target distribution row
g = sp.IndexedBase("g", real=True)  # upstream gradient row
# p[i] stands for softmax(x)[i] once folded, and is any probability row in D5 and D6: it may
# hold zeros (0 log 0 = 0), so it is only nonnegative. (Declared positive, SymPy would decide
# Eq(p[k], 0) as False and drop the 0 log 0 branch of the entropy.)
p = sp.IndexedBase("p", nonnegative=True)
q = sp.IndexedBase("q", positive=True)  # a predicted distribution row (D6)

D = sp.Symbol("D", real=True)  # an arbitrary shift of the logits
c = sp.Symbol("c", integer=True, nonnegative=True)  # an integer class label
b = sp.Symbol("b", positive=True)  # the base of a logarithm
t = sp.Symbol("t", real=True)  # the scalar argument of sigmoid

LSE = sp.Symbol("LSE", real=True)  # stands for log(sum_k exp(x[k])) once folded

m1, m2 = sp.symbols("m1 m2", real=True)  # maxima of two parts of a row (D11)
d1, d2 = sp.symbols("d1 d2", positive=True)  # their shifted normalisers (D11)


def row_sum(expr: sp.Expr, index: sp.Symbol = k) -> sp.Sum:
    """sum_{index=0}^{n-1} expr."""
    return sp.Sum(expr, (index, 0, n - 1))
