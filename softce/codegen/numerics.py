"""The kernels' numerics as named IR nodes, and the passes that put them in.

Nodes (SymPy functions; ``doit()`` gives what each stands for):

- ``ExpNonPos(a)`` = exp(a) for an a known to be <= 0: printed as ``exp_nonpos_<dtype>``.
- ``RoundedShift(x, m)`` = x - m, rounded before any other term joins it: printed as
  ``shift_<dtype>`` (kernels compiled with ``reassoc`` could otherwise fold m into the rest).
- ``Unmasked(x, h)`` = h where the logit x is finite, 0 at x = -inf.

Passes (each a small object called on an expression):

- ``MarkShiftedExps(x, m)``: exp(x[q] - m) -> ExpNonPos, m = max_k x[k] (D2).
- ``MarkMergeFactors(merge_m)``: exp(m_j - M) -> ExpNonPos in D11's merge, M = Max(..., m_j).
- ``RoundShifts(x, m)``: x[q] - m + t -> RoundedShift(x[q], m) + t (run by the CPU emitter:
  the CUDA kernels compile without ``reassoc``).
- ``Unmask()``: the derivations' guard Piecewise((0, Eq(p[q], 0)), (p[q] h, True)) ->
  p[q] Unmasked(x[q], h).
- ``SelectFactor(summed)``: D8's guard Piecewise((0, Eq(y[q], 0)), (r y[q] x[q], True)) ->
  a select on x[q] times the kernel's products: Piecewise((0, Eq(y[q], 0)), (r x[q], True)) y[q]
  where r x[q] is summed on its own, else Piecewise((0, Eq(y[q], 0)), (x[q], True)) r y[q]. The
  sum stays a plain reduction (a select on the summand is folded into the sum by LLVM and stops
  the loop vectorising) and the guard adds no product of its own.
- ``ShiftToMin()``: u - Max(u, v) -> Min(0, u - v), which is 0, not inf - inf, at u = +inf.
- ``CollectSums(sums)``: a S + b S -> (a + b) S for each row sum S: one product per sum, so an
  infinite sum (a -inf logit under a positive target) gives +-inf, not inf - inf.
- ``ExcessForm(...)``: D18's excess normaliser: sum_k exp(x[k] - m) -> 1 + s and
  log(1 + s) -> log1p(s), s the row's excess, summed without the max's 1.
- ``SelectShift(m)``: D19's guard Piecewise((0, Eq(a, 0)), (a (m - x[q]), True)) -> a select on
  m - x[q] times a.
- ``DeltaSplit``: a KroneckerDelta(i, c) taken out of an element loop (its index and the
  expression at delta 0 or 1).

Data: ``MERGED_SUM_DTYPE``, the dtype of a row's D11-merged sums.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp
from sympy.codegen.cfunctions import log1p

from softce.derive.d18_excess import m_max, sigma, tau
from softce.derive.symbols import i, k, n, p, x, y

from .ir import Assignment, RowKernel

#: The dtype of a row's merged sums, by kernel dtype. A row of n elements takes n / CHUNK
#: sequential D11 merges; in float32 their rounding grows with that count (over 10^6 classes in
#: 256-element chunks the normaliser was 1.4e-6 off, 12 ulp), in float64 it stays below the
#: chunk sums' own. One merge per chunk, so the wider type costs nothing measurable.
MERGED_SUM_DTYPE = {"f32": "float64", "f64": "float64"}


class ExpNonPos(sp.Function):
    """exp(a) where a <= 0 is known from the derivation (a shift by a max over a's values)."""

    nargs = 1

    def _eval_rewrite_as_exp(self, a: sp.Expr, **kwargs: object) -> sp.Expr:
        return sp.exp(a)

    def doit(self, **hints: object) -> sp.Expr:
        return sp.exp(self.args[0])

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return self


class RoundedShift(sp.Function):
    """x - m, rounded on its own before other terms are added to it (D2's shift)."""

    nargs = 2

    def doit(self, **hints: object) -> sp.Expr:
        return self.args[0] - self.args[1]


class Unmasked(sp.Function):
    """Unmasked(x, h) = h where the logit x is finite, 0 where x = -inf (a mask).

    The derivations' guarded term Piecewise((0, Eq(p_q, 0)), (p_q h, True)) becomes
    p_q Unmasked(x_q, h) (``Unmask``): p_q = softmax(x)_q is 0 exactly at x_q = -inf, and there
    the term's limit is 0. SymPy takes x real, hence finite, so the guard needs its own node; it
    evaluates for numbers only.
    """

    nargs = 2

    @classmethod
    def eval(cls, x: sp.Expr, h: sp.Expr) -> sp.Expr | None:
        if x.is_Number:
            return sp.Integer(0) if x == sp.S.NegativeInfinity else h
        return None


@dataclass(frozen=True)
class MarkShiftedExps:
    """exp(x[q] - m) -> ExpNonPos(x[q] - m): m is the max of the row x, so x[q] - m <= 0 (D2).
    Only that exact difference: exp(x[q] - m + t) and exp(y[q] - m) stay exp."""

    row: sp.IndexedBase
    shift: sp.Symbol

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        def shifted(e: sp.Expr) -> bool:
            if not isinstance(e, sp.exp) or not e.args[0].is_Add or len(e.args[0].args) != 2:
                return False
            a, b = e.args[0].args
            return -self.shift in (a, b) and any(
                isinstance(t, sp.Indexed) and t.base == self.row for t in (a, b))

        return expr.replace(shifted, lambda e: ExpNonPos(e.args[0]))


@dataclass(frozen=True)
class MarkMergeFactors:
    """exp(m_j - M) -> ExpNonPos(m_j - M) in D11's merge, where M = ``merge_m`` is a Max with
    m_j among its arguments: m_j <= max(m_1, m_2)."""

    merge_m: sp.Expr

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        def bounded(e: sp.Expr) -> bool:
            if not isinstance(e, sp.exp) or not isinstance(self.merge_m, sp.Max):
                return False
            rest = e.args[0] + self.merge_m
            return rest in self.merge_m.args

        return expr.replace(bounded, lambda e: ExpNonPos(e.args[0]))


@dataclass(frozen=True)
class RoundShifts:
    """x[q] - m + t -> RoundedShift(x[q], m) + t (and -x[q] + m + t -> -RoundedShift + t):
    D2's shift x[q] - m is exact to itself when rounded alone; a sum where nothing joins it
    is left as it is."""

    row: sp.IndexedBase
    shift: sp.Symbol

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        return expr.replace(lambda e: self._match(e) is not None, self._rewrite)

    def _match(self, e: sp.Expr) -> tuple[int, sp.Indexed] | None:
        """(sign, x[q]) when e = sign (x[q] - m) + t with t not empty."""
        if not e.is_Add or len(e.args) < 3:
            return None
        for t in e.args:
            sign = -1 if t.could_extract_minus_sign() else 1
            load = sign * t
            if isinstance(load, sp.Indexed) and load.base == self.row \
                    and -sign * self.shift in e.args:
                return sign, load
        return None

    def _rewrite(self, e: sp.Expr) -> sp.Expr:
        sign, load = self._match(e)
        rest = [a for a in e.args if a not in (sign * load, -sign * self.shift)]
        return sign * RoundedShift(load, self.shift) + sp.Add(*rest)


@dataclass(frozen=True)
class ShiftToMin:
    """u - Max(u, v) -> Min(0, u - v) in every sum: with u = +inf the left side is
    inf - inf = NaN, the right side 0 (the sigmoid's per-element shift, D2 at n = 2)."""

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        return expr.replace(lambda e: e.is_Add, self._rewrite)

    @staticmethod
    def _rewrite(expr: sp.Add) -> sp.Expr:
        for term in expr.args:
            coeff, rest = term.as_coeff_Mul()
            if coeff == -1 and isinstance(rest, sp.Max) and len(rest.args) == 2:
                for u, v in (rest.args, rest.args[::-1]):
                    if u in expr.args:
                        others = [a for a in expr.args if a not in (term, u)]
                        return sp.Add(*others, sp.Min(0, u - v))
        return expr


@dataclass(frozen=True)
class ExcessForm:
    """D18: the row's normaliser d = sum_k exp(x[k] - m) -> ``normaliser`` (1 + s), and
    log(1 + s) -> log1p(s), so that LSE = m + log1p(s) keeps s's relative accuracy.

    ``summand`` (exp(x[k] - m) - T_k, E_k for a finite m; its exp marked ExpNonPos) and
    ``ties`` (T_k) make a chunk's s = ``chunk``(sigma = sum summand, tau = sum ties);
    ``merge`` is D18's merge_s, its exps marked ExpNonPos (each branch scales the part with
    the smaller max), ``identity`` the excess of no element (D18's identity (-inf, -1))."""

    symbol: sp.Symbol
    shift: sp.Symbol
    normaliser: sp.Expr
    summand: sp.Expr
    ties: sp.Expr
    chunk: sp.Expr
    merge: sp.Expr
    identity: sp.Expr

    @classmethod
    def of(cls, symbol: sp.Symbol, shift: sp.Symbol, normaliser: sp.Expr, summand: sp.Expr,
           ties: sp.Expr, chunk: sp.Expr, merge: sp.Expr, identity: sp.Tuple) -> ExcessForm:
        def nonpos(e: sp.Expr) -> sp.Expr:
            return e.replace(lambda a: isinstance(a, sp.exp), lambda a: ExpNonPos(a.args[0]))

        return cls(symbol, shift, normaliser, nonpos(summand), ties, chunk, nonpos(merge),
                   identity[1])

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        d = sp.Sum(sp.exp(x[k] - self.shift), (k, 0, n - 1))
        expr = expr.xreplace({d: self.normaliser})
        return expr.replace(lambda e: isinstance(e, sp.log) and e.args[0] == self.normaliser,
                            lambda e: log1p(self.symbol))


@dataclass(frozen=True)
class CollectSums:
    """Each row sum's terms collected into one: a S + b S -> (a + b) S, at the top of a sum of
    terms. With S = -inf (a masked logit under a positive target) a S + b S is inf - inf = NaN
    where the loss's limit is (a + b) S = +inf."""

    sums: tuple[sp.Symbol, ...]

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        return sp.collect(expr, self.sums) if self.sums and expr.is_Add else expr


def chunk_excess(chunk: sp.Expr, total: sp.Symbol, others: sp.Symbol, shift: sp.Symbol
                 ) -> sp.Expr:
    """D18's excess of a chunk (``chunk``, in sigma, tau and the max m) from its sum ``total``
    (sigma), the count of its other maxima ``others`` (tau - 1, computed first: exact) and its
    max ``shift``: sigma + (tau - 1), never -1 + sigma."""
    return chunk.subs(tau, others + 1).xreplace({sigma: total, m_max: shift})


@dataclass(frozen=True)
class Unmask:
    """Piecewise((0, Eq(p[q], 0)), (p[q] h, True)) -> p[q] Unmasked(x[q], h): the guard of a
    term at a zero probability, which softmax gives exactly at x[q] = -inf."""

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        def guarded(e: sp.Expr) -> bool:
            if not isinstance(e, sp.Piecewise) or len(e.args) != 2 or e.args[0][0] != 0:
                return False
            cond = e.args[0][1]
            return (isinstance(cond, sp.Eq) and cond.rhs == 0 and isinstance(cond.lhs, sp.Indexed)
                    and cond.lhs.base == p)

        def rewrite(e: sp.Piecewise) -> sp.Expr:
            q = e.args[0][1].lhs.indices[0]
            return p[q] * Unmasked(x[q], sp.cancel(e.args[1][0] / p[q]))

        return expr.replace(guarded, rewrite)


@dataclass(frozen=True)
class SelectFactor:
    """Piecewise((0, Eq(y[q], 0)), (r y[q] x[q], True)) -> Piecewise((0, Eq(y[q], 0)),
    (r x[q], True)) y[q] when r x[q] is in ``summed`` (the kernel's other summands), else
    Piecewise((0, Eq(y[q], 0)), (x[q], True)) r y[q]: the same value (0 y[q] = 0 at y[q] = 0),
    built from the products the kernel already forms, so that the other sums round (and fuse
    into FMAs) as they did without the guard."""

    summed: frozenset[sp.Expr] = frozenset()

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        return expr.replace(self._guard, self._rewrite)

    @staticmethod
    def _guard(e: sp.Expr) -> bool:
        """e is such a guard on y[q], with x[q] a factor of its term."""
        if not isinstance(e, sp.Piecewise) or len(e.args) != 2 or e.args[0][0] != 0:
            return False
        cond, term = e.args[0][1], e.args[1][0]
        return (isinstance(cond, sp.Eq) and cond.rhs == 0 and isinstance(cond.lhs, sp.Indexed)
                and cond.lhs.base == y and term.is_Mul and cond.lhs in term.args
                and x[cond.lhs.indices[0]] in term.args)

    def _rewrite(self, e: sp.Piecewise) -> sp.Expr:
        cond, term = e.args[0][1], e.args[1][0]
        target = cond.lhs
        load = x[target.indices[0]]
        if term / target in self.summed:
            return sp.Piecewise((0, cond), (term / target, True)) * target
        return sp.Piecewise((0, cond), (load, True)) * (term / load)


@dataclass(frozen=True)
class SelectShift:
    """Piecewise((0, Eq(a, 0)), (a (m - x[q]), True)) -> a Piecewise((0, Eq(a, 0)),
    (m - x[q], True)): D19's guard of a term at a zero target, as a select on the shift's
    factor (a sum of selects stops LLVM's loop vectorising; a select times a product does not)."""

    shift: sp.Symbol

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        return expr.replace(self._guard, self._rewrite)

    def _guard(self, e: sp.Expr) -> bool:
        if not isinstance(e, sp.Piecewise) or len(e.args) != 2 or e.args[0][0] != 0:
            return False
        cond, term = e.args[0][1], e.args[1][0]
        return isinstance(cond, sp.Eq) and cond.rhs == 0 and sp.diff(term, self.shift) == cond.lhs

    def _rewrite(self, e: sp.Piecewise) -> sp.Expr:
        cond, term = e.args[0][1], e.args[1][0]
        return cond.lhs * sp.Piecewise((0, cond), (sp.cancel(term / cond.lhs), True))


@dataclass(frozen=True)
class DeltaSplit:
    """KroneckerDelta(i, c) taken out of an element loop over i: the loop runs with the delta
    at 0, and the element i = c is computed again with the delta at 1 (no compare and select
    per element). ``index`` is the one c of the expressions (None: no delta, or several c)."""

    index: sp.Expr | None

    @classmethod
    def of(cls, exprs: list[sp.Expr]) -> DeltaSplit:
        others = {next(a for a in delta.args if a != i) for e in exprs
                  for delta in e.atoms(sp.KroneckerDelta) if i in delta.args}
        return cls(others.pop() if len(others) == 1 else None)

    @staticmethod
    def at(expr: sp.Expr, value: int) -> sp.Expr:
        """expr with every KroneckerDelta(i, c) set to ``value``."""
        return expr.replace(lambda e: isinstance(e, sp.KroneckerDelta) and i in e.args,
                            lambda e: sp.Integer(value))


def on_kernel(kernel: RowKernel, rewrite: Callable[[sp.Expr], sp.Expr]) -> RowKernel:
    """The kernel with ``rewrite`` applied to every expression it evaluates (the reductions'
    summands, row-level values, scratch rows, element values and outputs)."""

    def assigns(items: tuple[Assignment, ...]) -> tuple[Assignment, ...]:
        return tuple(Assignment(a.symbol, rewrite(a.expr)) for a in items)

    def named(items: tuple[tuple[str, sp.Expr], ...]) -> tuple[tuple[str, sp.Expr], ...]:
        return tuple((name, rewrite(e)) for name, e in items)

    return dataclasses.replace(
        kernel,
        reductions=tuple(dataclasses.replace(r, summand=rewrite(r.summand))
                         for r in kernel.reductions),
        row_level=assigns(kernel.row_level),
        scratch=tuple((base, assigns(a), rewrite(v)) for base, a, v in kernel.scratch),
        element_level=assigns(kernel.element_level), outputs=named(kernel.outputs),
        pair_outputs=named(kernel.pair_outputs), row_outputs=named(kernel.row_outputs))
