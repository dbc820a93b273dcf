"""Record where PyTorch, JAX and SciPy give NaN on adversarial inputs, beside softce's result
(the references are never dependencies of softce).

    pip install torch jax jaxlib scipy
    python scripts/record_nan_references.py            # writes tests/fixtures/nan_references.json
    python scripts/record_nan_references.py --table    # prints the README table from the JSON

Every case is one row (or one probability vector) through one softce function, and the same
computation through each reference that has it: the library function where one exists
(``torch.softmax``, ``jax.nn.softmax``, ``scipy.special.softmax``, ...), the gradient by
``torch.autograd`` / ``jax.vjp`` where softce has one, and, marked "naive", the textbook formula
that users write (``-(p * log p).sum()``). JAX runs with ``jax_enable_x64`` so float64 cases stay
float64. ``tests/test_nan_references.py`` imports this file (torch/jax not needed) for ``CASES``,
``softce_result`` and ``markdown_table``, and where a reference is importable recomputes it with
``reference_result`` and compares with the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nan_references.json"
INF = math.inf
FRAMEWORKS = ("torch", "jax", "scipy")


def _case(cid: str, op: str, dtype: str, x, **extra) -> dict:
    return {"id": cid, "op": op, "dtype": dtype, "x": x, **extra}


# id: op/input/dtype. x is one row (the class axis); label, y (probabilities) and g (a cotangent)
# are what the op needs besides.
CASES: list[dict] = [
    _case("softmax/all-neg-inf/f64", "softmax", "float64", [-INF, -INF, -INF]),
    _case("softmax/mask/f64", "softmax", "float64", [-INF, 0.0]),
    _case("softmax/plus-inf/f64", "softmax", "float64", [INF, 1.0, 2.0]),
    _case("softmax/huge/f32", "softmax", "float32", [1e30, -1e30, 0.0]),
    _case("softmax/huge/f64", "softmax", "float64", [1e30, -1e30, 0.0]),
    _case("log_softmax/all-neg-inf/f64", "log_softmax", "float64", [-INF, -INF, -INF]),
    _case("log_softmax/mask/f64", "log_softmax", "float64", [-INF, 0.0]),
    _case("log_softmax/plus-inf/f64", "log_softmax", "float64", [INF, 1.0, 2.0]),
    _case("log_softmax/huge/f32", "log_softmax", "float32", [1e30, -1e30, 0.0]),
    _case("log_softmax/huge/f64", "log_softmax", "float64", [1e30, -1e30, 0.0]),
    _case("logsumexp/all-neg-inf/f64", "logsumexp", "float64", [-INF, -INF, -INF]),
    _case("logsumexp/mask/f64", "logsumexp", "float64", [-INF, 0.0]),
    _case("logsumexp/plus-inf/f64", "logsumexp", "float64", [INF, 1.0, 2.0]),
    _case("logsumexp/plus-inf/f32", "logsumexp", "float32", [INF, 1.0, 2.0]),
    _case("logsumexp/huge/f32", "logsumexp", "float32", [1e30, -1e30, 0.0]),
    _case("logsumexp/neg-huge/f32", "logsumexp", "float32", [-1e30, -1e30]),
    _case("sigmoid/inf-and-huge/f32", "sigmoid", "float32", [INF, -INF, 1e30, -1e30, 0.0]),
    _case("sigmoid/inf-and-huge/f64", "sigmoid", "float64", [INF, -INF, 1e30, -1e30, 0.0]),
    _case("entropy/p-zero/f64", "entropy", "float64", [0.5, 0.0, 0.5]),
    _case("entropy/p-zero/f32", "entropy", "float32", [0.5, 0.0, 0.5]),
    _case("entropy/one-hot/f64", "entropy", "float64", [0.0, 0.0, 1.0]),
    _case("entropy/all-zero/f64", "entropy", "float64", [0.0, 0.0, 0.0]),
    _case("cross_entropy[label]/mask/f64", "cross_entropy_label", "float64",
          [-INF, 0.0, -INF, 1.0], label=3),
    _case("cross_entropy[label]/label-on-masked/f64", "cross_entropy_label", "float64",
          [-INF, 0.0], label=0),
    _case("cross_entropy[label]/all-neg-inf/f64", "cross_entropy_label", "float64",
          [-INF, -INF], label=0),
    _case("cross_entropy[label]/huge/f32", "cross_entropy_label", "float32",
          [1e30, -1e30, 0.0], label=1),
    _case("cross_entropy_grad[label]/mask/f64", "cross_entropy_label_grad", "float64",
          [-INF, 0.0, -INF, 1.0], label=3),
    _case("cross_entropy_grad[label]/label-on-masked/f64", "cross_entropy_label_grad",
          "float64", [-INF, 0.0], label=0),
    _case("cross_entropy_grad[label]/huge/f32", "cross_entropy_label_grad", "float32",
          [1e30, -1e30, 0.0], label=1),
    _case("cross_entropy[prob]/zero-target-on-neg-inf/f64", "cross_entropy_prob", "float64",
          [-INF, 0.0, 1.0], y=[0.0, 0.5, 0.5]),
    _case("cross_entropy[prob]/zero-target/f64", "cross_entropy_prob", "float64",
          [1.0, 2.0, 3.0], y=[0.0, 1.0, 0.0]),
    _case("cross_entropy[prob]/huge/f32", "cross_entropy_prob", "float32",
          [1e30, -1e30, 0.0], y=[0.5, 0.5, 0.0]),
    _case("cross_entropy_grad[prob]/zero-target-on-neg-inf/f64", "cross_entropy_prob_grad",
          "float64", [-INF, 0.0, 1.0], y=[0.0, 0.5, 0.5]),
    _case("kl/zero-target-on-neg-inf/f64", "kl", "float64", [-INF, 0.0, 1.0],
          y=[0.0, 0.5, 0.5]),
    _case("kl/zero-target/f64", "kl", "float64", [1.0, 2.0, 3.0], y=[0.0, 1.0, 0.0]),
    _case("logsumexp_vjp/all-neg-inf/f64", "logsumexp_vjp", "float64", [-INF, -INF], g=1.0),
    _case("logsumexp_vjp/mask/f64", "logsumexp_vjp", "float64", [-INF, 0.0], g=1.0),
    _case("logsumexp_vjp/plus-inf/f64", "logsumexp_vjp", "float64", [INF, 1.0], g=1.0),
    _case("softmax_vjp/mask/f64", "softmax_vjp", "float64", [-INF, 0.0, 1.0],
          g=[1.0, -2.0, 0.5]),
    _case("log_softmax_vjp/mask/f64", "log_softmax_vjp", "float64", [-INF, 0.0, 1.0],
          g=[1.0, -2.0, 0.5]),
]

# what each reference calls, per op: (framework, api text for the table, "lib" or "naive")
APIS: dict[str, list[tuple[str, str, str]]] = {
    "softmax": [("torch", "torch.softmax", "lib"), ("jax", "jax.nn.softmax", "lib"),
                ("scipy", "scipy.special.softmax", "lib")],
    "log_softmax": [("torch", "torch.log_softmax", "lib"), ("jax", "jax.nn.log_softmax", "lib"),
                    ("scipy", "scipy.special.log_softmax", "lib")],
    "logsumexp": [("torch", "torch.logsumexp", "lib"),
                  ("jax", "jax.scipy.special.logsumexp", "lib"),
                  ("scipy", "scipy.special.logsumexp", "lib")],
    "sigmoid": [("torch", "torch.sigmoid", "lib"), ("jax", "jax.nn.sigmoid", "lib"),
                ("scipy", "scipy.special.expit", "lib")],
    "entropy": [("torch", "torch.special.entr(p).sum()", "lib"),
                ("torch", "-(p * p.log()).sum()", "naive"),
                ("jax", "jax.scipy.special.entr(p).sum()", "lib"),
                ("jax", "-(p * jnp.log(p)).sum()", "naive"),
                ("scipy", "scipy.special.entr(p).sum()", "lib")],
    "cross_entropy_label": [("torch", "F.cross_entropy", "lib"),
                            ("jax", "-jax.nn.log_softmax(x)[c]", "naive"),
                            ("scipy", "-scipy.special.log_softmax(x)[c]", "naive")],
    "cross_entropy_label_grad": [("torch", "autograd of F.cross_entropy", "lib"),
                                 ("jax", "jax.grad of -log_softmax(x)[c]", "naive")],
    "cross_entropy_prob": [("torch", "F.cross_entropy", "lib"),
                           ("jax", "-(y * jax.nn.log_softmax(x)).sum()", "naive"),
                           ("scipy", "-(y * scipy.special.log_softmax(x)).sum()", "naive")],
    "cross_entropy_prob_grad": [("torch", "autograd of F.cross_entropy", "lib"),
                                ("jax", "jax.grad of -(y * log_softmax(x)).sum()", "naive")],
    "kl": [("torch", "F.kl_div(log_softmax(x), y, reduction='sum')", "lib"),
           ("jax", "jax.scipy.special.rel_entr(y, softmax(x)).sum()", "lib"),
           ("scipy", "scipy.special.rel_entr(y, softmax(x)).sum()", "lib")],
    "logsumexp_vjp": [("torch", "autograd of torch.logsumexp", "lib"),
                      ("jax", "jax.grad of jax.scipy.special.logsumexp", "lib")],
    "softmax_vjp": [("torch", "autograd of torch.softmax", "lib"),
                    ("jax", "jax.vjp of jax.nn.softmax", "lib")],
    "log_softmax_vjp": [("torch", "autograd of torch.log_softmax", "lib"),
                        ("jax", "jax.vjp of jax.nn.log_softmax", "lib")],
}

# what softce computes for each op (the table's softce column names these)
SOFTCE_API = {
    "softmax": "softmax", "log_softmax": "log_softmax", "logsumexp": "logsumexp",
    "sigmoid": "sigmoid", "entropy": "entropy",
    "cross_entropy_label": "cross_entropy(x, c)", "cross_entropy_label_grad":
    "cross_entropy_grad(x, c)[1]", "cross_entropy_prob": "cross_entropy(x, y)",
    "cross_entropy_prob_grad": "cross_entropy_grad(x, y)[1]",
    "kl": "cross_entropy(x, y) - entropy(y)", "logsumexp_vjp": "logsumexp_vjp",
    "softmax_vjp": "softmax_vjp(softmax(x), g)",
    "log_softmax_vjp": "log_softmax_vjp(log_softmax(x), g)",
}


def case_by_id(cid: str) -> dict:
    return next(c for c in CASES if c["id"] == cid)


def inputs(case: dict) -> dict:
    """The case's arrays in its dtype (one row, no batch axis) and its label."""
    dt = np.dtype(case["dtype"])
    out = {"x": np.array(case["x"], dt)}
    if "y" in case:
        out["y"] = np.array(case["y"], dt)
    if "g" in case:
        out["g"] = np.array(case["g"], dt)
    if "label" in case:
        out["label"] = int(case["label"])
    return out


