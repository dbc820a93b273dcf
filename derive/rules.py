"""Small simplification rules for sums over a row of symbolic length, which SymPy lacks.

Every rule is an identity of finite sums over k = lo..hi; the delta rule also uses that
element indices (i, j, c) lie in the row, 0 <= i <= n - 1.
"""

from __future__ import annotations

import sympy as sp

from .symbols import LSE, k, n, p, x


def _single_limit(s: sp.Sum) -> tuple[sp.Symbol, sp.Expr, sp.Expr] | None:
    return tuple(s.limits[0]) if len(s.limits) == 1 else None


def _common_factor(body: sp.Expr, idx: sp.Symbol) -> sp.Expr:
    """The factor of body free of idx; for a Piecewise, the one its nonzero branches share."""
    if isinstance(body, sp.Piecewise):
        factors = {_common_factor(value, idx) for value, _ in body.args if value != 0}
        return factors.pop() if len(factors) == 1 else sp.S.One
    return body.as_independent(idx, as_Add=False)[0] if body.is_Mul else sp.S.One


def _innermost_first(rule):
    """A rule for one-limit sums, applied to Sum(f, L1, L2, ...) = Sum(Sum(f, L1), L2, ...)."""

    def apply(s: sp.Sum) -> sp.Expr:
        if len(s.limits) == 1:
            return rule(s)
        first, *rest = s.limits
        inner = sp.Sum(s.function, first)
        done = rule(inner)
        return s if done == inner else apply_all(sp.Sum(done, *rest))

    def apply_all(e: sp.Expr) -> sp.Expr:
        return e.replace(lambda a: isinstance(a, sp.Sum), apply)

    return apply


@_innermost_first
def _split_sum(s: sp.Sum) -> sp.Expr:
    """sum (a + b) = sum a + sum b;  sum c f(k) = c sum f(k);  sum c = c (hi - lo + 1).

    A Piecewise body gives up the factor its nonzero branches share (SymPy's Sum folds
    outer factors into a Piecewise body)."""
    limits = s.limits[0]
    idx, lo, hi = limits
    body = s.function
    if body.is_Add:
        return sp.Add(*(_split_sum(sp.Sum(term, limits)) for term in body.args))
    if idx not in body.free_symbols:
        return body * (hi - lo + 1)
    const = _common_factor(body, idx)
    if const == 1:
        return s
    if isinstance(body, sp.Piecewise):
        inner = sp.Piecewise(*((value / const, cond) for value, cond in body.args))
        return const * sp.Sum(inner, limits)
    return const * sp.Sum(body / const, limits)


def pull_out_constants(expr: sp.Expr) -> sp.Expr:
    """Distribute every Sum over an Add and pull the factors free of its index out of it."""
    return expr.replace(lambda e: isinstance(e, sp.Sum), _split_sum)


def rename_dummies(expr: sp.Expr) -> sp.Expr:
    """Sum(f(j), (j, ...)) -> Sum(f(k), (k, ...)) where k appears nowhere in f: equal sums
    then look equal (and cancel)."""

    def rename(s: sp.Sum) -> sp.Sum:
        limits = _single_limit(s)
        if limits is None or limits[0] == k or k in s.function.atoms(sp.Symbol):
            return s
        idx, lo, hi = limits
        return sp.Sum(s.function.xreplace({idx: k}), (k, lo, hi))

    return expr.replace(lambda e: isinstance(e, sp.Sum), rename)


@_innermost_first
def _collapse(s: sp.Sum) -> sp.Expr:
    idx = s.limits[0][0]
    factors = sp.Mul.make_args(s.function)
    for f in factors:
        if isinstance(f, sp.KroneckerDelta) and idx in f.args:
            (other,) = [a for a in f.args if a != idx] or [idx]
            if idx not in other.free_symbols:
                rest = sp.Mul(*(g for g in factors if g is not f))
                return rest.subs(idx, other)
    return s


def collapse_delta(expr: sp.Expr) -> sp.Expr:
    """sum_k f(k) [k = a] = f(a), for an index a of the row (0 <= a <= n - 1)."""
    return pull_out_constants(expr).replace(lambda e: isinstance(e, sp.Sum), _collapse)


def unify_delta(expr: sp.Expr) -> sp.Expr:
    """[a = b] f(a, b) = [a = b] f(a, a): in a product with a delta, its arguments are equal."""

    def unify(term: sp.Expr) -> sp.Expr:
        deltas = [f for f in sp.Mul.make_args(term) if isinstance(f, sp.KroneckerDelta)]
        for delta in deltas:
            a, b = delta.args
            rest = sp.Mul(*(f for f in sp.Mul.make_args(term) if f is not delta))
            term = delta * rest.subs(b, a)
        return term

    return sp.Add(*(unify(term) for term in sp.Add.make_args(sp.expand(expr))))


def expand_sum_bodies(expr: sp.Expr) -> sp.Expr:
    """Multiply out every Sum's body, exp(a + b) = exp(a) exp(b) included, then split it."""

    def expand(s: sp.Sum) -> sp.Sum:
        return sp.Sum(sp.expand(s.function, power_exp=True, log=False), *s.limits)

    return pull_out_constants(expr.replace(lambda e: isinstance(e, sp.Sum), expand))


def _is_row_sum(e: sp.Basic, body) -> bool:
    """e is Sum(body(q), (q, 0, n - 1)) for some dummy q."""
    if not isinstance(e, sp.Sum) or len(e.limits) != 1:
        return False
    q, lo, hi = e.limits[0]
    return lo == 0 and hi == n - 1 and e.function == body(q)


def fold_softmax(expr: sp.Expr) -> sp.Expr:
    """exp(x[q]) / Z -> p[q] and log(Z) -> LSE, with Z = sum_k exp(x[k]) (softmax, LSE)."""
    z = sp.Dummy("Z", positive=True)
    folded = expr.replace(lambda e: _is_row_sum(e, lambda q: sp.exp(x[q])), lambda e: z)
    folded = folded.replace(
        lambda e: isinstance(e, sp.exp) and isinstance(e.args[0], sp.Indexed)
        and e.args[0].base == x,
        lambda e: p[e.args[0].indices[0]] * z)
    folded = pull_out_constants(folded).xreplace({sp.log(z): LSE})
    if z in folded.free_symbols:
        return expr
    return folded


def sum_of_p_is_one(expr: sp.Expr, base: sp.IndexedBase = p) -> sp.Expr:
    """sum_k p[k] = 1: softmax is a distribution (D1); likewise any distribution row ``base``."""
    return expr.replace(lambda e: _is_row_sum(e, lambda q: base[q]), lambda e: sp.S.One)


def combine_sums(expr: sp.Expr) -> sp.Expr:
    """a sum_k f(k) + b sum_k g(k) = sum_k (a f(k) + b g(k)), for the sums over one range
    (a, b free of the summation index): the inverse of ``pull_out_constants``."""
    expr = rename_dummies(expr)
    groups: dict[tuple, list[sp.Expr]] = {}
    rest = []
    for term in sp.Add.make_args(expr):
        sums = [f for f in sp.Mul.make_args(term) if isinstance(f, sp.Sum) and len(f.limits) == 1]
        if len(sums) != 1:
            rest.append(term)
            continue
        (s,) = sums
        groups.setdefault(tuple(s.limits[0]), []).append(term / s * s.function)
    return sp.Add(*rest, *(sp.Sum(sp.Add(*bodies), limits) for limits, bodies in groups.items()))
