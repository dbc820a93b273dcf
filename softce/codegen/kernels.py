"""The kernel catalogue: which derived expressions each kernel is built from.

Composition happens here and only here: softmax(x)[q] (folded to p[q] in the derivations)
becomes D2's shifted softmax with the shift D = m = max_k x[k], and LSE becomes D2's shifted
LSE. Nothing below writes a formula of the softmax family by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sympy as sp

from softce.derive.core import expr_hash
from softce.derive.symbols import LSE, D, b, c, g, i, p, t, x, y

from .ir import ElementwiseKernel, RowKernel, Source
from .lower import KernelSpec, lower, lower_elementwise, m

Results = Callable[[str], Mapping[str, sp.Expr]]

#: Per-row upstream gradient of a row scalar (loss or LSE): the chain rule's weight.
w = sp.Symbol("w", real=True)
#: Rows of log-probabilities (input of log_softmax_vjp).
logp = sp.IndexedBase("logp", real=True)


class Catalogue:
    """Looks up derived results and records which ones each kernel used (for its header)."""

    def __init__(self, results: Results) -> None:
        self._results = results
        self._used: list[Source] = []

    def get(self, derivation: str, name: str) -> sp.Expr:
        expr = self._results(derivation)[name]
        self._used.append(Source(derivation, name, expr_hash(expr)))
        return expr

    def take_sources(self) -> tuple[Source, ...]:
        used, self._used = tuple(dict.fromkeys(self._used)), []
        return used

    # compositions ----------------------------------------------------------------------
    def softmax_at(self, q: sp.Expr) -> sp.Expr:
        """softmax(x)[q] with the max shift [D2]."""
        return self.get("D2", "softmax_shifted").xreplace({D: m}).subs(i, q)

    def lse(self) -> sp.Expr:
        """LSE(x) with the max shift [D2]."""
        return self.get("D2", "lse_shifted").xreplace({D: m})

    def fold_in(self, expr: sp.Expr, p_of: Callable[[sp.Expr], sp.Expr]) -> sp.Expr:
        """Replace every p[q] by p_of(q) and LSE by the shifted LSE."""
        expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == p,
                            lambda e: p_of(e.indices[0]))
        return expr.xreplace({LSE: self.lse()}) if expr.has(LSE) else expr

    def merge(self) -> tuple[sp.Expr, sp.Expr]:
        return self.get("D11", "merge_m"), self.get("D11", "merge_d")

    def spec(self, **kwargs: object) -> RowKernel:
        merge = self.merge() if kwargs.pop("shifted", True) else None
        return lower(KernelSpec(merge=merge, sources=self.take_sources(), **kwargs))


def row_kernels(results: Results) -> list[RowKernel | ElementwiseKernel]:
    """Every kernel of the CPU and CUDA back ends, lowered to the IR."""
    cat = Catalogue(results)
    soft = cat.softmax_at
    kernels: list[RowKernel | ElementwiseKernel] = []

    kernels.append(cat.spec(
        name="softmax", doc="out[i] = softmax(x)[i] with the max shift [D2, D11]",
        rows=(x,), outputs={"out": soft(i)}))
    kernels.append(cat.spec(
        name="log_softmax", doc="out[i] = x[i] - LSE(x) [D10, D2, D11]",
        rows=(x,), outputs={"out": cat.fold_in(cat.get("D10", "log_softmax"), soft)}))
    kernels.append(cat.spec(
        name="logsumexp", doc="lse[r] = LSE(x) = m + log(sum_k exp(x[k] - m)) [D2, D11]",
        rows=(x,), row_outputs={"lse": cat.lse()}))
    kernels.append(cat.spec(
        name="logsumexp_grad", doc="out[i] = w * dLSE/dx[i] = w * softmax(x)[i] [D7, D2, D11]",
        rows=(x,), row_scalars=(("grad_output", w),),
        outputs={"out": w * cat.fold_in(cat.get("D7", "grad_lse"), soft)}))

    entropy = cat.get("D5", "entropy")
    sources = cat.take_sources()
    kernels.append(lower(KernelSpec(
        name="entropy", doc="h[r] = -sum_k p[k] log p[k], 0 log 0 = 0, in nats [D5]",
        rows=(p,), row_outputs={"h": entropy.subs(b, sp.E)}, sources=sources)))
    kernels.append(lower(KernelSpec(
        name="entropy_base", doc="h[r] = -sum_k p[k] log_b p[k], 0 log 0 = 0 [D5]",
        rows=(p,), params=(b,), row_outputs={"h": entropy}, sources=sources)))

    label = (("labels", c),)
    loss_label = cat.fold_in(cat.get("D9", "ce_loss_label"), soft)
    kernels.append(cat.spec(
        name="cross_entropy_label", doc="loss[r] = LSE(x) - x[c] [D9, D2, D11]",
        rows=(x,), row_scalars=label, row_outputs={"loss": loss_label}))
    grad_label = cat.fold_in(cat.get("D9", "ce_grad_label"), soft)
    kernels.append(cat.spec(
        name="cross_entropy_grad_label",
        doc="loss[r] = LSE(x) - x[c]; grad[i] = w * (softmax(x)[i] - [i = c]) [D9, D2, D11]",
        rows=(x,), row_scalars=(*label, ("grad_output", w)),
        outputs={"grad": w * grad_label}, row_outputs={"loss": loss_label}))
    loss_prob = cat.fold_in(cat.get("D8", "ce_loss"), soft)
    kernels.append(cat.spec(
        name="cross_entropy_prob", doc="loss[r] = LSE(x) sum(y) - x.y [D8, D2, D11]",
        rows=(x, y), row_outputs={"loss": loss_prob}))
    grad_prob = cat.fold_in(cat.get("D9", "ce_grad"), soft)
    kernels.append(cat.spec(
        name="cross_entropy_grad_prob",
        doc="loss[r] = LSE(x) sum(y) - x.y; grad[i] = w * (sum(y) softmax(x)[i] - y[i]) "
            "[D8, D9, D2, D11]",
        rows=(x, y), row_scalars=(("grad_output", w),),
        outputs={"grad": w * grad_prob}, row_outputs={"loss": loss_prob}))

    vjp = cat.get("D10", "softmax_vjp")
    kernels.append(cat.spec(
        name="softmax_vjp", doc="out[i] = p[i] (g[i] - p.g), p = softmax(x) given [D10]",
        rows=(p, g), outputs={"out": vjp}, shifted=False))
    log_vjp = cat.fold_in(cat.get("D10", "log_softmax_vjp"), lambda q: sp.exp(logp[q]))
    kernels.append(cat.spec(
        name="log_softmax_vjp",
        doc="out[i] = g[i] - exp(logp[i]) sum(g), logp = log_softmax(x) given [D10]",
        rows=(logp, g), outputs={"out": log_vjp}, shifted=False))

    jacobian = cat.get("D4", "jacobian")
    kernels.append(cat.spec(
        name="softmax_jacobian", doc="out[i, j] = d softmax(x)[i] / d x[j] [D4, D2, D11]",
        rows=(x,), scratch={p: soft(i)}, pair_outputs={"out": jacobian}))

    sigmoid = cat.get("D3", "sigmoid")
    kernels.append(lower_elementwise(
        "sigmoid", "out = sigmoid(t) = softmax([t, 0])[0] shifted by D = max(t, 0) [D3, D2]",
        t, D, sp.Max(t, 0), sigmoid, cat.take_sources()))
    return kernels
