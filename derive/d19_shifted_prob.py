"""D19: the probability-target loss shifted by the row's max: sum_k a_k (m - x_k) + A log1p(s).

With a_k the target (D8: y_k; D13: w_k ((1 - eps) y_k + eps / n)) and A = sum_k a_k, D18's
log softmax(x)_k = (x_k - m) - log1p(s) gives

    L = -sum_k a_k log softmax(x)_k = sum_k a_k (m - x_k) + A log1p(s) (+ z LSE^2, D13).

For a_k >= 0 every term is >= 0 (m is the max): nothing cancels, where D8's LSE sum(a) - x.a
loses ulp(x) absolute to its cancellation when the logits are large. A term at a_k = 0 is its
limit 0, also at x_k = -oo (D8's guard, on the factor m - x_k).

A kernel sums T = sum_k a_k (m_c - x_k) against each chunk's max m_c. The sum is linear in its
shift, so a part's T moves to a larger max M as T + A (M - m_c): two parts of a row merge as

    T = T_1 + T_2 + A_lo (m_hi - m_lo)   (the term 0 where A_lo = 0 or m_hi = m_lo),

with A = sum_k a_k of each part, exact for the union, identity (-oo, 0, 0). A chunk of -oo
logits only is skipped by the max pass (D11's identity); its terms a_k (m - (-oo)) are its A
times +oo for any finite max of the row (0 at A = 0). In a row of -oo only, T = A oo and
A log1p(s) = A log1p(-1) = -A oo: NaN, as log softmax is there.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import sympy as sp
from sympy.codegen.cfunctions import log1p

from .checking import SIZES, merge_laws_error, symbolic_zero
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .d08_ce_loss import ce_loss_form
from .d13_ce_options import ce_options, prob_target, z
from .d18_excess import excess_normaliser, m, s
from .definitions import limit_at_zero, u
from .rules import expand_sum_bodies, pull_out_constants
from .symbols import LSE, k, m1, m2, n, row_sum, x, y

#: A part's shifted sum T = sum_k a_k (m_c - x_k), and its slope A = sum_k a_k; two parts'.
T, A = sp.symbols("T A", real=True)
T1, T2, A1, A2 = sp.symbols("T1 T2 A1 A2", real=True)

SHIFTED = "-sum_k a_k log softmax(x)_k = sum_k a_k (m - x_k) + A log1p(s), A = sum_k a_k"
IS_D8 = "at a_k = y_k it is D8's loss LSE sum(y) - x.y, LSE = m + log1p(s)"
IS_D13 = "at a_k = w_k ((1 - eps) y_k + eps/n) it is D13's probability loss"
GUARD = ("a term a_k (m - x_k) at a_k = 0 is its limit 0, also at x_k = -oo; the default "
         "branches give the loss back")
SHIFT = "sum_k a_k (M - x_k) = sum_k a_k (m - x_k) + A (M - m): a part's T at a larger max"
MERGE = "merge_t of two parts' (m, T, A) is the union's T at max(m_1, m_2)"
ASSOCIATIVE = "merge_t is associative and commutative"
IDENTITY = "(-oo, 0, 0) is the identity of merge_t"
MASKED = ("a part of -oo logits only: its T at a finite max is A oo (0 at A = 0), and with it "
          "a row of -oo only gives NaN")


def shifted_sum(a: Callable[[sp.Expr], sp.Expr]) -> sp.Expr:
    """sum_k a_k (m - x_k), each term guarded: 0 at a_k = 0 (the select on m - x_k)."""
    term = a(k)
    zero = limit_at_zero(u * (m - x[k]))
    return row_sum(term * sp.Piecewise((zero, sp.Eq(term, 0)), (m - x[k], True)))


def _unguarded(expr: sp.Expr) -> sp.Expr:
    return expr.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[-1][0])


def _expanded(expr: sp.Expr) -> sp.Expr:
    return sp.expand(pull_out_constants(expand_sum_bodies(sp.expand(expr))))


def _shift(slope: sp.Expr, hi: sp.Expr, lo: sp.Expr) -> sp.Expr:
    """A part's T moved from its max lo to hi: slope (hi - lo), 0 where slope = 0 (also at
    hi - lo = +oo) or hi = lo (also at hi = lo = +oo)."""
    return sp.Piecewise((0, sp.Eq(slope, 0) | sp.Eq(hi, lo)), (slope * (hi - lo), True))


@derivation("D19", "the probability-target loss shifted by the max: sum a (m - x) + A log1p(s)",
            "(10)")
def shifted_probability_loss(d: Derivation) -> None:
    """D18's log-probabilities in the loss, the sums split; the merge of a sum linear in its
    shift."""
    log_softmax = excess_normaliser().results["log_softmax"]
    y_opts = prob_target()

    def loss(a: Callable[[sp.Expr], sp.Expr]) -> sp.Expr:
        return shifted_sum(a) + row_sum(a(k)) * log1p(s)

    definition = d.step("-sum_k a_k log softmax(x)_k, D18's log softmax",
                        -row_sum(y[k] * log_softmax))
    plain = d.step("the sum split: sum_k y_k (m - x_k) + sum(y) log1p(s), each term 0 at "
                   "y_k = 0", loss(lambda r: y[r]))
    d.results["prob_loss"] = plain
    d.check(SHIFTED, SYMBOLIC, symbolic_zero(_expanded(_unguarded(plain) - definition)),
            "the sums expanded and split, term by term")
    d8 = ce_loss_form().results["ce_loss"].xreplace({LSE: excess_normaliser().results["lse"]})
    d.check(IS_D8, SYMBOLIC, symbolic_zero(_expanded(_unguarded(plain) - d8)),
            "the sums expanded and split")

    opts = d.step("D13's target y'_k = w_k ((1 - eps) y_k + eps/n), plus D13's z LSE^2",
                  loss(y_opts) + z * LSE**2)
    d.results["prob_loss_opts"] = opts
    d13 = ce_options().results["ce_loss_prob_opts"]
    lse_s = excess_normaliser().results["lse"]
    d.check(IS_D13, SYMBOLIC, symbolic_zero(_expanded(
        _unguarded(opts).xreplace({LSE: lse_s}) - _unguarded(d13).xreplace({LSE: lse_s}))),
        "LSE = m + log1p(s) in both; the sums expanded and split")

    at_zero = limit_at_zero(u * (m - x[k]))
    a_val = sp.Symbol("a", real=True)
    masked = sp.limit(at_zero.subs(x[k], a_val), a_val, -sp.oo)
    d.check(GUARD, SYMBOLIC, at_zero == 0 and masked == 0
            and _unguarded(shifted_sum(lambda r: y[r])) == row_sum(y[k] * (m - x[k])),
            "sympy.limit of u (m - x_k) as u -> 0+, then x_k -> -oo")

    big = sp.Symbol("M", real=True)
    shift = d.step("a part's sum at a larger max M", sp.Eq(
        row_sum(y[k] * (big - x[k])), row_sum(y[k] * (m - x[k])) + row_sum(y[k]) * (big - m)))
    d.check(SHIFT, SYMBOLIC, symbolic_zero(_expanded(shift.lhs - shift.rhs)),
            "the sums expanded and split")
    merge_t = sp.Piecewise((T1 + T2 + _shift(A2, m1, m2), m1 >= m2),
                           (T1 + T2 + _shift(A1, m2, m1), True))
    d.results["merge_t"] = d.step("two parts: the one with the smaller max moved to the larger",
                                  merge_t)
    d.results["identity"] = d.step("the identity: an empty part (m, T, A)",
                                   sp.Tuple(-sp.oo, 0, 0))
    d.check(IDENTITY, SYMBOLIC, _merge((-sp.oo, 0, 0), (m2, T2, A2), merge_t)[1] == T2
            and _merge((m1, T1, A1), (-sp.oo, 0, 0), merge_t)[1] == T1,
            "either side, m, T and A symbolic")
    masked_chunk = sp.Piecewise((0, sp.Eq(A, 0)), (A * sp.oo, True))
    d.results["masked_chunk"] = d.step(
        "a part of -oo logits only, at a finite max: sum_k a_k (m + oo) = A oo", masked_chunk)
    d.check(MERGE, CONCRETE, *_concrete_merge(merge_t, masked_chunk))
    d.check(ASSOCIATIVE, SYMBOLIC, *_symbolic_associative(merge_t))
    d.check(ASSOCIATIVE, NUMERIC, *_numeric_associative(merge_t))
    d.check(MASKED, CONCRETE, *_masked_rows(plain, masked_chunk))


def _merge(a: tuple, b: tuple, merge_t: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """(m, T, A) of two parts merged: max, merge_t, and the slopes added."""
    t = merge_t.xreplace({m1: a[0], T1: a[1], A1: a[2], m2: b[0], T2: b[1], A2: b[2]})
    return sp.Max(a[0], b[0]), t, a[2] + b[2]


def _state(values: list[sp.Expr], weights: list[sp.Expr], masked_chunk: sp.Expr
           ) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """(m, T, A) of a part: T against the part's own max; a part of -oo only is
    (-oo, masked_chunk, A)."""
    top, slope = sp.Max(*values), sum(weights, sp.S.Zero)
    if top == -sp.oo:
        return top, masked_chunk.xreplace({A: slope}), slope
    return top, sum((w * (top - v) for v, w in zip(values, weights) if w != 0), sp.S.Zero), slope


def _rows(rng: random.Random, size: int) -> list[tuple[list[sp.Expr], list[sp.Expr]]]:
    """Integer logits with ties and -oo entries, and rational targets with zeros."""
    rows = []
    for _ in range(3):
        row = [sp.Integer(rng.randint(-3, 2)) for _ in range(size)]
        weights = [sp.Rational(rng.randint(0, 3), 4) for _ in range(size)]
        rows.append((row, weights))
        rows.append(([-sp.oo if r % 2 else v for r, v in enumerate(row)], weights))
    return rows


def _concrete_merge(merge_t: sp.Expr, masked_chunk: sp.Expr) -> tuple[bool, str]:
    """Every split of rows of n = 2..8 (ties, -oo entries, -oo parts, zero targets): the merged
    T is the union's sum_k a_k (m - x_k) at its max, term by term with a_k = 0 terms 0."""
    rng = random.Random(19)
    for size in SIZES[1:]:
        for row, weights in _rows(rng, size):
            whole = _state(row, weights, masked_chunk)
            if whole[0] == -sp.oo:
                continue
            for cut in range(1, size):
                left = _state(row[:cut], weights[:cut], masked_chunk)
                right = _state(row[cut:], weights[cut:], masked_chunk)
                merged = _merge(left, right, merge_t)
                if merged[1] != whole[1] or merged[0] != whole[0]:
                    return False, f"differs at {row}, targets {weights}, split {cut}"
    return True, "every split of integer rows of n = 2..8 (ties, -oo entries and parts)"


