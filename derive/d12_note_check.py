"""D12: the note's own check, in float64 without torch.

The note draws x = randn(3) (float64) and y = softmax(randn(3)), calls
F.cross_entropy(x, y).backward() and prints x.grad beside softmax(x) - y. Here D9's gradient,
with p = D2's max-shifted softmax, is compiled to a float64 NumPy function and compared with
mpmath's 50-digit derivative of the loss definition (10) at such points.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import mpmath
import numpy as np
import sympy as sp

from .core import NUMERIC, Derivation, derivation
from .d02_shift import shift_invariance
from .d09_ce_gradient import ce_gradient
from .definitions import Row, ce_loss, vec
from .symbols import D, i, n, p, x, y

SIZE = 3
DRAWS = 40
AGREES = "D9's gradient = d/dx of (10) in float64 at the note's setting (x = randn(3), " \
         "y = softmax(randn(3)))"
SHAPES = "x and y have shape (3,): one sample of 3 classes"
SUMS = "y sums to 1 (not 0); the gradient sums to 0"
PRINTED = "the printed gradient (-0.0677, -0.3029, 0.3706) sums to 0 within its rounding"
NOTE_PRINTED = np.array([-0.0677, -0.3029, 0.3706])

Array = np.ndarray
xs = [x[r] for r in range(SIZE)]
ys = [y[r] for r in range(SIZE)]


def _softmax_at(r: int) -> sp.Expr:
    """D2's shifted softmax at n = 3, component r, shifted by D = max(x)."""
    shifted = shift_invariance().results["softmax_shifted"]
    return shifted.subs(n, SIZE).doit().subs(i, r).xreplace({D: sp.Max(*xs)})


@functools.cache
def derived_softmax() -> Callable[[Array], Array]:
    """float64 softmax of a 3-vector, printed from D2's shifted softmax."""
    f = sp.lambdify([xs], [_softmax_at(r) for r in range(SIZE)], "numpy")
    return lambda v: np.array(f(v), dtype=np.float64)


@functools.cache
def derived_gradient() -> Callable[[Array, Array], Array]:
    """float64 gradient of the CE loss at n = 3, printed from D9's ce_grad."""
    grad = ce_gradient().results["ce_grad"].subs(n, SIZE).doit()
    fold = {p[r]: _softmax_at(r) for r in range(SIZE)}
    f = sp.lambdify([xs, ys], [grad.subs(i, r).xreplace(fold) for r in range(SIZE)], "numpy")
    return lambda v, w: np.array(f(v, w), dtype=np.float64)


def note_points(draws: int = DRAWS, seed: int = 0) -> list[tuple[Array, Array]]:
    """(x, y) as the note draws them: x = randn(3), y = softmax(randn(3)), float64."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(SIZE), derived_softmax()(rng.standard_normal(SIZE)))
            for _ in range(draws)]


@functools.cache
def _loss() -> Callable[..., mpmath.mpf]:
    return sp.lambdify([xs, ys], ce_loss(Row(SIZE), vec(x), vec(y)), "mpmath")


def _reference(v: Array, w: Array) -> list[mpmath.mpf]:
    """d/dx_r of the definition (10) at the float64 point, by mpmath at 50 digits."""
    loss = _loss()
    with mpmath.workdps(50):
        wm = [mpmath.mpf(float(u)) for u in w]
        out = []
        for r in range(SIZE):
            def along(s: mpmath.mpf, r: int = r) -> mpmath.mpf:
                point = [mpmath.mpf(float(u)) for u in v]
                point[r] = s
                return loss(point, wm)

            out.append(mpmath.diff(along, mpmath.mpf(float(v[r]))))
        return out


@derivation("D12", "the note's check", "(12)")
def note_check(d: Derivation) -> None:
    """D9's gradient, compiled to float64, against the 50-digit derivative of (10)."""
    grad = d.step("D9's gradient at n = 3, p = D2's softmax shifted by max(x)",
                  ce_gradient().results["ce_grad"].subs(n, SIZE).doit())
    d.results["ce_grad"] = ce_gradient().results["ce_grad"]
    points = note_points()
    worst = 0.0
    for v, w in points:
        got = derived_gradient()(v, w)
        ref = _reference(v, w)
        worst = max(worst, max(abs(float(got[r] - ref[r])) for r in range(SIZE)))
    d.check(AGREES, NUMERIC, worst < 1e-14,
            f"{len(points)} draws, max |float64 - 50-digit| = {worst:.1e}; {sp.sstr(grad)}")

    v, w = points[0]
    g = derived_gradient()(v, w)
    d.check(SHAPES, NUMERIC, v.shape == w.shape == g.shape == (SIZE,),
            f"x.shape = {v.shape}, y.shape = {w.shape}")
    sums = max(abs(float(w.sum()) - 1) for _, w in points)
    grad_sums = max(abs(float(derived_gradient()(v, w).sum())) for v, w in points)
    d.check(SUMS, NUMERIC, sums < 1e-15 and grad_sums < 1e-15,
            f"max |sum(y) - 1| = {sums:.1e}, max |sum(grad)| = {grad_sums:.1e}")
    total = float(NOTE_PRINTED.sum())
    d.check(PRINTED, NUMERIC, abs(total) <= 1.5e-4 and bool((abs(NOTE_PRINTED) < 1).all()),
            f"sum = {total:.1e}, 3 entries rounded to 4 decimals")