def softce_result(case: dict) -> np.ndarray:
    """softce on the case, run on a batch of one row; a 1-d float64 array of the results."""
    import softce

    a = inputs(case)
    x = a["x"][None]
    op = case["op"]
    with np.errstate(all="ignore"):
        if op in ("softmax", "log_softmax", "logsumexp", "sigmoid"):
            r = getattr(softce, op)(x)
        elif op == "entropy":
            r = softce.entropy(x)
        elif op == "cross_entropy_label":
            r = softce.cross_entropy(x, np.array([a["label"]]), reduction="none")
        elif op == "cross_entropy_label_grad":
            r = softce.cross_entropy_grad(x, np.array([a["label"]]), reduction="sum")[1]
        elif op == "cross_entropy_prob":
            r = softce.cross_entropy(x, a["y"][None], reduction="none")
        elif op == "cross_entropy_prob_grad":
            r = softce.cross_entropy_grad(x, a["y"][None], reduction="sum")[1]
        elif op == "kl":
            y = a["y"][None]
            r = softce.cross_entropy(x, y, reduction="none") - softce.entropy(y)
        elif op == "logsumexp_vjp":
            r = softce.logsumexp_vjp(x, a["g"].reshape(1))
        elif op == "softmax_vjp":
            r = softce.softmax_vjp(softce.softmax(x), a["g"][None])
        elif op == "log_softmax_vjp":
            r = softce.log_softmax_vjp(softce.log_softmax(x), a["g"][None])
        else:
            raise ValueError(op)
    r = np.asarray(r)
    assert r.dtype == a["x"].dtype, (case["id"], r.dtype)
    return np.ravel(r).astype(np.float64)