def _symbolic_associative(merge_t: sp.Expr) -> tuple[bool, str]:
    """For finite states: merge_t of two parts is T_1 + T_2 + sum_i A_i (M - m_i), M the larger
    max (each branch, the maxima apart by a symbolic delta >= 0); merging that with a third
    part gives sum_i T_i + sum_i A_i (M - m_i) over the three for any maxima (an identity in M
    and the pair's max), which is symmetric in the parts, and Max is associative and
    commutative: so merge_t is too."""
    delta = sp.Symbol("delta", nonnegative=True)
    big, pair = sp.symbols("M M12", real=True)

    def closed(*parts: tuple[sp.Expr, sp.Expr, sp.Expr], top: sp.Expr) -> sp.Expr:
        return sum((t + a * (top - mi) for mi, t, a in parts), sp.S.Zero)

    a, b = (m1, T1, A1), (m2, T2, A2)
    merged = _merge(a, b, merge_t)[1]
    two = (symbolic_zero(_unguarded(merged.subs(m1, m2 + delta)) - closed(a, b, top=m1)
                         .subs(m1, m2 + delta))
           and symbolic_zero(_unguarded(merged.subs(m2, m1 + delta)) - closed(a, b, top=m2)
                             .subs(m2, m1 + delta)))
    m3, t3, a3 = sp.symbols("m3 T3 A3", real=True)
    third = (m3, t3, a3)
    nested = closed((pair, closed(a, b, top=pair), A1 + A2), third, top=big)
    three = symbolic_zero(sp.expand(nested - closed(a, b, third, top=big)))
    maxima = sp.Max(sp.Max(m1, m2), m3) == sp.Max(m1, sp.Max(m2, m3)) == sp.Max(m2, m1, m3)
    return two and three and maxima, ("two parts in each branch (m_1 - m_2 = +-delta, delta >= "
                                      "0), then three parts for any maxima; finite states")


