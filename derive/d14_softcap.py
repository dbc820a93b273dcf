"""D14: logit soft-capping (Gemma 2), s(t) = cap tanh(t / cap), and its derivative.

Applied to each logit before the softmax, s bends large logits smoothly towards +-cap:

    s(t) = cap tanh(t / cap),    ds/dt = 1 - tanh(t / cap)^2 = 1 / cosh(t / cap)^2 > 0.

s is odd, strictly increasing from -cap to cap (so |s| < cap), and s(t) -> t as cap -> oo.
Both results are scalar expressions in t and cap: the kernels apply them elementwise.
"""

from __future__ import annotations

import random

import sympy as sp

from .checking import DIGITS, TOLERANCE, ScalarPoint, numeric_ok, scalar_error, scalar_values
from .core import NUMERIC, SYMBOLIC, Derivation, derivation
from .symbols import t

#: The cap (Gemma 2: 30 for the final logits, 50 for the attention logits).
cap = sp.Symbol("cap", positive=True)

GRADIENT = "ds/dt = 1 - tanh(t / cap)^2"
ODD = "s(-t) = -s(t)"
MONOTONE = "ds/dt = 1 / cosh(t / cap)^2 > 0: s is strictly increasing"
BOUNDED = "|s(t)| < cap"
IDENTITY_LIMIT = "s(t) -> t as cap -> oo"

#: Working digits of the evaluations: 1 - tanh(u), about 2 exp(-2 |u|), needs 0.87 |u| digits
#: beyond the 50 kept, and |u| = |t| / cap reaches 1000.
EXTRA_DIGITS = DIGITS + 900

Point = ScalarPoint


def _points(count: int = 40, seed: int = 14) -> list[Point]:
    """(t, cap) at random, |t| from 0.01 to 1000, cap from 1 to 100."""
    rng = random.Random(seed)
    points = []
    for _ in range(count):
        scale = 10 ** rng.uniform(-2, 3)
        points.append({t: sp.Float(rng.choice((-1, 1)) * scale, DIGITS),
                       cap: sp.Float(rng.uniform(1, 100), DIGITS)})
    return points


def _values(expr: sp.Expr, points: list[Point], *, derivative: bool = False) -> list[sp.Float]:
    """expr (or d expr / dt) at each point, with EXTRA_DIGITS working digits."""
    return scalar_values(expr, (t, cap), points, derivative=derivative, dps=EXTRA_DIGITS)


def _error(lhs: sp.Expr, rhs: sp.Expr, points: list[Point], *,
           derivative: bool = False) -> sp.Float:
    """scalar_error over the points, with EXTRA_DIGITS working digits."""
    return scalar_error(lhs, rhs, (t, cap), points, derivative=derivative, dps=EXTRA_DIGITS)


@derivation("D14", "logit soft-capping", "Gemma 2")
def softcap(d: Derivation) -> None:
    """sympy.diff of cap tanh(t / cap); the bounds from monotonicity and the limits."""
    s = d.step("definition: s(t) = cap tanh(t / cap)", cap * sp.tanh(t / cap))
    d.results["softcap"] = s
    raw = d.step("d/dt by sympy.diff: tanh' = 1 - tanh^2, the factors cap cancel",
                 sp.diff(s, t))
    grad = d.step("printable form: one tanh, squared", 1 - sp.tanh(t / cap) ** 2)
    d.results["softcap_grad"] = grad
    d.check(GRADIENT, SYMBOLIC, sp.simplify(grad - raw) == 0, "it is the diff")
    points = _points()
    d.check(GRADIENT, NUMERIC, *numeric_ok(_error(grad, s, points, derivative=True)))

    d.check(ODD, SYMBOLIC, s.subs(t, -t) + s == 0, "tanh is odd")
    d.check(ODD, NUMERIC, *numeric_ok(_error(s.subs(t, -t), -s, points)))

    sech2 = d.step("1 - tanh(u)^2 = 1 / cosh(u)^2, positive for real u",
                   1 / sp.cosh(t / cap) ** 2)
    d.check(MONOTONE, SYMBOLIC, sp.simplify(grad - sech2) == 0 and bool(sech2.is_positive),
            "cosh of a real number is real and >= 1")
    d.check(MONOTONE, NUMERIC, all(v > 0 for v in _values(grad, points)),
            "ds/dt > 0 at every point (|t| up to 1000)")

    ends = [sp.limit(s, t, end) for end in (-sp.oo, sp.oo)]
    d.step("the limits at t -> -oo and t -> oo", sp.Tuple(*ends))
    d.check(BOUNDED, SYMBOLIC, ends == [-cap, cap] and bool(sech2.is_positive),
            "strictly increasing from its limit -cap to its limit cap")
    worst = min(_values(cap - sp.Abs(s), points))
    d.check(BOUNDED, NUMERIC, worst > 0, f"smallest cap - |s| = {sp.N(worst, 3)} (|t| up to 1000)")

    far = d.step("cap -> oo", sp.Limit(s, cap, sp.oo).doit())
    d.check(IDENTITY_LIMIT, SYMBOLIC, far == t, "sympy.limit")
    near = _error(s, t, [{t: sp.Float(v, DIGITS), cap: sp.Float("1e30", DIGITS)}
                         for v in (-7, "0.3", 50)])
    d.check(IDENTITY_LIMIT, NUMERIC, near < TOLERANCE,
            f"|s - t| at cap = 1e30: {float(near):.1e} at 50 digits (t = -7, 0.3, 50)")
