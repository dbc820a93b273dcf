"""Lowering: derived expressions of one kernel -> a RowKernel of the IR.

Passes, in order: every row Sum becomes a named reduction (those carrying exp(x[k] - m) become
D11 online sums, D18's excess where it is the normaliser), each sum's terms collected into
one; each elementwise expression keeps only what varies with the element index, the rest is
hoisted to row level; common subexpressions are shared with ``sympy.cse``; last,
the exps the derivation bounds by 0 become ``ExpNonPos`` (``codegen.numerics``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import sympy as sp

from softce.derive.symbols import i, j, k, n

from .ir import Assignment, ElementwiseKernel, KernelInputs, Reduction, RowKernel, Source
from .numerics import (
    CollectSums,
    ExcessForm,
    MarkMergeFactors,
    MarkShiftedExps,
    SelectFactor,
    SelectShift,
    ShiftToMin,
    on_kernel,
)

#: The shift every shifted reduction uses: the row's max (D2 with D = max).
m = sp.Symbol("m", real=True)


@dataclass(frozen=True)
class KernelSpec(KernelInputs):
    """What a kernel computes, in derived expressions (p and LSE already substituted)."""

    outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    pair_outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    row_outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    scratch: Mapping[sp.IndexedBase, sp.Expr] = field(default_factory=dict)
    merge: tuple[sp.Expr, sp.Expr] | None = None
    excess: ExcessForm | None = None
    linear: tuple[sp.Expr, sp.Expr] | None = None
    sources: tuple[Source, ...] = ()

def _is_row_sum(s: sp.Sum) -> bool:
    (var, lo, hi), = s.limits
    return lo == 0 and sp.simplify(hi - (n - 1)) == 0

def _reduction_name(summand: sp.Expr, shifted: bool, taken: set[str], linear: bool = False
                    ) -> str:
    """Names from the math: d for sum exp(x[k] - m), t for a sum linear in m (D19), else
    sum_<rows it reads>."""
    bases = sorted({str(ix.base) for ix in summand.atoms(sp.Indexed)})
    name = "d" if shifted and summand.func is sp.exp else "sum_" + "_".join(bases)
    if shifted and summand.func is not sp.exp:
        name = "sum_e_" + "_".join(bases)
    if linear:
        name = "t"
    candidate, q = name, 1
    while candidate in taken:
        candidate, q = f"{name}{q}", q + 1
    taken.add(candidate)
    return candidate

def _slope(summand: sp.Expr) -> sp.Expr | None:
    """d summand / dm for a summand linear in the shift m and free of exp (D19's
    a_k (m - x_k), its guard's default branch taken), else None."""
    if not summand.has(m) or summand.has(sp.exp):
        return None
    default = summand.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[-1][0])
    slope = sp.diff(default, m)
    return None if slope.has(m) else slope


def extract_reductions(exprs: list[sp.Expr]) -> tuple[list[sp.Expr], list[Reduction]]:
    """Replace every row Sum by an accumulator symbol; shifted sums are those in m: exp(x[k] -
    m) h[k] (D11), or linear in m (D19, their guard's factor taken out by ``SelectShift``),
    each with the plain sum of its slope."""
    reductions: dict[sp.Expr, Reduction] = {}
    taken: set[str] = set()
    found = sorted({s for e in exprs for s in e.atoms(sp.Sum)}, key=sp.default_sort_key)
    mapping = {}
    slopes = []
    for s in found:
        if not _is_row_sum(s):
            raise ValueError(f"not a row reduction over 0..n-1: {s}")
        summand = s.function.xreplace({s.variables[0]: k})
        if summand.has(sp.Sum):
            raise ValueError(f"nested row reductions are not lowered: {s}")
        if summand not in reductions:
            slope = _slope(summand)
            if slope is not None:
                name = _reduction_name(summand, False, taken, linear=True)
                reductions[summand] = Reduction(sp.Symbol(name, real=True),
                                                SelectShift(m)(summand), False)
                slopes.append((summand, slope))
                mapping[s] = reductions[summand].symbol
                continue
            shifted = summand.has(m)
            if shifted and _shift_factor(summand)[1].has(m):
                raise ValueError(f"a shifted sum must be exp(x[k] - m) * h[k]: {summand}")
            name = _reduction_name(summand, shifted, taken)
            reductions[summand] = Reduction(sp.Symbol(name, real=True), summand, shifted)
        mapping[s] = reductions[summand].symbol
    for summand, slope in slopes:
        if slope not in reductions:
            name = _reduction_name(slope, False, taken)
            reductions[slope] = Reduction(sp.Symbol(name, real=True), slope, False)
        reductions[summand] = dataclasses.replace(reductions[summand],
                                                  slope=reductions[slope].symbol)
    return [e.xreplace(mapping) for e in exprs], list(reductions.values())

