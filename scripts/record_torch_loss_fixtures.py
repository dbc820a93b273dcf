"""Record PyTorch's losses and gradients for the whole cross-entropy family as test fixtures
(PyTorch is a reference, never a dependency of softce).

    python scripts/record_torch_loss_fixtures.py      # needs torch and numpy

writes tests/fixtures/torch_losses.npz: one compressed archive (fixed timestamps, so two runs
give identical bytes) with, for every case, its inputs (drawn by NumPy from a generator seeded
with the CRC-32 of the case's name) and torch's outputs and gradients, and a JSON index
(``meta``) of the cases' options. The cases:

* ``ce``: F.cross_entropy with labels, probabilities and unnormalised probabilities; weight;
  the default and a custom ignore_index, some or all positions ignored (the mean of nothing is
  NaN, or ``empty_mean``); label_smoothing; reduction none/mean/sum; z_loss (z * LSE^2 per
  counted position, divided for "mean" by the CE part's denominator); softcap (c tanh(x / c)
  through torch.tanh); return_lse (torch.logsumexp of the capped logits); float32 and float64;
  (N, C) with C = 5, 37, 1000, the class axis first, and the K-dimensional (N, C, d1[, d2])
  layout with axis=1; -inf masked logits; gradients by autograd times a grad_output (scalar,
  or per position for "none").
* ``nll``: F.nll_loss with weight, ignore_index, every reduction, K-dim inputs.
* ``bce``: F.binary_cross_entropy_with_logits and its gradient, weight (full and broadcast),
  pos_weight (broadcast along the last axis), |x| up to 30.
* ``kl``: F.kl_div, every reduction, log_target True and False, targets with exact zeros (and,
  with log_target, -inf log targets, where torch's value is NaN).
* ``entropy``: H(softmax(x)) as -(softmax * log_softmax).sum(axis) and its gradient, rows with
  -inf logits included (torch's formula gives NaN there; a NaN-free torch formula, with
  torch.where around log_softmax, is recorded beside it as ``h_safe``/``grad_safe``).

The tests import this file (without torch) for ``case_specs``, ``make_inputs`` and ``load``,
and where torch is installed run ``record_case`` live against the recorded file.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "torch_losses.npz"
DTYPES = {"f32": "float32", "f64": "float64"}
REDUCTIONS = ("none", "mean", "sum")
Z = 0.01  # the z_loss coefficient in the grid


# the cases: plain dicts (JSON-able), no torch ------------------------------------------------

def _shape_str(shape, axis) -> str:
    s = "(" + ",".join(map(str, shape)) + ")"
    return s if axis in (-1, len(shape) - 1) else f"{s}/axis{axis}"


def _go_for(reduction: str, k: int):
    """The grad_output of a case: None (1), a scalar, or "pos" (one per position)."""
    if reduction == "none":
        return "pos" if k % 3 else None
    if reduction == "mean":
        return (None, 1.5, -0.75)[k % 3]
    return (0.75, None, 2.0)[k % 3]


# label options: (name, options); ignore: "some" positions or "all"
CE_LABEL_OPTS = [
    ("plain", {}),
    ("weight", {"weight": True}),
    ("ignore", {"ignore": "some"}),
    ("ignore3", {"ignore": "some", "ignore_index": 3}),
    ("weight+ignore3", {"weight": True, "ignore": "some", "ignore_index": 3}),
    ("smooth0.1", {"label_smoothing": 0.1}),
    ("weight+smooth0.3+ignore", {"weight": True, "label_smoothing": 0.3, "ignore": "some"}),
    ("zloss+weight+ignore", {"z_loss": Z, "weight": True, "ignore": "some", "return_lse": True}),
    ("softcap5+lse", {"softcap": 5.0, "return_lse": True}),
    ("softcap30+weight+smooth0.1+ignore3+zloss+lse",
     {"softcap": 30.0, "weight": True, "label_smoothing": 0.1, "ignore": "some",
      "ignore_index": 3, "z_loss": Z, "return_lse": True}),
]
CE_PROB_OPTS = [
    ("plain", {}),
    ("weight", {"weight": True}),
    ("smooth0.1", {"label_smoothing": 0.1}),
    ("weight+smooth0.3", {"weight": True, "label_smoothing": 0.3}),
    ("zloss+lse", {"z_loss": Z, "return_lse": True}),
    ("softcap5+weight+zloss+lse",
     {"softcap": 5.0, "weight": True, "z_loss": Z, "return_lse": True}),
]


def _ce(kind, opt_name, opts, reduction, dt, shape, axis, k, **extra) -> dict:
    spec = {"op": "ce", "target": kind, "dtype": DTYPES[dt], "shape": list(shape),
            "axis": axis, "reduction": reduction, "weight": False, "ignore": None,
            "ignore_index": -100, "label_smoothing": 0.0, "z_loss": 0.0, "softcap": None,
            "return_lse": False, "empty_mean": None, "mask": False,
            "go": _go_for(reduction, k)}
    spec.update(opts)
    spec.update(extra)
    spec["name"] = f"ce/{kind}/{opt_name}/{reduction}/{dt}/{_shape_str(shape, axis)}"
    return spec


def ce_specs() -> list[dict]:
    specs = []
    label_shapes = [((4, 5), -1), ((6, 37), -1), ((2, 5, 3), 1), ((2, 5, 2, 3), 1)]
    other_layouts = [((5, 6), 0), ((3, 4, 5), -1)]
    prob_shapes = [((4, 5), -1), ((6, 37), -1), ((2, 5, 2, 3), 1)]
    for dt in DTYPES:
        for shape, axis in label_shapes:
            for k, (name, opts) in enumerate(CE_LABEL_OPTS):
                for reduction in REDUCTIONS:
                    specs.append(_ce("labels", name, opts, reduction, dt, shape, axis, k))
        for shape, axis in other_layouts:  # the class axis first; K-dim with the class last
            for k, (name, opts) in enumerate([CE_LABEL_OPTS[0], CE_LABEL_OPTS[6],
                                              CE_LABEL_OPTS[9]]):
                for reduction in REDUCTIONS:
                    specs.append(_ce("labels", name, opts, reduction, dt, shape, axis, k))
            specs.append(_ce("probs", "weight+smooth0.3", CE_PROB_OPTS[3][1], "mean", dt, shape,
                             axis, 0))
        for shape, axis in prob_shapes:
            for k, (name, opts) in enumerate(CE_PROB_OPTS):
                for reduction in REDUCTIONS:
                    specs.append(_ce("probs", name, opts, reduction, dt, shape, axis, k))
        for reduction in REDUCTIONS:
            specs.append(_ce("unnormalised", "plain", {}, reduction, dt, (4, 5), -1, 1))
            specs.append(_ce("unnormalised", "weight+smooth0.1",
                             {"weight": True, "label_smoothing": 0.1}, reduction, dt,
                             (2, 5, 3), 1, 2))
        # C = 1000
        big = (3, 1000)
        specs.append(_ce("labels", "plain", {}, "mean", dt, big, -1, 0))
        specs.append(_ce("labels", "weight+smooth0.1+ignore",
                         {"weight": True, "label_smoothing": 0.1, "ignore": "some"}, "none", dt,
                         big, -1, 1))
        specs.append(_ce("labels", "softcap30+zloss+lse",
                         {"softcap": 30.0, "z_loss": Z, "return_lse": True}, "sum", dt, big,
                         -1, 0))
        specs.append(_ce("probs", "smooth0.3", {"label_smoothing": 0.3}, "mean", dt, big, -1, 1))
        # -inf masked logits (labels on finite logits)
        for shape, axis in (((4, 5), -1), ((6, 37), -1), ((2, 5, 3), 1)):
            for k, (name, opts) in enumerate([("plain", {}),
                                              ("weight+ignore+zloss+lse",
                                               {"weight": True, "ignore": "some",
                                                "z_loss": Z, "return_lse": True})]):
                for reduction in REDUCTIONS:
                    specs.append(_ce("labels", "mask+" + name, opts, reduction, dt, shape, axis,
                                     k, mask=True))
        # every position ignored: the mean is NaN, or empty_mean
        for shape, axis in (((4, 5), -1), ((2, 5, 3), 1)):
            for k, (name, opts) in enumerate([
                    ("allignored", {"ignore": "all"}),
                    ("allignored3+weight+smooth0.1",
                     {"ignore": "all", "ignore_index": 3, "weight": True,
                      "label_smoothing": 0.1}),
                    ("allignored+zloss+lse", {"ignore": "all", "z_loss": Z,
                                              "return_lse": True})]):
                for reduction in REDUCTIONS:
                    specs.append(_ce("labels", name, opts, reduction, dt, shape, axis, k))
                specs.append(_ce("labels", name + "+emptymean0", opts, "mean", dt, shape, axis,
                                 k + 1, empty_mean=0.0))
            specs.append(_ce("labels", "allignored+emptymean-1.5", {"ignore": "all"}, "mean",
                             dt, shape, axis, 0, empty_mean=-1.5))
        # empty_mean changes nothing when some position counts
        specs.append(_ce("labels", "weight+ignore+emptymean0",
                         {"weight": True, "ignore": "some"}, "mean", dt, (4, 5), -1, 1,
                         empty_mean=0.0))
    return specs


def nll_specs() -> list[dict]:
    specs = []
    opts_list = [("plain", {}), ("weight", {"weight": True}), ("ignore", {"ignore": "some"}),
                 ("weight+ignore3", {"weight": True, "ignore": "some", "ignore_index": 3}),
                 ("weight+allignored", {"weight": True, "ignore": "all"})]
    for dt in DTYPES:
        for shape, axis in (((4, 5), -1), ((6, 37), -1), ((2, 5, 3), 1), ((2, 5, 2, 3), 1),
                            ((5, 4), 0)):
            for name, opts in opts_list:
                for reduction in REDUCTIONS:
                    spec = {"op": "nll", "dtype": DTYPES[dt], "shape": list(shape), "axis": axis,
                            "reduction": reduction, "weight": False, "ignore": None,
                            "ignore_index": -100}
                    spec.update(opts)
                    spec["name"] = f"nll/{name}/{reduction}/{dt}/{_shape_str(shape, axis)}"
                    specs.append(spec)
    return specs


def bce_specs() -> list[dict]:
    specs = []
    for dt in DTYPES:
        for shape in ((6, 4), (3, 4, 5)):
            nd = len(shape)
            opts_list = [
                ("plain", {}),
                ("weight", {"weight": list(shape)}),
                ("weight-row", {"weight": [shape[-1]]}),
                ("weight-col", {"weight": [shape[0]] + [1] * (nd - 1)}),
                ("posweight", {"pos_weight": [shape[-1]]}),
                ("weight-col+posweight", {"weight": [shape[0]] + [1] * (nd - 1),
                                          "pos_weight": [shape[-1]]}),
                ("weight+posweight-bcast", {"weight": list(shape),
                                            "pos_weight": [1] * (nd - 1) + [shape[-1]]}),
            ]
            for k, (name, opts) in enumerate(opts_list):
                for reduction in REDUCTIONS:
                    spec = {"op": "bce", "dtype": DTYPES[dt], "shape": list(shape),
                            "reduction": reduction, "weight": None, "pos_weight": None,
                            "go": _go_for(reduction, k)}
                    spec.update(opts)
                    spec["name"] = f"bce/{name}/{reduction}/{dt}/{_shape_str(shape, -1)}"
                    specs.append(spec)
    return specs


def kl_specs() -> list[dict]:
    specs = []
    for dt in DTYPES:
        for shape in ((4, 5), (2, 3, 4)):
            for log_target in (False, True):
                for reduction in ("none", "mean", "sum", "batchmean"):
                    specs.append({"op": "kl", "dtype": DTYPES[dt], "shape": list(shape),
                                  "reduction": reduction, "log_target": log_target,
                                  "neginf": False,
                                  "name": f"kl/{'logtarget' if log_target else 'target'}/"
                                          f"{reduction}/{dt}/{_shape_str(shape, -1)}"})
        specs.append({"op": "kl", "dtype": DTYPES[dt], "shape": [4, 5], "reduction": "none",
                      "log_target": True, "neginf": True,
                      "name": f"kl/logtarget-neginf/none/{dt}/(4,5)"})
    return specs


def entropy_specs() -> list[dict]:
    specs = []
    for dt in DTYPES:
        for shape, axis in (((4, 5), -1), ((6, 37), -1), ((5, 4), 0), ((2, 5, 3), 1),
                            ((3, 1000), -1)):
            for go in (None, 0.5, "pos"):
                specs.append({"op": "entropy", "dtype": DTYPES[dt], "shape": list(shape),
                              "axis": axis, "go": go, "mask": False,
                              "name": f"entropy/go-{go}/{dt}/{_shape_str(shape, axis)}"})
        for shape, axis in (((4, 5), -1), ((6, 37), -1), ((2, 5, 3), 1)):
            specs.append({"op": "entropy", "dtype": DTYPES[dt], "shape": list(shape),
                          "axis": axis, "go": "pos", "mask": True,
                          "name": f"entropy/mask/go-pos/{dt}/{_shape_str(shape, axis)}"})
    return specs


def case_specs() -> list[dict]:
    specs = ce_specs() + nll_specs() + bce_specs() + kl_specs() + entropy_specs()
    names = [s["name"] for s in specs]
    assert len(set(names)) == len(names), "case names must be unique"
    return specs


# inputs: NumPy only ----------------------------------------------------------------------------

def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _batch_shape(shape, axis) -> tuple:
    ax = axis % len(shape)
    return tuple(shape[:ax]) + tuple(shape[ax + 1:])


def _softmax(a: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _go_array(go, batch_shape, rng, dtype):
    if go is None:
        return None
    if go == "pos":
        return rng.standard_normal(batch_shape).astype(dtype)
    return np.asarray(go, dtype)


def make_inputs(spec: dict) -> dict[str, np.ndarray]:
    """The case's inputs, drawn from a generator seeded with its name."""
    rng = rng_for(spec["name"])
    dtype = np.dtype(spec["dtype"])
    shape = tuple(spec["shape"])
    op = spec["op"]
    out: dict[str, np.ndarray] = {}
    if op in ("ce", "nll", "entropy"):
        axis = spec["axis"]
        ax = axis % len(shape)
        n = shape[ax]
        batch = _batch_shape(shape, axis)
        scale = 12.0 if spec.get("softcap") else 3.0
        x = rng.standard_normal(shape) * scale
        if op == "nll":
            x = np.log(_softmax(x, ax))  # log-probabilities
        if spec.get("mask"):
            moved = np.moveaxis(x, ax, -1).copy()
            rows = moved.reshape(-1, n)
            rows[0, 1] = rows[0, -1] = -math.inf
            if op == "entropy":
                rows[-1, 0] = -math.inf
            x = np.moveaxis(rows.reshape(moved.shape), -1, ax)
        out["x"] = np.ascontiguousarray(x.astype(dtype))
        if op == "entropy":
            go = _go_array(spec["go"], batch, rng, dtype)
            if go is not None:
                out["go"] = go
            return out
        if op == "nll" or spec["target"] == "labels":
            labels = rng.integers(0, n, size=batch).astype(np.int64)
            flat = labels.reshape(-1)
            ii = spec["ignore_index"]
            if spec.get("mask"):
                flat[0] = 0  # the masked row's label on a finite logit
            if spec["ignore"] == "all":
                flat[:] = ii
            elif spec["ignore"] == "some":
                drop = rng.random(flat.size) < 0.3
                drop[0] = False
                drop[-1] = True
                flat[drop] = ii
                if flat[0] == ii:
                    flat[0] = 0
            out["target"] = labels
        elif spec["target"] == "probs":
            out["target"] = _softmax(rng.standard_normal(shape) * 2, ax).astype(dtype)
        else:
            out["target"] = rng.uniform(0, 1.5, size=shape).astype(dtype)
        if spec["weight"]:
            out["weight"] = rng.uniform(0.2, 2.0, size=n).astype(dtype)
        if op == "ce":
            go = _go_array(spec["go"], batch if spec["reduction"] == "none" else (), rng,
                           dtype)
            if go is not None:
                out["go"] = go
        return out
    if op == "bce":
        x = rng.standard_normal(shape) * 8
        flat = x.reshape(-1)
        flat[:6] = [30.0, -30.0, 29.5, -20.0, 0.0, 1e-3]
        out["x"] = np.clip(x, -30, 30).astype(dtype)
        y = rng.uniform(0, 1, size=shape)
        yf = y.reshape(-1)
        yf[:4] = [1.0, 0.0, 0.0, 1.0]
        yf[6:8] = [1.0, 0.0]
        out["y"] = y.astype(dtype)
        if spec["weight"] is not None:
            out["weight"] = rng.uniform(0.1, 2.5, size=spec["weight"]).astype(dtype)
        if spec["pos_weight"] is not None:
            out["pos_weight"] = rng.uniform(0.25, 4.0, size=spec["pos_weight"]).astype(dtype)
        go = _go_array(spec["go"], shape if spec["reduction"] == "none" else (), rng, dtype)
        if go is not None:
            out["go"] = go
        return out
    if op == "kl":
        inp = np.log(_softmax(rng.standard_normal(shape) * 2, -1))
        tgt = _softmax(rng.standard_normal(shape) * 2, -1)
        tgt.reshape(-1)[[0, 3, 7]] = 0.0  # exact zeros
        if spec["log_target"]:
            with np.errstate(divide="ignore"):
                tgt = np.log(tgt)
            if not spec["neginf"]:
                tgt.reshape(-1)[[0, 3, 7]] = -200.0  # exp underflows in float32, not float64
        out["input"] = inp.astype(dtype)
        out["target"] = tgt.astype(dtype)
        return out
    raise ValueError(op)


