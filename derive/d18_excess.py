"""D18: the normaliser's excess s = d - 1, and LSE = m + log1p(s).

With m = max_k x_k and one index k* attaining it, d = sum_k exp(x_k - m) = 1 + s where
s = sum_{k != k*} exp(x_k - m) (other maxima add exactly 1 each). Summed without the 1 of k*,
s keeps its relative accuracy however small it is, and so do LSE = m + log1p(s), the
log-probabilities (x_j - m) - log1p(s) and the label loss (m - x_c) + log1p(s), which near 0
are as small as s itself.

By definition E_k = exp(-inf if x_k = m else x_k - m) and the ties T_k = [x_k = m] give
E_k + T_k = exp(x_k - m), so s = sum E + sum T - 1. For a finite m, E_k = exp(x_k - m)
(1 - T_k) exactly, which is how a kernel sums it: the exp it needs anyway, a tie's term
multiplied by 0 (a product: a sum exp - T would be reassociated into sum exp - sum T, the
rounding this form avoids); where m = +inf every E_k is 0 and s = sum T - 1.

Two parts of a row merge as s = s_hi + (1 + s_lo) F(m_lo, m_hi), F(a, b) = 1 if a = b else
exp(a - b), where "hi" is the part with the larger max: D11's merge of d = 1 + s written so
that the part holding the max contributes no rounded 1, exact LSE of the union, identity
(-inf, -1).

Where x_k = +inf, the tie is that element (+inf = +inf), E_k = exp(-inf) = 0 for the rest,
s = 0, LSE = +inf: the limit, where m + log(sum exp(x - m)) is inf - inf.
"""

from __future__ import annotations

import random

import sympy as sp
from sympy.codegen.cfunctions import log1p

from .checking import SIZES, merge_laws_error, random_point
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .d02_shift import shift_invariance
from .d09_ce_gradient import ce_gradient
from .d10_log_softmax import log_softmax_vjps
from .d11_online import ASSOCIATIVE as D11_ASSOCIATIVE
from .d11_online import COMMUTATIVE as D11_COMMUTATIVE
from .d11_online import EXACT as D11_EXACT
from .d11_online import online_normaliser
from .symbols import LSE, D, c, d1, d2, i, k, m1, m2, n, row_sum, x

#: The row's max (the shift of every shifted sum) and its excess normaliser.
m = sp.Symbol("m", real=True)
s = sp.Symbol("s", real=True)
s1, s2 = sp.symbols("s1 s2", real=True)  # the excesses of two parts of a row
#: The max as a kernel holds it: +inf included.
m_max = sp.Symbol("m", extended_real=True)
#: A chunk's sums: sigma = sum_k exp(x_k - m) (1 - T_k), tau = sum_k T_k (its maxima).
sigma, tau = sp.symbols("sigma tau", real=True)

SPLIT = "E_k + T_k = exp(x_k - m) for x_k <= m: the exp with its tie taken out"
FINITE = "for a finite m, E_k = exp(x_k - m) (1 - T_k): the tie's term dropped, exactly"
EXCESS = "s = sum_k E_k + sum_k T_k - 1 = sum_{k != k*} exp(x_k - m) = d - 1"
MERGE = "s_hi + (1 + s_lo) F(m_lo, m_hi) = D11's merge of d = 1 + s, minus 1"
MERGE_EXACT = "m + log1p(s) of the merged state is the LSE of the union"
ASSOCIATIVE = "the merge of excesses is associative and commutative"
IDENTITY = "(-inf, -1) is the identity of the merge"
LSE_FORM = "LSE = m + log1p(s)"
LOG_SOFTMAX_FORM = "log softmax(x)_j = (x_j - m) - log1p(s)"
LABEL_LOSS_FORM = "LSE - x_c = (m - x_c) + log1p(s)"
PLUS_INF = "a row holding +inf: s = 0 and LSE = +inf, the limit of LSE as x_0 -> +inf"