# references --------------------------------------------------------------------------------

def _torch(case: dict, api: str) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    a = inputs(case)
    x = torch.tensor(a["x"])
    op = case["op"]
    if op.endswith("_grad") or op.endswith("_vjp"):
        x.requires_grad_(True)
    if op == "softmax":
        r = torch.softmax(x, -1)
    elif op == "log_softmax":
        r = torch.log_softmax(x, -1)
    elif op == "logsumexp":
        r = torch.logsumexp(x, -1)
    elif op == "sigmoid":
        r = torch.sigmoid(x)
    elif op == "entropy":
        r = torch.special.entr(x).sum(-1) if api.startswith("torch.special") else \
            -(x * x.log()).sum(-1)
    elif op in ("cross_entropy_label", "cross_entropy_label_grad"):
        loss = F.cross_entropy(x[None], torch.tensor([a["label"]]), reduction="sum")
        if op.endswith("_grad"):
            loss.backward()
            r = x.grad
        else:
            r = loss
    elif op in ("cross_entropy_prob", "cross_entropy_prob_grad"):
        loss = F.cross_entropy(x[None], torch.tensor(a["y"])[None], reduction="sum")
        if op.endswith("_grad"):
            loss.backward()
            r = x.grad
        else:
            r = loss
    elif op == "kl":
        r = F.kl_div(torch.log_softmax(x, -1), torch.tensor(a["y"]), reduction="sum")
    elif op in ("logsumexp_vjp", "softmax_vjp", "log_softmax_vjp"):
        fn = {"logsumexp_vjp": lambda t: torch.logsumexp(t, -1),
              "softmax_vjp": lambda t: torch.softmax(t, -1),
              "log_softmax_vjp": lambda t: torch.log_softmax(t, -1)}[op]
        out = fn(x)
        out.backward(torch.tensor(a["g"]).reshape(out.shape))
        r = x.grad
    else:
        raise ValueError(op)
    assert r.dtype == x.dtype, (case["id"], r.dtype)
    return np.ravel(r.detach().numpy()).astype(np.float64)


