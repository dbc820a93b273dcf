"""The kernel catalogue: which derived expressions each kernel is built from.

Composition happens here and only here: softmax(x)[q] (folded to p[q] in the derivations)
becomes D2's shifted softmax with the shift D = m = max_k x[k], and LSE becomes D2's shifted
LSE. Nothing below writes a formula of the softmax family by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sympy as sp

from softce.derive.core import expr_hash
from softce.derive.d13_ce_options import cw, eps, v, z
from softce.derive.d14_softcap import cap
from softce.derive.d15_bce_logits import pw, wt, yb
from softce.derive.d16_kl_div import lq, lt, yt
from softce.derive.d18_excess import s
from softce.derive.symbols import LSE, D, b, c, g, i, p, t, x, y

from .ir import ElementwiseKernel, RowKernel, Source
from .lower import KernelSpec, lower, lower_elementwise, m
from .numerics import ExcessForm, Unmask

Results = Callable[[str], Mapping[str, sp.Expr]]

#: Per-row upstream gradient of a row scalar (loss or LSE): the chain rule's weight.
w = sp.Symbol("w", real=True)
#: Elementwise upstream gradient (the chain rule's factor in elementwise gradient kernels).
dy = sp.Symbol("dy", real=True)
#: Rows of log-probabilities (input of log_softmax_vjp and nll_loss).
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

    def excess(self) -> ExcessForm:
        """D18's excess normaliser s: d = 1 + s, its summands and its merge."""
        return ExcessForm.of(s, m, *(self.get("D18", name) for name in (
            "normaliser", "excess_term_finite", "tie_term", "excess_of_sums", "merge_s",
            "identity")))

    def shifted_loss(self, name: str) -> sp.Expr:
        """D19's probability-target loss sum_k a_k (m - x_k) + A log1p(s), its s written as
        D18's excess of the row (the lowering's excess form gives log1p(s) back)."""
        loss = self.get("D19", name).xreplace({s: self.get("D18", "excess_definition")})
        return self.fold_in(loss, self.softmax_at)

    def linear(self) -> tuple[sp.Expr, sp.Expr]:
        """D19's merge of sums linear in m, and the value of a chunk of -inf only."""
        return self.get("D19", "merge_t"), self.get("D19", "masked_chunk")

    def spec(self, **kwargs: object) -> RowKernel:
        shifted = kwargs.pop("shifted", True)
        merge, excess = (self.merge(), self.excess()) if shifted else (None, None)
        linear = self.linear() if kwargs.pop("linear", False) else None
        return lower(KernelSpec(merge=merge, excess=excess, linear=linear,
                                sources=self.take_sources(), **kwargs))


Entry = Callable[[Catalogue], list[RowKernel | ElementwiseKernel]]

#: The catalogue: functions of a Catalogue, each returning the kernels of one family, in the
#: order they were registered with ``entry``.
ENTRIES: list[Entry] = []


def entry(build: Entry) -> Entry:
    """Register a catalogue entry: ``build(cat)`` returns its kernels, lowered."""
    ENTRIES.append(build)
    return build


def row_kernels(results: Results, entries: list[Entry] | None = None
                ) -> list[RowKernel | ElementwiseKernel]:
    """Every kernel of the catalogue's entries (default: ENTRIES), lowered to the IR."""
    cat = Catalogue(results)
    return [kernel for build in (ENTRIES if entries is None else entries)
            for kernel in build(cat)]


@entry
def softmax_kernels(cat: Catalogue) -> list[RowKernel]:
    """softmax, log_softmax, logsumexp, the online state (m, s) and LSE's gradient [D2, D7,
    D10, D11, D18]."""
    soft = cat.softmax_at
    return [
        cat.spec(name="softmax", doc="out[i] = softmax(x)[i] with the max shift [D2, D11]",
                 rows=(x,), outputs={"out": soft(i)}),
        cat.spec(name="log_softmax", doc="out[i] = x[i] - LSE(x) [D10, D2, D11]",
                 rows=(x,), outputs={"out": cat.fold_in(cat.get("D10", "log_softmax"), soft)}),
        cat.spec(name="logsumexp",
                 doc="lse[r] = LSE(x) = m + log(sum_k exp(x[k] - m)) [D2, D11]",
                 rows=(x,), row_outputs={"lse": cat.lse()}),
        cat.spec(name="online_state",
                 doc="shift[r] = m = max_k x[k]; excess[r] = s = sum_k exp(x[k] - m) - 1 "
                     "[D18, D11]",
                 rows=(x,),
                 row_outputs={"shift": m, "excess": cat.get("D18", "excess_definition")}),
        cat.spec(name="logsumexp_grad",
                 doc="out[i] = w * dLSE/dx[i] = w * softmax(x)[i] [D7, D2, D11]",
                 rows=(x,), row_scalars=(("grad_output", w),),
                 outputs={"out": w * cat.fold_in(cat.get("D7", "grad_lse"), soft)}),
    ]


