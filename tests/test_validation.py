"""Every argument is checked before a kernel runs: bad input raises a TypeError or ValueError
that names the argument, and nothing is written to ``out`` when a call fails."""

from __future__ import annotations

import re

import numpy as np
import pytest

import softce

X = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]])
P = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
LABELS = np.array([2, 0])

# every public function, called with one array argument replaced: (name, call(value), argument)
ARRAY_ARGUMENTS = [
    ("softmax", lambda v: softce.softmax(v), "x"),
    ("log_softmax", lambda v: softce.log_softmax(v), "x"),
    ("logsumexp", lambda v: softce.logsumexp(v), "x"),
    ("logsumexp_vjp/x", lambda v: softce.logsumexp_vjp(v, np.ones(2)), "x"),
    ("sigmoid", lambda v: softce.sigmoid(v), "x"),
    ("entropy", lambda v: softce.entropy(v), "p"),
    ("entropy/base", lambda v: softce.entropy(v, base=2), "p"),
    ("softmax_vjp/y", lambda v: softce.softmax_vjp(v, X), "y"),
    ("softmax_vjp/g", lambda v: softce.softmax_vjp(X, v), "g"),
    ("log_softmax_vjp/y", lambda v: softce.log_softmax_vjp(v, X), "y"),
    ("log_softmax_vjp/g", lambda v: softce.log_softmax_vjp(X, v), "g"),
    ("softmax_jacobian", lambda v: softce.softmax_jacobian(v), "x"),
    ("cross_entropy", lambda v: softce.cross_entropy(v, LABELS), "logits"),
    ("cross_entropy_grad", lambda v: softce.cross_entropy_grad(v, LABELS), "logits"),
]

BAD_DTYPES = [
    np.array([[1, 2, 3], [4, 5, 6]], np.int64),
    np.array([[1, 2, 3], [4, 5, 6]], np.int32),
    np.array([[1, 2, 3], [4, 5, 6]], np.uint8),
    np.array([[True, False, True], [False, False, True]]),
    np.array([[1 + 1j, 2, 3], [4, 5, 6]], np.complex128),
    np.array([[1, 2, 3], [4, 5, 6]], np.complex64),
    np.array([["a", "b", "c"], ["d", "e", "f"]]),
    np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], object),
    np.array([[1, 2, 3], [4, 5, 6]], np.longdouble) if np.dtype(np.longdouble).itemsize > 8
    else np.array([["1", "2", "3"], ["4", "5", "6"]], "S1"),
    [[1, 2, 3], [4, 5, 6]],  # a list of ints is an int array
    "a string",
    b"bytes",
    [[1.0, 2.0], [3.0]],  # ragged
]


def _raises_naming(error: type[Exception], name: str, call, *words: str) -> str:
    """call() raises ``error`` whose message names ``name`` (as a word) and the words."""
    with pytest.raises(error) as info:
        call()
    msg = str(info.value)
    assert re.search(rf"\b{re.escape(name)}\b", msg), f"{name!r} not named in: {msg}"
    for word in words:
        assert word in msg, f"{word!r} not in: {msg}"
    return msg


def _value_id(v: object) -> str:
    return str(v.dtype) if isinstance(v, np.ndarray) else type(v).__name__


@pytest.mark.parametrize("value", BAD_DTYPES, ids=_value_id)
@pytest.mark.parametrize("case", ARRAY_ARGUMENTS, ids=lambda c: c[0])
def test_non_float_input_is_a_type_error_naming_the_argument(case, value) -> None:
    _, call, name = case
    _raises_naming(TypeError, name, lambda: call(value))


@pytest.mark.parametrize("case", ARRAY_ARGUMENTS, ids=lambda c: c[0])
def test_float16_is_upcast_to_float32(case) -> None:
    """float16 is computed and returned as float32; a gradient g takes the dtype of the
    array it goes with (y, float64 here)."""
    _, call, name = case
    half = X.astype(np.float16) if name != "p" else P.astype(np.float16)
    res = call(half)
    for r in res if isinstance(res, tuple) else (res,):
        assert r.dtype == (np.float64 if name == "g" else np.float32)


