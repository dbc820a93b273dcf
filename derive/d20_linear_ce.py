"""D20: cross-entropy after a linear layer, and its gradients for the layer's input, weight
and bias.

The logits of a row h (F features) are z_j = sum_f W_jf h_f + b_j, j = 0..n-1; the loss is
D13's (class weights, ignore_index, label smoothing, z-loss; labels or probabilities), of the
soft-capped logits s(z_j) = cap tanh(z_j / cap) when asked (D14). With G_j = d L / d z_j,
D13's gradient at x = s(z) times D14's s'(z_j) (or D13's at x = z without the cap):

    d L / d h_f  = sum_j G_j W_jf            (G W)
    d L / d W_jf = G_j h_f                   (G^T h)
    d L / d b_j  = G_j.

Over a batch the loss is sum_r s_r L_r with s_r = grad_output_r / divisor, where PyTorch's
"mean" divisor depends on the targets and class weights only: each row's G carries its s_r,
and the weight's and bias's gradients are sums over rows, which split over any partition of
the rows into chunks. Every claim is sympy.diff of the composite written with the definitions
(symbolic n classes and F features, sums unevaluated), checked by full expansion at small
sizes and by mpmath's numerical derivative at 50 digits.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import sympy as sp

from . import registry
from .checking import DIGITS, concrete_zero, numeric_ok, partial, symbolic_zero, unfold
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .d08_ce_loss import ce_loss_form
from .d13_ce_options import ce_options, cw, eps, label_target, prob_target, v, z
from .d14_softcap import cap, softcap
from .definitions import Row, ce_loss, lse
from .rules import collapse_delta
from .symbols import LSE, c, i, j, n, x, y

#: The layer's input row (or rows, h[r, f]), weight W[j, f] (class j, feature f) and bias.
h = sp.IndexedBase("h", real=True)
Wl = sp.IndexedBase("Wl", real=True)
bl = sp.IndexedBase("bl", real=True)
#: The logits z = W h + b, once formed; G the loss's gradient with respect to them.
zl = sp.IndexedBase("zl", real=True)
G = sp.IndexedBase("G", real=True)
#: A feature index and the number of features (PyTorch's in_features).
f = sp.Symbol("f", integer=True, nonnegative=True)
F = sp.Symbol("F", integer=True, positive=True)
#: A row index of the batch, its number of rows, and per row: the chain-rule weight
#: s_r = grad_output_r / divisor, the label, the mask [label != ignore_index], the target row.
r = sp.Symbol("r", integer=True, nonnegative=True)
N = sp.Symbol("N", integer=True, positive=True)
sr = sp.IndexedBase("sr", real=True)
lab = sp.IndexedBase("lab", integer=True, nonnegative=True)
vr = sp.IndexedBase("vr", real=True)
yr = sp.IndexedBase("yr", real=True)

a = sp.Symbol("a", integer=True, nonnegative=True)  # the features' summation index

CHAIN = ("one row: d L / d h_f = sum_j G_j W_jf, d L / d W_jf = G_j h_f, d L / d b_j = G_j, "
         "G = D13's gradient at x = z")
CHAIN_CAPPED = ("one row, soft-capped logits: the same, G_j = D13's gradient at x = s(z) "
                "times D14's s'(z_j)")
BATCH = ("a batch, L = sum_r s_r L_r: d L / d h_rf = sum_j G_rj W_jf, d L / d W_jf = "
         "sum_r G_rj h_rf, d L / d b_j = sum_r G_rj, G_r = s_r d L_r / d z_r")
DIVISOR = "PyTorch's mean divisor (sum_r v_r w_{c_r}, or N) is free of h, W and b"
CHUNKS = "a sum over the rows is the sum of its sums over any two consecutive chunks"

#: Sizes (classes n, features F) of the exact expansions and of the 50-digit points.
CONCRETE_SIZES = ((1, 1), (2, 1), (2, 2), (3, 2))
NUMERIC_SIZES = ((1, 2), (2, 1), (3, 2))


def linear(row: sp.Expr | None = None) -> Callable[[sp.Expr], sp.Expr]:
    """z_j = sum_f W_jf h_f + b_j (of row ``row`` of a batch when given), F symbolic."""
    hf = (lambda q: h[q]) if row is None else (lambda q: h[row, q])
    return lambda q: sp.Sum(Wl[q, a] * hf(a), (a, 0, F - 1)) + bl[q]


def _capped(logits: Callable[[sp.Expr], sp.Expr]) -> Callable[[sp.Expr], sp.Expr]:
    s = registry.results(softcap.id)["softcap"]
    t = next(iter(s.free_symbols - {cap}))
    return lambda q: s.xreplace({t: logits(q)})


def _at_logits(expr: sp.Expr, logits: Callable[[sp.Expr], sp.Expr]) -> sp.Expr:
    """expr with every logit x[q] replaced by logits(q) (p and LSE unfolded first)."""
    return unfold(expr).replace(lambda e: isinstance(e, sp.Indexed) and e.base == x,
                                lambda e: logits(e.indices[0]))


def _refold(expr: sp.Expr, row: sp.Expr | None = None) -> sp.Expr:
    """Each sum_f W_qf h_f + b_q put back as the logit zl[q] (zl[row, q] in a batch)."""
    formed = linear(row)

    def is_logit(e: sp.Basic) -> bool:
        return isinstance(e, sp.Add) and any(
            isinstance(t, sp.Indexed) and t.base == bl for t in e.args)

    def fold(e: sp.Add) -> sp.Expr:
        q = next(t for t in e.args if isinstance(t, sp.Indexed) and t.base == bl).indices[0]
        return e - formed(q) + (zl[q] if row is None else zl[row, q])

    return expr.replace(is_logit, fold)


def _logit_gradient(grad: sp.Expr, capped: bool, at: sp.Expr, row: sp.Expr | None = None
                    ) -> sp.Expr:
    """G_at: D13's gradient (element i) at the logits zl (soft-capped when asked), times
    D14's s'(zl_at) with the cap."""
    logit = (lambda q: zl[q]) if row is None else (lambda q: zl[row, q])
    g = _at_logits(grad, _capped(logit) if capped else logit).xreplace({i: at})
    if capped:
        g_cap = registry.results(softcap.id)["softcap_grad"]
        t = next(iter(g_cap.free_symbols - {cap}))
        g *= g_cap.xreplace({t: logit(at)})
    return g


def row_claims(loss: sp.Expr, grad: sp.Expr, capped: bool) -> list[tuple[str, sp.Expr,
                                                                          sp.Expr]]:
    """(what, derivative, claimed form) for h_f, W_jf and b_j of one row's loss."""
    logits = _capped(linear()) if capped else linear()
    composite = _at_logits(loss, logits)
    claimed = {
        "h_f": sp.Sum(_logit_gradient(grad, capped, j) * Wl[j, f], (j, 0, n - 1)),
        "W_jf": _logit_gradient(grad, capped, j) * h[f],
        "b_j": _logit_gradient(grad, capped, j),
    }
    wrt = {"h_f": h[f], "W_jf": Wl[j, f], "b_j": bl[j]}
    return [(name, _refold(collapse_delta(sp.diff(composite, wrt[name]))), claimed[name])
            for name in claimed]