def _jax(case: dict, api: str) -> np.ndarray:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jax.scipy.special as jss

    a = inputs(case)
    x = jnp.asarray(a["x"])
    op = case["op"]
    if op == "softmax":
        r = jax.nn.softmax(x)
    elif op == "log_softmax":
        r = jax.nn.log_softmax(x)
    elif op == "logsumexp":
        r = jss.logsumexp(x)
    elif op == "sigmoid":
        r = jax.nn.sigmoid(x)
    elif op == "entropy":
        r = jss.entr(x).sum() if api.startswith("jax.scipy") else -(x * jnp.log(x)).sum()
    elif op == "cross_entropy_label":
        r = -jax.nn.log_softmax(x)[a["label"]]
    elif op == "cross_entropy_label_grad":
        r = jax.grad(lambda t: -jax.nn.log_softmax(t)[a["label"]])(x)
    elif op == "cross_entropy_prob":
        r = -(jnp.asarray(a["y"]) * jax.nn.log_softmax(x)).sum()
    elif op == "cross_entropy_prob_grad":
        y = jnp.asarray(a["y"])
        r = jax.grad(lambda t: -(y * jax.nn.log_softmax(t)).sum())(x)
    elif op == "kl":
        r = jss.rel_entr(jnp.asarray(a["y"]), jax.nn.softmax(x)).sum()
    elif op in ("logsumexp_vjp", "softmax_vjp", "log_softmax_vjp"):
        fn = {"logsumexp_vjp": jss.logsumexp, "softmax_vjp": jax.nn.softmax,
              "log_softmax_vjp": jax.nn.log_softmax}[op]
        out, vjp = jax.vjp(fn, x)
        r = vjp(jnp.asarray(a["g"]).reshape(out.shape).astype(out.dtype))[0]
    else:
        raise ValueError(op)
    r = np.asarray(r)
    assert r.dtype == a["x"].dtype, (case["id"], r.dtype)
    return np.ravel(r).astype(np.float64)


def _scipy(case: dict, api: str) -> np.ndarray:
    import scipy.special as ss

    a = inputs(case)
    x = a["x"]
    op = case["op"]
    with np.errstate(all="ignore"):
        if op == "softmax":
            r = ss.softmax(x)
        elif op == "log_softmax":
            r = ss.log_softmax(x)
        elif op == "logsumexp":
            r = ss.logsumexp(x)
        elif op == "sigmoid":
            r = ss.expit(x)
        elif op == "entropy":
            r = ss.entr(x).sum()
        elif op == "cross_entropy_label":
            r = -ss.log_softmax(x)[a["label"]]
        elif op == "cross_entropy_prob":
            r = -(a["y"] * ss.log_softmax(x)).sum()
        elif op == "kl":
            r = ss.rel_entr(a["y"], ss.softmax(x)).sum()
        else:
            raise ValueError(op)
    r = np.asarray(r)
    assert r.dtype == x.dtype, (case["id"], r.dtype)
    return np.ravel(r).astype(np.float64)


RUNNERS = {"torch": _torch, "jax": _jax, "scipy": _scipy}


def references(case: dict) -> list[tuple[str, str, str]]:
    return APIS[case["op"]]