def test_float16_results_match_float32() -> None:
    half = X.astype(np.float16)
    np.testing.assert_array_equal(softce.softmax(half), softce.softmax(half.astype(np.float32)))
    np.testing.assert_array_equal(softce.softmax_vjp(half, half),
                                  softce.softmax_vjp(half.astype(np.float32),
                                                     half.astype(np.float32)))
    loss, grad = softce.cross_entropy_grad(half, P.astype(np.float16))
    assert loss.dtype == grad.dtype == np.float32


@pytest.mark.parametrize("target", [
    np.array([2.0 + 0j, 0.0]), np.array(["a", "b"]), np.array([True, False]),
    np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], np.complex128)])
def test_target_of_an_unusable_dtype_is_a_type_error(target) -> None:
    for fn in (softce.cross_entropy, softce.cross_entropy_grad):
        _raises_naming(TypeError, "target", lambda fn=fn: fn(X, target))


@pytest.mark.parametrize("fn", [softce.cross_entropy, softce.cross_entropy_grad])
@pytest.mark.parametrize("labels, position, value", [
    (np.array([3, 0]), (0,), 3),
    (np.array([0, -1]), (1,), -1),
    (np.array([0, 7]), (1,), 7),
    (np.array([-5, 9]), (0,), -5),  # the first bad position, not the largest
    (np.array([0, 3], np.uint8), (1,), 3),
])
def test_labels_outside_the_classes_name_target_and_the_first_bad_position(
        fn, labels, position, value) -> None:
    msg = _raises_naming(ValueError, "target", lambda: fn(X, labels))
    assert str(position) in msg and str(value) in msg


@pytest.mark.parametrize("fn", [softce.cross_entropy, softce.cross_entropy_grad])
def test_bad_label_position_in_a_k_dim_layout(fn) -> None:
    logits = np.zeros((2, 3, 2, 2))
    labels = np.zeros((2, 2, 2), np.int64)
    labels[1, 0, 1] = 3
    labels[1, 1, 0] = -2
    msg = _raises_naming(ValueError, "target", lambda: fn(logits, labels, axis=1))
    assert "(1, 0, 1)" in msg and "3" in msg


@pytest.mark.parametrize("fn", [softce.cross_entropy, softce.cross_entropy_grad])
@pytest.mark.parametrize("target", [
    np.array([0, 1, 2]),                     # one label too many
    np.array([[0], [1]]),                    # (2, 1) labels for (2,) rows
    np.array(1),                             # a 0-d label for two rows
    np.full((2, 4), 0.25),                   # probabilities with a class too many
    np.full((3,), 1 / 3),                    # a probability row without its batch
    np.full((2, 3, 1), 1 / 3),
])
def test_target_shape_mismatch_is_a_value_error(fn, target) -> None:
    _raises_naming(ValueError, "target", lambda: fn(X, target))


def test_k_dim_target_shapes() -> None:
    logits = np.zeros((2, 3, 4, 5))
    ok = softce.cross_entropy(logits, np.zeros((2, 4, 5), np.int64), axis=1)
    assert np.isfinite(ok)
    for bad in (np.zeros((2, 5, 4), np.int64), np.zeros((2, 3, 4), np.int64),
                np.zeros((2, 4, 5, 1), np.int64)):
        _raises_naming(ValueError, "target", lambda b=bad: softce.cross_entropy(logits, b, axis=1))
    # probabilities must have the logits' own shape, class axis included
    _raises_naming(ValueError, "target", lambda: softce.cross_entropy(
        logits, np.zeros((2, 4, 5, 3)), axis=1))


