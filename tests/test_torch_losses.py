"""The cross-entropy family against PyTorch: cross_entropy(_grad), nll_loss,
binary_cross_entropy_with_logits(_grad), kl_div and softmax_entropy(_grad).

Every case recorded in tests/fixtures/torch_losses.npz (scripts/record_torch_loss_fixtures.py)
is its own test, with no torch needed; where torch is installed the same cases run live as well
(the recorder's generator, torch's outputs now against the file's and against softce), so the file
cannot drift from torch unnoticed. float64 agrees to 1e-12 relative, float32 to 1e-5 (atol
scaled by the inputs' size, as in tests/reference.py). Finite differences check the gradients
with every option on, in float64, without torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from reference import assert_close

import softce

ROOT = Path(__file__).resolve().parents[1]


def _recorder():
    path = ROOT / "scripts" / "record_torch_loss_fixtures.py"
    spec = importlib.util.spec_from_file_location("record_torch_loss_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REC = _recorder()
META, RECORDED = REC.load()
SPECS = META["cases"]
BY_NAME = {spec["name"]: (spec, arrays) for spec, arrays in zip(SPECS, RECORDED)}
NAMES = list(BY_NAME)

INPUTS = {"ce": ("x", "target", "weight", "go"), "nll": ("x", "target", "weight"),
          "bce": ("x", "y", "weight", "pos_weight", "go"), "kl": ("input", "target"),
          "entropy": ("x", "go")}


def scale_of(x) -> float:
    """The size of the largest finite input (at least 1): absolute errors grow with it."""
    x = np.asarray(x, np.float64)
    fin = np.abs(x[np.isfinite(x)])
    return max(1.0, float(fin.max()) if fin.size else 1.0)


def _go(a: dict):
    """The recorded grad_output as a caller passes it: None, a float or an array."""
    go = a.get("go")
    if go is None or go.ndim:
        return go
    return float(go)


def _same_dtype(value, dtype, msg: str) -> None:
    assert np.asarray(value).dtype == dtype, f"{msg}: dtype {np.asarray(value).dtype} != {dtype}"


def _check_ce(spec: dict, a: dict, msg: str) -> None:
    dtype = np.dtype(spec["dtype"])
    x, target = a["x"], a["target"]
    kw = {"axis": spec["axis"], "reduction": spec["reduction"]}
    if "weight" in a:
        kw["weight"] = a["weight"]
    for key, default in (("ignore_index", -100), ("label_smoothing", 0.0), ("z_loss", 0.0),
                         ("softcap", None), ("return_lse", False), ("empty_mean", None)):
        if spec[key] != default:
            kw[key] = spec[key]
    s = scale_of(x)
    before = (x.copy(), target.copy())

    res = softce.cross_entropy(x, target, **kw)
    if spec["return_lse"]:
        assert isinstance(res, tuple) and len(res) == 2, msg
        loss, lse = res
        assert np.shape(lse) == a["lse"].shape, msg
        _same_dtype(lse, dtype, msg)
        assert_close(lse, a["lse"], dtype, scale=s, err_msg=msg + " lse")
    else:
        assert not isinstance(res, tuple), msg
        loss = res
    assert np.shape(loss) == a["loss"].shape, msg
    _same_dtype(loss, dtype, msg)
    assert_close(loss, a["loss"], dtype, scale=10 * s, err_msg=msg + " loss")

    res = softce.cross_entropy_grad(x, target, grad_output=_go(a), **kw)
    assert isinstance(res, tuple) and len(res) == (3 if spec["return_lse"] else 2), msg
    loss, dlogits = res[0], res[1]
    assert np.shape(loss) == a["loss"].shape and dlogits.shape == x.shape, msg
    _same_dtype(dlogits, dtype, msg)
    assert_close(loss, a["loss"], dtype, scale=10 * s, err_msg=msg + " grad's loss")
    assert_close(dlogits, a["dlogits"], dtype, scale=s, err_msg=msg + " dlogits")
    if spec["return_lse"]:
        assert_close(res[2], a["lse"], dtype, scale=s, err_msg=msg + " grad's lse")
    np.testing.assert_array_equal(x, before[0], err_msg=msg + ": logits were mutated")
    np.testing.assert_array_equal(target, before[1], err_msg=msg + ": target was mutated")


def _check_nll(spec: dict, a: dict, msg: str) -> None:
    dtype = np.dtype(spec["dtype"])
    kw = {"axis": spec["axis"], "reduction": spec["reduction"]}
    if "weight" in a:
        kw["weight"] = a["weight"]
    if spec["ignore_index"] != -100:
        kw["ignore_index"] = spec["ignore_index"]
    loss = softce.nll_loss(a["x"], a["target"], **kw)
    assert np.shape(loss) == a["loss"].shape, msg
    _same_dtype(loss, dtype, msg)
    assert_close(loss, a["loss"], dtype, scale=10 * scale_of(a["x"]), err_msg=msg)


def _check_bce(spec: dict, a: dict, msg: str) -> None:
    dtype = np.dtype(spec["dtype"])
    kw = {"reduction": spec["reduction"]}
    for key in ("weight", "pos_weight"):
        if key in a:
            kw[key] = a[key]
    x, y = a["x"], a["y"]
    s = scale_of(x)
    loss = softce.binary_cross_entropy_with_logits(x, y, **kw)
    assert np.shape(loss) == a["loss"].shape, msg
    _same_dtype(loss, dtype, msg)
    assert_close(loss, a["loss"], dtype, scale=10 * s, err_msg=msg + " loss")
    loss, dx = softce.binary_cross_entropy_with_logits_grad(x, y, grad_output=_go(a), **kw)
    assert np.shape(loss) == a["loss"].shape and dx.shape == x.shape, msg
    _same_dtype(dx, dtype, msg)
    assert_close(loss, a["loss"], dtype, scale=10 * s, err_msg=msg + " grad's loss")
    assert_close(dx, a["dx"], dtype, scale=s, err_msg=msg + " dx")


def _check_kl(spec: dict, a: dict, msg: str) -> None:
    dtype = np.dtype(spec["dtype"])
    inp, tgt = a["input"], a["target"]
    loss = softce.kl_div(inp, tgt, reduction=spec["reduction"], log_target=spec["log_target"])
    assert np.shape(loss) == a["loss"].shape, msg
    _same_dtype(loss, dtype, msg)
    # sums of terms of either sign: atol grows with the number of terms and their size
    s = inp.size * max(scale_of(inp), scale_of(tgt))
    want = a["loss"]
    if spec["neginf"]:  # log target -inf: torch's 0 * -inf is NaN; softce may give the limit 0
        got = np.asarray(loss)
        fin = np.isfinite(want)
        assert_close(got[fin], want[fin], dtype, scale=s, err_msg=msg)
        assert np.all(np.isnan(got[~fin]) | (got[~fin] == 0)), f"{msg}: {got[~fin]}"
        return
    assert_close(loss, want, dtype, scale=s, err_msg=msg)


def _check_entropy(spec: dict, a: dict, msg: str) -> None:
    dtype = np.dtype(spec["dtype"])
    x, axis = a["x"], spec["axis"]
    s = scale_of(x)
    h = softce.softmax_entropy(x, axis=axis)
    h2, grad = softce.softmax_entropy_grad(x, axis=axis, grad_output=_go(a))
    assert np.shape(h) == a["h"].shape and grad.shape == x.shape, msg
    _same_dtype(h, dtype, msg)
    _same_dtype(grad, dtype, msg)
    for got, want, safe, what in ((h, a["h"], a["h_safe"], "h"), (h2, a["h"], a["h_safe"], "h"),
                                  (grad, a["grad"], a["grad_safe"], "grad")):
        # torch's -(softmax * log_softmax).sum() is NaN on rows with -inf: compare where it is
        # finite, and everywhere with the NaN-free torch formula; softce is finite everywhere
        fin = np.isfinite(want)
        assert_close(np.asarray(got)[fin], want[fin], dtype, scale=s, err_msg=f"{msg} {what}")
        assert_close(got, safe, dtype, scale=s, err_msg=f"{msg} {what} (NaN-free torch)")
        assert np.isfinite(got).all(), f"{msg}: {what} not finite"


CHECKS = {"ce": _check_ce, "nll": _check_nll, "bce": _check_bce, "kl": _check_kl,
          "entropy": _check_entropy}


def check_case(spec: dict, arrays: dict) -> None:
    CHECKS[spec["op"]](spec, arrays, spec["name"])


# the recorded file -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_recorded(name: str) -> None:
    spec, arrays = BY_NAME[name]
    check_case(spec, arrays)


def test_the_file_is_what_the_recorder_generates() -> None:
    """The recorder's case list is the file's: re-record after changing it."""
    assert REC.case_specs() == SPECS


def test_the_file_covers_the_options() -> None:
    ce = [s for s in SPECS if s["op"] == "ce"]
    for dtype in ("float32", "float64"):
        mine = [s for s in ce if s["dtype"] == dtype]
        assert {s["target"] for s in mine} == {"labels", "probs", "unnormalised"}
        assert {s["reduction"] for s in mine} == {"none", "mean", "sum"}
        assert {s["ignore_index"] for s in mine} == {-100, 3}
        assert {s["ignore"] for s in mine} == {None, "some", "all"}
        assert {s["label_smoothing"] for s in mine} == {0.0, 0.1, 0.3}
        assert {s["softcap"] for s in mine} == {None, 5.0, 30.0}
        assert {s["empty_mean"] for s in mine} == {None, 0.0, -1.5}
        assert {s["go"] for s in mine} >= {None, "pos", 1.5}
        assert {s["shape"][s["axis"]] for s in mine} >= {5, 37, 1000}
        assert {(len(s["shape"]), s["axis"]) for s in mine} >= {(3, 1), (4, 1), (2, 0)}
        assert any(s["mask"] for s in mine) and any(s["z_loss"] for s in mine)
        assert any(s["return_lse"] for s in mine) and any(s["weight"] for s in mine)
        assert any(s["target"] == "probs" and s["label_smoothing"] and s["weight"] for s in mine)
        assert any(s["ignore"] and s["label_smoothing"] and s["weight"] for s in mine)
    for op, n in (("nll", 100), ("bce", 60), ("kl", 30), ("entropy", 30)):
        assert sum(s["op"] == op for s in SPECS) >= n
    nan_means = [a["loss"] for s, a in zip(SPECS, RECORDED) if s["op"] == "ce"
                 and s["ignore"] == "all" and s["reduction"] == "mean" and s["empty_mean"] is None]
    assert nan_means and all(np.isnan(v) for v in nan_means)


# live torch ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


@pytest.mark.parametrize("name", NAMES)
def test_live_torch(torch, name: str) -> None:
    spec, recorded = BY_NAME[name]
    live = REC.record_case(torch, spec)
    assert set(live) == set(recorded), name
    dtype = np.dtype(spec["dtype"])
    inputs = INPUTS[spec["op"]]
    if all(np.array_equal(live[k], recorded[k], equal_nan=True) for k in inputs if k in live):
        for key in set(live) - set(inputs):  # torch today gives what the file holds
            assert_close(live[key], recorded[key], dtype, scale=10 * scale_of(live[key]),
                         err_msg=f"{name} {key}: torch {torch.__version__} vs the file's "
                                 f"{META['torch_version']}")
    check_case(spec, live)


# finite differences, float64, no torch ---------------------------------------------------------

def central_differences(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f / d x by (f(x + h e_i) - f(x - h e_i)) / 2h, f scalar (torch's gradcheck)."""
    grad = np.empty_like(x)
    flat, g = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        g[i] = (up - down) / (2 * h)
    return grad


