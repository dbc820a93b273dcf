"""Properties over shapes, axes, dtypes, memory layouts, -inf masks and value ranges.

Every generated kernel is reached through the API and compared with tests/reference.py. Rows
longer than the kernels' 1024-element chunks are drawn too, so the chunk merge (D11) is
exercised. The "ci" profile (default) runs few examples; ``pytest --slow`` runs >= 10,000.
"""

from __future__ import annotations

import numpy as np
import reference as ref
from hypothesis import assume, given
from hypothesis import strategies as st
from reference import assert_close

import softce

F32, F64 = np.float32, np.float64
LAYOUTS = ("c", "fortran", "reversed", "stepped", "transposed_copy")


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as a, in a different memory layout (a view where possible)."""
    if layout == "c" or a.ndim == 0:
        return np.ascontiguousarray(a)
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "reversed":  # negative strides on every axis
        full = tuple(slice(None, None, -1) for _ in range(a.ndim))
        return a[full].copy()[full]
    if layout == "stepped":  # every other element of a larger buffer
        big = np.full(tuple(2 * d + 1 for d in a.shape), 123.0, a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in range(a.ndim))]
        view[...] = a
        return view
    # a C-contiguous array with its axes reversed, transposed back
    return np.ascontiguousarray(a.T).T


@st.composite
def cases(draw, max_n: int = 2100, masks: bool = True, min_n: int = 1):
    """(x, axis) with x of a drawn dtype, shape, layout, scale and offset, and -inf masks."""
    dtype = draw(st.sampled_from([F32, F64]))
    ndim = draw(st.integers(1, 4))
    axis = draw(st.integers(-ndim, ndim - 1))
    long_row = draw(st.integers(0, 9)) == 0
    n = draw(st.integers(1000, max_n) if long_row and max_n >= 1000 else
             st.integers(min_n, min(12, max_n)))
    other_max = 1 if long_row else 5
    shape = [draw(st.integers(0 if ndim > 1 else 1, other_max)) for _ in range(ndim)]
    shape[axis] = n
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 4.0, 25.0]))
    offset = draw(st.sampled_from([0.0, 0.0, -60.0, 60.0]))
    x = rng.standard_normal(shape) * scale + offset
    if masks:
        frac = draw(st.sampled_from([0.0, 0.0, 0.2, 0.7, 1.0]))
        x[rng.random(shape) < frac] = -np.inf
    layout = draw(st.sampled_from(LAYOUTS))
    return _layout(x.astype(dtype), layout), axis


def _scale(x: np.ndarray) -> float:
    fin = np.abs(x[np.isfinite(x)]).astype(F64)
    return max(1.0, float(fin.max())) if fin.size else 1.0


def _tol_scale(x: np.ndarray, axis: int) -> float:
    """float32 sums over long rows round more: widen by sqrt(n / 64) past 64 elements."""
    n = x.shape[axis] if x.ndim else 1
    return max(1.0, float(np.sqrt(n / 64))) if x.dtype == F32 else 1.0


def _close(actual, expected, x, axis, scale=1.0, err_msg=""):
    k = _tol_scale(x, axis)
    dt = np.dtype(x.dtype)
    tol = ref.TOLERANCES[dt]
    np.testing.assert_allclose(np.asarray(actual, F64), np.asarray(expected, F64),
                               rtol=tol["rtol"] * k, atol=tol["atol"] * k * scale,
                               equal_nan=True, err_msg=err_msg)


@given(cases())
def test_softmax_log_softmax_logsumexp(case) -> None:
    x, axis = case
    s = softce.softmax(x, axis)
    assert s.dtype == x.dtype and s.shape == x.shape
    _close(s, ref.softmax(x, axis), x, axis)
    ls = softce.log_softmax(x, axis)
    assert ls.dtype == x.dtype and ls.shape == x.shape
    _close(ls, ref.log_softmax(x, axis), x, axis, scale=_scale(x))
    for keepdims in (False, True):
        lse = softce.logsumexp(x, axis, keepdims=keepdims)
        assert lse.dtype == x.dtype
        _close(lse, ref.logsumexp(x, axis, keepdims=keepdims), x, axis, scale=_scale(x))
    # rows with a finite entry are distributions; rows of -inf only are NaN (as PyTorch)
    live = np.isfinite(x).any(axis=axis)
    sums = s.sum(axis=axis, dtype=F64)
    assert np.all(np.abs(sums[live] - 1) <= 1e-5 * _tol_scale(x, axis) * 4)
    assert np.all(np.isnan(np.moveaxis(s, axis, -1)[~live]))
    assert np.all(softce.logsumexp(x, axis)[~live] == -np.inf)


@given(cases(max_n=24), st.integers(0, 2**32 - 1))
def test_vjps_and_jacobian(case, seed) -> None:
    x, axis = case
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(x.shape).astype(x.dtype)
    y = softce.softmax(x, axis)
    r = softce.softmax_vjp(y, g, axis)
    assert r.dtype == x.dtype
    _close(r, ref.softmax_vjp(y, g, axis), x, axis, scale=4)
    ly = softce.log_softmax(x, axis)
    r = softce.log_softmax_vjp(ly, g, axis)
    assert r.dtype == x.dtype
    _close(r, ref.log_softmax_vjp(ly, g, axis), x, axis, scale=4 * x.shape[axis])
    w = rng.standard_normal(softce.logsumexp(x, axis).shape).astype(x.dtype)
    r = softce.logsumexp_vjp(x, w, axis)
    assert r.dtype == x.dtype and r.shape == x.shape
    _close(r, ref.logsumexp_vjp(x, w, axis), x, axis, scale=4)
    jac = softce.softmax_jacobian(x, axis)
    assert jac.dtype == x.dtype
    _close(jac, ref.softmax_jacobian(x, axis), x, axis)


@given(cases(masks=True), st.sampled_from(["none", "mean", "sum"]), st.integers(0, 2**32 - 1),
       st.booleans())
def test_cross_entropy_labels(case, reduction, seed, scalar_go) -> None:
    x, axis = case
    ax = axis % x.ndim
    rng = np.random.default_rng(seed)
    batch = x.shape[:ax] + x.shape[ax + 1:]
    c = rng.integers(0, x.shape[ax], size=batch).astype(
        rng.choice([np.int64, np.int32, np.uint16, np.int8]) if x.shape[ax] < 128 else np.int64)
    go = (float(rng.uniform(-2, 2)) if scalar_go or reduction != "none"
          else rng.uniform(-2, 2, batch))
    want_loss, want_grad = ref.cross_entropy_grad(x, c, ax, reduction, go)
    loss = softce.cross_entropy(x, c, axis=axis, reduction=reduction)
    with np.errstate(invalid="ignore"):
        want_plain = ref.cross_entropy(x, c, ax, reduction)
    assert loss.dtype == x.dtype and np.shape(loss) == np.shape(want_plain)
    rows = max(1, int(np.prod(batch)))
    _close(loss, want_plain, x, axis, scale=_scale(x) * (rows if reduction == "sum" else 1))
    loss, grad = softce.cross_entropy_grad(x, c, axis=axis, reduction=reduction, grad_output=go)
    assert grad.dtype == x.dtype and grad.shape == x.shape
    _close(loss, want_loss, x, axis, scale=_scale(x) * (rows if reduction == "sum" else 1))
    _close(grad, want_grad, x, axis, scale=2)


@given(cases(), st.sampled_from(["none", "mean", "sum"]), st.integers(0, 2**32 - 1),
       st.sampled_from(["normalised", "unnormalised", "sparse"]))
def test_cross_entropy_probabilities(case, reduction, seed, kind) -> None:
    x, axis = case
    ax = axis % x.ndim
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 1, x.shape)
    if kind == "sparse":
        y[rng.random(x.shape) < 0.5] = 0
    y[np.isneginf(x)] = 0  # the target never puts mass on a masked class
    if kind != "unnormalised":
        with np.errstate(invalid="ignore"):
            y = np.nan_to_num(y / y.sum(axis=ax, keepdims=True))
    y = y.astype(x.dtype)
    _, want_grad = ref.cross_entropy_grad(x, y, ax, reduction)
    loss, grad = softce.cross_entropy_grad(x, y, axis=axis, reduction=reduction)
    assert loss.dtype == grad.dtype == x.dtype and grad.shape == x.shape
    _close(grad, want_grad, x, axis, scale=2)
    # the loss where no logit is masked (a masked logit with a zero target: see test_api)
    clean = ~np.isneginf(x).any(axis=ax)
    want_rows = ref.cross_entropy_rows(x, y, ax)
    got_rows = softce.cross_entropy(x, y, axis=axis, reduction="none")
    _close(got_rows[clean], want_rows[clean], x, axis, scale=_scale(x) * 4)
    if clean.all():
        n_rows = max(1, clean.size)
        _close(loss, ref.cross_entropy(x, y, ax, reduction), x, axis,
               scale=_scale(x) * 4 * (n_rows if reduction == "sum" else 1))


@given(cases(masks=False), st.sampled_from([None, 2, np.e, 10.0, 0.3, 7.5]),
       st.sampled_from(["softmax", "sparse", "unnormalised"]))
def test_entropy(case, base, kind) -> None:
    x, axis = case
    with np.errstate(invalid="ignore"):
        if kind == "softmax":
            p = ref.softmax(x, axis)
        elif kind == "sparse":
            p = np.where(np.random.default_rng(0).random(x.shape) < 0.5, 0.0,
                         ref.softmax(x, axis))
        else:
            p = np.abs(np.asarray(x, F64)) / 10
    p = _layout(p.astype(x.dtype), "reversed")
    h = softce.entropy(p, axis, base)
    assert h.dtype == x.dtype and h.shape == softce.logsumexp(x, axis).shape
    scale = float(np.abs(p).sum(axis=axis).max(initial=1.0)) * 10
    _close(h, ref.entropy(p, axis, base), x, axis, scale=scale)
    if kind == "softmax":
        n = x.shape[axis]
        lnb = 1.0 if base is None else np.log(base)
        assert np.all(h * np.sign(lnb) <= np.log(n) / abs(lnb) * (1 + 1e-5) + 1e-6)
        assert np.all(h * np.sign(lnb) >= -1e-6)


@given(st.sampled_from([F32, F64]), st.lists(st.integers(0, 4), max_size=3),
       st.integers(0, 2**32 - 1), st.sampled_from(LAYOUTS),
       st.sampled_from([1.0, 30.0, 1000.0]))
def test_sigmoid(dtype, shape, seed, layout, scale) -> None:
    x = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    x = _layout(x, layout)
    s = softce.sigmoid(x)
    assert s.dtype == dtype and s.shape == x.shape
    assert_close(s, ref.sigmoid(x), dtype)
    assert np.all((s >= 0) & (s <= 1))


@given(cases(max_n=1100), st.sampled_from(LAYOUTS),
       st.sampled_from(["softmax", "log_softmax", "sigmoid", "softmax_vjp", "log_softmax_vjp",
                        "cross_entropy_grad"]))
def test_out_and_layout_give_the_same_bits(case, out_layout, name) -> None:
    """A row's result does not depend on the memory layout of the input, nor on out=: the
    same kernel runs on the same rows. In place (out=x) the kernel's loops see aliased
    arrays and LLVM runs their scalar fallback, which may round a float32 entry 1 ulp apart;
    where the sum pass also writes the output row (the kernels that keep exp(x - m_c) there),
    the row's sum d is then added in another order: each order errs by at most (n - 1) ulp
    of d, so the two results may differ by that much more."""
    x, axis = case
    calls = {
        "softmax": lambda a, **k: softce.softmax(a, axis, **k),
        "log_softmax": lambda a, **k: softce.log_softmax(a, axis, **k),
        "sigmoid": lambda a, **k: softce.sigmoid(a, **k),
        "softmax_vjp": lambda a, **k: softce.softmax_vjp(a, a, axis, **k),
        "log_softmax_vjp": lambda a, **k: softce.log_softmax_vjp(a, a, axis, **k),
        "cross_entropy_grad": lambda a, **k: softce.cross_entropy_grad(
            a, np.zeros(np.delete(a.shape, axis % a.ndim), np.int64), axis=axis,
            reduction="sum", **k)[1],
    }
    call = calls[name]
    want = call(np.ascontiguousarray(x))
    np.testing.assert_array_equal(call(x), want)
    out = _layout(np.full(x.shape, 9.0, x.dtype), out_layout)
    assert call(x, out=out) is out
    np.testing.assert_array_equal(out, want)
    x2 = x.copy()
    assert call(x2, out=x2) is x2  # in place
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(x2), finite)
    np.testing.assert_array_equal(x2[~finite], want[~finite])
    n = x.shape[axis % x.ndim] if x.ndim and name != "sigmoid" else 1
    np.testing.assert_array_max_ulp(x2[finite], want[finite], maxulp=2 + 2 * (n - 1))


@given(cases(max_n=40, masks=False), st.integers(0, 2**32 - 1))
def test_shift_and_permutation(case, seed) -> None:
    """softmax(x + c) = softmax(x); permuting the classes permutes every output."""
    x, axis = case
    ax = axis % x.ndim
    c = x.dtype.type(np.random.default_rng(seed).choice([-3.0, 0.5, 8.0]))
    s = softce.softmax(x, axis)
    _close(softce.softmax(x + c, axis), s, x, axis, scale=1 + _scale(x))
    perm = np.random.default_rng(seed).permutation(x.shape[ax])
    xp = np.take(x, perm, axis=ax)
    np.testing.assert_allclose(softce.softmax(xp, axis), np.take(s, perm, axis=ax),
                               rtol=1e-5 if x.dtype == F32 else 1e-13, atol=0)
    _close(softce.logsumexp(xp, axis), softce.logsumexp(x, axis), x, axis, scale=_scale(x))


@given(cases(max_n=30, masks=False), st.data())
def test_nan_reaches_only_its_row(case, data) -> None:
    x, axis = case
    assume(x.size > 0)
    ax = axis % x.ndim
    x = np.array(x)
    idx = tuple(data.draw(st.integers(0, d - 1)) for d in x.shape)
    x[idx] = np.nan
    bad_row = idx[:ax] + idx[ax + 1:]
    for res in (softce.softmax(x, axis), softce.log_softmax(x, axis),
                softce.softmax_vjp(softce.softmax(x, axis), np.ones_like(x), axis)):
        moved = np.moveaxis(res, ax, -1)
        assert np.all(np.isnan(moved[bad_row]))
        others = np.ones(moved.shape[:-1], bool)
        others[bad_row] = False
        assert not np.isnan(moved[others]).any()
    lse = softce.logsumexp(x, axis)
    assert np.isnan(lse[bad_row]) and np.isnan(lse).sum() == 1
    loss = softce.cross_entropy(x, np.zeros(lse.shape, np.int64), axis=axis, reduction="none")
    assert np.isnan(loss[bad_row]) and np.isnan(loss).sum() == 1
