"""D20: the verdict and method, the results the chunk loop implements, claims that must fail
when mutated, and D20's results evaluated against softce.linear_cross_entropy_grad."""

import numpy as np
import pytest
import sympy as sp

import softce
from softce.derive import registry, results, run
from softce.derive.checking import symbolic_zero
from softce.derive.core import CONCRETE, NUMERIC, SYMBOLIC
from softce.derive.d14_softcap import cap
from softce.derive.d20_linear_ce import (
    BATCH,
    CHAIN,
    CHAIN_CAPPED,
    F,
    G,
    N,
    Wl,
    bl,
    f,
    h,
    prob_loss,
    r,
    row_claims,
)
from softce.derive.symbols import i, j, n

CONTRACT = {
    "linear_logits": sp.Sum(Wl[i, sp.Symbol("a", integer=True, nonnegative=True)]
                            * h[sp.Symbol("a", integer=True, nonnegative=True)],
                            (sp.Symbol("a", integer=True, nonnegative=True), 0, F - 1)) + bl[i],
    "linear_grad_input": sp.Sum(G[r, j] * Wl[j, f], (j, 0, n - 1)),
    "linear_grad_weight": sp.Sum(G[r, j] * h[r, f], (r, 0, N - 1)),
    "linear_grad_bias": sp.Sum(G[r, j], (r, 0, N - 1)),
}


def test_d20_is_proved_for_symbolic_sizes() -> None:
    d = run("D20")
    assert d.verdict == "proved", [ch for ch in d.checks if not ch.ok]
    assert d.method == SYMBOLIC
    assert "D20" in registry.BY_ID and registry.MODULES["D20"] == "d20_linear_ce"
    methods = {(ch.claim, ch.method) for ch in d.checks}
    for claim in (CHAIN, CHAIN_CAPPED):
        assert {(claim, m) for m in (SYMBOLIC, CONCRETE, NUMERIC)} <= methods
    assert (BATCH, SYMBOLIC) in methods


def test_results_contract() -> None:
    assert results("D20") == CONTRACT


@pytest.fixture(scope="module")
def label_claims():
    opts = results("D13")
    return {capped: row_claims(opts["ce_loss_label_opts"], opts["ce_grad_label_opts"], capped)
            for capped in (False, True)}


def test_the_claimed_forms_hold(label_claims) -> None:
    for claims in label_claims.values():
        assert [name for name, _, _ in claims] == ["h_f", "W_jf", "b_j"]
        for _, derived, claimed in claims:
            assert symbolic_zero(derived - claimed)


def test_mutated_forms_are_rejected(label_claims) -> None:
    """G W with W transposed, G^T h with the wrong h, G without D14's factor, G doubled."""
    (_, dh, gh), (_, dw, gw), (_, db, gb) = label_claims[False]
    a = sp.Dummy("a")
    assert not symbolic_zero(dh - gh.xreplace({Wl: sp.IndexedBase("V", real=True)}))
    assert not symbolic_zero(dh - gh.replace(lambda e: isinstance(e, sp.Indexed) and e.base == Wl,
                                             lambda e: Wl[e.indices[1], e.indices[0]]))
    assert not symbolic_zero(dw - gw.xreplace({f: a}))
    assert not symbolic_zero(db - 2 * gb)
    (_, dbc, gbc) = label_claims[True][2]
    uncapped = gbc.replace(lambda e: e.is_Pow and e.base.func == sp.tanh and e.exp == 2,
                           lambda e: sp.S.Zero)
    assert uncapped != gbc and not symbolic_zero(dbc - uncapped)


def test_probability_loss_is_d13s_before_the_guard() -> None:
    """Away from y_k = 0, D13's guarded probability loss is the loss D20 differentiates."""
    guarded = results("D13")["ce_loss_prob_opts"]
    opened = guarded.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[-1][0])
    assert symbolic_zero(opened - prob_loss())
    assert cap not in prob_loss().free_symbols


def _evaluate(expr: sp.Expr, values: dict, sizes: dict, at: dict) -> float:
    """A D20 result written out at concrete sizes and evaluated with NumPy values."""
    written = expr.subs(sizes).subs(at).doit()
    table = {}
    for base, arr in values.items():
        for idx in np.ndindex(arr.shape):
            table[base[idx]] = arr[idx]
    return float(written.xreplace(table))


def test_d20_results_are_what_the_front_end_computes() -> None:
    """G from softce's fused kernel on the materialised logits; D20's G W, G^T h and sum G
    evaluated from it term by term equal the chunked call's gradients."""
    rng = np.random.default_rng(7)
    rows, feat, classes = 5, 3, 4
    hv = rng.standard_normal((rows, feat))
    wv = rng.standard_normal((classes, feat))
    bv = rng.standard_normal(classes)
    t = rng.integers(0, classes, rows)
    kw = dict(label_smoothing=0.2, z_loss=0.01, softcap=2.0)
    _, g = softce.cross_entropy_grad(hv @ wv.T + bv, t, **kw)
    loss, dh, dw, db = softce.linear_cross_entropy_grad(hv, wv, t, linear_bias=bv,
                                                        chunk_bytes=2 * 2 * classes * 8, **kw)
    res = results("D20")
    sizes = {N: rows, n: classes, F: feat}
    values = {G: g, h: hv, Wl: wv}
    for rr in range(rows):
        for ff in range(feat):
            assert _evaluate(res["linear_grad_input"], values, sizes, {r: rr, f: ff}) == \
                pytest.approx(dh[rr, ff], rel=1e-12, abs=1e-14)
    for jj in range(classes):
        assert _evaluate(res["linear_grad_bias"], values, sizes, {j: jj}) == pytest.approx(
            db[jj], rel=1e-12, abs=1e-14)
        for ff in range(feat):
            assert _evaluate(res["linear_grad_weight"], values, sizes, {j: jj, f: ff}) == \
                pytest.approx(dw[jj, ff], rel=1e-12, abs=1e-14)
    z = _evaluate(res["linear_logits"], {h: hv[0], Wl: wv, bl: bv}, {F: feat}, {i: 1})
    assert z == pytest.approx((hv @ wv.T + bv)[0, 1], rel=1e-14)
    assert np.isfinite(loss)