# torch -----------------------------------------------------------------------------------------

def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _backward(torch, loss, go: np.ndarray | None):
    g = (torch.ones_like(loss) if go is None
         else torch.from_numpy(go).expand(loss.shape).contiguous())
    loss.backward(g)


def _ce_torch(torch, spec, inp) -> dict[str, np.ndarray]:
    F = torch.nn.functional
    axis = spec["axis"] % len(spec["shape"])
    x = torch.from_numpy(inp["x"]).requires_grad_(True)
    cap = spec["softcap"]
    xc = cap * torch.tanh(x / cap) if cap is not None else x
    target = torch.from_numpy(inp["target"])
    labels = spec["target"] == "labels"
    kw = {"reduction": spec["reduction"], "label_smoothing": spec["label_smoothing"]}
    if spec["weight"]:
        kw["weight"] = torch.from_numpy(inp["weight"])
    if labels:
        kw["ignore_index"] = spec["ignore_index"]
    # torch takes the class axis at 1 (or 0 for a single position)
    xt = xc.movedim(axis, 1) if xc.ndim > 1 else xc
    tt = target if labels else (target.movedim(axis, 1) if target.ndim > 1 else target)
    loss = F.cross_entropy(xt, tt, **kw)
    lse = torch.logsumexp(xc, dim=axis)
    if labels:
        counted = target != spec["ignore_index"]
        denom = (kw["weight"][target[counted]].sum() if spec["weight"]
                 else counted.sum().to(x.dtype))
    else:
        counted = torch.ones(lse.shape, dtype=torch.bool)
        denom = torch.tensor(float(lse.numel()), dtype=x.dtype)
    z = spec["z_loss"]
    if z:
        zpos = z * lse * lse
        if spec["reduction"] == "none":
            loss = loss + torch.where(counted, zpos, torch.zeros_like(zpos))
        elif spec["reduction"] == "sum":
            loss = loss + zpos[counted].sum()
        else:
            loss = loss + zpos[counted].sum() / denom
    _backward(torch, loss, inp.get("go"))
    out = {"loss": _np(loss), "dlogits": _np(x.grad), "lse": _np(lse)}
    if spec["empty_mean"] is not None and spec["reduction"] == "mean" and float(denom) == 0:
        out["loss"] = np.asarray(spec["empty_mean"], inp["x"].dtype)
    return out