@entry
def entropy_kernels(cat: Catalogue) -> list[RowKernel]:
    """The entropy of a given distribution, in nats and in base b [D5]."""
    entropy = cat.get("D5", "entropy")
    sources = cat.take_sources()
    return [
        lower(KernelSpec(
            name="entropy", doc="h[r] = -sum_k p[k] log p[k], 0 log 0 = 0, in nats [D5]",
            rows=(p,), row_outputs={"h": entropy.subs(b, sp.E)}, sources=sources)),
        lower(KernelSpec(
            name="entropy_base", doc="h[r] = -sum_k p[k] log_b p[k], 0 log 0 = 0 [D5]",
            rows=(p,), params=(b,), row_outputs={"h": entropy}, sources=sources)),
    ]


@entry
def cross_entropy_kernels(cat: Catalogue) -> list[RowKernel]:
    """Cross-entropy against labels or probabilities, and its fused gradient [D8, D9]."""
    soft = cat.softmax_at
    label = (("labels", c),)
    loss_label = cat.fold_in(cat.get("D9", "ce_loss_label"), soft)
    kernels = [cat.spec(
        name="cross_entropy_label", doc="loss[r] = LSE(x) - x[c] [D9, D2, D11]",
        rows=(x,), row_scalars=label, row_outputs={"loss": loss_label})]
    grad_label = cat.fold_in(cat.get("D9", "ce_grad_label"), soft)
    kernels.append(cat.spec(
        name="cross_entropy_grad_label",
        doc="loss[r] = LSE(x) - x[c]; grad[i] = w * (softmax(x)[i] - [i = c]) [D9, D2, D11]",
        rows=(x,), row_scalars=(*label, ("grad_output", w)),
        outputs={"grad": w * grad_label}, row_outputs={"loss": loss_label}))
    kernels.append(cat.spec(
        name="cross_entropy_prob",
        doc="loss[r] = sum_k y[k] (m - x[k]) + sum(y) log1p(s) [D19, D18, D11]",
        rows=(x, y), row_outputs={"loss": cat.shifted_loss("prob_loss")}, linear=True))
    grad_prob = cat.fold_in(cat.get("D9", "ce_grad"), soft)
    kernels.append(cat.spec(
        name="cross_entropy_grad_prob",
        doc="loss[r] = sum_k y[k] (m - x[k]) + sum(y) log1p(s); grad[i] = w * (sum(y) "
            "softmax(x)[i] - y[i]) [D19, D9, D18, D11]",
        rows=(x, y), row_scalars=(("grad_output", w),),
        outputs={"grad": w * grad_prob}, row_outputs={"loss": cat.shifted_loss("prob_loss")},
        linear=True))
    return kernels


@entry
def vjp_kernels(cat: Catalogue) -> list[RowKernel]:
    """Vector-Jacobian products given softmax's or log_softmax's output [D10]."""
    vjp = cat.get("D10", "softmax_vjp")
    kernels = [cat.spec(
        name="softmax_vjp", doc="out[i] = p[i] (g[i] - p.g), p = softmax(x) given [D10]",
        rows=(p, g), outputs={"out": vjp}, shifted=False)]
    log_vjp = cat.fold_in(cat.get("D10", "log_softmax_vjp"), lambda q: sp.exp(logp[q]))
    kernels.append(cat.spec(
        name="log_softmax_vjp",
        doc="out[i] = g[i] - exp(logp[i]) sum(g), logp = log_softmax(x) given [D10]",
        rows=(logp, g), outputs={"out": log_vjp}, shifted=False))
    return kernels


@entry
def jacobian_kernels(cat: Catalogue) -> list[RowKernel]:
    """softmax's Jacobian per row [D4]."""
    jacobian = cat.get("D4", "jacobian")
    return [cat.spec(
        name="softmax_jacobian", doc="out[i, j] = d softmax(x)[i] / d x[j] [D4, D2, D11]",
        rows=(x,), scratch={p: cat.softmax_at(i)}, pair_outputs={"out": jacobian})]


