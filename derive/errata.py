"""The note's errata, each established by a check on the derived results.

E1 (10)'s last step assumes sum(y) = 1; E2 (7) is in log2 while (8)-(9) use the natural log;
E3 0 log 0 is taken as 0, its limit; E4 the check's comments do not describe its code.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .checking import at_size, evaluate, random_point
from .closed_forms import CLOSED_FORMS
from .core import NUMERIC, SYMBOLIC, Check
from .d12_note_check import derived_gradient, note_points
from .definitions import limit_at_zero, u
from .registry import results
from .rules import expand_sum_bodies
from .symbols import LSE, b, i, k, p, row_sum, y


@dataclass(frozen=True)
class Finding:
    """An erratum of the note: what it says, and the check that shows what holds instead."""

    id: str
    title: str
    seed_formula: str
    note_says: str
    check: Check


def _closed(derivation: str, formula: str) -> sp.Expr:
    return next(cf.expr for cf in CLOSED_FORMS
                if cf.derivation == derivation and cf.formula == formula)


def _sum_y() -> Finding:
    loss, grad = results("D8")["ce_loss"], results("D9")["ce_grad"]
    sum_y = row_sum(y[k])
    loss_gap = sp.factor(expand_sum_bodies(loss - _closed("D8", "(10), last step")))
    grad_gap = sp.factor(grad - _closed("D9", "(12)"))
    exact = (sp.simplify(loss_gap - LSE * (sum_y - 1)) == 0
             and sp.simplify(grad_gap - p[i] * (sum_y - 1)) == 0)
    point = random_point(3, random.Random(1))
    point.update({y[r]: sp.Float(2, 50) / 3 for r in range(3)})  # sum(y) = 2
    value = evaluate(at_size(loss_gap, 3), point)
    return Finding(
        "E1", "(10)'s last step needs sum(y) = 1", "(10), (12)",
        "L = LSE(x) - x.y and grad L = softmax(x) - y",
        Check("L - (LSE - x.y) = LSE (sum(y) - 1) and grad L - (softmax - y) = "
              "softmax (sum(y) - 1): both vanish only when sum(y) = 1", SYMBOLIC,
              exact and abs(value) > 1e-3,
              f"at y = (2/3, 2/3, 2/3), L - (LSE - x.y) = {float(value):.4f}"))


def _log_base() -> Finding:
    grad = results("D6")["cross_entropy_grad"]
    ratio = sp.simplify(grad.subs(b, 2) / _closed("D6", "(8)"))
    return Finding(
        "E2", "(7) is in log2, (8)-(9) in the natural log", "(7), (8), (9)",
        "dH(p|q)/dq_i = -p_i / q_i for H(p|q) = -sum p log2 q",
        Check("in base 2, dH/dq_i = -p_i / (q_i ln 2): (8) times 1/ln 2", SYMBOLIC,
              ratio == 1 / sp.log(2), f"ratio to (8): {ratio} = {float(ratio):.6f}"))


def _zero_log_zero() -> Finding:
    limit = limit_at_zero(u * sp.log(u))
    h = results("D5")["entropy"]
    certain = sp.simplify(at_size(h, 2, unfold_p=False).xreplace({p[0]: 0, p[1]: 1}))
    raw = sp.S.Zero * sp.log(0)
    return Finding(
        "E3", "0 log 0 is taken as 0", "(6)",
        "H(0, 1) = 0",
        Check("lim_{p -> 0+} p log p = 0 supplies the value 0 log 0 (itself undefined); "
              "with it H(0, 1) = 0", SYMBOLIC,
              limit == 0 and certain == 0 and raw is sp.nan,
              f"limit {limit}; H(0, 1) = {certain}; 0 log 0 unextended: {raw}"))


def _check_comments() -> Finding:
    points = note_points()
    v, w = points[0]
    grad = derived_gradient()(v, w)
    ok = bool(v.shape == w.shape == (3,) and abs(float(w.sum()) - 1) < 1e-15
          and abs(float(grad.sum())) < 1e-15 and np.all(w > 0))
    return Finding(
        "E4", "the check's comments", "(12)",
        'comments "3 samples, 5 classes" and "sum is 0"',
        Check("x = randn(3) and y = softmax(randn(3)) are one sample of 3 classes; y sums to "
              "1; what sums to 0 is the gradient softmax(x) - y", NUMERIC, ok,
              f"x.shape = {v.shape}, y.shape = {w.shape}, sum(y) = {w.sum():.17g}, "
              f"sum(grad) = {grad.sum():.1e}"))


@functools.cache
def findings() -> tuple[Finding, ...]:
    """E1-E4."""
    return (_sum_y(), _log_base(), _zero_log_zero(), _check_comments())