def _shift_factor(summand: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """Split a shifted summand into its exp(x[k] - m) factor and the rest."""
    factors = summand.args if summand.is_Mul else (summand,)
    exps = [f for f in factors if f.func is sp.exp and f.has(m)]
    if len(exps) != 1:
        raise ValueError(f"a shifted sum needs exactly one exp(x[k] - m) factor: {summand}")
    return exps[0], sp.Mul(*[f for f in factors if f is not exps[0]])

def shift_row(reductions: list[Reduction]) -> sp.IndexedBase | None:
    """The row whose max is the shift: the x of exp(x[k] - m) in the shifted sums (and of an
    excess, D18)."""
    factors = [_shift_factor(r.summand)[0] for r in reductions if r.shifted and r.ties is None]
    factors += [r.ties for r in reductions if r.ties is not None]
    rows = {ix.base for f in factors for ix in f.atoms(sp.Indexed)}
    if len(rows) > 1:
        raise ValueError(f"shifted sums over more than one row: {rows}")
    return rows.pop() if rows else None

def _varies(expr: sp.Expr) -> bool:
    return expr.has(i) or expr.has(j)

def _atomic(expr: sp.Expr) -> bool:
    if expr.is_Atom:
        return True
    return expr.is_Mul and len(expr.args) == 2 and expr.args[0] == -1 and expr.args[1].is_Atom

class _Hoister:
    """Moves the parts of elementwise expressions that do not vary with i (or j) to row level;
    the shift m stays beside the loads it shifts, so x[i] - m is evaluated first (exactly)."""

    def __init__(self) -> None:
        self.assignments: list[Assignment] = []
        self._names = sp.numbered_symbols("t", real=True)
        self._known: dict[sp.Expr, sp.Symbol] = {}

    def temp(self, expr: sp.Expr) -> sp.Expr:
        if _atomic(expr):
            return expr
        if expr not in self._known:
            sym = next(self._names)
            self._known[expr] = sym
            self.assignments.append(Assignment(sym, expr))
        return self._known[expr]

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        if not _varies(expr):
            return self.temp(expr)
        if expr.is_Atom or isinstance(expr, (sp.Indexed, sp.KroneckerDelta)):
            return expr
        if expr.is_Add or expr.is_Mul:
            moving = [self(a) for a in expr.args if _varies(a)]
            fixed = [a for a in expr.args if not _varies(a)]
            kept = [a for a in fixed if _atomic(a) and (expr.is_Mul or a.has(m))]
            rest = [a for a in fixed if a not in kept]
            if rest:
                kept.append(self.temp(expr.func(*rest)))
            return expr.func(*moving, *kept)
        return expr.func(*[self(a) for a in expr.args])

def _cse(exprs: list[sp.Expr], prefix: str) -> tuple[list[Assignment], list[sp.Expr]]:
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(prefix, real=True),
                                   optimizations=None, order="canonical")
    return [Assignment(s, e) for s, e in replacements], reduced

