"""The sum rules of derive/rules.py, each on its own, each against a concrete expansion."""

import sympy as sp

from softce.derive.rules import (
    collapse_delta,
    expand_sum_bodies,
    fold_softmax,
    pull_out_constants,
    sum_of_p_is_one,
    unify_delta,
)
from softce.derive.symbols import LSE, D, c, g, i, j, k, n, p, row_sum, x, y

Z = row_sum(sp.exp(x[k]))
KD = sp.KroneckerDelta


def at(expr: sp.Expr, size: int) -> sp.Expr:
    """expr with n = size and every sum written out."""
    return expr.subs(n, size).doit()


def test_pull_out_constants_pulls_factors_free_of_the_index() -> None:
    assert pull_out_constants(row_sum(D * y[k])) == D * row_sum(y[k])
    assert pull_out_constants(row_sum(-x[k] * y[k] * g[i])) == -g[i] * row_sum(x[k] * y[k])


def test_pull_out_constants_distributes_over_an_add() -> None:
    expr = row_sum(LSE * y[k] - x[k] * y[k])
    assert pull_out_constants(expr) == LSE * row_sum(y[k]) - row_sum(x[k] * y[k])


def test_pull_out_constants_counts_a_constant_sum() -> None:
    assert pull_out_constants(row_sum(2 * D)) == 2 * D * n


def test_pull_out_constants_keeps_its_value() -> None:
    expr = row_sum(D * (y[k] + g[k]) * x[k] + 3)
    for size in (1, 4):
        assert sp.expand(at(pull_out_constants(expr), size) - at(expr, size)) == 0


def test_pull_out_constants_reaches_nested_sums() -> None:
    inner = row_sum(D * g[k])
    assert pull_out_constants(sp.exp(inner)) == sp.exp(D * row_sum(g[k]))


def test_collapse_delta_picks_the_term() -> None:
    assert collapse_delta(row_sum(y[k] * KD(i, k))) == y[i]
    assert collapse_delta(row_sum(x[k] * KD(k, c) * D)) == D * x[c]


def test_collapse_delta_leaves_bound_indices_alone() -> None:
    expr = row_sum(KD(i, k) * sp.exp(x[k]) / Z)
    assert collapse_delta(expr) == sp.exp(x[i]) / Z


def test_collapse_delta_keeps_its_value() -> None:
    expr = row_sum(y[k] * g[k] * KD(j, k))
    for size in (1, 3):
        for q in range(size):
            lhs = at(collapse_delta(expr), size).subs(j, q)
            assert lhs == at(expr, size).subs(j, q).doit()


def test_unify_delta() -> None:
    assert unify_delta(KD(i, j) * (p[i] - p[j])) == 0
    assert unify_delta(KD(i, j) * y[j]) == KD(i, j) * y[i]


def test_expand_sum_bodies_splits_a_shifted_exponential() -> None:
    assert expand_sum_bodies(row_sum(sp.exp(x[k] - D))) == sp.exp(-D) * Z


def test_fold_softmax() -> None:
    assert fold_softmax(sp.exp(x[i]) / Z) == p[i]
    assert fold_softmax(sp.exp(x[i]) * sp.exp(x[j]) / Z**2) == p[i] * p[j]
    assert fold_softmax(sp.log(Z) - x[i]) == LSE - x[i]
    assert fold_softmax(row_sum(g[k] * sp.exp(x[k])) / Z) == row_sum(g[k] * p[k])


def test_fold_softmax_leaves_an_unfoldable_expression() -> None:
    assert fold_softmax(sp.exp(x[i])) == sp.exp(x[i])


def test_sum_of_p_is_one_whatever_the_dummy() -> None:
    assert sum_of_p_is_one(row_sum(p[k]) + row_sum(p[j], j)) == 2
    assert sum_of_p_is_one(row_sum(p[k] * y[k])) == row_sum(p[k] * y[k])