def _per_row(loss: sp.Expr) -> sp.Expr:
    """One row r of a batch: its label, mask and target row."""
    return loss.xreplace({c: lab[r], v: vr[r]}).replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == y, lambda e: yr[r, e.indices[0]])


def batch_claims(loss: sp.Expr, grad: sp.Expr) -> list[tuple[str, sp.Expr, sp.Expr]]:
    """(what, derivative, claimed form) for h_{r0 f}, W_jf and b_j of sum_r s_r L_r."""
    r0 = sp.Symbol("r0", integer=True, nonnegative=True)
    total = sp.Sum(sr[r] * _at_logits(_per_row(loss), linear(r)), (r, 0, N - 1))

    def g_row(row: sp.Expr, at: sp.Expr) -> sp.Expr:
        return sr[row] * _per_row(_logit_gradient(grad, False, at, r)).xreplace({r: row})

    claimed = {
        "h_rf": sp.Sum(g_row(r0, j) * Wl[j, f], (j, 0, n - 1)),
        "W_jf": sp.Sum(g_row(r, j) * h[r, f], (r, 0, N - 1)),
        "b_j": sp.Sum(g_row(r, j), (r, 0, N - 1)),
    }
    wrt = {"h_rf": h[r0, f], "W_jf": Wl[j, f], "b_j": bl[j]}
    out = []
    for name in claimed:
        raw = collapse_delta(sp.diff(total, wrt[name]))
        out.append((name, _refold(_refold(raw, r), r0), _refold(claimed[name], r)))
    return out