def lower(spec: KernelSpec) -> RowKernel:
    """Lower a kernel spec to the IR."""
    from softce.derive.rules import pull_out_constants

    names = [*spec.outputs, *spec.pair_outputs, *spec.row_outputs]
    scratch_rows = list(spec.scratch)
    exprs = [*spec.outputs.values(), *spec.pair_outputs.values(), *spec.row_outputs.values(),
             *spec.scratch.values()]
    if spec.excess is not None:
        exprs = [spec.excess(e) for e in exprs]
    exprs = [pull_out_constants(e) for e in exprs]
    exprs, reductions = extract_reductions(exprs)
    collect = CollectSums(tuple(r.symbol for r in reductions))
    exprs = [collect(e) for e in exprs]
    excess = spec.excess
    if excess is not None and any(e.has(excess.symbol) for e in exprs):
        reductions.insert(0, Reduction(excess.symbol, excess.summand, True, excess.ties,
                                       excess.chunk, excess.identity))
    else:
        excess = None
    if any(r.shifted for r in reductions) and spec.merge is None:
        raise ValueError(f"{spec.name}: shifted sums need D11's merge rule")
    if any(r.slope is not None for r in reductions) and spec.linear is None:
        raise ValueError(f"{spec.name}: sums linear in m need D19's merge rule")

    hoist = _Hoister()
    n_el = len(spec.outputs) + len(spec.pair_outputs)
    row_exprs = exprs[n_el:len(names)]
    elem_exprs = [hoist(e) for e in exprs[:n_el]]
    scratch_exprs = [hoist(e) for e in exprs[len(names):]]

    row_level, reduced_rows = _cse([a.expr for a in hoist.assignments] + row_exprs, "u")
    temps = {a.symbol: e for a, e in zip(hoist.assignments, reduced_rows)}
    row_level += [Assignment(s, e) for s, e in temps.items()]
    row_outputs = list(zip(spec.row_outputs, reduced_rows[len(hoist.assignments):]))

    scratch = []
    for base, e in zip(scratch_rows, scratch_exprs):
        assigns, (out,) = _cse([e], f"{base}_e")
        scratch.append((base, tuple(assigns), out))
    element_level, elem_reduced = _cse(elem_exprs, "e")

    outs = list(zip(spec.outputs, elem_reduced[: len(spec.outputs)]))
    pairs = list(zip(spec.pair_outputs, elem_reduced[len(spec.outputs):]))
    merge_m, merge_d = spec.merge if spec.merge else (None, None)
    inputs = {f.name: getattr(spec, f.name) for f in dataclasses.fields(KernelInputs)}
    kernel = RowKernel(
        **inputs, max_of=shift_row(reductions), merge_m=merge_m, merge_d=merge_d,
        merge_s=excess.merge if excess else None,
        merge_t=spec.linear[0] if spec.linear else None,
        masked_t=spec.linear[1] if spec.linear else None,
        reductions=tuple(reductions), row_level=tuple(row_level), scratch=tuple(scratch),
        element_level=tuple(element_level), outputs=tuple(outs), pair_outputs=tuple(pairs),
        row_outputs=tuple(row_outputs), sources=spec.sources,
        formulas=tuple({**spec.outputs, **spec.pair_outputs, **spec.row_outputs}.items()),
        scratch_formulas=tuple(spec.scratch.items()),
    )
    summed = frozenset(r.summand for r in kernel.reductions)
    return mark_nonpositive_exps(on_kernel(kernel, SelectFactor(summed)))


def mark_nonpositive_exps(kernel: RowKernel) -> RowKernel:
    """The exps whose argument the derivation bounds by 0 become ExpNonPos: exp(x[q] - m) with
    m the max of x (D2), and D11's merge factors exp(m_j - max(m_1, m_2))."""
    if kernel.max_of is not None:
        kernel = on_kernel(kernel, MarkShiftedExps(kernel.max_of, m))
    if kernel.merge_d is None:
        return kernel
    return dataclasses.replace(kernel, merge_d=MarkMergeFactors(kernel.merge_m)(kernel.merge_d))

def lower_elementwise(name: str, doc: str, args: tuple[sp.Symbol, ...], expr: sp.Expr,
                      sources: tuple[Source, ...], params: tuple[sp.Symbol, ...] = (),
                      shift: tuple[sp.Symbol, sp.Expr] | None = None) -> ElementwiseKernel:
    """Lower out = expr(args) with a per-element shift substituted (sigmoid: D2 at n = 2 with
    D = max(t, 0)), then u - Max(u, v) rewritten as Min(0, u - v) so that t = +inf gives no
    NaN."""
    formula = expr.subs(*shift) if shift else expr
    element_level, (out,) = _cse([ShiftToMin()(formula)], "e")
    return ElementwiseKernel(name, doc, tuple(args), tuple(params), tuple(element_level), out,
                             formula, sources)
