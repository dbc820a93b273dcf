"""Small simplification rules for sums over a row of symbolic length, which SymPy lacks.

Every rule is an identity of finite sums over k = lo..hi; the delta rule also uses that
element indices (i, j, c) lie in the row, 0 <= i <= n - 1.
"""

from __future__ import annotations

import sympy as sp

from .symbols import LSE, n, p, x


def _single_limit(s: sp.Sum) -> tuple[sp.Symbol, sp.Expr, sp.Expr] | None:
    return tuple(s.limits[0]) if len(s.limits) == 1 else None


def _split_sum(s: sp.Sum) -> sp.Expr:
    """sum (a + b) = sum a + sum b;  sum c f(k) = c sum f(k);  sum c = c (hi - lo + 1)."""
    limits = _single_limit(s)
    if limits is None:
        return s
    idx, lo, hi = limits
    body = s.function
    if body.is_Add:
        return sp.Add(*(_split_sum(sp.Sum(term, limits)) for term in body.args))
    if idx not in body.free_symbols:
        return body * (hi - lo + 1)
    if body.is_Mul:
        const, dep = body.as_independent(idx, as_Add=False)
        if const != 1:
            return const * sp.Sum(dep, limits)
    return s


def pull_out_constants(expr: sp.Expr) -> sp.Expr:
    """Distribute every Sum over an Add and pull the factors free of its index out of it."""
    return expr.replace(lambda e: isinstance(e, sp.Sum), _split_sum)


def _collapse(s: sp.Sum) -> sp.Expr:
    limits = _single_limit(s)
    if limits is None:
        return s
    idx = limits[0]
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


def sum_of_p_is_one(expr: sp.Expr) -> sp.Expr:
    """sum_k p[k] = 1: softmax is a distribution (D1)."""
    return expr.replace(lambda e: _is_row_sum(e, lambda q: p[q]), lambda e: sp.S.One)
