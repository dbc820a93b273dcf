"""Rows of many chunks and spans through the kernels that keep each chunk's exps in the output
row: softmax, logsumexp_vjp and the label cross-entropy gradients (plain, weighted, smoothed,
with the label's element computed outside the loop), held against float64 references, with
-inf masks, a whole -inf span, NaN, labels at chunk edges, and in place (the kernels' own loop
for out = x) bit for bit as out of place."""

from __future__ import annotations

import numpy as np
import pytest

import softce
from softce.codegen.cpu import CHUNK, MAX_SPAN
from softce.stream import STREAM_BYTES
from tests import reference as ref

LENGTHS = [8 * CHUNK, 8 * CHUNK + 1, 2 * MAX_SPAN + 37]
DTYPES = [np.float32, np.float64]


def masked(n: int) -> int:
    """Row 2's leading -inf: its first span and more when the row has several, else two chunks
    and more."""
    return (MAX_SPAN if n > MAX_SPAN else 2 * CHUNK) + 5


def logits(n: int, dtype) -> np.ndarray:
    """Eight rows: plain, every third -inf, the first chunks (or span) -inf, one NaN, one
    +-1e30-sized row of equal maxima, one finite logit among -inf, large offsets, a small
    spread."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal((8, n)) * 4
    x[1, ::3] = -np.inf
    x[2, : masked(n)] = -np.inf
    x[3, n // 2] = np.nan
    x[4] = 1e30
    x[4, 1::2] = -1e30
    x[5] = -np.inf
    x[5, n - 1] = 0.5
    x[6] += 300.0
    x[7] *= 1e-3
    return x.astype(dtype)


def labels(n: int) -> np.ndarray:
    """Labels at the chunk edges, the last class and the middle; row 2's label is finite."""
    return np.array([0, CHUNK - 1, masked(n) + 2, CHUNK, n - 1, n - 1, n // 2, 1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", LENGTHS)
def test_softmax(n, dtype) -> None:
    x = logits(n, dtype)
    ref.assert_close(softce.softmax(x), ref.softmax(x), dtype)
    same = x.copy()
    np.testing.assert_array_equal(softce.softmax(same, out=same), softce.softmax(x))
    ref.assert_close(softce.logsumexp_vjp(x, np.arange(8.0, dtype=dtype)),
                     ref.logsumexp_vjp(x, np.arange(8.0)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", LENGTHS)
def test_cross_entropy_grad_labels(n, dtype) -> None:
    x, y = logits(n, dtype), labels(n)
    want_rows = ref.cross_entropy_rows(x, y)
    if x[4, y[4]] == 1e30:  # the label is one of the row's maxima: the loss is log(their count);
        want_rows[4] = np.log(np.sum(x[4] == 1e30))  # float64's lse - x_c rounds it to 0
    for reduction in ("none", "sum", "mean"):
        loss, grad = softce.cross_entropy_grad(x, y, reduction=reduction)
        want_grad = ref.cross_entropy_grad(x, y, reduction=reduction)[1]
        ref.assert_close(loss, ref._reduce(want_rows, reduction), dtype, scale=1e3,
                         err_msg=reduction)
        ref.assert_close(grad, want_grad, dtype, err_msg=reduction)
    inplace = x.copy()
    loss, grad = softce.cross_entropy_grad(inplace, y, reduction="sum", out=inplace)
    assert grad is inplace
    ref.assert_close(grad, ref.cross_entropy_grad(x, y, reduction="sum")[1], dtype)
    np.testing.assert_array_equal(grad, softce.cross_entropy_grad(x, y, reduction="sum")[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", LENGTHS)
def test_ignored_rows_have_zero_gradient(n, dtype) -> None:
    x, y = logits(n, dtype)[[0, 6, 7]], labels(n)[[0, 6, 7]]
    y[1] = -100
    loss, grad = softce.cross_entropy_grad(x, y, reduction="none")
    assert loss[1] == 0 and not grad[1].any()
    keep = [0, 2]
    want_loss, want_grad = ref.cross_entropy_grad(x[keep], y[keep], reduction="none")
    ref.assert_close(loss[keep], want_loss, dtype, scale=1e3)
    ref.assert_close(grad[keep], want_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", LENGTHS)
def test_weighted_and_smoothed(n, dtype) -> None:
    """Class weights: row r's loss and gradient scaled by weight[y_r] / sum_r weight[y_r] (mean).
    Label smoothing eps: the probability target (1 - eps) onehot + eps / n."""
    rows = [0, 1, 2, 6, 7]
    x, y = logits(n, dtype)[rows], labels(n)[rows]
    weight = np.linspace(0.5, 2.0, n).astype(dtype)
    loss, grad = softce.cross_entropy_grad(x, y, weight=weight)
    w = weight[y].astype(np.float64)
    rows_loss, rows_grad = ref.cross_entropy_grad(x, y, reduction="none")
    ref.assert_close(loss, np.sum(w * rows_loss) / w.sum(), dtype, scale=1e3)
    ref.assert_close(grad, rows_grad * (w / w.sum())[:, None], dtype)

    eps = 0.1
    target = np.full(x.shape, eps / n)
    target[np.arange(len(rows)), y] += 1 - eps
    finite = [0, 3, 4]  # smoothing puts mass on every class: -inf logits give inf losses
    loss, grad = softce.cross_entropy_grad(x[finite], y[finite], label_smoothing=eps,
                                           reduction="none")
    want_loss, want_grad = ref.cross_entropy_grad(x[finite], target[finite], reduction="none")
    ref.assert_close(loss, want_loss, dtype, scale=1e3)
    ref.assert_close(grad, want_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_long_row_does_not_depend_on_its_batch(dtype) -> None:
    """A batch large enough to stream its output gives each row the bits it gets alone."""
    n = 8 * CHUNK + 1
    rows = STREAM_BYTES // (n * np.dtype(dtype).itemsize) + 2
    x = (np.random.default_rng(3).standard_normal((rows, n)) * 4).astype(dtype)
    y = np.arange(rows) * 37 % n
    whole = softce.softmax(x)
    _, whole_grad = softce.cross_entropy_grad(x, y, reduction="sum")
    for r in (0, rows // 2, rows - 1):
        np.testing.assert_array_equal(whole[r], softce.softmax(x[r]))
        np.testing.assert_array_equal(
            whole_grad[r], softce.cross_entropy_grad(x[r:r + 1], y[r:r + 1], reduction="sum")[1][0])