def _weighted_sum(loss, go) -> float:
    return float(np.sum(np.asarray(loss) * (1.0 if go is None else go)))


FD_CE = [
    # (name, shape, axis, target kind, reduction, grad_output kind)
    ("labels-mean", (4, 6), -1, "labels", "mean", 1.3),
    ("labels-sum", (4, 6), -1, "labels", "sum", -0.6),
    ("labels-none", (4, 6), -1, "labels", "none", "pos"),
    ("labels-kdim-mean", (2, 5, 3), 1, "labels", "mean", None),
    ("probs-mean", (3, 6), -1, "probs", "mean", 0.8),
    ("probs-none", (2, 5, 3), 1, "probs", "none", "pos"),
]


@pytest.mark.parametrize("case", FD_CE, ids=[c[0] for c in FD_CE])
def test_cross_entropy_grad_finite_differences(case) -> None:
    """weight + label_smoothing + ignore_index + z_loss + softcap, all at once."""
    _, shape, axis, kind, reduction, go_kind = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape) * 4
    ax = axis % len(shape)
    n = shape[ax]
    batch = shape[:ax] + shape[ax + 1:]
    if kind == "labels":
        target = rng.integers(0, n, size=batch)
        target.reshape(-1)[::3] = 3  # ignored
        target.reshape(-1)[1] = 0
    else:
        target = rng.uniform(size=shape)
        target /= target.sum(axis=ax, keepdims=True)
    go = rng.standard_normal(batch) if go_kind == "pos" else go_kind
    kw = {"axis": axis, "weight": rng.uniform(0.3, 2.0, n), "label_smoothing": 0.1,
          "z_loss": 0.05, "softcap": 4.0, "reduction": reduction}
    if kind == "labels":
        kw["ignore_index"] = 3

    def f(xx):
        return _weighted_sum(softce.cross_entropy(xx, target, **kw), go)

    loss, dlogits = softce.cross_entropy_grad(x, target, grad_output=go, **kw)
    assert_close(loss, softce.cross_entropy(x, target, **kw), np.float64)
    want = central_differences(f, x.copy())
    np.testing.assert_allclose(dlogits, want, rtol=1e-5, atol=1e-7)
    if kind == "labels":  # ignored positions get no gradient
        moved = np.moveaxis(dlogits, ax, -1)
        assert np.all(moved[target == 3] == 0)