def _factor(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    """exp(a - b), exactly 1 where a = b (also where both are +inf)."""
    return sp.Piecewise((1, sp.Eq(a, b)), (sp.exp(a - b), True))


def _merge(state: tuple[sp.Expr, sp.Expr], other: tuple[sp.Expr, sp.Expr],
           merge_s: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    values = {m1: state[0], s1: state[1], m2: other[0], s2: other[1]}
    return sp.Max(state[0], other[0]), merge_s.xreplace(values)


@derivation("D18", "the normaliser's excess s = d - 1, LSE = m + log1p(s)", "(3), LSE")
def excess_normaliser(d: Derivation) -> None:
    """d split into its max term and the rest; D11's merge and D2's LSE rewritten in s."""
    e_k = sp.exp(sp.Piecewise((-sp.oo, sp.Eq(x[k], m)), (x[k] - m, True)))
    t_k = sp.Piecewise((1, sp.Eq(x[k], m)), (0, True))
    d.results["excess_term"] = d.step("E_k: the shifted exp, 0 at a tie with the max", e_k)
    d.results["tie_term"] = d.step("T_k: 1 at a tie with the max", t_k)
    split = d.step("E_k + T_k, folded", sp.piecewise_fold(e_k + t_k))
    d.check(SPLIT, SYMBOLIC, _termwise(split),
            "branch by branch: at x_k = m, 0 + 1 = exp(0); elsewhere exp(x_k - m) + 0")
    finite = d.step("for a finite m: E_k = exp(x_k - m) (1 - T_k) (at a tie exp(0) 0 = 0)",
                    sp.exp(x[k] - m) * (1 - t_k))
    d.results["excess_term_finite"] = finite
    off_tie = {t_k: 0, e_k: sp.exp(x[k] - m)}
    d.check(FINITE, SYMBOLIC, finite.subs(x[k], m) == 0 == e_k.subs(x[k], m)
            and sp.simplify(finite.xreplace(off_tie) - e_k.xreplace(off_tie)) == 0,
            "at a tie both are 0 (exp(0) 0, exp(-oo)); elsewhere both are exp(x_k - m)")
    chunk = sp.Piecewise((sigma + tau - 1, sp.Ne(m_max, sp.oo)), (tau - 1, True))
    d.results["excess_of_sums"] = d.step(
        "s from sigma = sum_k exp(x_k - m) (1 - T_k) and tau = sum_k T_k: sigma + tau - 1 for a "
        "finite m; at m = +inf every E_k is 0 (exp(-inf)), so s = tau - 1", chunk)

    normaliser = row_sum(sp.exp(x[k] - m))
    d.results["excess_definition"] = d.step("the excess: s = d - 1, d = sum_k exp(x_k - m)",
                                            normaliser - 1)
    excess = d.step("s = d - 1 = sum_k (E_k + T_k) - 1, the sums taken apart",
                    row_sum(e_k) + row_sum(t_k) - 1)
    d.results["excess"] = excess
    d.results["normaliser"] = d.step("d = 1 + s", 1 + s)
    d.check(EXCESS, SYMBOLIC, _termwise(split),
            "sum_k (E_k + T_k) - 1 - (d - 1) = sum_k (E_k + T_k - exp(x_k - m)): each summand "
            "is 0 by SPLIT; the sum of T_k is the number of maxima, >= 1")
    d.check(EXCESS, CONCRETE, *_concrete_excess(excess))

    merge_d = online_normaliser().results["merge_d"]
    merge_s = sp.Piecewise((s1 + (1 + s2) * _factor(m2, m1), m1 >= m2),
                           (s2 + (1 + s1) * _factor(m1, m2), True))
    d.results["merge_s"] = d.step(
        "D11's merge of d = 1 + s: the part with the larger max keeps its s, the other's "
        "1 + s is scaled down to it", merge_s)
    d.results["identity"] = d.step("the identity: an empty part", sp.Tuple(-sp.oo, -1))
    merge_ok = d.check(MERGE, SYMBOLIC, *_merge_is_d11(merge_s, merge_d))
    d11 = {ch.claim: ch.ok for ch in online_normaliser().checks if ch.method == SYMBOLIC}
    d.check(MERGE_EXACT, SYMBOLIC, merge_ok and d11.get(D11_EXACT, False),
            "1 + merge_s is D11's merge_d of d = 1 + s (MERGE), exact by D11")
    d.check(MERGE_EXACT, CONCRETE, *_concrete_merge(merge_s))
    d.check(ASSOCIATIVE, SYMBOLIC, merge_ok and d11.get(D11_ASSOCIATIVE, False)
            and d11.get(D11_COMMUTATIVE, False),
            "1 + merge_s is D11's merge_d of d = 1 + s (MERGE), associative and commutative by "
            "D11")
    d.check(ASSOCIATIVE, NUMERIC, *_numeric_associative(merge_s))
    empty = (-sp.oo, sp.S.NegativeOne)
    d.check(IDENTITY, SYMBOLIC, _merge((m1, s1), empty, merge_s) == (sp.Max(m1, -sp.oo), s1)
            and _merge(empty, (m2, s2), merge_s)[1] == s2, "either side, m and s symbolic")

    lse = shift_invariance().results["lse_shifted"].xreplace({D: m})
    lse_s = d.step("D2's LSE with D = m, its sum d = 1 + s: log(1 + s) = log1p(s)",
                   m + log1p(s))
    d.results["lse"] = lse_s
    d.check(LSE_FORM, SYMBOLIC, sp.simplify(
        lse_s.rewrite(sp.log) - lse.xreplace({normaliser: 1 + s})) == 0)
    log_softmax = log_softmax_vjps().results["log_softmax"].subs(i, k)
    d.results["log_softmax"] = d.step("D10's x_j - LSE, the shift taken first",
                                      (x[k] - m) - log1p(s))
    d.check(LOG_SOFTMAX_FORM, SYMBOLIC, sp.simplify(
        (d.results["log_softmax"] - log_softmax.xreplace({LSE: lse_s})).rewrite(sp.log)) == 0)
    label_loss = ce_gradient().results["ce_loss_label"]
    d.results["label_loss"] = d.step("D9's LSE - x_c, the shift taken first",
                                     (m - x[c]) + log1p(s))
    d.check(LABEL_LOSS_FORM, SYMBOLIC, sp.simplify(
        (d.results["label_loss"] - label_loss.xreplace({LSE: lse_s})).rewrite(sp.log)) == 0)
    d.check(PLUS_INF, CONCRETE, *_plus_inf(excess, lse_s, d.results["excess_of_sums"]))


def _termwise(split: sp.Piecewise) -> bool:
    """Each summand of sum (E_k + T_k) equals exp(x_k - m) (SPLIT, branch by branch)."""
    return all(sp.simplify(value.subs(x[k], m) - 1) == 0 if cond != sp.true
               else sp.simplify(value - sp.exp(x[k] - m)) == 0 for value, cond in split.args)


def _row_excess(excess: sp.Expr, values: list[sp.Expr]) -> sp.Expr:
    """s of a concrete row (its max substituted for m)."""
    size = len(values)
    top = sp.Max(*values)
    body = excess.xreplace({n: size}).doit()
    return body.xreplace({m: top, **{x[r]: v for r, v in enumerate(values)}})


def _rows(rng: random.Random, size: int) -> list[list[sp.Expr]]:
    """Rows of n = size: integers with ties of the max, and -inf masks."""
    rows = []
    for _ in range(3):
        row = [sp.Integer(rng.randint(-3, 2)) for _ in range(size)]
        rows.append(row)
        rows.append([sp.Integer(2)] * size)
        rows.append([-sp.oo if r % 2 else v for r, v in enumerate(row)] if size > 1 else row)
    return rows


def _concrete_excess(excess: sp.Expr) -> tuple[bool, str]:
    """Every row: s = sum_{k != k*} exp(x_k - m), k* the first index of the max."""
    rng = random.Random(18)
    for size in SIZES:
        for row in _rows(rng, size):
            top = sp.Max(*row)
            star = row.index(top)
            exact = sum((sp.exp(v - top) for r, v in enumerate(row) if r != star), sp.S.Zero)
            if sp.simplify(_row_excess(excess, row) - exact) != 0:
                return False, f"differs at {row}"
    return True, "integer rows of n = 1..8 with ties of the max and -inf entries"


def _merge_is_d11(merge_s: sp.Expr, merge_d: sp.Expr) -> tuple[bool, str]:
    """Each branch: 1 + merge_s = merge_d with d_j = 1 + s_j and M the branch's max."""
    ok = True
    for (value, _cond), top in zip(merge_s.args, (m1, m2)):
        value = value.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[1][0])
        d11 = merge_d.xreplace({d1: 1 + s1, d2: 1 + s2}).xreplace({sp.Max(m1, m2): top})
        ok &= sp.simplify(sp.expand(1 + value - d11)) == 0
    # the F = 1 branch is exp(0): both maxima equal
    tie = merge_s.args[0][0].xreplace({m2: m1})
    ok &= sp.simplify(tie - (s1 + s2 + 1)) == 0
    return ok, "branch m1 >= m2 (M = m1) and m1 < m2 (M = m2); at m1 = m2, s1 + s2 + 1"


def _concrete_merge(merge_s: sp.Expr) -> tuple[bool, str]:
    """Every split of rows of n = 2..8: m + log1p(s) of the merged parts is the LSE."""
    rng = random.Random(81)
    for size in SIZES[1:]:
        for row in _rows(rng, size):
            for cut in range(1, size):
                parts = row[:cut], row[cut:]
                states = [(sp.Max(*part), _plain_excess(part)) for part in parts]
                top, merged = _merge(states[0], states[1], merge_s)
                if top == -sp.oo:
                    continue
                lse = sp.log(sum(sp.exp(v) for v in row))
                if sp.simplify(sp.exp(top + sp.log(1 + merged) - lse) - 1) != 0:
                    return False, f"differs at {row}, split {cut}"
    return True, "every split of integer rows of n = 2..8 (ties, -inf entries)"


def _plain_excess(values: list[sp.Expr]) -> sp.Expr:
    top = sp.Max(*values)
    if top == -sp.oo:
        return sp.S.NegativeOne
    return sum((sp.exp(v - top) for v in values), sp.S.Zero) - 1


def _numeric_associative(merge_s: sp.Expr) -> tuple[bool, str]:
    """Random states, 50 digits: (a b) c = a (b c) and a b = b a."""
    rng = random.Random(1818)

    def state() -> tuple[sp.Expr, sp.Expr]:
        point = random_point(3, rng)
        values = [point[x[r]] for r in range(3)]
        return sp.Max(*values), _plain_excess(values).evalf(60)

    return merge_laws_error([(state(), state(), state()) for _ in range(40)],
                            lambda a, b: _merge(a, b, merge_s))


def _plus_inf(excess: sp.Expr, lse_s: sp.Expr, of_sums: sp.Expr) -> tuple[bool, str]:
    """Rows holding +inf: s = 0 (the tie is the +inf), m + log1p(s) = +inf = the limit, and
    s from the sums at m = +inf is tau - 1 = 0."""
    t = sp.Symbol("t", real=True)
    for size in SIZES:
        row = [sp.oo] + [sp.Integer(-r) for r in range(1, size)]
        s_value = _row_excess(excess, row)
        lse = lse_s.xreplace({m: sp.oo, s: s_value})
        limit = sp.limit(sp.log(sp.exp(t) + sum((sp.exp(v) for v in row[1:]), sp.S.Zero)), t,
                         sp.oo)
        from_sums = of_sums.xreplace({m_max: sp.oo, tau: 1})
        if s_value != 0 or lse != sp.oo or limit != sp.oo or from_sums != s_value:
            return False, f"at {row}: s = {s_value}, LSE = {lse}, limit {limit}"
    return True, ("x_0 = +inf, n = 1..8: s = 0 (also from the sums: tau - 1), LSE = +inf, "
                  "sympy.limit gives +inf")
