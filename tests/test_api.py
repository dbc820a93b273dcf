"""The public API against the hand-written NumPy references in tests/reference.py.

Covers dtypes in and out, every axis (the (N, C, d1, d2) PyTorch layout included), non-contiguous
and negative-stride inputs, rows of length 1, zero rows, out= buffers (in place included), -inf
masks and NaN on every kernel, and that inputs are never mutated.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import reference as ref
from reference import assert_close

import softce
from softce import functions, losses

F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]


def randn(shape, dtype=F64, seed=0, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def probs(shape, dtype=F64, seed=1, axis=-1):
    return ref.softmax(randn(shape, F64, seed), axis=axis).astype(dtype)


def labels(batch_shape, n, seed=2):
    return np.random.default_rng(seed).integers(0, n, size=batch_shape)


def scale_of(x) -> float:
    """The size of the largest finite input: absolute errors of x - LSE grow with it."""
    fin = np.abs(np.asarray(x, F64))[np.isfinite(x)]
    return max(1.0, float(fin.max())) if fin.size else 1.0


def test_the_package_exports_the_api() -> None:
    for module, names in ((functions, ("softmax", "log_softmax", "logsumexp", "logsumexp_vjp",
                                       "sigmoid", "entropy", "softmax_vjp", "log_softmax_vjp",
                                       "softmax_jacobian", "softmax_entropy",
                                       "softmax_entropy_grad")),
                          (losses, ("cross_entropy", "cross_entropy_grad", "nll_loss"))):
        for name in names:
            assert getattr(softce, name) is getattr(module, name)
            assert name in softce.__all__


def test_raw_kernels_are_importable_and_compute() -> None:
    from softce.generated.cpu import log_softmax_f64, softmax_f32
    x = randn((3, 4), F32)
    out = np.empty_like(x)
    softmax_f32(x, out)
    assert_close(out, ref.softmax(x), F32)
    x64 = randn((3, 4), F64)
    out64 = np.empty_like(x64)
    log_softmax_f64(x64, out64)
    assert_close(out64, ref.log_softmax(x64), F64)


# every function, every dtype, every axis ------------------------------------------------------

SHAPES_AXES = [((7,), 0), ((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1), ((2, 3, 4), -3),
               ((2, 5, 3, 2), 1), ((3, 1, 4), 1), ((2, 3, 4, 5), -1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
def test_row_functions_match_the_references(shape, axis, dtype) -> None:
    x = randn(shape, dtype, seed=hash((shape, axis)) % 1000)
    s = scale_of(x)
    for fn, want in ((softce.softmax, ref.softmax), (softce.log_softmax, ref.log_softmax)):
        got = fn(x, axis)
        assert got.dtype == dtype and got.shape == shape
        assert_close(got, want(x, axis), dtype, scale=s)
    lse = softce.logsumexp(x, axis)
    assert lse.dtype == dtype
    assert_close(lse, ref.logsumexp(x, axis), dtype, scale=s)
    lse_k = softce.logsumexp(x, axis, keepdims=True)
    assert_close(lse_k, ref.logsumexp(x, axis, keepdims=True), dtype, scale=s)
    assert lse_k.shape == np.expand_dims(lse, axis).shape

    g = randn(shape, dtype, seed=5)
    y = softce.softmax(x, axis)
    got = softce.softmax_vjp(y, g, axis)
    assert got.dtype == dtype
    assert_close(got, ref.softmax_vjp(y, g, axis), dtype, scale=s)
    ly = softce.log_softmax(x, axis)
    got = softce.log_softmax_vjp(ly, g, axis)
    assert got.dtype == dtype
    assert_close(got, ref.log_softmax_vjp(ly, g, axis), dtype, scale=s)
    w = randn(lse.shape, dtype, seed=6)
    got = softce.logsumexp_vjp(x, w, axis)
    assert got.dtype == dtype and got.shape == shape
    assert_close(got, ref.logsumexp_vjp(x, w, axis), dtype, scale=s)

    jac = softce.softmax_jacobian(x, axis)
    n = shape[axis]
    batch = tuple(d for q, d in enumerate(shape) if q != axis % len(shape))
    assert jac.dtype == dtype and jac.shape == batch + (n, n)
    assert_close(jac, ref.softmax_jacobian(x, axis), dtype)

    p = probs(shape, dtype, axis=axis)
    for base in (None, 2, np.e, 10.0, 0.5):
        h = softce.entropy(p, axis, base)
        assert h.dtype == dtype and h.shape == batch
        assert_close(h, ref.entropy(p, axis, base), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_matches_the_reference_and_formula_2(dtype) -> None:
    x = np.concatenate([randn((50,), dtype, 3, 10.0),
                        np.array([0, -0.0, 1e-30, -1e-30, 15, -15, 40, -40, 88, -88, 100, -100,
                                  700, -700, 1e30, -1e30], dtype)]).astype(dtype)
    got = softce.sigmoid(x)
    assert got.dtype == dtype and got.shape == x.shape
    assert_close(got, ref.sigmoid(x), dtype)
    # (2): sigmoid(x) = softmax([x, 0])_1, through softce's own softmax on axis 0
    pair = np.stack([x, np.zeros_like(x)])
    assert_close(got, softce.softmax(pair, axis=0)[0], dtype)
    for shape in ((), (3, 4), (2, 3, 2)):
        z = randn(shape, dtype, 4)
        r = softce.sigmoid(z)
        assert r.shape == shape and r.dtype == dtype
        assert_close(r, ref.sigmoid(z), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_extremes(dtype) -> None:
    x = np.array([-np.inf, np.inf, np.nan, 0.0], dtype)
    got = softce.sigmoid(x)
    assert got[0] == 0 and got[1] == 1 and np.isnan(got[2]) and got[3] == 0.5
    big = softce.sigmoid(np.array([-1e4, 1e4], dtype))
    assert big[0] == 0 and big[1] == 1


def test_entropy_values_from_the_note() -> None:
    # H(1/2, 1/4, 1/4) = 1.5 bits, H(0, 1) = 0, the uniform distribution is the maximum
    assert softce.entropy(np.array([0.5, 0.25, 0.25]), base=2) == pytest.approx(1.5, rel=1e-15)
    assert softce.entropy(np.array([0.0, 1.0]), base=2) == 0
    assert softce.entropy(np.array([0.0, 0.0, 1.0], F32)) == 0
    for n in (2, 3, 7):
        u = np.full(n, 1 / n)
        assert softce.entropy(u) == pytest.approx(np.log(n), rel=1e-14)
        others = probs((20, n), seed=n)
        assert np.all(softce.entropy(others) <= np.log(n) + 1e-15)
    # a negative entry gives NaN (documented), a zero gives 0 log 0 = 0
    h = softce.entropy(np.array([[-0.1, 1.1], [0.0, 1.0]]))
    assert np.isnan(h[0]) and h[1] == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_at_least_the_entropy(dtype) -> None:
    """(7): H(P|Q) >= H(P), with equality exactly when Q = P."""
    p = probs((30, 6), dtype, seed=7)
    logq = randn((30, 6), dtype, 8)
    ce = softce.cross_entropy(logq, p, reduction="none")
    assert np.all(ce >= softce.entropy(p) - 1e-5)
    ce_self = softce.cross_entropy(np.log(p), p, reduction="none")
    assert_close(ce_self, softce.entropy(p), dtype, scale=10)


# cross-entropy ---------------------------------------------------------------------------------

CE_LAYOUTS = [((6, 5), -1), ((6, 5), 1), ((5, 6), 0), ((7,), 0), ((2, 4, 3, 2), 1),
              ((2, 3, 2, 4), -1), ((3, 4, 5), 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape, axis", CE_LAYOUTS)
def test_cross_entropy_with_labels(shape, axis, reduction, dtype) -> None:
    ax = axis % len(shape)
    x = randn(shape, dtype, seed=len(shape) + ax)
    batch = shape[:ax] + shape[ax + 1:]
    for label_dtype in (np.int64, np.int32, np.uint8, np.int16):
        c = labels(batch, shape[ax], seed=ax).astype(label_dtype)
        want_loss, want_grad = ref.cross_entropy_grad(x, c, ax, reduction)
        loss = softce.cross_entropy(x, c, axis=axis, reduction=reduction)
        assert loss.dtype == dtype and np.shape(loss) == np.shape(want_loss)
        assert_close(loss, want_loss, dtype, scale=scale_of(x))
        loss2, grad = softce.cross_entropy_grad(x, c, axis=axis, reduction=reduction)
        assert loss2.dtype == grad.dtype == dtype and grad.shape == shape
        assert_close(loss2, want_loss, dtype, scale=scale_of(x))
        assert_close(grad, want_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape, axis", CE_LAYOUTS)
def test_cross_entropy_with_probabilities(shape, axis, reduction, dtype) -> None:
    x = randn(shape, dtype, seed=11)
    normalised = probs(shape, dtype, seed=12, axis=axis)
    unnormalised = np.random.default_rng(13).uniform(0, 2, shape).astype(dtype)  # sum(y) != 1
    for y in (normalised, unnormalised, normalised.astype(F64 if dtype == F32 else F32)):
        want_loss, want_grad = ref.cross_entropy_grad(x, y.astype(dtype), axis, reduction)
        loss = softce.cross_entropy(x, y, axis=axis, reduction=reduction)
        assert loss.dtype == dtype
        assert_close(loss, want_loss, dtype, scale=10 * scale_of(x))
        loss2, grad = softce.cross_entropy_grad(x, y, axis=axis, reduction=reduction)
        assert grad.dtype == dtype and grad.shape == shape
        assert_close(loss2, want_loss, dtype, scale=10 * scale_of(x))
        assert_close(grad, want_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_grad_output(dtype) -> None:
    shape, axis = (2, 4, 3, 2), 1
    x = randn(shape, dtype, 21)
    c = labels((2, 3, 2), 4, 22)
    y = probs(shape, dtype, 23, axis=axis)
    for target in (c, y):
        for reduction, go in (("mean", 2.5), ("sum", -0.75), ("mean", np.float32(3)),
                              ("sum", np.array(0.5)), ("none", 1.5),
                              ("none", randn((2, 3, 2), dtype, 24)),
                              ("mean", 2), ("none", np.arange(12).reshape(2, 3, 2))):
            want_loss, want_grad = ref.cross_entropy_grad(x, target, axis, reduction, go)
            loss, grad = softce.cross_entropy_grad(x, target, axis=axis, reduction=reduction,
                                                   grad_output=go)
            assert_close(loss, want_loss, dtype, scale=10)
            assert_close(grad, want_grad, dtype, scale=10)


def test_mean_divides_by_every_position_of_a_k_dim_layout() -> None:
    """As F.cross_entropy: "mean" over N * d1 * d2, not over N."""
    x = randn((2, 3, 4, 5), F64, 31)
    c = labels((2, 4, 5), 3, 32)
    none = softce.cross_entropy(x, c, axis=1, reduction="none")
    assert none.shape == (2, 4, 5)
    assert_close(softce.cross_entropy(x, c, axis=1), none.sum() / 40, F64)
    assert_close(softce.cross_entropy(x, c, axis=1, reduction="sum"), none.sum(), F64)
    _, g_mean = softce.cross_entropy_grad(x, c, axis=1)
    _, g_none = softce.cross_entropy_grad(x, c, axis=1, reduction="none")
    assert_close(g_mean, g_none / 40, F64)
    # the gradient of each position sums to 0 over the classes (labels, sum(y) = 1)
    assert np.all(np.abs(g_none.sum(axis=1)) < 1e-15)


# layouts -------------------------------------------------------------------------------------

def _strided_views(base: np.ndarray):
    """Non-contiguous and negative-stride views of a 3-d array (with their own names)."""
    return {
        "transposed": base.transpose(2, 0, 1),
        "reversed": base[::-1, :, ::-1],
        "stepped": base[:, ::2, 1::2],
        "negative_step": base[::-2, ::-1, :],
        "fortran": np.asfortranarray(base),
        "broadcast": np.broadcast_to(base[:1], base.shape),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_non_contiguous_and_negative_stride_inputs(axis, dtype) -> None:
    base = randn((4, 6, 6), dtype, 41)
    for name, x in _strided_views(base).items():
        msg = f"{name}, axis={axis}"
        assert_close(softce.softmax(x, axis), ref.softmax(x, axis), dtype, err_msg=msg)
        assert_close(softce.log_softmax(x, axis), ref.log_softmax(x, axis), dtype, scale=10,
                     err_msg=msg)
        assert_close(softce.logsumexp(x, axis), ref.logsumexp(x, axis), dtype, scale=10,
                     err_msg=msg)
        assert_close(softce.sigmoid(x), ref.sigmoid(x), dtype, err_msg=msg)
        y = softce.softmax(x, axis)
        assert_close(softce.softmax_vjp(y, x, axis), ref.softmax_vjp(y, x, axis), dtype,
                     scale=10, err_msg=msg)
        assert_close(softce.log_softmax_vjp(x, x[::-1][::-1], axis),
                     ref.log_softmax_vjp(x, x, axis), dtype, scale=10, err_msg=msg)
        assert_close(softce.softmax_jacobian(x, axis), ref.softmax_jacobian(x, axis), dtype,
                     err_msg=msg)
        p = ref.softmax(x, axis).astype(dtype)[::-1]
        assert_close(softce.entropy(p, axis), ref.entropy(p, axis), dtype, err_msg=msg)
        ax = axis % 3
        batch = x.shape[:ax] + x.shape[ax + 1:]
        c = labels(batch, x.shape[ax], 42)
        c_view = np.ascontiguousarray(c.T).T  # a non-contiguous label array
        for target in (c, c_view, p[::-1]):
            want = ref.cross_entropy_grad(x, target, ax, "none")
            loss, grad = softce.cross_entropy_grad(x, target, axis=axis, reduction="none")
            assert_close(loss, want[0], dtype, scale=10, err_msg=msg)
            assert_close(grad, want[1], dtype, err_msg=msg)
            assert_close(softce.cross_entropy(x, target, axis=axis, reduction="sum"),
                         want[0].sum(), dtype, scale=100, err_msg=msg)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_of_length_1(dtype) -> None:
    x = randn((5, 1), dtype, 51)
    np.testing.assert_array_equal(softce.softmax(x), np.ones_like(x))
    np.testing.assert_array_equal(softce.log_softmax(x), np.zeros_like(x))
    assert_close(softce.logsumexp(x), x[:, 0], dtype)
    np.testing.assert_array_equal(softce.softmax_jacobian(x), np.zeros((5, 1, 1), dtype))
    g = randn((5, 1), dtype, 52)
    assert_close(softce.softmax_vjp(np.ones_like(x), g), np.zeros_like(x), dtype)
    assert_close(softce.log_softmax_vjp(np.zeros_like(x), g), np.zeros_like(x), dtype)
    assert_close(softce.logsumexp_vjp(x, g[:, 0]), g, dtype)
    np.testing.assert_array_equal(softce.entropy(np.ones_like(x)), np.zeros(5, dtype))
    c = np.zeros(5, np.int64)
    loss, grad = softce.cross_entropy_grad(x, c, reduction="none")
    assert_close(loss, np.zeros(5), dtype)
    assert_close(grad, np.zeros_like(x), dtype)
    loss, grad = softce.cross_entropy_grad(x, np.full_like(x, 0.5), reduction="sum")
    assert_close(loss, 0.0, dtype)
    assert_close(grad, np.full_like(x, 0.5 * (0.5 - 0.5)), dtype)
    # a class axis of length 1 in the middle of a K-dim layout
    xk = randn((2, 1, 3), dtype, 53)
    loss = softce.cross_entropy(xk, np.zeros((2, 3), np.int64), axis=1, reduction="none")
    assert_close(loss, np.zeros((2, 3)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_rows(dtype) -> None:
    for shape, axis in (((0, 4), -1), ((0, 4), 1), ((2, 0, 3), 0), ((3, 0), 0)):
        x = np.zeros(shape, dtype)
        ax = axis % len(shape)
        batch = shape[:ax] + shape[ax + 1:]
        n = shape[ax]
        for fn in (softce.softmax, softce.log_softmax):
            r = fn(x, axis)
            assert r.shape == shape and r.dtype == dtype
        assert softce.logsumexp(x, axis).shape == batch
        assert softce.entropy(x, axis).shape == batch
        assert softce.softmax_jacobian(x, axis).shape == batch + (n, n)
        assert softce.softmax_vjp(x, x, axis).shape == shape
        assert softce.log_softmax_vjp(x, x, axis).shape == shape
        lv = softce.logsumexp_vjp(x, np.zeros(batch, dtype), axis)
        assert lv.shape == shape and lv.dtype == dtype
        lv = softce.logsumexp_vjp(x, 1.0, axis)
        assert lv.shape == shape and lv.dtype == dtype
        assert softce.sigmoid(x).shape == shape
        c = np.zeros(batch, np.int64)
        for target in (c, x):
            none = softce.cross_entropy(x, target, axis=axis, reduction="none")
            assert none.shape == batch and none.dtype == dtype
            assert softce.cross_entropy(x, target, axis=axis, reduction="sum") == 0
            assert np.isnan(softce.cross_entropy(x, target, axis=axis))  # as PyTorch
            for reduction in ("none", "mean", "sum"):
                loss, grad = softce.cross_entropy_grad(x, target, axis=axis,
                                                       reduction=reduction)
                assert grad.shape == shape and grad.dtype == dtype
                assert np.shape(loss) == (batch if reduction == "none" else ())


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_class_axis(dtype) -> None:
    """Rows of no classes: LSE is -inf (log of an empty sum), entropy 0, softmax empty."""
    x = np.zeros((3, 0), dtype)
    lse = softce.logsumexp(x)
    assert lse.shape == (3,) and np.all(lse == -np.inf)
    assert softce.softmax(x).shape == (3, 0)
    np.testing.assert_array_equal(softce.entropy(x), np.zeros(3, dtype))
    assert softce.softmax_jacobian(x).shape == (3, 0, 0)


# out= ----------------------------------------------------------------------------------------

def _out_cases(x, axis):
    g = x[..., ::-1].copy()
    y = ref.softmax(x, axis).astype(x.dtype)
    ly = ref.log_softmax(x, axis).astype(x.dtype)
    return {
        "softmax": (lambda out: softce.softmax(x, axis, out=out), ref.softmax(x, axis)),
        "log_softmax": (lambda out: softce.log_softmax(x, axis, out=out),
                        ref.log_softmax(x, axis)),
        "sigmoid": (lambda out: softce.sigmoid(x, out=out), ref.sigmoid(x)),
        "softmax_vjp": (lambda out: softce.softmax_vjp(y, g, axis, out=out),
                        ref.softmax_vjp(y, g, axis)),
        "log_softmax_vjp": (lambda out: softce.log_softmax_vjp(ly, g, axis, out=out),
                            ref.log_softmax_vjp(ly, g, axis)),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("layout", ["c", "fortran", "strided", "negative"])
def test_out_buffers(layout, axis, dtype) -> None:
    x = randn((4, 5, 3), dtype, 61)
    for name, (call, want) in _out_cases(x, axis).items():
        big = np.full((8, 10, 6), 9.0, dtype)
        out = {"c": np.full(x.shape, 9.0, dtype),
               "fortran": np.asfortranarray(np.full(x.shape, 9.0, dtype)),
               "strided": big[::2, ::2, ::2],
               "negative": big[:4, 5:, :3][::-1, ::-1]}[layout]
        res = call(out)
        assert res is out, name
        assert_close(out, want, dtype, scale=10, err_msg=name)
        if layout in ("strided", "negative"):  # nothing written outside the view
            mask = np.ones(big.shape, bool)
            mask[::2, ::2, ::2] = False
            if layout == "negative":
                mask = np.ones(big.shape, bool)
                mask[:4, 5:, :3] = False
            assert np.all(big[mask] == 9.0), name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0])
def test_in_place_out_equals_input(axis, dtype) -> None:
    x0 = randn((5, 7), dtype, 62)
    for fn, want in ((softce.softmax, ref.softmax), (softce.log_softmax, ref.log_softmax)):
        x = x0.copy()
        res = fn(x, axis, out=x)
        assert res is x
        assert_close(x, want(x0, axis), dtype, scale=10)
    x = x0.copy()
    assert softce.sigmoid(x, out=x) is x
    assert_close(x, ref.sigmoid(x0), dtype)
    y0 = ref.softmax(x0, axis).astype(dtype)
    g0 = randn((5, 7), dtype, 63)
    for which in ("y", "g"):
        y, g = y0.copy(), g0.copy()
        out = y if which == "y" else g
        assert softce.softmax_vjp(y, g, axis, out=out) is out
        assert_close(out, ref.softmax_vjp(y0, g0, axis), dtype, err_msg=which)
        ly, g = np.log(y0), g0.copy()
        ly0 = ly.copy()
        out = ly if which == "y" else g
        assert softce.log_softmax_vjp(ly, g, axis, out=out) is out
        assert_close(out, ref.log_softmax_vjp(ly0, g0, axis), dtype, err_msg=which)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape, axis", [((6, 5), -1), ((2, 4, 3, 2), 1), ((5, 6), 0)])
def test_cross_entropy_grad_out_logits_in_place(shape, axis, reduction, dtype) -> None:
    """out=logits: the loss is computed from the logits before the gradient overwrites them."""
    x0 = randn(shape, dtype, 71)
    ax = axis % len(shape)
    c = labels(shape[:ax] + shape[ax + 1:], shape[ax], 72)
    y = probs(shape, dtype, 73, axis=axis)
    for target in (c, y):
        want_loss, want_grad = ref.cross_entropy_grad(x0, target, ax, reduction)
        x = x0.copy()
        loss, grad = softce.cross_entropy_grad(x, target, axis=axis, reduction=reduction, out=x)
        assert grad is x
        assert_close(loss, want_loss, dtype, scale=10)
        assert_close(x, want_grad, dtype)
        # and into a separate, non-contiguous buffer
        big = np.full((2 * shape[0],) + shape[1:], 5.0, dtype)
        out = big[::-2]
        loss, grad = softce.cross_entropy_grad(x0, target, axis=axis, reduction=reduction,
                                               out=out)
        assert grad is out
        assert_close(out, want_grad, dtype)
        assert np.all(big[::-1][1::2] == 5.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_in_place_on_non_contiguous_arrays(axis, dtype) -> None:
    base = randn((6, 5, 4), dtype, 76)
    for name, view in _strided_views(base).items():
        if not view.flags.writeable:
            continue
        x0 = view.copy()
        for fn, want in ((softce.softmax, ref.softmax), (softce.log_softmax, ref.log_softmax)):
            view[...] = x0
            assert fn(view, axis, out=view) is view
            assert_close(view, want(x0, axis), dtype, scale=10, err_msg=name)
        view[...] = x0
        ax = axis % 3
        c = labels(x0.shape[:ax] + x0.shape[ax + 1:], x0.shape[ax], 77)
        loss, grad = softce.cross_entropy_grad(view, c, axis=axis, out=view)
        want_loss, want_grad = ref.cross_entropy_grad(x0, c, ax)
        assert grad is view
        assert_close(loss, want_loss, dtype, scale=10, err_msg=name)
        assert_close(view, want_grad, dtype, err_msg=name)


def test_out_equal_to_target_probabilities_is_refused_or_right() -> None:
    """out=target (probabilities) may only be the exact array; the result must be right."""
    x = randn((4, 5), F64, 74)
    y0 = probs((4, 5), F64, 75)
    y = y0.copy()
    want = ref.cross_entropy_grad(x, y0, -1, "sum")
    try:
        loss, grad = softce.cross_entropy_grad(x, y, reduction="sum", out=y)
    except ValueError as exc:
        assert "out" in str(exc)
        np.testing.assert_array_equal(y, y0)
    else:
        assert grad is y
        assert_close(loss, want[0], F64)
        assert_close(grad, want[1], F64)


# inputs are not mutated ----------------------------------------------------------------------

def test_inputs_are_not_mutated() -> None:
    rng = np.random.default_rng(81)
    x = rng.standard_normal((3, 4, 5))
    x[0, 1, 2] = -np.inf
    xt = x.transpose(1, 0, 2)
    g = rng.standard_normal((3, 4, 5))
    p = ref.softmax(x)
    c = labels((3, 4), 5)
    cw = labels((3, 5), 4)
    go = rng.standard_normal((3, 4))
    keep = {k: v.copy() for k, v in dict(x=x, g=g, p=p, c=c, cw=cw, go=go).items()}
    for axis in (-1, 1):
        softce.softmax(x, axis)
        softce.softmax(xt, axis)
        softce.log_softmax(x, axis)
        softce.logsumexp(x, axis)
        softce.sigmoid(x)
        softce.entropy(p, axis)
        softce.entropy(p, axis, base=2)
        softce.softmax_vjp(p, g, axis)
        softce.log_softmax_vjp(softce.log_softmax(x), g, axis)
        softce.softmax_jacobian(x, axis)
    softce.logsumexp_vjp(x, go)
    softce.cross_entropy(x, c)
    softce.cross_entropy(x, p, reduction="sum")
    softce.cross_entropy(x, cw, axis=1)
    softce.cross_entropy_grad(x, c, reduction="none", grad_output=go)
    softce.cross_entropy_grad(x, p)
    softce.cross_entropy_grad(x, cw, axis=1, reduction="sum")
    for k, v in dict(x=x, g=g, p=p, c=c, cw=cw, go=go).items():
        np.testing.assert_array_equal(v, keep[k], err_msg=k)
    np.testing.assert_array_equal(xt, keep["x"].transpose(1, 0, 2))


def test_results_do_not_alias_inputs() -> None:
    x = randn((3, 4), F64, 82)
    for res in (softce.softmax(x), softce.log_softmax(x), softce.sigmoid(x),
                softce.softmax_vjp(x, x), softce.cross_entropy_grad(x, np.array([0, 1, 2]))[1]):
        assert not np.shares_memory(res, x)


def test_array_likes_are_accepted() -> None:
    rows = [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]
    assert_close(softce.softmax(rows), ref.softmax(np.array(rows)), F64)
    assert_close(softce.cross_entropy(rows, [2, 0]), ref.cross_entropy(np.array(rows),
                                                                       np.array([2, 0])), F64)
    assert_close(softce.sigmoid(0.25), ref.sigmoid(0.25), F64)


# -inf masks on every kernel ------------------------------------------------------------------

def _masked(dtype):
    """Rows with some -inf (first three), one all -inf (row 3), one clean (row 4)."""
    x = randn((5, 6), dtype, 91)
    x[0, [1, 4]] = -np.inf
    x[1, 0] = -np.inf
    x[2, :5] = -np.inf  # only one finite entry
    x[3, :] = -np.inf
    return x


@pytest.mark.parametrize("dtype", DTYPES)
def test_minus_inf_masks_softmax_family(dtype) -> None:
    x = _masked(dtype)
    part = x[[0, 1, 2, 4]]
    s = softce.softmax(x)
    assert_close(s[[0, 1, 2, 4]], ref.softmax(part), dtype)
    assert np.all(s[x == -np.inf][:-6] == 0)
    assert np.all(np.isnan(s[3]))  # as PyTorch: 0/0
    ls = softce.log_softmax(x)
    assert np.all(np.isnan(ls[3]))
    assert np.all(ls[[0, 1, 2, 4]][np.isneginf(part)] == -np.inf)
    assert_close(ls[[0, 1, 2, 4]], ref.log_softmax(part), dtype, scale=10)
    assert ls[2, 5] == 0  # a single finite entry has log-probability 0
    lse = softce.logsumexp(x)
    assert lse[3] == -np.inf
    assert_close(lse, ref.logsumexp(x), dtype, scale=10)
    assert_close(softce.logsumexp(x, keepdims=True), ref.logsumexp(x, keepdims=True), dtype,
                 scale=10)
    # along the other axis too (a masked column of a transposed layout)
    assert_close(softce.softmax(x.T[:, [0, 1, 2, 4]], 0), ref.softmax(part.T, 0), dtype)
    assert_close(softce.logsumexp(x.T, 0), ref.logsumexp(x, -1), dtype, scale=10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_minus_inf_masks_vjps_and_jacobian(dtype) -> None:
    x = _masked(dtype)
    part = x[[0, 1, 2, 4]]
    g = randn(part.shape, dtype, 92)
    y = softce.softmax(part)
    assert_close(softce.softmax_vjp(y, g), ref.softmax_vjp(y, g), dtype, scale=10)
    assert np.isfinite(softce.softmax_vjp(y, g)).all()
    ly = softce.log_softmax(part)
    got = softce.log_softmax_vjp(ly, g)
    assert np.isfinite(got).all()
    assert_close(got, ref.log_softmax_vjp(ly, g), dtype, scale=10)
    np.testing.assert_array_equal(got[np.isneginf(ly)], g[np.isneginf(ly)])
    w = randn((5,), dtype, 93)
    lv = softce.logsumexp_vjp(x, w)
    assert np.all(np.isnan(lv[3]))
    assert_close(lv[[0, 1, 2, 4]], ref.logsumexp_vjp(part, w[[0, 1, 2, 4]]), dtype)
    jac = softce.softmax_jacobian(x)
    assert np.isfinite(jac[[0, 1, 2, 4]]).all()
    assert_close(jac[[0, 1, 2, 4]], ref.softmax_jacobian(part), dtype)
    assert np.all(np.isnan(jac[3]))
    np.testing.assert_array_equal(softce.sigmoid(x)[np.isneginf(x)], 0)
    # entropy of the masked softmax: the zeros are 0 log 0 = 0
    h = softce.entropy(y)
    assert np.isfinite(h).all()
    assert_close(h, ref.entropy(y), dtype)
    for base in (2, 10):
        assert_close(softce.entropy(y, base=base), ref.entropy(y, base=base), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_minus_inf_masks_cross_entropy_labels(reduction, dtype) -> None:
    x = _masked(dtype)
    part = x[[0, 1, 2, 4]]
    c = np.array([0, 3, 5, 2])  # labels on finite logits
    want = ref.cross_entropy_grad(part, c, -1, reduction)
    assert_close(softce.cross_entropy(part, c, reduction=reduction), want[0], dtype, scale=10)
    loss, grad = softce.cross_entropy_grad(part, c, reduction=reduction)
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    assert_close(loss, want[0], dtype, scale=10)
    assert_close(grad, want[1], dtype)
    # a label on a masked logit has infinite loss (as PyTorch); the gradient stays finite
    loss = softce.cross_entropy(part[:1], np.array([1]), reduction=reduction)
    assert np.all(loss == np.inf)
    # a row of -inf: NaN loss (-inf - -inf), NaN gradient row
    loss, grad = softce.cross_entropy_grad(x, np.array([0, 3, 5, 1, 2]), reduction="none")
    assert np.isnan(loss[3]) and np.all(np.isnan(grad[3]))
    assert np.isfinite(loss[[0, 1, 2, 4]]).all() and np.isfinite(grad[[0, 1, 2, 4]]).all()


def _masked_probabilities(dtype):
    """Masked logits and probability targets that are zero wherever a logit is -inf."""
    part = _masked(dtype)[[0, 1, 2, 4]]
    y = ref.softmax(randn(part.shape, F64, 94) + np.where(np.isneginf(part), -np.inf, 0))
    y = y.astype(dtype)
    assert np.all(y[np.isneginf(part)] == 0)
    return part, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_minus_inf_masks_cross_entropy_probabilities_gradient(reduction, dtype) -> None:
    part, y = _masked_probabilities(dtype)
    _, want = ref.cross_entropy_grad(part, y, -1, reduction)
    _, grad = softce.cross_entropy_grad(part, y, reduction=reduction)
    assert np.isfinite(grad).all()
    assert_close(grad, want, dtype)
    np.testing.assert_array_equal(grad[np.isneginf(part)], 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_minus_inf_masks_cross_entropy_probabilities_loss(reduction, dtype) -> None:
    """Probability targets that are zero where the logits are masked: each such term is
    0 * (LSE - (-inf)), whose limit is 0 (as 0 log 0 = 0), so the loss is finite.

    PyTorch computes -sum(y * log_softmax(x)) and gives NaN here (0 * -inf); the kernels sum
    D8's guarded x.y, whose y_i = 0 terms are their limit 0.
    """
    part, y = _masked_probabilities(dtype)
    want, _ = ref.cross_entropy_grad(part, y, -1, reduction)
    loss, _ = softce.cross_entropy_grad(part, y, reduction=reduction)
    assert np.isfinite(loss).all(), loss
    assert_close(loss, want, dtype, scale=10)
    assert_close(softce.cross_entropy(part, y, reduction=reduction), want, dtype, scale=10)


# NaN propagates to its row -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0])
def test_nan_propagates_to_its_row_only(axis, dtype) -> None:
    x = randn((4, 5), dtype, 101)
    if axis == -1:
        x[1, 3] = np.nan
        bad, good = (1,), [0, 2, 3]
    else:
        x = x.T.copy()  # (5, 4), columns are the rows
        x[3, 1] = np.nan
        bad, good = (1,), [0, 2, 3]

    def row(a, q):
        return np.take(a, q, axis=1 - (axis % 2)) if a.ndim == 2 else a[q]

    for res in (softce.softmax(x, axis), softce.log_softmax(x, axis),
                softce.logsumexp(x, axis), softce.logsumexp_vjp(x, 1.0, axis),
                softce.softmax_vjp(x, np.ones_like(x), axis),
                softce.softmax_vjp(np.where(np.isnan(x), 0.5, x), x, axis),
                softce.log_softmax_vjp(np.where(np.isnan(x), 0.5, x), x, axis)):
        assert np.all(np.isnan(row(res, bad[0])))
        for q in good:
            assert np.isfinite(row(res, q)).all()
    # g - exp(y) sum(g): a NaN in y reaches only its own element
    res = softce.log_softmax_vjp(x, np.ones_like(x), axis)
    assert_close(res, ref.log_softmax_vjp(x, np.ones_like(x), axis), dtype, scale=10)
    assert np.isnan(res).sum() == 1 and np.isnan(res[np.isnan(x)]).all()
    jac = softce.softmax_jacobian(x, axis)
    assert np.all(np.isnan(jac[1])) and np.isfinite(jac[good]).all()
    p = np.abs(x) / np.nansum(np.abs(x), axis=axis, keepdims=True)
    h = softce.entropy(p, axis)
    assert np.isnan(h[1]) and np.isfinite(h[good]).all()
    c = np.array([0, 1, 2, 3])
    for target in (c, p):
        loss, grad = softce.cross_entropy_grad(x, target, axis=axis, reduction="none")
        assert np.isnan(loss[1]) and np.all(np.isnan(row(grad, 1)))
        assert np.isfinite(loss[good]).all()
        for q in good:
            assert np.isfinite(row(grad, q)).all()
        assert np.isnan(softce.cross_entropy(x, target, axis=axis))
        assert np.isnan(softce.cross_entropy(x, target, axis=axis, reduction="sum"))
    # NaN in the probabilities poisons only that row
    q = probs(x.shape, dtype, 102, axis=axis)
    q[(2, 0) if axis == -1 else (0, 2)] = np.nan
    loss, grad = softce.cross_entropy_grad(np.nan_to_num(x), q, axis=axis, reduction="none")
    assert np.isnan(loss[2]) and np.isfinite(loss[[0, 1, 3]]).all()
    assert np.all(np.isnan(row(grad, 2)))
    s = softce.sigmoid(x)
    assert np.isnan(s).sum() == 1 and np.isnan(s[np.isnan(x)]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_logits_do_not_overflow(dtype) -> None:
    big = 80.0 if dtype == F32 else 700.0
    x = np.array([[big, big - 1, -big], [-big, -big - 2, -big - 1], [1e4, 0, -1e4]], dtype)
    for fn, want in ((softce.softmax, ref.softmax), (softce.log_softmax, ref.log_softmax)):
        got = fn(x)
        assert np.isfinite(got[:, :2]).all()
        assert_close(got, want(x), dtype, scale=1e4)
    assert_close(softce.logsumexp(x), ref.logsumexp(x), dtype, scale=1e4)
    loss, grad = softce.cross_entropy_grad(x, np.array([0, 2, 1]), reduction="none")
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    want = ref.cross_entropy_grad(x, np.array([0, 2, 1]), -1, "none")
    assert_close(loss, want[0], dtype, scale=1e4)
    assert_close(grad, want[1], dtype)


# against PyTorch: recorded outputs always, a live run where torch is installed ----------------

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TORCH_GRID = json.loads((FIXTURES / "torch_grid.json").read_text())["cases"]


def _torch_recorder():
    path = Path(__file__).resolve().parents[1] / "scripts" / "record_torch_fixtures.py"
    spec = importlib.util.spec_from_file_location("record_torch_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _case_id(case: dict) -> str:
    parts = [case["op"], case["dtype"], f"axis{case.get('axis', '')}",
             case.get("reduction", ""), case.get("target_kind", ""),
             f"mask-{case['mask']}" if case.get("mask") else "",
             "x".join(map(str, np.shape(case["x"])))]
    return "-".join(p for p in parts if p)


def check_against_torch(case: dict) -> None:
    """softce on the case's inputs equals torch's recorded values and gradients."""
    dtype = np.dtype(case["dtype"])
    x = np.array(case["x"], dtype)
    s = scale_of(x)
    op = case["op"]
    msg = _case_id(case)
    if op == "sigmoid":
        assert_close(softce.sigmoid(x), case["out"], dtype, err_msg=msg)
        return
    if op == "softmax_jacobian":
        assert_close(softce.softmax_jacobian(x), case["out"], dtype, err_msg=msg)
        return
    axis = case["axis"]
    if op in ("softmax", "log_softmax", "logsumexp"):
        go = np.array(case["grad_output"], dtype)
        out = getattr(softce, op)(x, axis)
        assert out.dtype == dtype
        assert_close(out, case["out"], dtype, scale=s, err_msg=msg)
        grad = {"softmax": lambda: softce.softmax_vjp(out, go, axis),
                "log_softmax": lambda: softce.log_softmax_vjp(out, go, axis),
                "logsumexp": lambda: softce.logsumexp_vjp(x, go, axis)}[op]()
        assert_close(grad, case["grad"], dtype, scale=s, err_msg=msg)
        return
    assert op == "cross_entropy"
    target = (np.array(case["target"], np.int64) if case["target_kind"] == "labels"
              else np.array(case["target"], dtype))
    reduction = case["reduction"]
    go = np.array(case["grad_output"], dtype)
    loss = softce.cross_entropy(x, target, axis=axis, reduction=reduction)
    assert loss.dtype == dtype and np.shape(loss) == np.shape(case["out"])
    assert_close(loss, case["out"], dtype, scale=10 * s, err_msg=msg)
    loss, grad = softce.cross_entropy_grad(x, target, axis=axis, reduction=reduction,
                                           grad_output=go)
    assert_close(loss, case["out"], dtype, scale=10 * s, err_msg=msg)
    assert_close(grad, case["grad"], dtype, scale=s, err_msg=msg)


def test_the_torch_grid_covers_the_cases_it_should() -> None:
    ops = {(c["op"], c["dtype"]) for c in TORCH_GRID}
    for dt in ("float32", "float64"):
        for op in ("softmax", "log_softmax", "logsumexp", "cross_entropy", "sigmoid",
                   "softmax_jacobian"):
            assert (op, dt) in ops
    ce = [c for c in TORCH_GRID if c["op"] == "cross_entropy"]
    assert {c["reduction"] for c in ce} == {"none", "mean", "sum"}
    assert {c["target_kind"] for c in ce} == {"labels", "probs", "unnormalised"}
    assert any(np.ndim(c["x"]) == 4 and c["axis"] == 1 for c in ce)
    assert any(c.get("mask") == "full" for c in TORCH_GRID if c["op"] == "softmax")


@pytest.mark.parametrize("case", TORCH_GRID, ids=_case_id)
def test_recorded_torch_outputs(case) -> None:
    check_against_torch(case)


def test_live_torch() -> None:
    torch = pytest.importorskip("torch")
    cases = _torch_recorder().grid_cases(torch)
    assert len(cases) == len(TORCH_GRID)
    for case in cases:
        check_against_torch(case)


def test_online_state_is_the_max_and_the_excess_and_merges_over_parts() -> None:
    """(m, s) with m = max x and s = sum exp(x - m) - 1 (D18); keepdims and tuple axes as the
    reductions take them; an empty axis is the identity (-inf, -1); the states of two halves
    of a row merge (generated/partitioned.py, D18's merge_s) into the whole row's."""
    from softce.generated import partitioned

    rng = np.random.default_rng(18)
    x = rng.standard_normal((5, 40))
    m, s = softce.online_state(x)
    np.testing.assert_array_equal(m, x.max(axis=1))
    np.testing.assert_allclose(s, np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1) - 1,
                               rtol=1e-14)
    mk, sk = softce.online_state(x, keepdims=True)
    assert mk.shape == sk.shape == (5, 1)
    m3, s3 = softce.online_state(x.reshape(5, 4, 10), axis=(1, 2))
    np.testing.assert_array_equal(m3, m)
    np.testing.assert_allclose(s3, s, rtol=1e-14)
    me, se = softce.online_state(np.zeros((3, 0)))
    assert (me == -np.inf).all() and (se == -1).all()
    (ma, sa), (mb, sb) = softce.online_state(x[:, :17]), softce.online_state(x[:, 17:])
    mm, sm = partitioned.merge(ma, sa, mb, sb)
    np.testing.assert_array_equal(mm, m)
    np.testing.assert_allclose(sm, s, rtol=1e-14)
    tied = np.array([[2.0, 2.0, -np.inf, 2.0]])
    assert softce.online_state(tied)[1][0] == 2.0  # the other maxima add exactly 1 each
