"""Hand-written NumPy closed forms: the independent references the generated kernels are held to.

Nothing here imports softce. Every function computes in float64 (a float32 input is widened
exactly), moves nothing but the class axis, and follows the conventions softce documents:

- softmax/log_softmax/logsumexp shift by the row maximum; a row of only -inf gives NaN for
  softmax and log_softmax and -inf for logsumexp (as PyTorch); an empty axis gives -inf LSE.
- entropy takes 0 log 0 = 0 and divides by log(base) when a base is given; a negative entry
  gives NaN.
- cross-entropy is PyTorch's ``F.cross_entropy`` without weights or label smoothing:
  labels: loss = LSE(x) - x_c; probabilities: loss = LSE(x) sum(y) - x.y, where a zero
  target entry contributes nothing even over a -inf logit (the 0 log 0 = 0 limit);
  "mean" divides by the number of rows (every position of a (N, C, d1, ...) layout).
- gradients: dL/dx = softmax(x) - e_c (labels), sum(y) softmax(x) - y (probabilities),
  divided by the number of rows for "mean", times grad_output.
"""

from __future__ import annotations

import numpy as np

REDUCTIONS = ("none", "mean", "sum")


def _f64(x: object) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def logsumexp(x: object, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """LSE(x) = m + log sum exp(x - m), m = max(x); -inf for a row of -inf or an empty row."""
    x = _f64(x)
    if x.shape[axis] == 0:
        res = np.full(x.shape[:axis % x.ndim] + (1,) + x.shape[axis % x.ndim + 1:], -np.inf)
        return res if keepdims else np.squeeze(res, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        finite_m = np.where(np.isneginf(m), 0.0, m)  # a row of -inf: exp(-inf) = 0, log 0 = -inf
        s = np.sum(np.exp(x - finite_m), axis=axis, keepdims=True)
        res = finite_m + np.log(s)
    return res if keepdims else np.squeeze(res, axis=axis)


def softmax(x: object, axis: int = -1) -> np.ndarray:
    """exp(x - m) / sum exp(x - m); a row of -inf is NaN (0 / 0)."""
    x = _f64(x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        e = np.exp(x - m)
        return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x: object, axis: int = -1) -> np.ndarray:
    """x - m - log sum exp(x - m); a row of -inf is NaN."""
    x = _f64(x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        z = x - m
        return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def sigmoid(x: object) -> np.ndarray:
    """1 / (1 + exp(-x)) for x >= 0, exp(x) / (1 + exp(x)) below: never overflows."""
    x = _f64(x)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def entropy(p: object, axis: int = -1, base: float | None = None) -> np.ndarray:
    """-sum p log p (0 log 0 = 0), in units of log(base) (nats when base is None)."""
    p = _f64(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(p == 0, 0.0, p * np.log(np.where(p == 0, 1.0, p)))
        h = -np.sum(terms, axis=axis)
    return h if base is None else h / np.log(float(base))


def _labels_onehot(target: np.ndarray, n: int, axis: int, ndim: int) -> np.ndarray:
    """e_c laid out like the logits: 1 at the label along ``axis``."""
    onehot = (np.arange(n) == target[..., None]).astype(np.float64)  # (..., n)
    return np.moveaxis(onehot, -1, axis % ndim)


def _is_labels(target: np.ndarray) -> bool:
    return target.dtype.kind in "iu"


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.sum(loss)
    if reduction == "mean":
        return np.sum(loss) / loss.size if loss.size else np.float64(np.nan)
    raise ValueError(reduction)


def cross_entropy_rows(logits: object, target: object, axis: int = -1) -> np.ndarray:
    """The per-row losses (reduction="none")."""
    x = _f64(logits)
    t = np.asarray(target)
    lse = logsumexp(x, axis=axis)
    if _is_labels(t):
        x_c = np.take_along_axis(np.moveaxis(x, axis, -1), t[..., None].astype(np.int64),
                                 axis=-1)[..., 0]
        with np.errstate(invalid="ignore"):  # a row of -inf: -inf - -inf = NaN
            return lse - x_c
    y = _f64(t)
    with np.errstate(invalid="ignore"):
        xy = np.where(y == 0, 0.0, x * y)  # a zero target entry contributes 0 even at -inf
        return lse * np.sum(y, axis=axis) - np.sum(xy, axis=axis)


def cross_entropy(logits: object, target: object, axis: int = -1,
                  reduction: str = "mean") -> np.ndarray:
    return _reduce(cross_entropy_rows(logits, target, axis), reduction)


def cross_entropy_grad(logits: object, target: object, axis: int = -1,
                       reduction: str = "mean", grad_output: object = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(loss, grad_output * dloss/dlogits)."""
    x = _f64(logits)
    t = np.asarray(target)
    ax = axis % x.ndim
    s = softmax(x, axis=ax)
    if _is_labels(t):
        d = s - _labels_onehot(t, x.shape[ax], ax, x.ndim)
    else:
        y = _f64(t)
        d = np.sum(y, axis=ax, keepdims=True) * s - y
    loss = cross_entropy_rows(x, t, ax)
    go = np.float64(1.0) if grad_output is None else _f64(grad_output)
    if reduction == "mean":
        go = go / max(loss.size, 1)
    w = np.expand_dims(go, ax) if np.ndim(go) else go
    return _reduce(loss, reduction), w * d


def softmax_vjp(y: object, g: object, axis: int = -1) -> np.ndarray:
    """y * (g - y.g) with y = softmax(x)."""
    y, g = _f64(y), _f64(g)
    return y * (g - np.sum(y * g, axis=axis, keepdims=True))


def log_softmax_vjp(y: object, g: object, axis: int = -1) -> np.ndarray:
    """g - exp(y) sum(g) with y = log_softmax(x)."""
    y, g = _f64(y), _f64(g)
    return g - np.exp(y) * np.sum(g, axis=axis, keepdims=True)


def softmax_jacobian(x: object, axis: int = -1) -> np.ndarray:
    """diag(s) - s s^T per row, shape (..., n, n) with the batch axes in order."""
    s = np.moveaxis(softmax(x, axis=axis), axis, -1)
    n = s.shape[-1]
    return s[..., :, None] * np.eye(n) - s[..., :, None] * s[..., None, :]


def logsumexp_vjp(x: object, g: object, axis: int = -1) -> np.ndarray:
    """g * softmax(x), g of the reduced shape."""
    return np.expand_dims(_f64(g), axis % np.ndim(x)) * softmax(x, axis=axis)


# tolerances ------------------------------------------------------------------------------

TOLERANCES = {
    np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-14},
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-6},
}


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: object = None, *,
                 scale: float = 1.0, err_msg: str = "") -> None:
    """actual == expected to the dtype's tolerance (float64: 1e-12 relative, float32: 1e-5),
    NaN where expected is NaN and the same infinities; ``scale`` multiplies atol for values
    whose size grows with the inputs (sums over long rows, large logits)."""
    actual = np.asarray(actual)
    dt = np.dtype(dtype) if dtype is not None else actual.dtype
    tol = TOLERANCES[dt]
    np.testing.assert_allclose(actual.astype(np.float64), np.asarray(expected, np.float64),
                               rtol=tol["rtol"], atol=tol["atol"] * scale, equal_nan=True,
                               err_msg=err_msg)