def reference_result(case: dict, framework: str, api: str) -> np.ndarray:
    return RUNNERS[framework](case, api)


def versions() -> dict:
    out = {}
    for name in ("numpy", *FRAMEWORKS):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


# JSON: floats as numbers, non-finite ones as strings ---------------------------------------

def encode(values) -> list:
    return [v if math.isfinite(v) else str(v) for v in map(float, values)]


def decode(values) -> np.ndarray:
    return np.array([float(v) for v in values], np.float64)


def record() -> dict:
    out = {"versions": versions(), "cases": []}
    for case in CASES:
        mine = softce_result(case)
        entry = {"id": case["id"], "softce": {"nan": bool(np.isnan(mine).any()),
                                              "values": encode(mine)}, "references": []}
        for framework, api, kind in references(case):
            try:
                got = reference_result(case, framework, api)
            except ImportError:
                continue
            entry["references"].append({"framework": framework, "api": api, "kind": kind,
                                        "nan": bool(np.isnan(got).any()),
                                        "values": encode(got)})
        out["cases"].append(entry)
    return out


# the README table ------------------------------------------------------------------------------

def _fmt(values: np.ndarray) -> str:
    def one(v: float) -> str:
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "inf" if v > 0 else "−inf"
        if v == 0:
            return "0"  # -0.0 too: the sign of a zero is not what the table is about
        return f"{v:.4g}".replace("-", "−")

    if len(values) == 1:
        return one(values[0])
    if np.isnan(values).all():
        return "NaN"
    return "[" + ", ".join(one(v) for v in values) + "]"


def _input_text(case: dict) -> str:
    x = _fmt(np.array(case["x"], np.float64))
    dt = "f32" if case["dtype"] == "float32" else "f64"
    extra = ""
    if "label" in case:
        extra = f", c={case['label']}"
    if "y" in case:
        extra = f", y={_fmt(np.array(case['y'], np.float64))}"
    if "g" in case and case["op"] != "logsumexp_vjp":
        extra = f", g={_fmt(np.array(case['g'], np.float64))}"
    return f"{x}{extra} ({dt})"


def differs(entry: dict) -> bool:
    """Some reference's NaN-ness or ±inf differs from softce's (the rows the table keeps)."""
    mine = decode(entry["softce"]["values"])
    for ref in entry["references"]:
        got = decode(ref["values"])
        if got.shape != mine.shape or not np.array_equal(np.isnan(got), np.isnan(mine)):
            return True
        if not np.array_equal(np.where(np.isinf(got), got, 0), np.where(np.isinf(mine), mine, 0)):
            return True
    return False


def markdown_table(data: dict) -> str:
    """function | input | PyTorch | JAX | SciPy | softce, for the cases where they differ."""
    lines = ["| function | input | PyTorch | JAX | SciPy | softce |",
             "|---|---|---|---|---|---|"]
    for entry in data["cases"]:
        if not differs(entry):
            continue
        case = case_by_id(entry["id"])
        cells = []
        for framework in FRAMEWORKS:
            refs = [r for r in entry["references"] if r["framework"] == framework]
            if not refs:
                cells.append("—")
                continue
            cells.append("; ".join(
                _fmt(decode(r["values"])) + (" (naive)" if r["kind"] == "naive" else "")
                for r in refs))
        mine = _fmt(decode(entry["softce"]["values"]))
        lines.append(f"| `{SOFTCE_API[case['op']]}` | {_input_text(case)} | "
                     + " | ".join(cells) + f" | {mine} |")
    return "\n".join(lines)


def record_softce(data: dict) -> dict:
    """The recorded data with softce's column computed again (the references kept as
    recorded): for a change of softce's results where PyTorch or JAX is not at hand."""
    for entry in data["cases"]:
        mine = softce_result(case_by_id(entry["id"]))
        entry["softce"] = {"nan": bool(np.isnan(mine).any()), "values": encode(mine)}
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true",
                        help="print the README table from the recorded JSON, record nothing")
    parser.add_argument("--softce-only", action="store_true",
                        help="record softce's column again, keep the references as recorded")
    args = parser.parse_args()
    if args.softce_only:
        data = record_softce(json.loads(FIXTURE.read_text()))
        FIXTURE.write_text(json.dumps(data, indent=1) + "\n")
        print(f"rewrote softce's column of {FIXTURE}")
    elif not args.table:
        data = record()
        FIXTURE.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {FIXTURE} ({len(data['cases'])} cases)")
    print(markdown_table(json.loads(FIXTURE.read_text())))


if __name__ == "__main__":
    main()
