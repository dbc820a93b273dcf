"""D11: the online normaliser (m, d): m a shift (the max), d = sum_k exp(x_k - m).

Two parts of a row merge into (M, d1 exp(m1 - M) + d2 exp(m2 - M)), M = max(m1, m2); the
merge is associative and commutative with identity (-inf, 0), and M + log d is the exact LSE
of the union: the basis of one-pass and distributed kernels.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import sympy as sp

from .checking import SIZES, concrete_zero, random_point
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .d02_shift import shift_invariance
from .rules import expand_sum_bodies
from .symbols import D, d1, d2, k, m1, m2, n, row_sum, x

EXACT = "M + log(d1 exp(m1 - M) + d2 exp(m2 - M)) = LSE of the union, for any shifts"
COMMUTATIVE = "the merge is commutative"
ASSOCIATIVE = "the merge is associative"
IDENTITY = "(-inf, 0) is the identity of the merge"
BOUNDED = "m1 - max(m1, m2) <= 0: no exponent of the merge is positive"
MAX_OF_UNION = "max(m1, m2) is the max of the union"
ONE_PASS = "merging (x_n, 1) into the state of x_0..x_{n-1} gives the state of x_0..x_n"

a = sp.Symbol("a", integer=True, positive=True)  # where the row is split: 0..a-1 | a..n-1
M = sp.Symbol("M", real=True)  # the shift of the union
m3 = sp.Symbol("m3", real=True)
d3 = sp.Symbol("d3", positive=True)
State = tuple[sp.Expr, sp.Expr]
Merge = Callable[[State, State], State]


def _part(lo: sp.Expr, hi: sp.Expr, shift: sp.Expr) -> sp.Sum:
    return sp.Sum(sp.exp(x[k] - shift), (k, lo, hi))


@derivation("D11", "online normaliser (m, d)", "(3), LSE")
def online_normaliser(d: Derivation) -> None:
    """The union's sum split at a; each part re-shifted from M to its own m."""
    whole = d.step("the row's shifted sum, split at a",
                   sp.Eq(row_sum(sp.exp(x[k] - M)), _part(0, a - 1, M) + _part(a, n - 1, M)))
    split_ok = sp.simplify(whole.lhs - whole.rhs) == 0
    parts = {sp.Sum(sp.exp(x[k]), (k, 0, a - 1)): d1 * sp.exp(m1),
             sp.Sum(sp.exp(x[k]), (k, a, n - 1)): d2 * sp.exp(m2)}
    d.step("d1 = sum_{k < a} exp(x_k - m1), so sum_{k < a} exp(x_k) = d1 exp(m1); likewise d2",
           sp.Eq(expand_sum_bodies(_part(0, a - 1, m1)), d1))
    merged = expand_sum_bodies(whole.rhs).xreplace(parts)
    merged = d.step("substituted, the exponentials combined", sp.powsimp(sp.expand(merged)))
    maximum = d.step("the shift of the union: M = max(m1, m2) (max of the two maxima)",
                     sp.Max(m1, m2))
    d.results["merge_m"] = maximum
    d.results["merge_d"] = merged.xreplace({M: maximum})
    lse_shifted = shift_invariance().results["lse_shifted"]
    d.results["lse_of_pair"] = d.step(
        "D2's LSE with D = m1 and its sum d1: the LSE of a state",
        lse_shifted.xreplace({D: m1}).xreplace({row_sum(sp.exp(x[k] - m1)): d1}))

    union = sp.log(_part(0, a - 1, 0) + _part(a, n - 1, 0))
    state = (M + sp.log(merged)).xreplace({d1: _part(0, a - 1, m1), d2: _part(a, n - 1, m2)})
    exact = sp.simplify(sp.expand_log(expand_sum_bodies(state), force=True) - union) == 0
    d.check(EXACT, SYMBOLIC, split_ok and exact, "general n and split a, any m1, m2, M")
    d.check(EXACT, CONCRETE, *_concrete_exact(d.results["merge_m"], d.results["merge_d"]))

    merge = _merge_rule(d.results["merge_m"], d.results["merge_d"])
    s1, s2, s3 = (m1, d1), (m2, d2), (m3, d3)
    d.check(COMMUTATIVE, SYMBOLIC, merge(s1, s2) == merge(s2, s1))
    left, right = merge(merge(s1, s2), s3), merge(s1, merge(s2, s3))
    d.check(ASSOCIATIVE, SYMBOLIC, left[0] == right[0]
            and sp.powsimp(sp.expand(left[1] - right[1])) == 0)
    empty = (-sp.oo, sp.S.Zero)
    d.check(IDENTITY, SYMBOLIC, merge(s1, empty) == s1 and merge(empty, s1) == s1)
    d.check(BOUNDED, SYMBOLIC, sp.Min(0, m1 - m2).is_nonpositive and sp.simplify(
        (m1 - maximum - sp.Min(0, m1 - m2)).rewrite(sp.Piecewise)) == 0,
        "m1 - max(m1, m2) = min(0, m1 - m2)")
    d.check(MAX_OF_UNION, CONCRETE, *_concrete_max_of_union())
    d.check(ONE_PASS, SYMBOLIC, *_one_pass_step(merge))
    d.check(ONE_PASS, NUMERIC, *_numeric_one_pass(merge))