def prob_loss() -> sp.Expr:
    """D13's probability loss before D8's zero-target guard: D8's LSE sum(y') - x.y' at
    y' = w ((1 - eps) y + eps / n), plus z LSE^2 (its gradient is D13's)."""
    target = prob_target()
    loss = registry.results(ce_loss_form.id)["ce_loss"].replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == y, lambda e: target(e.indices[0]))
    return loss + z * LSE**2


def _definition(kind: str, size: int, logits: Callable[[sp.Expr], sp.Expr]) -> sp.Expr:
    """(10) at D13's target y' plus the z-loss, written out for ``size`` classes, at the
    given logits: the definition, with no derived result in it."""
    row = Row(size)
    target = label_target(sp.Integer(size)) if kind == "labels" else prob_target(
        sp.Integer(size))
    mask = v if kind == "labels" else 1
    return ce_loss(row, logits, target) + mask * z * lse(row, logits) ** 2


def _written(size: int, features: int, capped: bool) -> Callable[[sp.Expr], sp.Expr]:
    def logit(q: sp.Expr) -> sp.Expr:
        formed = sum((Wl[q, t] * h[t] for t in range(features)), bl[q])
        return cap * sp.tanh(formed / cap) if capped else formed
    return logit


def _concrete_claim(kind: str, grad: sp.Expr, capped: bool, sizes) -> tuple[bool, str]:
    """sympy.diff of the written-out definition against G W, G^T h and G, written out, at
    every index value; exact (with the cap: exact for the expansion, then simplify)."""
    for size, features in sizes:
        composite = _definition(kind, size, _written(size, features, capped))
        g = [_written_gradient(grad, size, features, capped, q) for q in range(size)]
        for cls in range(size if kind == "labels" else 1):
            at = {c: cls}
            for q in range(size):
                for t in range(features):
                    for wrt, claimed in ((Wl[q, t], g[q] * h[t]), (bl[q], g[q])):
                        if not _zero(sp.diff(composite, wrt) - claimed, at, capped):
                            return False, f"differs at n = {size}, F = {features}, {wrt}"
            for t in range(features):
                claimed = sum(g[q] * Wl[q, t] for q in range(size))
                if not _zero(sp.diff(composite, h[t]) - claimed, at, capped):
                    return False, f"differs at n = {size}, F = {features}, h[{t}]"
    dims = ", ".join(f"(n, F) = ({s}, {t})" for s, t in sizes)
    return True, f"0 at {dims}, every label and index"


def _zero(expr: sp.Expr, at: dict, capped: bool) -> bool:
    e = expr.subs(at)
    return sp.simplify(e.rewrite(sp.exp)) == 0 if capped else concrete_zero(e)


def _written_gradient(grad: sp.Expr, size: int, features: int, capped: bool,
                      q: int) -> sp.Expr:
    """G_q written out: D13's gradient at the written-out logits (times s'(z_q) capped)."""
    row = Row(size)
    g = grad.subs(n, size).doit().xreplace({i: q})
    logit = _written(size, features, False)
    values = [logit(sp.Integer(t)) for t in range(size)]
    shown = [cap * sp.tanh(u / cap) for u in values] if capped else values
    g = unfold(g, row).replace(lambda e: isinstance(e, sp.Indexed) and e.base == x,
                               lambda e: shown[int(e.indices[0])])
    if capped:
        g_cap = registry.results(softcap.id)["softcap_grad"]
        t = next(iter(g_cap.free_symbols - {cap}))
        g *= g_cap.xreplace({t: values[q]})
    return g


def _option_values(expr: sp.Expr) -> sp.Expr:
    """The options' fixed values at the 50-digit points: w_k = (k + 2) / (k + 3), eps = 3/10,
    v = 1, z = 1/7, cap = 5/2."""
    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == cw,
                        lambda e: (e.indices[0] + 2) / (e.indices[0] + 3))
    return expr.xreplace({eps: sp.Rational(3, 10), v: sp.Integer(1), z: sp.Rational(1, 7),
                          cap: sp.Rational(5, 2)})


