"""The generated CPU kernels compiled with bounds checks (SOFTCE_BOUNDSCHECK=1) over a fuzz
corpus: every function, shapes with rows of length 1, 1023/1024/1025 (the chunk edges), empty
rows and classes, every axis, strided and negative-stride inputs, both dtypes. Any
out-of-range index in a kernel raises IndexError there (inside a prange Numba reports it as a
SystemError chained from the IndexError). A raw kernel handed a bad label (the
API refuses it first) shows that the mode is on. One subprocess: the flag is read at import.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CORPUS = r"""
import numpy as np
import softce
from softce import jit
from softce.generated.cpu import cross_entropy_label_f64

assert jit.BOUNDSCHECK and jit.CPU_OPTIONS["boundscheck"] and not jit.CPU_OPTIONS["cache"]

# the raw kernel with a label outside [0, n): IndexError, not a silent read
x = np.zeros((3, 4))
loss = np.empty(3)
try:
    cross_entropy_label_f64(x, np.array([0, 9, 1]), loss)
except (IndexError, SystemError) as exc:
    # raised inside a prange: Numba reports SystemError chained from the IndexError
    chain = exc if isinstance(exc, IndexError) else exc.__context__ or exc.__cause__
    assert isinstance(chain, IndexError), repr(exc)
    print("raw-kernel IndexError:", chain)
else:
    raise SystemExit("a bad label did not raise under SOFTCE_BOUNDSCHECK=1")

rng = np.random.default_rng(12)
shapes = [(1,), (5,), (3, 1), (2, 1023), (2, 1024), (1, 1025), (0, 4), (3, 0), (2, 3, 4),
          (4, 2, 3, 5), (1, 2049)]
count = 0
for shape in shapes:
    for dtype in (np.float32, np.float64):
        for axis in range(-len(shape), len(shape)):
            base = rng.standard_normal(tuple(s * 2 for s in shape)) * 5
            x = base[tuple(slice(None, None, -2) for _ in shape)].astype(dtype)  # strided
            if x.size:
                x.flat[rng.integers(0, x.size)] = -np.inf
            n = x.shape[axis]
            p = softce.softmax(x, axis)
            g = rng.standard_normal(x.shape).astype(dtype)
            softce.log_softmax(x, axis)
            softce.logsumexp(x, axis, keepdims=True)
            softce.logsumexp_vjp(x, 2.0, axis)
            softce.entropy(p, axis)
            softce.entropy(p, axis, base=2.0)
            softce.softmax_vjp(p, g, axis)
            softce.log_softmax_vjp(softce.log_softmax(x, axis), g, axis)
            if n <= 64:
                softce.softmax_jacobian(x, axis)
            softce.sigmoid(x)
            out = np.empty_like(x)
            softce.softmax(x, axis, out=out)
            if n:
                batch = np.delete(np.array(x.shape), axis % x.ndim)
                labels = rng.integers(0, n, tuple(batch))
                for red in ("none", "mean", "sum"):
                    softce.cross_entropy(x, labels, axis=axis, reduction=red)
                    softce.cross_entropy_grad(x, labels, axis=axis, reduction=red)
                softce.cross_entropy(x, p, axis=axis)
                xx = x.copy()
                softce.cross_entropy_grad(xx, p, axis=axis, out=xx)
            count += 1
print("corpus cases", count)
"""


def test_the_fuzz_corpus_under_bounds_checks() -> None:
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(CORPUS)], cwd=ROOT,
                         env={**os.environ, "SOFTCE_BOUNDSCHECK": "1"}, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "raw-kernel IndexError" in run.stdout
    assert "corpus cases" in run.stdout
