"""The calls timed: softce's public functions and the NumPy, SciPy and PyTorch references,
each as a user calls them (arrays in, fresh outputs out), and what each reference runs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.cases import PROB_CE, Inputs

REFERENCES = ("NumPy", "SciPy", "PyTorch")
IMPLS = ("softce",) + REFERENCES

REFERENCE_CALLS = {
    "NumPy": {
        "softmax": "m = x.max(1, keepdims); e = exp(x - m) (in place); e /= e.sum(1)",
        "log_softmax": "s = x - m; s -= log(exp(s).sum(1))",
        "logsumexp": "m + log(exp(x - m).sum(1))",
        "cross_entropy": "mean(logsumexp(x) - x[r, labels])",
        PROB_CE: "mean(logsumexp(x) * p.sum(1) - (x * p).sum(1))",
        "cross_entropy_grad": "e = exp(x - m); loss from log(e.sum) + m - x[r, labels]; "
                              "e *= 1 / (n * e.sum(1)); e[r, labels] -= 1 / n",
    },
    "SciPy": {
        "softmax": "scipy.special.softmax(x, axis=1)",
        "log_softmax": "scipy.special.log_softmax(x, axis=1)",
        "logsumexp": "scipy.special.logsumexp(x, axis=1)",
        "cross_entropy": "-log_softmax(x, axis=1)[r, labels].mean()",
        PROB_CE: "-(log_softmax(x, axis=1) * p).sum(1).mean()",
        "cross_entropy_grad": "l = log_softmax(x, axis=1); loss = -l[r, labels].mean(); "
                              "g = exp(l) (in place); g[r, labels] -= 1; g /= n",
    },
    "PyTorch": {
        "softmax": "torch.softmax(torch.from_numpy(x), 1)",
        "log_softmax": "torch.log_softmax(torch.from_numpy(x), 1)",
        "logsumexp": "torch.logsumexp(torch.from_numpy(x), 1)",
        "cross_entropy": "F.cross_entropy(torch.from_numpy(x), torch.from_numpy(labels))",
        PROB_CE: "F.cross_entropy(torch.from_numpy(x), torch.from_numpy(p))",
        "cross_entropy_grad": "t = torch.from_numpy(x).requires_grad_(True); "
                              "loss = F.cross_entropy(t, labels_t); loss.backward(); t.grad",
    },
}

Calls = dict[str, Callable[[], object]]  # function name -> a call on one shape's inputs


def softce_calls(inp: Inputs) -> Calls:
    """softce's public functions with their defaults."""
    import softce

    x, labels, probs = inp.x, inp.labels, inp.probs
    return {
        "softmax": lambda: softce.softmax(x),
        "log_softmax": lambda: softce.log_softmax(x),
        "logsumexp": lambda: softce.logsumexp(x),
        "cross_entropy": lambda: softce.cross_entropy(x, labels),
        PROB_CE: lambda: softce.cross_entropy(x, probs),
        "cross_entropy_grad": lambda: softce.cross_entropy_grad(x, labels),
    }


def _np_lse_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, exp(x - m)) with m the row max, shape (rows, 1)."""
    m = x.max(axis=1, keepdims=True)
    e = x - m
    np.exp(e, out=e)
    return m, e


def _np_logsumexp(x: np.ndarray) -> np.ndarray:
    m, e = _np_lse_parts(x)
    s = e.sum(axis=1)
    del e
    return np.log(s) + m[:, 0]


def numpy_calls(inp: Inputs) -> Calls:
    """The functions written in NumPy, as REFERENCE_CALLS describes them."""
    x, labels, probs, r = inp.x, inp.labels, inp.probs, inp.rows
    n = x.shape[0]

    def softmax():
        _, e = _np_lse_parts(x)
        e /= e.sum(axis=1, keepdims=True)
        return e

    def log_softmax():
        m = x.max(axis=1, keepdims=True)
        s = x - m
        lse = np.log(np.exp(s).sum(axis=1, keepdims=True))
        s -= lse
        return s

    def cross_entropy():
        return np.mean(_np_logsumexp(x) - x[r, labels])

    def cross_entropy_probs():
        return np.mean(_np_logsumexp(x) * probs.sum(axis=1) - (x * probs).sum(axis=1))

    def cross_entropy_grad():
        m, e = _np_lse_parts(x)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[r, labels])
        e *= 1 / (s * n)
        e[r, labels] -= x.dtype.type(1 / n)
        return loss, e

    return {"softmax": softmax, "log_softmax": log_softmax,
            "logsumexp": lambda: _np_logsumexp(x), "cross_entropy": cross_entropy,
            PROB_CE: cross_entropy_probs, "cross_entropy_grad": cross_entropy_grad}


def scipy_calls(inp: Inputs) -> Calls:
    """``scipy.special``'s softmax, log_softmax and logsumexp, the losses built on them."""
    from scipy import special

    x, labels, probs, r = inp.x, inp.labels, inp.probs, inp.rows
    n = x.shape[0]

    def cross_entropy_grad():
        lsm = special.log_softmax(x, axis=1)
        loss = -lsm[r, labels].mean()
        g = np.exp(lsm, out=lsm)
        g[r, labels] -= 1
        g /= n
        return loss, g

    return {
        "softmax": lambda: special.softmax(x, axis=1),
        "log_softmax": lambda: special.log_softmax(x, axis=1),
        "logsumexp": lambda: special.logsumexp(x, axis=1),
        "cross_entropy": lambda: -special.log_softmax(x, axis=1)[r, labels].mean(),
        PROB_CE: lambda: -(special.log_softmax(x, axis=1) * probs).sum(axis=1).mean(),
        "cross_entropy_grad": cross_entropy_grad,
    }


def torch_calls(inp: Inputs) -> Calls:
    """PyTorch on the CPU, on zero-copy ``torch.from_numpy`` views of the inputs."""
    import torch
    import torch.nn.functional as F

    x, labels, probs = inp.x, inp.labels, inp.probs

    def cross_entropy_grad():
        t = torch.from_numpy(x).requires_grad_(True)  # a fresh leaf: a fresh .grad each call
        loss = F.cross_entropy(t, torch.from_numpy(labels))
        loss.backward()
        return loss.detach(), t.grad

    return {
        "softmax": lambda: torch.softmax(torch.from_numpy(x), 1),
        "log_softmax": lambda: torch.log_softmax(torch.from_numpy(x), 1),
        "logsumexp": lambda: torch.logsumexp(torch.from_numpy(x), 1),
        "cross_entropy": lambda: F.cross_entropy(torch.from_numpy(x), torch.from_numpy(labels)),
        PROB_CE: lambda: F.cross_entropy(torch.from_numpy(x), torch.from_numpy(probs)),
        "cross_entropy_grad": cross_entropy_grad,
    }


CALLS: dict[str, Callable[[Inputs], Calls]] = {
    "softce": softce_calls, "NumPy": numpy_calls, "SciPy": scipy_calls, "PyTorch": torch_calls}


def available_references(wanted: list[str]) -> tuple[list[str], dict[str, str]]:
    """The references that can run, and why each other one is skipped."""
    have, skipped = [], {}
    for ref in wanted:
        module = {"NumPy": "numpy", "SciPy": "scipy.special", "PyTorch": "torch"}[ref]
        try:
            __import__(module)
        except ImportError as exc:
            skipped[ref] = f"not installed ({exc})"
        else:
            have.append(ref)
    return have, skipped