@pytest.mark.parametrize("fn", [softce.cross_entropy, softce.cross_entropy_grad])
@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", None, 0, "elementwise_mean"])
def test_bad_reduction_names_reduction(fn, reduction) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        fn(X, LABELS, reduction=reduction)
    assert "reduction" in str(info.value)


@pytest.mark.parametrize("base", [0, -2, 1, 1.0, np.float32(1), np.inf, -np.inf, np.nan, "2",
                                  True, 2j, [2]])
def test_bad_entropy_base_names_base(base) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        softce.entropy(P, base=base)
    assert "base" in str(info.value)


AXIS_CALLS = [
    ("softmax", lambda ax: softce.softmax(X, ax)),
    ("log_softmax", lambda ax: softce.log_softmax(X, ax)),
    ("logsumexp", lambda ax: softce.logsumexp(X, ax)),
    ("logsumexp_vjp", lambda ax: softce.logsumexp_vjp(X, 1.0, ax)),
    ("entropy", lambda ax: softce.entropy(P, ax)),
    ("softmax_vjp", lambda ax: softce.softmax_vjp(P, X, ax)),
    ("log_softmax_vjp", lambda ax: softce.log_softmax_vjp(X, X, ax)),
    ("softmax_jacobian", lambda ax: softce.softmax_jacobian(X, ax)),
    ("cross_entropy", lambda ax: softce.cross_entropy(X, P, axis=ax)),
    ("cross_entropy_grad", lambda ax: softce.cross_entropy_grad(X, P, axis=ax)),
]


#: the functions that take several class axes (a tuple, or None for every axis) as SciPy
SEVERAL = ("softmax", "log_softmax", "logsumexp", "logsumexp_vjp", "entropy", "softmax_vjp",
           "log_softmax_vjp")


@pytest.mark.parametrize("case", AXIS_CALLS, ids=lambda c: c[0])
def test_bad_axis_names_axis(case) -> None:
    name, call = case
    several = name in SEVERAL
    for axis in (2, -3, 100) + ((0, 0), (1, -1), (0, 2)) * several:
        _raises_naming(ValueError, "axis", lambda a=axis: call(a))
    for axis in (1.0, "1", True, np.float64(1), [0], (0, 1.0)) + (None, (0, 1)) * (not several):
        _raises_naming(TypeError, "axis", lambda a=axis: call(a))
    # numpy integers are integers
    call(np.int64(1))
    call(np.int32(-2))
    if several and name != "logsumexp_vjp":  # (its g = 1.0 takes the reduced shape of None)
        call((np.int64(1), 0))


@pytest.mark.parametrize("fn", [softce.softmax_jacobian, softce.cross_entropy])
def test_a_0d_array_has_no_class_axis(fn) -> None:
    args = (np.float64(1.5),) if fn is softce.softmax_jacobian else (np.float64(1.5), 0)
    _raises_naming(ValueError, "axis", lambda: fn(*args))


def test_vjp_shapes_must_match() -> None:
    _raises_naming(ValueError, "g", lambda: softce.softmax_vjp(X, X[:, :2]))
    _raises_naming(ValueError, "g", lambda: softce.log_softmax_vjp(X, X.T))
    _raises_naming(ValueError, "g", lambda: softce.logsumexp_vjp(X, np.ones(3)))
    _raises_naming(ValueError, "g", lambda: softce.logsumexp_vjp(X, np.ones((2, 1))))
    _raises_naming(TypeError, "g", lambda: softce.logsumexp_vjp(X, np.array([1 + 0j, 1])))


def test_grad_output_checks() -> None:
    for reduction in ("mean", "sum"):
        _raises_naming(ValueError, "grad_output", lambda r=reduction: softce.cross_entropy_grad(
            X, LABELS, reduction=r, grad_output=np.ones(2)))
    _raises_naming(ValueError, "grad_output", lambda: softce.cross_entropy_grad(
        X, LABELS, reduction="none", grad_output=np.ones(3)))
    _raises_naming(TypeError, "grad_output", lambda: softce.cross_entropy_grad(
        X, LABELS, grad_output=np.array(1 + 1j)))
    _raises_naming(TypeError, "grad_output", lambda: softce.cross_entropy_grad(
        X, LABELS, grad_output="1"))