def _nll_torch(torch, spec, inp) -> dict[str, np.ndarray]:
    F = torch.nn.functional
    axis = spec["axis"] % len(spec["shape"])
    x = torch.from_numpy(inp["x"])
    kw = {"reduction": spec["reduction"], "ignore_index": spec["ignore_index"]}
    if spec["weight"]:
        kw["weight"] = torch.from_numpy(inp["weight"])
    loss = F.nll_loss(x.movedim(axis, 1), torch.from_numpy(inp["target"]), **kw)
    return {"loss": _np(loss)}


def _bce_torch(torch, spec, inp) -> dict[str, np.ndarray]:
    F = torch.nn.functional
    x = torch.from_numpy(inp["x"]).requires_grad_(True)
    kw = {"reduction": spec["reduction"]}
    for key in ("weight", "pos_weight"):
        if key in inp:
            kw[key] = torch.from_numpy(inp[key])
    loss = F.binary_cross_entropy_with_logits(x, torch.from_numpy(inp["y"]), **kw)
    _backward(torch, loss, inp.get("go"))
    return {"loss": _np(loss), "dx": _np(x.grad)}


def _kl_torch(torch, spec, inp) -> dict[str, np.ndarray]:
    F = torch.nn.functional
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reduction="mean" warns that it is not batchmean
        loss = F.kl_div(torch.from_numpy(inp["input"]), torch.from_numpy(inp["target"]),
                        reduction=spec["reduction"], log_target=spec["log_target"])
    return {"loss": _np(loss)}