def _numeric_claim(kind: str, grad: sp.Expr, capped: bool, seed: int) -> tuple[bool, str]:
    """At random 50-digit h, W, b (and y, c): mpmath's numerical derivative of the written-
    out definition in each h_f, W_jf, b_j against G W, G^T h, G."""
    rng = random.Random(seed)
    worst = sp.Float(0)
    for size, features in NUMERIC_SIZES:
        point: dict[sp.Basic, sp.Expr] = {}
        for q in range(size):
            point[bl[q]] = sp.Float(rng.gauss(0, 1), DIGITS)
            point[y[q]] = sp.Float(rng.random(), DIGITS)
            for t in range(features):
                point[Wl[q, t]] = sp.Float(rng.gauss(0, 1), DIGITS)
        for t in range(features):
            point[h[t]] = sp.Float(rng.gauss(0, 2), DIGITS)
        point[c] = sp.Integer(rng.randrange(size))
        composite = _option_values(_definition(kind, size, _written(size, features, capped)))
        g = [_option_values(_written_gradient(grad, size, features, capped, q))
             for q in range(size)]
        claims = [(bl[q], g[q]) for q in range(size)]
        claims += [(Wl[q, t], g[q] * h[t]) for q in range(size) for t in range(features)]
        claims += [(h[t], sum(g[q] * Wl[q, t] for q in range(size)))
                   for t in range(features)]
        for wrt, claimed in claims:
            value = claimed.xreplace(point).evalf(DIGITS)
            numerical = partial(composite.xreplace({c: point[c]}), wrt, point)
            worst = max(worst, abs(value - numerical) / max(1, abs(numerical)))
    return numeric_ok(worst)


@derivation("D20", "cross-entropy after a linear layer: gradients for input, weight, bias",
            "z = W h + b, L = CE(z, y)")
def linear_ce(d: Derivation) -> None:
    """sympy.diff of D13's losses at z = W h + b (soft-capped or not), the deltas collapsed
    and z folded back: G W, G^T h and G, G being D13's (and D14's) gradient."""
    opts = registry.run(ce_options.id)
    d.step("the logits of a row: z_j = sum_f W_jf h_f + b_j", linear()(j))
    losses = {"labels": (opts.results["ce_loss_label_opts"],
                         opts.results["ce_grad_label_opts"]),
              "probabilities": (prob_loss(), opts.results["ce_grad_prob_opts"])}
    for kind, (loss, grad) in losses.items():
        for capped in (False, True):
            claim = CHAIN_CAPPED if capped else CHAIN
            what = f"{kind}{', capped' if capped else ''}"
            ok = True
            for name, derived, claimed in row_claims(loss, grad, capped):
                d.step(f"{what}: d L / d {name} by sympy.diff, deltas collapsed, z folded",
                       derived)
                ok = ok and symbolic_zero(derived - claimed)
            d.check(claim, SYMBOLIC, ok, f"{kind}: symbolic n classes and F features")
            d.check(claim, CONCRETE, *_concrete_claim(
                kind, grad, capped, CONCRETE_SIZES[:2] if capped else CONCRETE_SIZES))
            d.check(claim, NUMERIC, *_numeric_claim(kind, grad, capped, 20 + 2 * capped))

        ok = True
        for name, derived, claimed in batch_claims(loss, grad):
            d.step(f"{kind}, a batch: d L / d {name}", derived)
            ok = ok and symbolic_zero(derived - claimed)
        d.check(BATCH, SYMBOLIC, ok, f"{kind}: symbolic N rows, n classes, F features")

    divisor = d.step("the divisor of labels: sum_r v_r w_{c_r}",
                     sp.Sum(vr[r] * cw[lab[r]], (r, 0, N - 1)))
    d.check(DIVISOR, SYMBOLIC, not (divisor.free_symbols | {N}) & {h, Wl, bl, h.label,
                                                                   Wl.label, bl.label},
            "its symbols: the masks, the labels, the class weights, N")

    cut = sp.Symbol("cut", integer=True, positive=True)
    body = G[r, j] * h[r, f]
    chunks = d.step("the rows 0..N-1 in two chunks, 0..cut-1 and cut..N-1",
                    sp.Sum(body, (r, 0, cut - 1)) + sp.Sum(body, (r, cut, N - 1)))
    d.check(CHUNKS, SYMBOLIC, sp.simplify(chunks) == sp.Sum(body, (r, 0, N - 1)),
            "SymPy joins the adjacent ranges; by induction, any number of chunks")

    d.results["linear_logits"] = d.step("z_i = sum_f W_if h_f + b_i", linear()(i))
    d.results["linear_grad_input"] = d.step(
        "d L / d h_rf = sum_j G_rj W_jf", sp.Sum(G[r, j] * Wl[j, f], (j, 0, n - 1)))
    d.results["linear_grad_weight"] = d.step(
        "d L / d W_jf = sum_r G_rj h_rf", sp.Sum(G[r, j] * h[r, f], (r, 0, N - 1)))
    d.results["linear_grad_bias"] = d.step(
        "d L / d b_j = sum_r G_rj", sp.Sum(G[r, j], (r, 0, N - 1)))