# out= ----------------------------------------------------------------------------------------

OUT_CALLS = [
    ("softmax", lambda x, out: softce.softmax(x, out=out)),
    ("log_softmax", lambda x, out: softce.log_softmax(x, out=out)),
    ("sigmoid", lambda x, out: softce.sigmoid(x, out=out)),
    ("softmax_vjp", lambda x, out: softce.softmax_vjp(x, x, out=out)),
    ("log_softmax_vjp", lambda x, out: softce.log_softmax_vjp(x, x, out=out)),
    ("cross_entropy_grad", lambda x, out: softce.cross_entropy_grad(x, LABELS, out=out)),
]


def _bad_outs(dtype):
    ro = np.zeros(X.shape, dtype)
    ro.flags.writeable = False
    return [
        (ValueError, np.zeros((2, 4), dtype)),
        (ValueError, np.zeros((3, 2), dtype)),
        (ValueError, np.zeros((6,), dtype)),
        (TypeError, np.zeros(X.shape, np.float32 if dtype == np.float64 else np.float64)),
        (TypeError, np.zeros(X.shape, np.int64)),
        (ValueError, ro),
        (TypeError, [[0.0] * 3] * 2),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", OUT_CALLS, ids=lambda c: c[0])
def test_bad_out_raises_and_writes_nothing(case, dtype) -> None:
    _, call = case
    x = X.astype(dtype)
    for error, out in _bad_outs(dtype):
        before = np.array(out, copy=True)
        _raises_naming(error, "out", lambda o=out: call(x, o))
        np.testing.assert_array_equal(np.asarray(out), before)


@pytest.mark.parametrize("case", OUT_CALLS, ids=lambda c: c[0])
def test_nothing_is_written_to_out_when_another_argument_is_bad(case) -> None:
    name, _ = case
    out = np.full(X.shape, 7.0)
    bad_calls = {
        "softmax": lambda: softce.softmax(X, 5, out=out),
        "log_softmax": lambda: softce.log_softmax(X, "x", out=out),
        "sigmoid": lambda: softce.sigmoid(X.astype(np.int64), out=out),
        "softmax_vjp": lambda: softce.softmax_vjp(X, X[:, :2], out=out),
        "log_softmax_vjp": lambda: softce.log_softmax_vjp(X, X.astype(complex), out=out),
        "cross_entropy_grad": lambda: softce.cross_entropy_grad(X, np.array([0, 3]), out=out),
    }
    with pytest.raises((ValueError, TypeError)):
        bad_calls[name]()
    assert np.all(out == 7.0)


def test_cross_entropy_grad_failures_leave_logits_given_as_out_intact() -> None:
    x = X.copy()
    for kwargs in ({"reduction": "avg"}, {"grad_output": np.ones(5)}, {"axis": 3}):
        with pytest.raises((ValueError, TypeError)):
            softce.cross_entropy_grad(x, LABELS, out=x, **kwargs)
        np.testing.assert_array_equal(x, X)
    with pytest.raises(ValueError):
        softce.cross_entropy_grad(x, np.array([0, -1]), out=x)
    np.testing.assert_array_equal(x, X)


@pytest.mark.parametrize("case", OUT_CALLS, ids=lambda c: c[0])
def test_out_partly_overlapping_an_input_is_refused(case) -> None:
    _, call = case
    buf = np.zeros(X.size + 1)
    x = buf[:-1].reshape(X.shape)
    x[...] = X
    out = buf[1:].reshape(X.shape)
    _raises_naming(ValueError, "out", lambda: call(x, out))
    np.testing.assert_array_equal(x, X)