@entry
def option_kernels(cat: Catalogue) -> list[RowKernel]:
    """PyTorch's options [D13]: class weights cw, the ignore mask v, label smoothing eps and
    the z-loss z, each kernel also writing the row's LSE. The smoothed kernels take eps as a
    parameter; the weighted ones are the same results at eps = 0 (their sums then skip the
    w.x terms, whose -inf logits would give 0 * inf)."""
    kernels = []
    labels = (("labels", c), ("counted", v))
    for target, scalars, rows in (("label", labels, (x,)), ("prob", (), (x, y))):
        for variant, fixed in (("weighted", {eps: 0}), ("smoothed", {})):
            params = (z,) if fixed else (eps, z)
            prob = target == "prob"
            if prob:  # shifted by the max [D19]
                loss, tag = cat.shifted_loss("prob_loss_opts"), "D19, D13, D18, D11"
            else:
                loss = cat.fold_in(cat.get("D13", f"ce_loss_{target}_opts"), cat.softmax_at)
                tag = "D13, D2, D11"
            kernels.append(cat.spec(
                name=f"cross_entropy_{target}_{variant}",
                doc=f"loss[r] = D13's {target} loss ({variant}, z-loss); lse[r] = LSE(x) [{tag}]",
                rows=rows, class_rows=(cw,), row_scalars=scalars, params=params,
                row_outputs={"loss": loss.subs(fixed), "lse": cat.lse()}, linear=prob))
            grad = cat.fold_in(cat.get("D13", f"ce_grad_{target}_opts"), cat.softmax_at)
            kernels.append(cat.spec(
                name=f"cross_entropy_grad_{target}_{variant}",
                doc=f"loss[r], lse[r] as cross_entropy_{target}_{variant}; grad[i] = w * "
                    f"d loss / d x[i] [{tag}]",
                rows=rows, class_rows=(cw,), row_scalars=(*scalars, ("grad_output", w)),
                params=params, outputs={"grad": w * grad.subs(fixed)},
                row_outputs={"loss": loss.subs(fixed), "lse": cat.lse()}, linear=prob))
    nll = cat.get("D13", "nll_loss")
    kernels.append(cat.spec(
        name="nll_loss", doc="loss[r] = -v w[c] logp[c], logp given [D13]",
        rows=(logp,), class_rows=(cw,), row_scalars=labels, row_outputs={"loss": nll},
        shifted=False))
    return kernels


@entry
def softmax_entropy_kernels(cat: Catalogue) -> list[RowKernel]:
    """The entropy of softmax(x) and its gradient, masked terms 0 [D17]."""
    soft = cat.softmax_at
    h = cat.fold_in(Unmask()(cat.get("D17", "softmax_entropy")), soft)
    kernels = [cat.spec(
        name="softmax_entropy", doc="h[r] = LSE(x) - sum_k p[k] x[k], p = softmax(x), "
        "masked terms 0 [D17, D2, D11]", rows=(x,), row_outputs={"h": h})]
    dh = cat.fold_in(Unmask()(cat.get("D17", "softmax_entropy_grad")), soft)
    kernels.append(cat.spec(
        name="softmax_entropy_grad", doc="h[r] as softmax_entropy; out[i] = w * dh/dx[i] "
        "[D17, D2, D11]", rows=(x,), row_scalars=(("grad_output", w),),
        outputs={"grad": w * dh}, row_outputs={"h": h}))
    return kernels


@entry
def sigmoid_kernels(cat: Catalogue) -> list[ElementwiseKernel]:
    """sigmoid as the two-class softmax, shifted by max(t, 0) [D3, D2]."""
    return [lower_elementwise(
        "sigmoid", "out = sigmoid(t) = softmax([t, 0])[0] shifted by D = max(t, 0) [D3, D2]",
        (t,), cat.get("D3", "sigmoid"), cat.take_sources(), shift=(D, sp.Max(t, 0)))]


@entry
def elementwise_kernels(cat: Catalogue) -> list[ElementwiseKernel]:
    """Flat kernels: the soft-cap [D14] and its chain rule, binary cross-entropy with logits
    and its gradient [D15], PyTorch's kl_div terms [D16]."""
    kernels = []
    softcap = cat.get("D14", "softcap")
    kernels.append(lower_elementwise(
        "softcap", "out = cap tanh(t / cap) [D14]", (t,), softcap, cat.take_sources(),
        params=(cap,)))
    softcap_grad = cat.get("D14", "softcap_grad")
    kernels.append(lower_elementwise(
        "softcap_grad", "out = dy * ds/dt, s = cap tanh(t / cap) [D14]", (t, dy),
        dy * softcap_grad, cat.take_sources(), params=(cap,)))
    bce = cat.get("D15", "bce_loss")
    kernels.append(lower_elementwise(
        "bce_with_logits", "out = -wt (pw y log sigmoid(t) + (1 - y) log(1 - sigmoid(t))), "
        "shifted [D15]", (t, yb, wt, pw), bce, cat.take_sources()))
    bce_grad = cat.get("D15", "bce_grad")
    kernels.append(lower_elementwise(
        "bce_with_logits_grad", "out = dy * d bce / dt [D15]", (t, yb, wt, pw, dy),
        dy * bce_grad, cat.take_sources()))
    kl = cat.get("D16", "kl_term_guarded")
    kernels.append(lower_elementwise(
        "kl_div", "out = y (log y - lq), 0 at y = 0 [D16]", (lq, yt), kl, cat.take_sources()))
    kl_log = cat.get("D16", "kl_term_log_target")
    kernels.append(lower_elementwise(
        "kl_div_log_target", "out = exp(lt) (lt - lq) [D16]", (lq, lt), kl_log,
        cat.take_sources()))
    return kernels
