"""The definitions every derivation starts from, and nothing derived from them.

A vector is a function from an index to its element (``lambda r: x[r]``); a ``Row`` says how
long it is: symbolic n (sums stay ``Sum(..., (k, 0, n - 1))``) or a concrete size (sums are
written out). The same definition thus serves the general-n proof and every concrete n.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp

from .symbols import k, row_sum

Vector = Callable[[sp.Expr], sp.Expr]


@dataclass(frozen=True)
class Row:
    """A row of symbolic length n (``size=None``) or of a concrete size."""

    size: int | None = None

    def sum(self, term: Vector, index: sp.Symbol = k) -> sp.Expr:
        """sum over the row of term(index)."""
        if self.size is None:
            return row_sum(term(index), index)
        return sp.Add(*(term(sp.Integer(r)) for r in range(self.size)))


SYMBOLIC_ROW = Row()
CONCRETE_ROWS = tuple(Row(size) for size in range(1, 9))


def softmax(row: Row, v: Vector, index: sp.Expr) -> sp.Expr:
    """(1) softmax(v)_index = exp(v_index) / sum_r exp(v_r)."""
    return sp.exp(v(index)) / row.sum(lambda r: sp.exp(v(r)))


def lse(row: Row, v: Vector) -> sp.Expr:
    """LSE(v) = log sum_r exp(v_r)."""
    return sp.log(row.sum(lambda r: sp.exp(v(r))))


def sigmoid(s: sp.Expr) -> sp.Expr:
    """(2) sigmoid(s) = 1 / (1 + exp(-s))."""
    return 1 / (1 + sp.exp(-s))


#: The variable of a term that is extended to 0 by its limit.
u = sp.Symbol("u", positive=True)


@functools.cache
def limit_at_zero(term: sp.Expr) -> sp.Expr:
    """lim_{u -> 0+} term(u): the value a term is given at u = 0 (computed, not assumed)."""
    return sp.limit(term, u, 0, "+")


def extended(value: sp.Expr, term: sp.Expr) -> sp.Expr:
    """term(value) for value > 0, extended to value = 0 by the limit; term is written in u."""
    return sp.Piecewise((limit_at_zero(term), sp.Eq(value, 0)), (term.subs(u, value), True))


def xlogx(value: sp.Expr) -> sp.Expr:
    """value log value, extended to value = 0 by its limit."""
    return extended(value, u * sp.log(u))


def information(u: sp.Expr, base: sp.Expr) -> sp.Expr:
    """(6) I = -log_base u, the information of an outcome of probability u."""
    return -sp.log(u) / sp.log(base)


def entropy(row: Row, prob: Vector, base: sp.Expr) -> sp.Expr:
    """(6) H(P) = sum_r P_r I(P_r), each term P I(P) = -P log P / log b extended to P = 0."""
    return row.sum(lambda r: -xlogx(prob(r)) / sp.log(base))


def cross_entropy(row: Row, prob: Vector, pred: Vector, base: sp.Expr) -> sp.Expr:
    """(7) H(P|Q) = -sum_r P_r log_base Q_r."""
    return row.sum(lambda r: prob(r) * information(pred(r), base))


def kl(row: Row, prob: Vector, pred: Vector, base: sp.Expr) -> sp.Expr:
    """KL(P||Q) = sum_r P_r log_base(P_r / Q_r), a term with P_r = 0 taken as its limit 0."""

    return row.sum(lambda r: extended(prob(r), u * sp.log(u / pred(r))) / sp.log(base))


def ce_loss(row: Row, logits: Vector, target: Vector) -> sp.Expr:
    """(10) L(x) = -sum_r y_r log softmax(x)_r."""
    return -row.sum(lambda r: target(r) * sp.log(softmax(row, logits, r)))


def vec(base: sp.IndexedBase) -> Vector:
    """The vector r -> base[r]."""
    return lambda r: base[r]
