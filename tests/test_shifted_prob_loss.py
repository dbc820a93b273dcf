"""D19: the probability-target loss sum_k a_k (m - x_k) + A log1p(s), against 50-digit mpmath.

Relative to the loss itself (4 ulp), where D8's LSE sum(a) - x.a lost ulp(x): large logits,
class weights and label smoothing, rows of several chunks whose max is not in the first, and
losses near 0. Limits across chunks: a chunk of -inf logits only under a positive target gives
+inf, under zero targets nothing; a row of -inf only gives NaN; +inf rows as the label loss.
The references are written by hand from the definition -sum_k a_k log softmax(x)_k.
"""

import math

import mpmath
import numpy as np
import pytest

import softce
from softce.codegen.cpu import CHUNK
from softce.derive import run

F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]
INF = math.inf
ULPS = 4


@pytest.fixture(autouse=True)
def _digits():
    with mpmath.workdps(60):
        yield


def _reference(row, target, weight=None, eps=0.0) -> mpmath.mpf:
    """-sum_k a_k (x_k - LSE), a_k = w_k ((1 - eps) y_k + eps / n); a_k = 0 terms left out."""
    n = len(row)
    lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row if v != -INF))
    total = []
    for k, (v, t) in enumerate(zip(row, target)):
        a = ((1 - mpmath.mpf(eps)) * mpmath.mpf(float(t)) + mpmath.mpf(eps) / n)
        a *= 1 if weight is None else mpmath.mpf(float(weight[k]))
        if a != 0:
            total.append(-a * (mpmath.mpf(float(v)) - lse) if v != -INF else mpmath.inf)
    return mpmath.fsum(total)


def _ulps(got: float, want: mpmath.mpf, dtype) -> float:
    scale = max(abs(float(want)), float(np.finfo(dtype).tiny))
    return abs(mpmath.mpf(got) - want) / float(np.spacing(dtype(scale)))


def _both(x, y, **kw):
    """The loss from cross_entropy and from cross_entropy_grad's loss output."""
    loss = softce.cross_entropy(x, y, reduction="none", **kw)
    grad_loss, _ = softce.cross_entropy_grad(x, y, reduction="none", **kw)
    return loss, grad_loss


def test_d19_is_proved_and_printed_into_the_probability_kernels() -> None:
    d = run("D19")
    assert d.verdict == "proved" and {"prob_loss", "prob_loss_opts", "merge_t",
                                      "masked_chunk"} <= set(d.results)
    from pathlib import Path

    root = Path(softce.__file__).resolve().parents[1] / "generated" / "cpu"
    for path in sorted(root.glob("cross_entropy*prob*.py")):
        text = path.read_text()
        assert "D19  merge_t" in text and "# D19 merge_t" in text, path.name
        assert "# D19 masked_chunk" in text, path.name


def _large_rows(dtype, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Logits around 1e4 (float64) or 100 (float32), spread by a few units, the max in a later
    chunk; targets with zeros, normalised."""
    base = 1e4 if dtype == F64 else 100.0
    x = (base + rng.standard_normal((3, n)) * 3).astype(dtype)
    x[:, n // 2] = dtype(base + 12)  # the max, past the first chunk for n > CHUNK
    y = rng.random((3, n)).astype(dtype)
    y[:, ::5] = 0
    y /= y.sum(-1, keepdims=True)
    return x, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [3, 37, 3 * CHUNK + 17])
def test_large_logits_relative_to_the_loss(dtype, n) -> None:
    rng = np.random.default_rng(n)
    x, y = _large_rows(dtype, n, rng)
    w = (0.5 + rng.random(n)).astype(dtype)
    for kw in ({}, {"weight": w}, {"label_smoothing": 0.1}, {"weight": w, "label_smoothing": 0.1}):
        for got in _both(x, y, **kw):
            for r in range(x.shape[0]):
                want = _reference(x[r], y[r], kw.get("weight"), kw.get("label_smoothing", 0.0))
                assert _ulps(float(got[r]), want, dtype) <= ULPS, (kw, r, got[r], want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_confident_probability_loss_near_zero(dtype) -> None:
    """A target on the max of a confident row: the loss is about exp(-20), kept to itself."""
    x = np.array([[20.0, 0.0, -1.0, -3.0]], dtype)
    for y in ([1.0, 0.0, 0.0, 0.0], [0.999, 0.001, 0.0, 0.0]):
        yy = np.array([y], dtype)
        for got in _both(x, yy):
            assert _ulps(float(got[0]), _reference(x[0], yy[0]), dtype) <= ULPS


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunks_of_minus_inf_only(dtype) -> None:
    """A first chunk of -inf logits: under a positive target +inf (D19's masked chunk), under
    zero targets the loss of the other classes; a row of -inf only: NaN."""
    n = 2 * CHUNK + 5
    rng = np.random.default_rng(19)
    x = (rng.standard_normal((4, n)) * 2).astype(dtype)
    x[:, :CHUNK] = -INF
    y = rng.random((4, n)).astype(dtype)
    y[1, :CHUNK] = 0
    y[2, :] = 0
    y[2, -1] = 1
    x[3, :] = -INF
    for kw in ({}, {"weight": np.full(n, 2.0, dtype)}):
        for got in _both(x, y, **kw):
            assert got[0] == INF, kw
            for r in (1, 2):
                want = _reference(x[r], y[r], kw.get("weight"))
                assert _ulps(float(got[r]), want, dtype) <= ULPS, (kw, r)
            assert np.isnan(got[3]), kw
    smoothed = softce.cross_entropy(x[1:3], y[1:3], label_smoothing=0.1, reduction="none")
    assert (smoothed == INF).all()  # eps / n > 0 under every -inf logit


@pytest.mark.parametrize("dtype", DTYPES)
def test_plus_inf_rows_as_the_label_loss(dtype) -> None:
    """A +inf logit: the target's mass on finite logits gives +inf (the limit), mass on the
    +inf itself NaN (inf - inf), as the label loss at a finite label and at the +inf."""
    n = CHUNK + 9
    x = np.zeros((2, n), dtype)
    x[:, CHUNK + 3] = INF
    y = np.zeros((2, n), dtype)
    y[0, 1] = 1
    y[1, CHUNK + 3] = 1
    for got in _both(x, y):
        assert got[0] == INF and np.isnan(got[1])
    labels = softce.cross_entropy(x, np.array([1, CHUNK + 3]), reduction="none")
    assert labels[0] == INF and np.isnan(labels[1])
