"""Bad input, run in a subprocess: a segfault in a kernel fails one case, never the runner.

Every public function gets wrong types, shapes, axes, targets, options and ``out=`` buffers
(aliasing a label array included). Each case must raise ValueError or TypeError naming the
argument, or return (the accepted cases: lists, float16, zero-size arrays), and a failing call
must leave ``out`` as it was. This file is also the worker: run as a script it executes the
cases and prints one JSON line per case as soon as it is done, so a crash names its case.
The same cases run on the CUDA path in a second worker under the CUDA simulator.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]

F32, F64 = np.float32, np.float64
X = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -3.0]])
P = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
LABELS = np.array([2, 0])

ERR = (ValueError, TypeError)


def _ro(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def _cases(sc, D, device: bool):
    """(name, call, expected, argument, out) rows.

    expected: "TypeError", "ValueError", "error" (either) or "ok"; argument: a word the message
    must contain; out: a buffer that must be unchanged after a failing call (or None).
    D: host array -> the array type of this path (numpy, or a device array in the simulator).
    """
    cases = []

    def add(name, call, expected, argument=None, out=None, host_only=False):
        if not (device and host_only):
            cases.append((name, call, expected, argument, out))

    x, p, labels = D(X), D(P), D(LABELS)
    unary = {
        "softmax": (lambda v, **k: sc.softmax(v, **k), "x"),
        "log_softmax": (lambda v, **k: sc.log_softmax(v, **k), "x"),
        "logsumexp": (lambda v, **k: sc.logsumexp(v, **k), "x"),
        "sigmoid": (lambda v, **k: sc.sigmoid(v), "x"),
        "entropy": (lambda v, **k: sc.entropy(v, **k), "p"),
        "entropy_base": (lambda v, **k: sc.entropy(v, base=2.0, **k), "p"),
        "softmax_jacobian": (lambda v, **k: sc.softmax_jacobian(v, **k), "x"),
        "logsumexp_vjp": (lambda v, **k: sc.logsumexp_vjp(v, D(np.ones(2)), **k), "x"),
        "softmax_vjp_y": (lambda v, **k: sc.softmax_vjp(v, x, **k), "y"),
        "softmax_vjp_g": (lambda v, **k: sc.softmax_vjp(x, v, **k), "g"),
        "log_softmax_vjp_y": (lambda v, **k: sc.log_softmax_vjp(v, x, **k), "y"),
        "log_softmax_vjp_g": (lambda v, **k: sc.log_softmax_vjp(x, v, **k), "g"),
        "cross_entropy": (lambda v, **k: sc.cross_entropy(v, labels, **k), "logits"),
        "cross_entropy_grad": (lambda v, **k: sc.cross_entropy_grad(v, labels, **k), "logits"),
    }
    # wrong types: strings, objects, complex, bool, integers, None, ragged lists
    host_bad = {
        "str": "abc", "bytes": b"abc", "none": None, "dict": {"a": 1}, "object_array":
        np.array([[1.0, None, 2.0], [1.0, 2.0, 3.0]], object), "ragged": [[1.0, 2.0], [3.0]],
        "str_list": [["a", "b", "c"], ["d", "e", "f"]], "int_list": [[1, 2, 3], [4, 5, 6]],
        "bool_list": [[True, False, True]] * 2, "complex_list": [[1j, 2.0, 3.0]] * 2,
        "generator": (v for v in range(3)), "int_scalar": 3,
    }
    dev_bad = {
        "int64": X.astype(np.int64), "int32": X.astype(np.int32), "uint8": X.astype(np.uint8),
        "bool": X > 0, "complex128": X.astype(np.complex128), "complex64": X.astype(np.complex64),
    }
    for fname, (fn, arg) in unary.items():
        for bname, bad in host_bad.items():
            add(f"{fname}/type/{bname}", lambda fn=fn, b=bad: fn(b), "error", arg,
                host_only=True)
        for bname, bad in dev_bad.items():
            add(f"{fname}/dtype/{bname}", lambda fn=fn, b=bad: fn(D(b)), "TypeError", arg)
        # accepted: a float list, float16 (upcast)
        value = P if arg == "p" else X
        add(f"{fname}/ok/float_list", lambda fn=fn, v=value: fn(v.tolist()), "ok",
            host_only=True)
        add(f"{fname}/ok/float16", lambda fn=fn, v=value: fn(D(v.astype(np.float16))), "ok",
            host_only=True)
        if fname == "sigmoid":
            add("sigmoid/ok/0d", lambda: sc.sigmoid(D(np.array(0.5))), "ok", host_only=True)
            continue
        # axes: out of range, repeated, wrong type; 0-d input
        if fname not in ("softmax_vjp_g", "log_softmax_vjp_g"):
            for axis in (2, -3, 10**6, -(2**63)):
                add(f"{fname}/axis/{axis}", lambda fn=fn, v=value, a=axis: fn(D(v), axis=a),
                    "ValueError", "axis")
            for axis in (1.0, "0", True, [0], (0, 1.0)):
                add(f"{fname}/axis/{type(axis).__name__}-{axis}",
                    lambda fn=fn, v=value, a=axis: fn(D(v), axis=a), "TypeError", "axis")
            several = fname not in ("softmax_jacobian", "cross_entropy", "cross_entropy_grad")
            for axis in (None, (0,), (1, 0)) if fname != "logsumexp_vjp" else ():
                # several class axes: SciPy's tuples and None (logsumexp_vjp's g of shape (2,)
                # fits axis=1 only)
                add(f"{fname}/axis/{axis}", lambda fn=fn, v=value, a=axis: fn(D(v), axis=a),
                    "ok" if several else "TypeError", None if several else "axis")
            for axis in ((1, -1), (0, 2), (-3,)) if several else ():  # repeated, out of range
                add(f"{fname}/axis/{axis}", lambda fn=fn, v=value, a=axis: fn(D(v), axis=a),
                    "ValueError", "axis")
    # a 0-d input is one element along axis 0 / -1 (PyTorch); no class axis for the rest
    for fname in ("softmax", "log_softmax", "logsumexp", "entropy"):
        for axis in (0, -1, None):
            add(f"{fname}/0d/{axis}", lambda f=unary[fname][0], a=axis: f(D(np.array(0.5)),
                                                                        axis=a), "ok")
        add(f"{fname}/0d/axis-1", lambda f=unary[fname][0]: f(D(np.array(0.5)), axis=1),
            "ValueError", "axis")
    for fname in ("softmax_jacobian", "cross_entropy", "cross_entropy_grad"):
        zero_d = D(np.array(0.5))
        if fname.startswith("cross"):
            ce_fn = getattr(sc, fname)
            add(f"{fname}/0d", lambda f=ce_fn, z=zero_d: f(z, D(np.array(0))), "ValueError",
                "axis")
        else:
            add(f"{fname}/0d", lambda f=unary[fname][0], z=zero_d: f(z), "ValueError", "axis")

    # zero-size inputs: accepted, with documented results (shape checked by the parent)
    for shape in ((0, 3), (2, 0), (0, 0), (0,)):
        z = np.zeros(shape)
        add(f"softmax/zero-size/{shape}", lambda z=z: sc.softmax(z), "ok", host_only=True)
        add(f"logsumexp/zero-size/{shape}", lambda z=z: sc.logsumexp(z), "ok", host_only=True)
        add(f"entropy/zero-size/{shape}", lambda z=z: sc.entropy(z), "ok", host_only=True)
        add(f"softmax_jacobian/zero-size/{shape}", lambda z=z: sc.softmax_jacobian(z), "ok",
            host_only=True)
        add(f"cross_entropy/zero-size-prob/{shape}", lambda z=z: sc.cross_entropy(z, z), "ok",
            host_only=True)
    add("cross_entropy/zero-rows-labels", lambda: sc.cross_entropy_grad(
        np.zeros((0, 3)), np.zeros(0, np.int64)), "ok", host_only=True)
    # no classes at all: every label is out of range
    add("cross_entropy/no-classes", lambda: sc.cross_entropy(D(np.zeros((2, 0))), labels),
        "ValueError", "target")

    # targets
    ce = {"cross_entropy": sc.cross_entropy, "cross_entropy_grad": sc.cross_entropy_grad}
    for fname, fn in ce.items():
        for tname, tgt in {
            "label-too-big": np.array([3, 0]), "label-negative": np.array([0, -1]),
            "label-huge": np.array([0, 2**62]), "label-min": np.array([-(2**63), 0]),
            "label-uint64-huge": np.array([0, 2**64 - 1], np.uint64),
            "label-int8-negative": np.array([0, -1], np.int8),
            "float-labels": np.array([2.0, 0.0]), "float32-labels": np.array([2.0, 0.0], F32),
            "labels-2d": np.array([[2], [0]]), "labels-too-many": np.array([2, 0, 1]),
            "labels-0d": np.array(1), "prob-wrong-classes": np.full((2, 4), 0.25),
            "prob-transposed": P.T.copy(), "prob-extra-dim": P[..., None],
        }.items():
            # the simulator's Python-int cast of a uint64 above 2**63 to int64 overflows
            # (OverflowError); a GPU wraps it to a negative label, which the check refuses
            add(f"{fname}/target/{tname}", lambda fn=fn, t=tgt: fn(x, D(t)), "ValueError",
                "target", host_only=tname == "label-uint64-huge")
        for tname, tgt in {"bool": np.array([True, False]),
                           "complex": np.array([2 + 0j, 0j]),
                           "str": np.array(["a", "b"])}.items():
            add(f"{fname}/target/{tname}", lambda fn=fn, t=tgt: fn(x, D(t)), "TypeError",
                "target", host_only=tname == "str")
        add(f"{fname}/target/None", lambda fn=fn: fn(x, None), "TypeError", "target",
            host_only=True)
        add(f"{fname}/target/object", lambda fn=fn: fn(x, object()), "TypeError", "target",
            host_only=True)
        for red in ("avg", "MEAN", "", None, 0, "elementwise_mean", ["mean"]):
            add(f"{fname}/reduction/{red!r}", lambda fn=fn, r=red: fn(x, labels, reduction=r),
                "error", "reduction", host_only=isinstance(red, list))
        # a row-wise label check must come before any kernel: labels of k-dim layouts
        add(f"{fname}/target/kdim-bad-label", lambda fn=fn: fn(
            D(np.zeros((2, 3, 2))), D(np.array([[0, 3], [1, 2]])), axis=1), "ValueError",
            "target")
    for base in (0, -2, 1, 1.0, np.inf, np.nan, "2", True, 2j, [2], None):
        if base is None:
            continue
        add(f"entropy/base/{base!r}", lambda b=base: sc.entropy(p, base=b), "error", "base")
    # grad_output
    for go_name, go, red in (("array-for-mean", np.ones(2), "mean"),
                             ("array-for-sum", np.ones(2), "sum"),
                             ("wrong-shape", np.ones(3), "none"),
                             ("complex", np.array(1j), "mean"),
                             ("bool", np.array(True), "mean")):
        add(f"cross_entropy_grad/grad_output/{go_name}", lambda go=go, red=red:
            sc.cross_entropy_grad(x, labels, reduction=red, grad_output=D(go)), "error",
            "grad_output")
    add("cross_entropy_grad/grad_output/str", lambda: sc.cross_entropy_grad(
        x, labels, grad_output="1"), "TypeError", "grad_output", host_only=True)
    # vjp shapes
    add("softmax_vjp/g-shape", lambda: sc.softmax_vjp(x, D(X[:, :2].copy())), "ValueError", "g")
    add("log_softmax_vjp/g-shape", lambda: sc.log_softmax_vjp(x, D(X.T.copy())), "ValueError",
        "g")
    add("logsumexp_vjp/g-shape", lambda: sc.logsumexp_vjp(x, D(np.ones(3))), "ValueError", "g")

    # the cross-entropy options, where they exist
    params = inspect.signature(sc.cross_entropy).parameters
    if "weight" in params:
        for wname, w in (("short", np.ones(2)), ("long", np.ones(4)), ("2d", np.ones((1, 3))),
                         ("nan", np.array([1.0, np.nan, 1.0])),
                         ("inf", np.array([1.0, np.inf, 1.0]))):
            for fname, fn in ce.items():
                add(f"{fname}/weight/{wname}", lambda fn=fn, w=w: fn(x, labels, weight=D(w)),
                    "error", "weight")
        for fname, fn in ce.items():  # any finite sign, as in PyTorch
            add(f"{fname}/weight/negative", lambda fn=fn: fn(
                x, labels, weight=D(np.array([1.0, -1.0, 1.0]))), "ok")
    if "ignore_index" in params:
        for fname, fn in ce.items():
            add(f"{fname}/ignore_index/ok", lambda fn=fn: fn(x, D(np.array([2, -100])),
                                                             ignore_index=-100), "ok",
                host_only=True)
            add(f"{fname}/ignore_index/other-negative", lambda fn=fn: fn(
                x, D(np.array([2, -1])), ignore_index=-100), "ValueError", "target")
    if "label_smoothing" in params:
        for ls in (-0.1, 1.5, np.nan, "0.1"):
            for fname, fn in ce.items():
                add(f"{fname}/label_smoothing/{ls!r}", lambda fn=fn, ls=ls: fn(
                    x, labels, label_smoothing=ls), "error", "label_smoothing")

    # softce's own cross-entropy options (checked on the CUDA path too, then refused there)
    for opt, bad, expected in (("z_loss", -1.0, "ValueError"), ("z_loss", np.inf, "ValueError"),
                               ("z_loss", "0", "TypeError"), ("softcap", 0.0, "ValueError"),
                               ("softcap", -2.0, "ValueError"), ("softcap", "30", "TypeError"),
                               ("return_lse", 1, "TypeError"), ("empty_mean", "0", "TypeError"),
                               ("ignore_index", 1.5, "TypeError"),
                               ("ignore_index", True, "TypeError")):
        for fname, fn in ce.items():
            add(f"{fname}/{opt}/{bad!r}", lambda fn=fn, o=opt, b=bad: fn(x, labels, **{o: b}),
                expected, opt)

    # the rest of the family (NumPy arrays only: their CUDA launch is not wired yet)
    family = {
        "nll_loss": (lambda v, **k: sc.nll_loss(v, LABELS, **k), "logp", True),
        "softmax_entropy": (lambda v, **k: sc.softmax_entropy(v, **k), "logits", True),
        "softmax_entropy_grad": (lambda v, **k: sc.softmax_entropy_grad(v, **k), "logits",
                                 True),
        "bce": (lambda v, **k: sc.binary_cross_entropy_with_logits(v, P, **k), "x", False),
        "bce_grad": (lambda v, **k: sc.binary_cross_entropy_with_logits_grad(v, P, **k), "x",
                     False),
        "kl_div": (lambda v, **k: sc.kl_div(v, P, **k), "input", False),
    }
    for fname, (fn, arg, has_axis) in family.items():
        for bname, bad in {**host_bad, **dev_bad}.items():
            add(f"{fname}/type/{bname}", lambda fn=fn, b=bad: fn(b), "error", arg,
                host_only=True)
        add(f"{fname}/ok/float_list", lambda fn=fn: fn(X.tolist()), "ok", host_only=True)
        if has_axis:
            several = fname.startswith("softmax_entropy")  # tuples and None, as softmax
            for axis in (2, -3, 1.0) + ((1, 1),) * several + (None,) * (not several):
                add(f"{fname}/axis/{axis!r}", lambda fn=fn, a=axis: fn(X, axis=a), "error",
                    "axis", host_only=True)
            for axis in (None, (0, 1)) if several else ():
                add(f"{fname}/axis/{axis!r}", lambda fn=fn, a=axis: fn(X, axis=a), "ok",
                    host_only=True)
        if fname != "softmax_entropy" and fname != "softmax_entropy_grad":
            add(f"{fname}/reduction/avg", lambda fn=fn: fn(X, reduction="avg"), "ValueError",
                "reduction", host_only=True)
    for tname, tgt, expected in (("float", LABELS.astype(float), "TypeError"),
                                 ("out-of-range", np.array([3, 0]), "ValueError"),
                                 ("negative", np.array([-1, 0]), "ValueError"),
                                 ("shape", np.array([0, 1, 2]), "ValueError")):
        add(f"nll_loss/target/{tname}", lambda t=tgt: sc.nll_loss(X, t), expected, "target",
            host_only=True)
    for wname, w in (("short", np.ones(2)), ("nan", np.array([1.0, np.nan, 1.0]))):
        add(f"nll_loss/weight/{wname}", lambda w=w: sc.nll_loss(X, LABELS, weight=w), "error",
            "weight", host_only=True)
    add("nll_loss/weight/negative", lambda: sc.nll_loss(X, LABELS, weight=np.array(
        [1.0, -1.0, 1.0])), "ok", host_only=True)
    for fname in ("bce", "bce_grad"):
        fn = family[fname][0]
        call = getattr(sc, "binary_cross_entropy_with_logits"
                       + ("_grad" if fname == "bce_grad" else ""))
        add(f"{fname}/y/shape", lambda c=call: c(X, P[:, :2]), "ValueError", "y",
            host_only=True)
        add(f"{fname}/y/int", lambda c=call: c(X, P.astype(int)), "TypeError", "y",
            host_only=True)
        add(f"{fname}/weight/broadcast", lambda fn=fn: fn(X, weight=np.ones(2)), "ValueError",
            "weight", host_only=True)
        add(f"{fname}/weight/negative", lambda fn=fn: fn(X, weight=-np.ones(3)), "ok",
            host_only=True)
        add(f"{fname}/pos_weight/negative", lambda fn=fn: fn(X, pos_weight=-np.ones(3)), "ok",
            host_only=True)
        add(f"{fname}/weight/inf", lambda fn=fn: fn(X, weight=np.array([1.0, np.inf, 1.0])),
            "ValueError", "weight", host_only=True)
        add(f"{fname}/pos_weight/nan", lambda fn=fn: fn(X, pos_weight=np.full(3, np.nan)),
            "ValueError", "pos_weight", host_only=True)
        add(f"{fname}/pos_weight/str", lambda fn=fn: fn(X, pos_weight="2"), "TypeError",
            "pos_weight", host_only=True)
    add("bce_grad/grad_output/shape-for-mean", lambda: sc.binary_cross_entropy_with_logits_grad(
        X, P, grad_output=np.ones(3)), "ValueError", "grad_output", host_only=True)
    add("kl_div/target/shape", lambda: sc.kl_div(X, P[:1]), "ValueError", "target",
        host_only=True)
    add("kl_div/log_target/str", lambda: sc.kl_div(X, P, log_target="yes"), "TypeError",
        "log_target", host_only=True)
    add("kl_div/batchmean/0d", lambda: sc.kl_div(np.array(0.5), np.array(0.5),
                                                 reduction="batchmean"), "ValueError",
        "batchmean", host_only=True)
    add("softmax_entropy_grad/grad_output/shape", lambda: sc.softmax_entropy_grad(
        X, grad_output=np.ones(3)), "ValueError", "grad_output", host_only=True)

    # out=: wrong shape, dtype, read-only, not an array, partial overlap, overlap with labels
    out_calls = {
        "softmax": lambda v, o: sc.softmax(v, out=o),
        "log_softmax": lambda v, o: sc.log_softmax(v, out=o),
        "sigmoid": lambda v, o: sc.sigmoid(v, out=o),
        "softmax_vjp": lambda v, o: sc.softmax_vjp(v, v, out=o),
        "log_softmax_vjp": lambda v, o: sc.log_softmax_vjp(v, v, out=o),
        "cross_entropy_grad": lambda v, o: sc.cross_entropy_grad(v, labels, out=o),
    }
    for fname, call in out_calls.items():
        for dt in (F32, F64):
            v = D(X.astype(dt))
            other = F64 if dt == F32 else F32
            for oname, o, expected in (
                    ("shape-2x4", np.full((2, 4), 7, dt), "ValueError"),
                    ("shape-3x2", np.full((3, 2), 7, dt), "ValueError"),
                    ("shape-flat", np.full(6, 7, dt), "ValueError"),
                    ("dtype", np.full(X.shape, 7, other), "TypeError"),
                    ("dtype-int", np.full(X.shape, 7, np.int64), "TypeError"),
                    ("fortran-wrong-shape", np.full((3, 2), 7, dt, order="F"), "ValueError")):
                o = D(o)
                add(f"{fname}/out/{oname}/{dt.__name__}", lambda c=call, v=v, o=o: c(v, o),
                    expected, "out", o)
            o = _ro(np.full(X.shape, 7, dt))
            add(f"{fname}/out/read-only/{dt.__name__}", lambda c=call, v=v, o=o: c(v, o),
                "ValueError", "out", o, host_only=True)
            add(f"{fname}/out/list/{dt.__name__}", lambda c=call, v=v: c(v, X.tolist()),
                "TypeError", "out", host_only=True)
        # partial overlap with the input
        buf = np.zeros(X.size + 1)
        buf[:-1] = X.ravel()
        host_buf = buf.copy()
        dbuf = D(buf)
        v, o = dbuf[:-1].reshape(X.shape), dbuf[1:].reshape(X.shape)
        add(f"{fname}/out/partial-overlap", lambda c=call, v=v, o=o: c(v, o), "ValueError",
            "out", dbuf)
        del host_buf
    # out overlapping the labels (int64 labels inside out's bytes): refused, no crash
    for fname, n in (("cross_entropy_grad", 8), ("cross_entropy_grad-wide", 64)):
        out = np.zeros((8, n))
        lab = out.view(np.int64).reshape(-1)[:8]
        lab[:] = 1
        xx = np.random.default_rng(1).standard_normal((8, n))
        if device:
            dout = D(out)
            dlab = dout.reshape(-1)[:8].view(np.int64)
            dxx = D(xx)
            add(f"{fname}/out/overlaps-labels", lambda xx=dxx, dl=dlab, o=dout:
                sc.cross_entropy_grad(xx, dl, out=o), "ValueError", "out", dout)
        else:
            add(f"{fname}/out/overlaps-labels", lambda xx=xx, lab=lab, o=out:
                sc.cross_entropy_grad(xx, lab, out=o), "ValueError", "out", out)
    # out overlapping the probability target
    buf = np.zeros(P.size + 1)
    dbuf = D(buf)
    tgt, o = dbuf[:-1].reshape(P.shape), dbuf[1:].reshape(P.shape)
    add("cross_entropy_grad/out/overlaps-probabilities", lambda t=tgt, o=o:
        sc.cross_entropy_grad(x, t, out=o), "ValueError", "out", dbuf)
    # a failure elsewhere writes nothing to a valid out, logits given as out included
    for fname, call in (
            ("softmax", lambda o: sc.softmax(x, axis=5, out=o)),
            ("log_softmax", lambda o: sc.log_softmax(x, axis="x", out=o)),
            ("softmax_vjp", lambda o: sc.softmax_vjp(x, D(X[:, :2].copy()), out=o)),
            ("cross_entropy_grad-label", lambda o: sc.cross_entropy_grad(
                x, D(np.array([0, 3])), out=o)),
            ("cross_entropy_grad-reduction", lambda o: sc.cross_entropy_grad(
                x, labels, reduction="avg", out=o)),
            ("cross_entropy_grad-grad_output", lambda o: sc.cross_entropy_grad(
                x, labels, grad_output=D(np.ones(5)), out=o))):
        o = D(np.full(X.shape, 7.0))
        add(f"{fname}/out/untouched-on-error", lambda c=call, o=o: c(o), "error", None, o)
    xo = D(X.copy())
    add("cross_entropy_grad/out=logits/untouched-on-error", lambda: sc.cross_entropy_grad(
        xo, D(np.array([0, -1])), out=xo), "ValueError", "target", xo)
    return cases


def _worker(device: bool) -> None:
    import softce as sc

    if device:
        from numba import cuda

        def D(a):
            a = np.asarray(a)
            return cuda.to_device(a) if a.dtype.kind in "fiucb" else a

        def host(a):
            return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)
    else:
        def D(a):
            return a

        host = np.asarray

    for name, call, expected, argument, out in _cases(sc, D, device):
        before = None if out is None else host(out).copy()
        row = {"name": name, "expected": expected, "argument": argument}
        try:
            res = call()
        except Exception as exc:  # noqa: BLE001 - the parent judges the type
            row.update(outcome="raised", type=type(exc).__name__, message=str(exc))
        else:
            shapes = [tuple(np.shape(host(r))) for r in (res if isinstance(res, tuple)
                                                         else (res,))]
            row.update(outcome="returned", shapes=shapes)
        if before is not None:
            after = host(out)
            row["out_intact"] = bool(np.array_equal(after, before, equal_nan=True))
        print(json.dumps(row), flush=True)
    print(json.dumps({"name": "__done__"}), flush=True)


def _run_worker(device: bool, env_extra: dict[str, str] | None = None,
                code: str | None = None) -> tuple[dict[str, dict], subprocess.CompletedProcess]:
    env = {**os.environ, **(env_extra or {})}
    args = [sys.executable, str(HERE), "--worker", "cuda" if device else "cpu"]
    if code is not None:
        args = [sys.executable, "-c", code]
    run = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    rows = {}
    for line in run.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            rows[row["name"]] = row
    return rows, run


def _names(device: bool) -> list[str]:
    import softce as sc

    names = [c[0] for c in _cases(sc, (lambda a: a), device)]
    assert len(names) == len(set(names)), "case names must be unique"
    return names


@pytest.fixture(scope="module")
def cpu_rows():
    return _run_worker(False)


@pytest.fixture(scope="module")
def cuda_rows():
    on_gpu = os.environ.get("SOFTCE_TEST_GPU") == "1"  # the device itself (conftest.py)
    return _run_worker(True, {} if on_gpu else {"NUMBA_ENABLE_CUDASIM": "1"})


def _judge(rows_run, name: str) -> None:
    rows, run = rows_run
    if name not in rows:
        pytest.fail(f"the worker never finished {name!r}: exit {run.returncode} "
                    f"(a negative code is a signal, -11 a segfault)\n{run.stderr[-3000:]}")
    row = rows[name]
    expected, argument = row["expected"], row["argument"]
    if expected == "ok":
        assert row["outcome"] == "returned", row
        return
    assert row["outcome"] == "raised", f"{name} returned {row.get('shapes')} instead of raising"
    allowed = {"error": ("ValueError", "TypeError")}.get(expected, (expected,))
    assert row["type"] in allowed, row
    if argument is not None:
        assert argument in row["message"], f"{argument!r} not named in: {row['message']}"
    assert row.get("out_intact", True), f"{name} wrote to out before failing"


CPU_NAMES = _names(False)
CUDA_NAMES = _names(True)


@pytest.mark.parametrize("name", CPU_NAMES)
def test_cpu_bad_input(cpu_rows, name) -> None:
    _judge(cpu_rows, name)


@pytest.mark.parametrize("name", CUDA_NAMES)
def test_cuda_bad_input(cuda_rows, name) -> None:
    _judge(cuda_rows, name)


def test_the_workers_finished_cleanly(cpu_rows, cuda_rows) -> None:
    for rows, run in (cpu_rows, cuda_rows):
        assert run.returncode == 0, run.stderr[-3000:]
        assert "__done__" in rows


def test_zero_size_results(cpu_rows) -> None:
    rows = cpu_rows[0]
    assert rows["softmax/zero-size/(2, 0)"]["shapes"] == [[2, 0]]
    assert rows["logsumexp/zero-size/(2, 0)"]["shapes"] == [[2]]
    assert rows["softmax_jacobian/zero-size/(2, 0)"]["shapes"] == [[2, 0, 0]]
    assert rows["cross_entropy/zero-rows-labels"]["shapes"] == [[], [0, 3]]


def test_a_segfault_fails_its_case_not_the_runner() -> None:
    """The harness itself: a worker killed by SIGSEGV reports the cases it finished and the
    signal, and the parent turns the missing case into a failure."""
    code = ("import json, ctypes\n"
            "print(json.dumps({'name': 'before', 'expected': 'ok', 'argument': None,"
            " 'outcome': 'returned', 'shapes': []}), flush=True)\n"
            "ctypes.string_at(0)\n")
    rows, run = _run_worker(False, code=code)
    assert run.returncode < 0 and "before" in rows
    _judge((rows, run), "before")
    with pytest.raises(pytest.fail.Exception, match="segfault"):
        _judge((rows, run), "after")


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(sys.argv[2] == "cuda")
