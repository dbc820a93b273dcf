"""The numerics passes of codegen.numerics: what each rewrites, what it leaves alone, that each
is an exact identity (SymPy), and how the printer prints the nodes they put in."""

import sympy as sp

from softce.codegen.cuda import CudaPrinter
from softce.codegen.lower import KernelSpec, lower, m
from softce.codegen.numerics import (
    DeltaSplit,
    ExpNonPos,
    MarkMergeFactors,
    MarkShiftedExps,
    RoundedShift,
    RoundShifts,
    ShiftToMin,
    Unmask,
    Unmasked,
)
from softce.codegen.printer import NumbaPrinter
from softce.derive.symbols import D, c, d1, d2, i, k, m1, m2, p, row_sum, t, x, y

TOP = sp.Max(m1, m2)
MERGE_D = d1 * sp.exp(m1 - TOP) + d2 * sp.exp(m2 - TOP)
T0 = sp.Symbol("t0", real=True)


def _unmarked(expr: sp.Expr) -> sp.Expr:
    return expr.replace(lambda e: isinstance(e, (ExpNonPos, RoundedShift)), lambda e: e.doit())


def test_shifted_exps_are_marked_nonpositive() -> None:
    """D2: x[q] - max_j x[j] <= 0, for any index q; nothing else is marked."""
    mark = MarkShiftedExps(x, m)
    for arg in (x[i] - m, x[k] - m, x[c] - m):
        assert mark(sp.exp(arg)) == ExpNonPos(arg), arg
    for arg in (m - x[i], y[i] - m, x[i] - m + 1, 2 * x[i] - m, x[i] - y[i], -x[i], m - m1):
        assert mark(sp.exp(arg)) == sp.exp(arg), arg
    expr = y[i] * sp.exp(x[i] - m) / row_sum(sp.exp(x[k] - m)) + sp.exp(-x[i])
    marked = mark(expr)
    assert marked.count(ExpNonPos) == 2 and marked.count(sp.exp) == 1
    assert _unmarked(marked) == expr


def test_merge_factors_are_marked_where_their_max_bounds_them() -> None:
    """D11: m_j - max(m_1, m_2) <= 0; an exp of any other difference stays exp."""
    marked = MarkMergeFactors(TOP)(MERGE_D)
    assert marked == d1 * ExpNonPos(m1 - TOP) + d2 * ExpNonPos(m2 - TOP)
    assert _unmarked(marked) == MERGE_D
    other = sp.exp(TOP - m1) + sp.exp(t - TOP)
    assert MarkMergeFactors(TOP)(other) == other
    assert MarkMergeFactors(m1)(MERGE_D) == MERGE_D  # not a Max: nothing is known


def test_lowering_marks_the_shifted_sum_and_the_merge() -> None:
    spec = KernelSpec(name="s", doc="", rows=(x,), merge=(TOP, MERGE_D),
                      outputs={"out": sp.exp(x[i] - m) / row_sum(sp.exp(x[k] - m))})
    kernel = lower(spec)
    (reduction,) = kernel.reductions
    assert reduction.summand == ExpNonPos(x[k] - m)
    assert kernel.merge_d.count(ExpNonPos) == 2 and not kernel.merge_d.has(sp.exp)
    unshifted = lower(KernelSpec(name="u", doc="", rows=(x,), outputs={"out": sp.exp(x[i])}))
    assert not any(e.has(ExpNonPos) for _, e in unshifted.outputs)


def test_rounded_shift_replaces_a_shift_that_other_terms_join() -> None:
    shifts = RoundShifts(x, m)
    assert shifts(x[i] - m + T0) == RoundedShift(x[i], m) + T0
    assert shifts(-x[c] + m + T0) == -RoundedShift(x[c], m) + T0
    assert shifts(x[i] - m - sp.log(T0) + 1) == RoundedShift(x[i], m) - sp.log(T0) + 1
    assert shifts(y[i] * (x[i] - m + T0)) == y[i] * (RoundedShift(x[i], m) + T0)
    for kept in (x[i] - m, y[i] - m + T0, x[i] + m + T0, 2 * x[i] - m + T0, x[i] - T0 + 1):
        assert shifts(kept) == kept, kept
    for expr in (x[i] - m + T0, -x[c] + m + T0, y[i] * (x[i] - m + T0)):
        assert sp.expand(_unmarked(shifts(expr)) - expr) == 0


