"""How a claim is checked: exactly for symbolic n, exactly for concrete n, or with 50 digits.

- ``symbolic_zero``: the sum rules, then ``simplify``, reduce an expression to 0 for every n.
- ``at_size`` writes a symbolic-n expression out for a concrete n (p and LSE unfolded into
  the definitions of softmax and LSE), and ``concrete_zero`` decides it is 0 as a rational
  function of the exponentials (each exp(a) a positive variable: sound, never a false 0).
- ``numeric_error`` evaluates both sides at random points with 50 significant digits.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Mapping

import mpmath
import sympy as sp

from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation
from .definitions import SYMBOLIC_ROW, Row, lse, softmax
from .rules import (
    collapse_delta,
    expand_sum_bodies,
    rename_dummies,
    sum_of_p_is_one,
    unify_delta,
)
from .symbols import LSE, D, b, c, d1, d2, g, i, j, k, m1, m2, n, p, q, row_sum, t, x, y

SIZES = tuple(range(1, 9))
DIGITS = 50
TOLERANCE = sp.Float("1e-40")
INDICES = (i, j, c)


def unfold(expr: sp.Expr, row: Row = SYMBOLIC_ROW) -> sp.Expr:
    """p[r] -> softmax(x)_r and LSE -> LSE(x): the definitions folded symbols stand for."""
    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == p,
                        lambda e: softmax(row, lambda r: x[r], e.indices[0]))
    return expr.xreplace({LSE: lse(row, lambda r: x[r])})


def symbolic_zero(expr: sp.Expr, *, normalised: bool = False) -> bool:
    """expr = 0 for every n by the sum rules and simplify; ``normalised`` uses sum_k p_k = 1."""
    e = rename_dummies(collapse_delta(expand_sum_bodies(sp.expand_log(expr))))
    if normalised:
        e = sum_of_p_is_one(e)
    e = unify_delta(e)
    if e == 0:
        return True
    try:
        return sp.simplify(e) == 0
    except Exception:  # SymPy's sum_simplify can raise (StopIteration): no proof, not 0
        return False


def termwise_zero(body: sp.Expr) -> bool:
    """A sum's body is 0 for every k: each branch of its folded Piecewise is 0 under its
    condition (an Eq condition substituted), logs of products split."""
    for value, cond in _branches(body):
        if isinstance(cond, sp.Eq):
            value = value.subs(cond.lhs, cond.rhs)
        if sp.simplify(sp.expand_log(value, force=True)) != 0:
            return False
    return True


def _branches(body: sp.Expr) -> list[tuple[sp.Expr, sp.Basic]]:
    folded = sp.piecewise_fold(body)
    return list(folded.args) if isinstance(folded, sp.Piecewise) else [(folded, sp.true)]


def at_size(expr: sp.Expr, size: int, *, unfold_p: bool = True) -> sp.Expr:
    """expr with n = size, every sum written out and (by default) p and LSE unfolded."""
    expr = expr.subs(n, size).doit()
    return unfold(expr, Row(size)) if unfold_p else expr


def _exp_atoms(expr: sp.Expr) -> sp.Expr:
    """Each exp(sum_r c_r a_r) -> prod_r E(a_r)^c_r, with E(a) a positive variable per term a;
    then log(E(a)) = a, after common factors have been taken out of every log."""
    names: dict[sp.Expr, sp.Symbol] = {}

    def var(a: sp.Expr) -> sp.Symbol:
        return names.setdefault(a, sp.Dummy("E", positive=True))

    def split(e: sp.exp) -> sp.Expr:
        factors = []
        for term in sp.Add.make_args(sp.expand(e.args[0])):
            coeff, atom = term.as_coeff_Mul()
            factors.append(var(atom) ** coeff if coeff.is_Rational else var(term))
        return sp.Mul(*factors)

    e = expr.replace(lambda a: isinstance(a, sp.exp), split)
    e = e.replace(lambda a: isinstance(a, sp.log),
                  lambda a: sp.log(sp.factor_terms(sp.together(a.args[0]))))
    e = sp.expand_log(e, force=True)
    return e.xreplace({sp.log(v): a for a, v in names.items()})


def concrete_zero(expr: sp.Expr) -> bool:
    """expr (written out for a concrete n) is 0, as a rational function of the exponentials
    and of the logs that remain."""
    e = _exp_atoms(sp.piecewise_fold(expr))
    if e.has(sp.Piecewise):
        return sp.simplify(e) == 0
    numerator = sp.fraction(sp.together(e))[0]
    return sp.expand(numerator) == 0 or sp.cancel(e) == 0 or sp.simplify(e) == 0


def index_values(expr: sp.Expr, size: int) -> Iterable[dict[sp.Symbol, int]]:
    """Every assignment of the free element indices (i, j, c) of expr to 0..size-1."""
    free = [s for s in INDICES if s in expr.free_symbols]
    for values in itertools.product(range(size), repeat=len(free)):
        yield dict(zip(free, values))


def all_concrete_zero(expr: sp.Expr, sizes: Iterable[int] = SIZES, *,
                      unfold_p: bool = True) -> tuple[bool, str]:
    """concrete_zero for every n in sizes and every value of the element indices."""
    for size in sizes:
        written = at_size(expr, size, unfold_p=unfold_p)
        for values in index_values(written, size):
            if not concrete_zero(written.subs(values)):
                return False, f"not 0 at n = {size}, {values}"
    return True, f"0 for n = {min(sizes)}..{max(sizes)} (every index)"


def _dist(rng: random.Random, size: int) -> list[sp.Float]:
    """A random distribution, normalised to 50 digits."""
    with mpmath.workdps(DIGITS + 5):
        w = [mpmath.exp(mpmath.mpf(rng.gauss(0, 1))) for _ in range(size)]
        total = sum(w)
        return [sp.Float(v / total, DIGITS) for v in w]


def random_point(size: int, rng: random.Random, *,
                 y_distribution: bool = False) -> dict[sp.Basic, sp.Expr]:
    """Random 50-digit values for every symbol of the derivations, at row size ``size``."""

    def f(v: float) -> sp.Float:
        return sp.Float(v, DIGITS)

    point: dict[sp.Basic, sp.Expr] = {
        D: f(rng.gauss(0, 3)), t: f(rng.gauss(0, 3)), b: f(rng.uniform(1.5, 10)),
        m1: f(rng.gauss(0, 3)), m2: f(rng.gauss(0, 3)),
        d1: f(rng.uniform(0.5, 3)), d2: f(rng.uniform(0.5, 3)),
    }
    ys = _dist(rng, size) if y_distribution else [f(rng.gauss(0, 1)) for _ in range(size)]
    qs = _dist(rng, size)
    for r in range(size):
        point[x[r]], point[g[r]], point[y[r]], point[q[r]] = (
            f(rng.gauss(0, 2)), f(rng.gauss(0, 1)), ys[r], qs[r])
    return point


def evaluate(expr: sp.Expr, point: Mapping[sp.Basic, sp.Expr]) -> sp.Expr:
    """expr (written out, p and LSE unfolded) at a point, to 50 digits."""
    return expr.xreplace(dict(point)).evalf(DIGITS)


def numeric_error(lhs: sp.Expr, rhs: sp.Expr | Callable[..., sp.Expr], *,
                  sizes: Iterable[int] = (1, 2, 3, 5, 8), points: int = 2, seed: int = 0,
                  y_distribution: bool = False, unfold_p: bool = True) -> sp.Float:
    """The largest |lhs - rhs| (relative to max(1, |rhs|)) over sizes, random points and
    every value of the element indices; rhs may be a function (size, point, indices) -> value."""
    rng = random.Random(seed)
    worst = sp.Float(0)
    for size in sizes:
        left = at_size(lhs, size, unfold_p=unfold_p)
        right = rhs if callable(rhs) else at_size(sp.sympify(rhs), size, unfold_p=unfold_p)
        for _ in range(points):
            point = random_point(size, rng, y_distribution=y_distribution)
            point[c] = sp.Integer(rng.randrange(size))
            for values in index_values(left, size):
                a = evaluate(left.subs(values), point)
                bv = (right(size, point, values) if callable(right)
                      else evaluate(right.subs(values), point))
                worst = max(worst, abs(a - bv) / max(1, abs(bv)))
    return worst


def merge_laws_error(triples: Iterable[tuple[tuple, tuple, tuple]],
                     merge: Callable[[tuple, tuple], tuple]) -> tuple[bool, str]:
    """An online merge's associativity and commutativity at 50 digits: over triples of states
    (a, b, c), the largest difference of the merged value (a state's second entry) between
    (a b) c and a (b c), and between b a and a b; under 1e-40 passes."""
    worst, count = sp.Float(0), 0
    for a, b_, c_ in triples:
        left, right = merge(merge(a, b_), c_), merge(a, merge(b_, c_))
        worst = max(worst, abs((left[1] - right[1]).evalf(50)),
                    abs((merge(b_, a)[1] - merge(a, b_)[1]).evalf(50)))
        count += 1
    return bool(worst < 1e-40), f"max difference {float(worst):.1e} over {count} triples"


def numeric_ok(error: sp.Expr) -> tuple[bool, str]:
    return bool(error < TOLERANCE), f"max relative error {float(error):.1e} at 50 digits"


Definition = Callable[[Row, Mapping[sp.Symbol, int]], sp.Expr]
Variable = Callable[[Mapping[sp.Symbol, int]], sp.Basic]


def _concrete_derivative(derived: sp.Expr, definition: Definition,
                         wrt: Variable) -> tuple[bool, str]:
    for size in SIZES:
        row, written = Row(size), at_size(derived, size)
        for values in index_values(written, size):
            direct = unfold(sp.diff(definition(row, values), wrt(values)), row)
            if not concrete_zero(written.subs(values) - direct):
                return False, f"differs at n = {size}, {values}"
    return True, "against sympy.diff of the written-out definition, n = 1..8, every index"


def check_derivative(d: Derivation, claim: str, derived: sp.Expr, definition: Definition,
                     wrt: Variable, *, numeric_sizes: Iterable[int] = (1, 3, 5),
                     concrete: bool = True) -> None:
    """Check a derived derivative against sympy.diff of the written-out definition for every
    n = 1..8 and every index value (exact; ``concrete=False`` leaves that to the caller), and
    against mpmath's numerical derivative of the definition at random points (50 digits).
    ``definition(row, indices)`` is the function, ``wrt(indices)`` the variable; p and LSE
    are unfolded on both sides."""
    if concrete:
        d.check(claim, CONCRETE, *_concrete_derivative(derived, definition, wrt))

    def numerical(size: int, point: Mapping, values: Mapping) -> sp.Float:
        row = Row(size)
        return partial(unfold(definition(row, values), row), wrt(values), point)

    d.check(claim, NUMERIC, *numeric_ok(numeric_error(derived, numerical, sizes=numeric_sizes,
                                                      points=1)))


def partial(expr: sp.Expr, wrt: sp.Basic, point: Mapping[sp.Basic, sp.Expr]) -> sp.Float:
    """d expr / d wrt at a point, by mpmath's numerical differentiation at 50 digits."""
    s = sp.Symbol("s", real=True)
    rest = {key: v for key, v in point.items() if key != wrt}
    f = sp.lambdify(s, expr.xreplace({wrt: s}).xreplace(rest), "mpmath")
    with mpmath.workdps(DIGITS):
        return sp.Float(mpmath.diff(f, mpmath.mpf(str(point[wrt]))), DIGITS)



def compare(derived: sp.Expr, closed: sp.Expr, *,
            sum_y_one: bool = False) -> list[tuple[str, bool, str]]:
    """A derived result against a closed form: (method, ok, detail) exactly for symbolic n
    (p and LSE kept, then unfolded) and at random points with 50 digits. ``sum_y_one``
    compares on targets with sum(y) = 1."""
    gap = derived - closed
    if sum_y_one:
        gap = expand_sum_bodies(gap).xreplace({row_sum(y[k]): 1})
    exact = symbolic_zero(gap, normalised=True) or symbolic_zero(unfold(gap))
    error = numeric_error(derived, closed, y_distribution=sum_y_one)
    return [(SYMBOLIC, exact, "the difference simplifies to 0" if exact else
             "the difference does not simplify to 0"), (NUMERIC, *numeric_ok(error))]


#: Values of scalar symbols, one point of a scalar check.
ScalarPoint = dict[sp.Symbol, sp.Float]


def scalar_values(expr: sp.Expr, variables: tuple[sp.Symbol, ...], points: list[ScalarPoint],
                  *, derivative: bool = False, dps: int = DIGITS) -> list[sp.Float]:
    """A scalar expression (or its derivative in variables[0], by mpmath's numerical
    differentiation) at each point, computed with ``dps`` working digits, kept to 50."""
    f = sp.lambdify(variables, expr, "mpmath")
    out = []
    with mpmath.workdps(dps):
        for pt in points:
            first, *rest = (mpmath.mpf(str(pt[v])) for v in variables)
            value = (mpmath.diff(lambda s, rest=rest: f(s, *rest), first) if derivative
                     else f(first, *rest))
            out.append(sp.Float(value, DIGITS))
    return out


def scalar_error(lhs: sp.Expr, rhs: sp.Expr, variables: tuple[sp.Symbol, ...],
                 points: list[ScalarPoint], *, derivative: bool = False,
                 dps: int = DIGITS) -> sp.Float:
    """The largest |lhs - rhs| relative to max(1, |rhs|) over the points; with
    ``derivative``, rhs is differentiated in variables[0] numerically."""
    pairs = zip(scalar_values(lhs, variables, points, dps=dps),
                scalar_values(rhs, variables, points, derivative=derivative, dps=dps))
    return max(abs(a - b) / max(1, abs(b)) for a, b in pairs)