def _entropy_torch(torch, spec, inp) -> dict[str, np.ndarray]:
    axis = spec["axis"] % len(spec["shape"])
    go = inp.get("go")
    x = torch.from_numpy(inp["x"]).requires_grad_(True)
    h = -(torch.softmax(x, axis) * torch.log_softmax(x, axis)).sum(axis)
    _backward(torch, h, go)
    out = {"h": _np(h), "grad": _np(x.grad)}
    # the same without 0 * -inf: log_softmax replaced by 0 where softmax is 0
    xs = torch.from_numpy(inp["x"]).requires_grad_(True)
    p = torch.softmax(xs, axis)
    logp = torch.log_softmax(xs, axis)
    safe = torch.where(p > 0, logp, torch.zeros_like(logp))
    hs = -(p * safe).sum(axis)
    _backward(torch, hs, go)
    out["h_safe"] = _np(hs)
    out["grad_safe"] = _np(xs.grad)
    return out


TORCH_OPS = {"ce": _ce_torch, "nll": _nll_torch, "bce": _bce_torch, "kl": _kl_torch,
             "entropy": _entropy_torch}


def record_case(torch, spec: dict) -> dict[str, np.ndarray]:
    """The case's inputs and torch's outputs, as NumPy arrays of the case's dtype."""
    inp = make_inputs(spec)
    out = TORCH_OPS[spec["op"]](torch, spec, inp)
    return {**inp, **out}