def test_shift_to_min_is_an_identity() -> None:
    u, v = sp.symbols("u v", real=True)
    lhs = u - sp.Max(u, v)
    rhs = ShiftToMin()(lhs)
    assert rhs == sp.Min(0, u - v)
    diff = sp.piecewise_fold((lhs - rhs).rewrite(sp.Piecewise))
    assert sp.simplify(diff) == 0
    assert ShiftToMin()(u - sp.Max(v, t)) == u - sp.Max(v, t)


def test_shift_to_min_rewrites_the_sigmoid_exponents() -> None:
    e = sp.exp(t - D).subs(D, sp.Max(t, 0))
    assert ShiftToMin()(e) == sp.exp(sp.Min(0, t))


def test_unmask_replaces_the_zero_probability_guard() -> None:
    h = sp.log(p[i])
    guarded = sp.Piecewise((0, sp.Eq(p[i], 0)), (p[i] * h, True))
    assert Unmask()(guarded) == p[i] * Unmasked(x[i], h)
    other = sp.Piecewise((0, sp.Eq(y[i], 0)), (y[i] * h, True))
    assert Unmask()(other) == other
    # the identity where it is used: p > 0 at a finite logit, p = 0 exactly at x = -inf
    finite = {p[i]: sp.Rational(1, 3), x[i]: sp.Integer(2)}
    assert Unmask()(guarded).subs(finite) == guarded.subs(finite)
    at_minus_inf = {p[i]: sp.Integer(0), x[i]: sp.S.NegativeInfinity}
    assert Unmask()(guarded).subs(at_minus_inf) == guarded.subs(at_minus_inf) == 0
    assert Unmasked(x[i], h).func is Unmasked


def test_delta_split_finds_one_index_and_evaluates_both_sides() -> None:
    grad = sp.exp(x[i] - m) - sp.KroneckerDelta(i, c)
    split = DeltaSplit.of([grad, y[i] * sp.KroneckerDelta(c, i)])
    assert split.index == c
    assert DeltaSplit.at(grad, 0) == sp.exp(x[i] - m)
    assert DeltaSplit.at(grad, 1) == sp.exp(x[i] - m) - 1
    for q in (0, 1, 2):  # the split is exact: at i = c the delta is 1, elsewhere 0
        value = grad.subs({i: q, c: 1})
        assert value == DeltaSplit.at(grad, int(q == 1)).subs({i: q, c: 1})
    assert DeltaSplit.of([x[i]]).index is None
    two = [sp.KroneckerDelta(i, c) + sp.KroneckerDelta(i, k)]
    assert DeltaSplit.of(two).index is None


def test_printers_print_the_nodes() -> None:
    """CPU: the nonpositive exp and the fenced shift; CUDA: one exp (and no shift fence)."""
    assert NumbaPrinter("f32").doprint(ExpNonPos(x[i] - m)) == "exp_nonpos_f32(x_r[i] - m)"
    assert NumbaPrinter("f32").doprint(sp.exp(x[i] - m)) == "exp_f32(x_r[i] - m)"
    assert CudaPrinter("f64").doprint(ExpNonPos(x[i] - m)) == "exp_f64(x_r[i] - m)"
    shifted = RoundShifts(x, m)(T0 - m + x[i])
    assert NumbaPrinter("f64").doprint(shifted) == "shift_f64(x_r[i], m) + t0"
    shifted = RoundShifts(x, m)(T0 + m - x[c])
    assert NumbaPrinter("f32").doprint(shifted) == "-shift_f32(x_r[c], m) + t0"
    assert NumbaPrinter("f32").doprint(x[i] - m) == "x_r[i] - m"