@pytest.mark.parametrize("reduction,go_kind", [("mean", 0.7), ("sum", None), ("none", "pos")])
def test_bce_grad_finite_differences(reduction, go_kind) -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 4)) * 5
    x[0, :2] = [14.0, -14.0]
    y = rng.uniform(size=(5, 4))
    y[1, :2] = [0.0, 1.0]
    kw = {"weight": rng.uniform(0.2, 2.0, (5, 1)), "pos_weight": rng.uniform(0.3, 3.0, 4),
          "reduction": reduction}
    go = rng.standard_normal(x.shape) if go_kind == "pos" else go_kind

    def f(xx):
        return _weighted_sum(softce.binary_cross_entropy_with_logits(xx, y, **kw), go)

    loss, dx = softce.binary_cross_entropy_with_logits_grad(x, y, grad_output=go, **kw)
    assert_close(loss, softce.binary_cross_entropy_with_logits(x, y, **kw), np.float64)
    np.testing.assert_allclose(dx, central_differences(f, x.copy()), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape,axis,go_kind", [((4, 6), -1, None), ((4, 6), 0, 0.5),
                                                ((2, 5, 3), 1, "pos")])
def test_softmax_entropy_grad_finite_differences(shape, axis, go_kind) -> None:
    rng = np.random.default_rng(13)
    x = rng.standard_normal(shape) * 3
    ax = axis % len(shape)
    go = (rng.standard_normal(shape[:ax] + shape[ax + 1:]) if go_kind == "pos" else go_kind)

    def f(xx):
        return _weighted_sum(softce.softmax_entropy(xx, axis=axis), go)

    h, grad = softce.softmax_entropy_grad(x, axis=axis, grad_output=go)
    assert_close(h, softce.softmax_entropy(x, axis=axis), np.float64)
    np.testing.assert_allclose(grad, central_differences(f, x.copy()), rtol=1e-5, atol=1e-7)