def _merge_rule(merge_m: sp.Expr, merge_d: sp.Expr) -> Merge:
    """The merge of two states, as the derived (merge_m, merge_d) give it."""

    def merge(s: State, t: State) -> State:
        values = {m1: s[0], d1: s[1], m2: t[0], d2: t[1]}
        return merge_m.xreplace(values), merge_d.xreplace(values)

    return merge


def _maximum(values: list[sp.Expr]) -> sp.Expr:
    return sp.Max(*values) if values else -sp.oo


def _concrete_exact(merge_m: sp.Expr, merge_d: sp.Expr) -> tuple[bool, str]:
    """Every split of every row of n = 1..8, each part shifted by its own max."""
    for size in SIZES:
        xs = [x[r] for r in range(size)]
        for cut in range(1, size):
            first, second = xs[:cut], xs[cut:]
            mm = {m1: _maximum(first), m2: _maximum(second)}
            dd = {d1: sum(sp.exp(v - mm[m1]) for v in first),
                  d2: sum(sp.exp(v - mm[m2]) for v in second)}
            state = merge_m.xreplace(mm) + sp.log(merge_d.xreplace(mm).xreplace(dd))
            if not concrete_zero(state - sp.log(sum(sp.exp(v) for v in xs))):
                return False, f"differs at n = {size}, split {cut}"
    return True, "every split of n = 2..8, maxima as the shifts"


def _concrete_max_of_union() -> tuple[bool, str]:
    for size in SIZES:
        xs = [x[r] for r in range(size)]
        for cut in range(size + 1):
            if sp.Max(_maximum(xs[:cut]), _maximum(xs[cut:])) != sp.Max(*xs):
                return False, f"differs at n = {size}, split {cut}"
    return True, "every split of n = 1..8 (an empty part has max -inf)"


def _one_pass_step(merge: Merge) -> tuple[bool, str]:
    """(m, sum_{k<n} exp(x_k - m)) merged with (x_n, 1) is (m', sum_{k<=n} exp(x_k - m'))."""
    m = sp.Symbol("m", real=True)
    prefix = row_sum(sp.exp(x[k] - m))
    new_m, new_d = merge((m, prefix), (x[n], sp.S.One))
    last = sp.Sum(sp.exp(x[k] - new_m), (k, n, n))
    peel_ok = sp.simplify(row_sum(sp.exp(x[k] - new_m)) + last
                          - sp.Sum(sp.exp(x[k] - new_m), (k, 0, n))) == 0
    peeled = row_sum(sp.exp(x[k] - new_m)) + last.doit()
    step_ok = sp.simplify(sp.powsimp(sp.expand(expand_sum_bodies(new_d - peeled)))) == 0
    return peel_ok and step_ok, "induction step for general n; base: the identity (-inf, 0)"


def _numeric_one_pass(merge: Merge) -> tuple[bool, str]:
    """A left fold of the merge over (x_k, 1), at random rows, gives LSE to 50 digits."""
    rng = random.Random(11)
    worst = sp.Float(0)
    for size in SIZES:
        point = random_point(size, rng)
        state: State = (-sp.oo, sp.S.Zero)
        for r in range(size):
            state = merge(state, (point[x[r]], sp.S.One))
            state = (state[0], state[1].evalf(60))
        lse = sp.log(sum(sp.exp(point[x[r]]) for r in range(size))).evalf(50)
        worst = max(worst, abs((state[0] + sp.log(state[1])).evalf(50) - lse))
    return bool(worst < 1e-40), f"max error {float(worst):.1e}, n = 1..8"