# the file --------------------------------------------------------------------------------------

def write(path: Path, specs: list[dict], cases: list[dict[str, np.ndarray]],
          torch_version: str) -> None:
    """An .npz (np.load reads it): one flat array per dtype holding every case's arrays end to
    end, and ``meta`` (JSON: the specs and where each array lies), written with fixed
    timestamps and order, so the same cases give the same bytes."""
    flat: dict[str, list[np.ndarray]] = {}
    sizes: dict[str, int] = {}
    layout = []
    for arrays in cases:
        where = {}
        for field in sorted(arrays):
            arr = np.asarray(arrays[field])
            dt = arr.dtype.name
            where[field] = [dt, sizes.get(dt, 0), list(arr.shape)]
            flat.setdefault(dt, []).append(arr.reshape(-1))
            sizes[dt] = sizes.get(dt, 0) + arr.size
        layout.append(where)
    meta = {"torch_version": torch_version, "cases": specs, "layout": layout}
    entries = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)}
    for dt in sorted(flat):
        entries[dt] = np.concatenate(flat[dt])
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key, arr in entries.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def load(path: Path = FIXTURE) -> tuple[dict, list[dict[str, np.ndarray]]]:
    """(meta, per-case arrays) from the recorded file; meta["cases"] holds the specs."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(data["meta"].tobytes().decode())
        flat = {key: data[key] for key in data.files if key != "meta"}
    cases = []
    for where in meta["layout"]:
        cases.append({field: flat[dt][off:off + math.prod(shape)].reshape(shape)
                      for field, (dt, off, shape) in where.items()})
    return meta, cases


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    specs = case_specs()
    cases = [record_case(torch, spec) for spec in specs]
    write(args.out, specs, cases, torch.__version__)
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec["op"]] = counts.get(spec["op"], 0) + 1
    print(f"{len(specs)} cases {counts}; {args.out} {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
