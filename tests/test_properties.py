"""Hypothesis properties over shapes, axes, strides, dtypes and options (the "ci" profile by
default, ``--slow`` for >= 10,000 examples each, see conftest.py): softmax sums to 1,
log_softmax = log(softmax) where finite, cross-entropy >= 0 (>= H(y) for probabilities),
gradient rows sum to 0 for normalised targets, shift invariance (D2), and the CUDA simulator
gives the CPU's results."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softce

ROOT = Path(__file__).resolve().parents[1]
EPS = {np.dtype(np.float32): 1.2e-7, np.dtype(np.float64): 2.3e-16}


@st.composite
def logits(draw, finite: bool = True):
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64])))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    if draw(st.booleans()):  # a long class axis across the 1024-element chunk edge
        shape = shape[:-1] + (draw(st.sampled_from([1023, 1025, 2050])),)
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e4]))
    seed = draw(st.integers(0, 2**32 - 1))
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    if draw(st.booleans()):  # a strided or reversed view
        x = np.flip(x, axis=draw(st.integers(0, x.ndim - 1)))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    if not finite and x.shape[axis] > 1 and draw(st.booleans()):
        x = x.copy()  # one -inf mask: no row becomes all -inf
        x.flat[draw(st.integers(0, x.size - 1))] = -np.inf
    return x, axis


def _n(x, axis):
    return x.shape[axis]


@given(logits(finite=False))
def test_softmax_sums_to_one_and_log_softmax_is_its_log(case) -> None:
    x, axis = case
    eps = EPS[x.dtype]
    s = softce.softmax(x, axis)
    assert s.dtype == x.dtype and s.shape == x.shape
    assert np.all((s >= 0) & (s <= 1))
    total = s.sum(axis=axis, dtype=np.float64)
    np.testing.assert_allclose(total, 1.0, atol=4 * eps * np.sqrt(_n(x, axis)) + 4 * eps)
    ls = softce.log_softmax(x, axis)
    finite = np.isfinite(ls) & (s >= np.finfo(x.dtype).tiny)  # subnormal s lost its bits
    with np.errstate(divide="ignore"):
        logs = np.log(s.astype(np.float64))
    # |log(s) - ls| is relative in s: a few eps, plus log's own rounding at s's size
    np.testing.assert_allclose(ls[finite], logs[finite], rtol=16 * eps, atol=16 * eps)
    assert np.array_equal(np.isneginf(ls), x == -np.inf)


@given(logits(), st.sampled_from(["none", "mean", "sum"]), st.integers(0, 2**32 - 1))
def test_cross_entropy_is_non_negative_and_its_gradient_rows_sum_to_zero(case, red, seed
                                                                        ) -> None:
    x, axis = case
    eps = EPS[x.dtype]
    n = _n(x, axis)
    rng = np.random.default_rng(seed)
    batch = np.delete(np.array(x.shape), axis % x.ndim)
    labels = rng.integers(0, n, tuple(batch))
    loss = softce.cross_entropy(x, labels, axis=axis, reduction="none")
    assert np.all(loss >= 0)
    y = rng.random(x.shape).astype(x.dtype)
    y /= y.sum(axis=axis, keepdims=True)
    ce = softce.cross_entropy(x, y, axis=axis, reduction="none")
    h = softce.entropy(np.moveaxis(y, axis, -1))
    # CE(y, x) >= H(y) >= 0, up to the unshifted x.y cancellation (documented floor)
    scale = np.abs(np.moveaxis(x, axis, -1)).max(axis=-1) + 1.0
    assert np.all(ce - h >= -64 * eps * scale)
    for target in (labels, y):
        _, grad = softce.cross_entropy_grad(x, target, axis=axis, reduction=red)
        rows = grad.sum(axis=axis, dtype=np.float64)
        w = 1.0 if red != "mean" else 1.0 / max(1, int(np.prod(batch)))
        np.testing.assert_allclose(rows, 0.0, atol=8 * eps * np.sqrt(n) * w + 1e-30)


@given(logits(), st.sampled_from([-1e4, -7.25, 0.5, 3.0, 1e3]))
def test_shift_invariance(case, c) -> None:
    """D2: softmax(x + c) = softmax(x) and LSE(x + c) = LSE(x) + c, for c exact in x's dtype
    added without rounding (x + c exact where both are small integers times powers of two)."""
    x, axis = case
    eps = EPS[x.dtype]
    shifted = (x.astype(np.float64) + c).astype(x.dtype)
    wide = np.longdouble
    # the rounding of x + c, element by element (long double: exact enough for the bound)
    spread = float(np.abs(shifted.astype(wide) - x.astype(wide) - wide(c)).max())
    s0, s1 = softce.softmax(x, axis), softce.softmax(shifted, axis)
    np.testing.assert_allclose(s1, s0, rtol=0, atol=8 * eps + 4 * spread * 1.0)
    l0, l1 = softce.logsumexp(x, axis), softce.logsumexp(shifted, axis)
    tol = 8 * eps * (np.abs(l1) + abs(c) + 1) + 2 * spread
    np.testing.assert_allclose(l1 - c, l0, rtol=0, atol=float(np.max(tol)))


SIM = r"""
import numpy as np
from numba import cuda
from hypothesis import given, settings, strategies as st
import softce

@settings(max_examples=int({examples}), deadline=None, derandomize=True)
@given(st.sampled_from([np.float32, np.float64]), st.integers(1, 5), st.integers(1, 70),
       st.integers(0, 2**32 - 1), st.booleans())
def check(dtype, rows, n, seed, first_axis):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, n)) * 8).astype(dtype)
    axis = 0 if first_axis else -1
    d = cuda.to_device(x)
    tol = dict(rtol=3e-5, atol=3e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    for fn in (softce.softmax, softce.log_softmax, softce.logsumexp):
        np.testing.assert_allclose(fn(d, axis).copy_to_host(), fn(x, axis), **tol)
    labels = rng.integers(0, x.shape[axis], x.shape[1 - (axis % 2)])
    cpu = softce.cross_entropy_grad(x, labels, axis=axis)
    gpu = softce.cross_entropy_grad(d, labels, axis=axis)
    np.testing.assert_allclose(np.asarray(gpu[0].copy_to_host()), cpu[0], **tol)
    np.testing.assert_allclose(gpu[1].copy_to_host(), cpu[1], **tol)

check()
print("simulator agrees")
"""


def test_cpu_equals_the_cuda_simulator(request) -> None:
    examples = 400 if request.config.getoption("--slow") else 12
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(SIM.format(examples=examples))],
                         cwd=ROOT, env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"},
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0 and "simulator agrees" in run.stdout, run.stderr[-4000:]


_ = hnp  # hypothesis.extra.numpy is available for array strategies