def _numeric_associative(merge_t: sp.Expr) -> tuple[bool, str]:
    """Random states, 50 digits: (a b) c = a (b c) and a b = b a."""
    rng = random.Random(1919)

    def state() -> tuple[sp.Float, sp.Float, sp.Float]:
        return (sp.Float(rng.gauss(0, 3), 50), sp.Float(rng.uniform(0, 3), 50),
                sp.Float(rng.uniform(0, 2), 50))

    return merge_laws_error([(state(), state(), state()) for _ in range(40)],
                            lambda a, b: _merge(a, b, merge_t))


def _masked_rows(plain: sp.Expr, masked_chunk: sp.Expr) -> tuple[bool, str]:
    """Rows of n = 1..8: with a -oo logit under a positive target the loss is +oo (the
    limit), a row of -oo only gives NaN, a -oo logit under a zero target adds nothing."""
    t = sp.Symbol("t", real=True)
    for size in SIZES:
        weights = [sp.Rational(r + 1, 4) for r in range(size)]
        all_masked = _state([-sp.oo] * size, weights, masked_chunk)
        loss = all_masked[1] + all_masked[2] * log1p(-1)
        if loss is not sp.nan:
            return False, f"a row of -oo only, n = {size}: {loss}"
        if size == 1:
            continue
        row = [-sp.oo] + [sp.Integer(-r) for r in range(1, size)]
        for first, want in ((sp.Rational(1, 2), sp.oo), (sp.S.Zero, None)):
            at = [first] + weights[1:]
            terms = _unguarded(plain).xreplace({n: size}).doit()
            # for t below the others, the row's max is theirs
            limit = sp.limit(terms.xreplace({x[0]: t, **{x[r]: row[r] for r in range(1, size)},
                                             **{y[r]: at[r] for r in range(size)},
                                             m: sp.Max(*row[1:]), s: 0}), t, -sp.oo)
            got = _state(row, at, masked_chunk)[1]
            if want is not None and (got != want or limit != want):
                return False, f"at {row}, targets {at}: T = {got}, limit {limit}"
            if want is None and got != _state(row[1:], at[1:], masked_chunk)[1]:
                return False, f"at {row}, targets {at}: T = {got}"
    return True, ("n = 1..8: +oo at a -oo logit under a positive target (sympy.limit), "
                  "NaN for a row of -oo only, nothing from a zero target")

