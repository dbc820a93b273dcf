"""D13: PyTorch's cross-entropy options: class weights, ignore_index and label smoothing, the
z-loss, and the negative log-likelihood.

PyTorch (LossNLL.cpp) defines, for a position with logits x and integer target c,

    loss = [c != ignore_index] ((1 - eps) w_c (-log p_c) + (eps / n) sum_j w_j (-log p_j))

(``nll`` and ``smooth`` of ``cross_entropy_loss_label_smoothing``), and for a probability
target y the smoothed target (1 - eps) y + eps / n, weighted per class:

    loss = -sum_j w_j ((1 - eps) y_j + eps / n) log p_j.

Both are definition (10) at a target row y'. With the row mask v = [c != ignore_index]:

    labels:        y'_k = v w_k ((1 - eps) [k = c] + eps / n)
    probabilities: y'_k = w_k ((1 - eps) y_k + eps / n)

The z-loss (PaLM; Liger's ``lse_square_scale``) adds z LSE(x)^2 at every counted position.
D8's loss LSE sum(y') - x.y' plus that term, and sympy.diff of it, give the losses and gradients
the kernels are printed from; each is checked against the definition for symbolic n, for
n = 1..8 and at 50 digits, and the label loss against PyTorch's (1 - eps) nll + (eps / n) smooth
written apart. nll_loss takes log-probabilities as given: -sum_k y'_k logp_k at eps = 0.
The probability loss's w_k y_k x_k terms carry D8's guard (0 at y_k = 0, also at x_k = -oo);
its gradient is sympy.diff of the unguarded loss (the same function where y_k != 0).
"""

from __future__ import annotations

import sympy as sp

from .checking import (
    _concrete_derivative,
    all_concrete_zero,
    check_derivative,
    numeric_error,
    numeric_ok,
    symbolic_zero,
    unfold,
)
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .d08_ce_loss import ce_loss_form, guard_zero_targets, guards_ok
from .d09_ce_gradient import ce_gradient
from .definitions import SYMBOLIC_ROW, Row, ce_loss, lse, softmax, vec
from .rules import collapse_delta, expand_sum_bodies, fold_softmax, pull_out_constants
from .symbols import LSE, c, i, k, n, x, y

#: Per-class weights (PyTorch's ``weight``), one per class, shared by every row.
cw = sp.IndexedBase("cw", real=True)
#: Label smoothing (PyTorch's ``label_smoothing``): the mass moved to the uniform distribution.
eps = sp.Symbol("eps", real=True)
#: Row mask: 1 for a counted position, 0 for one whose target is ignore_index.
v = sp.Symbol("v", real=True)
#: z-loss scale: z LSE(x)^2 is added at every counted position.
z = sp.Symbol("z", real=True)
#: A row of log-probabilities, taken as given (nll_loss's input).
logp = sp.IndexedBase("logp", real=True)

LABEL_LOSS = ("labels: L = v ((1 - eps) w_c (LSE - x_c) + (eps/n) sum_k w_k (LSE - x_k) "
              "+ z LSE^2) = LSE sum(y') - x.y' + v z LSE^2")
LABEL_TORCH = "labels: L = v ((1 - eps) nll + (eps / n) smooth + z LSE^2), LossNLL.cpp's form"
LABEL_GRADIENT = "labels: d L / d x_i = (sum(y') + 2 v z LSE) softmax(x)_i - y'_i"
PROB_LOSS = ("probabilities: L = -sum_k w_k ((1 - eps) y_k + eps/n) log softmax(x)_k "
             "+ z LSE^2")
PROB_GUARDED = ("probabilities: a term w_k y_k x_k at y_k = 0 is its limit 0 (D8), also at "
                "x_k = -oo; the eps/n w_k x_k terms are not guarded (+oo at x_k = -oo)")
PROB_GRADIENT = "probabilities: d L / d x_i = (sum(y') + 2 z LSE) softmax(x)_i - y'_i"
NLL = "nll_loss: L = -v w_c logp_c, and at logp = log softmax(x) it is the label loss"

#: Sizes of the exact concrete checks (the symbolic-n proofs cover every n).
SIZES = (1, 2, 3, 4, 5, 6, 7, 8)


def label_target(size: sp.Expr = n):
    """y'_r: the weighted, smoothed, masked one-hot target of label c."""
    return lambda r: v * cw[r] * ((1 - eps) * sp.KroneckerDelta(r, c) + eps / size)


def prob_target(size: sp.Expr = n):
    """y'_r: the weighted target y mixed with the uniform distribution."""
    return lambda r: cw[r] * ((1 - eps) * y[r] + eps / size)


def _definition(target, mask: sp.Expr):
    """(10) at the target y' of ``target(size)`` plus mask z LSE(x)^2, for a row of symbolic
    or concrete size."""
    def at(row: Row, ix=None) -> sp.Expr:
        size = n if row.size is None else sp.Integer(row.size)
        return ce_loss(row, vec(x), target(size)) + mask * z * lse(row, vec(x)) ** 2
    return at


def _numeric_values(expr: sp.Expr) -> sp.Expr:
    """Fixed values for the option symbols in the 50-digit checks: w_k = (k + 2) / (k + 3),
    eps = 3/10, v = 1, z = 1/7 (x, y and c are drawn at random by ``numeric_error``)."""
    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == cw,
                        lambda e: (e.indices[0] + 2) / (e.indices[0] + 3))
    return expr.xreplace({eps: sp.Rational(3, 10), v: sp.Integer(1), z: sp.Rational(1, 7)})


def _fixed(definition):
    return lambda row, ix: _numeric_values(definition(row, ix))


def _loss_from_d8(d: Derivation, target, mask: sp.Expr, what: str) -> sp.Expr:
    loss = ce_loss_form().results["ce_loss"]
    y_new = target()
    at = d.step(f"{what}: D8's loss LSE sum(y) - x.y at y = y', plus {mask * z} LSE^2",
                loss.replace(lambda e: isinstance(e, sp.Indexed) and e.base == y,
                             lambda e: y_new(e.indices[0])) + mask * z * LSE**2)
    return d.step("sum bodies multiplied out, constants out, the deltas collapsed",
                  pull_out_constants(collapse_delta(expand_sum_bodies(at))))


def _gradient(d: Derivation, loss: sp.Expr, what: str) -> tuple[sp.Expr, sp.Expr]:
    raw = d.step(f"{what}: d/dx_i of the loss, LSE unfolded", sp.diff(unfold(loss), x[i]))
    grad = d.step("collapse the deltas, fold p_i",
                  pull_out_constants(fold_softmax(collapse_delta(expand_sum_bodies(raw)))))
    return raw, grad


def _check_loss(d: Derivation, claim: str, loss: sp.Expr, definition) -> None:
    d.check(claim, SYMBOLIC, symbolic_zero(unfold(loss) - definition(SYMBOLIC_ROW)),
            "unfolded, it is (10) at y'")
    d.check(claim, CONCRETE, *_concrete(loss, definition))
    d.check(claim, NUMERIC, *numeric_ok(numeric_error(
        _numeric_values(loss), lambda size, point, ix: _numeric_values(
            unfold(definition(Row(size)), Row(size))).subs(ix).xreplace(point).evalf(50))))


def _concrete(expr: sp.Expr, definition) -> tuple[bool, str]:
    for size in SIZES:
        ok, detail = all_concrete_zero(expr.subs(n, size) - definition(Row(size)), (size,))
        if not ok:
            return ok, detail
    return True, f"0 for n = {SIZES[0]}..{SIZES[-1]} (every label)"


@derivation("D13", "cross-entropy with class weights, ignore_index, label smoothing, z-loss; "
            "nll_loss", "(10)")
def ce_options(d: Derivation) -> None:
    """(10) at PyTorch's weighted, smoothed (and, for labels, masked) target, plus the z-loss;
    D8's loss form, then sympy.diff and the sum rules for the gradient."""
    label_def, prob_def = _definition(label_target, v), _definition(prob_target, 1)
    d.step("labels: y'_k = v w_k ((1 - eps) [k = c] + eps / n)", label_target()(k))
    d.step("probabilities: y'_k = w_k ((1 - eps) y_k + eps / n)", prob_target()(k))

    expanded = _loss_from_d8(d, label_target, v, "labels")
    # (10) is linear in y and y' = v ((1 - eps) w_c e_c + (eps / n) w): the loss is the same
    # combination of D9's label loss LSE - x_c and D8's loss at y = w, which keeps LSE - x_c
    # in one piece (no cancellation between LSE w_c and w_c x_c in the kernel).
    label_part = ce_gradient().results["ce_loss_label"]
    smooth_part = ce_loss_form().results["ce_loss"].replace(
        lambda e: isinstance(e, sp.Indexed) and e.base == y, lambda e: cw[e.indices[0]])
    label_loss = d.step("(10) is linear in y: v ((1 - eps) w_c L(e_c) + (eps / n) L(w) "
                        "+ z LSE^2), L(e_c) from D9, L(w) from D8",
                        v * ((1 - eps) * cw[c] * label_part + eps / n * smooth_part
                             + z * LSE**2))
    d.check(LABEL_LOSS, SYMBOLIC, symbolic_zero(label_loss - expanded),
            "it is D8's loss at y = y'")
    d.results["ce_loss_label_opts"] = label_loss
    _check_loss(d, LABEL_LOSS, label_loss, label_def)

    log_p = lambda r: sp.log(softmax(SYMBOLIC_ROW, vec(x), r))  # noqa: E731
    nll = -cw[c] * log_p(c)
    smooth = -SYMBOLIC_ROW.sum(lambda r: cw[r] * log_p(r))
    torch_form = d.step("LossNLL.cpp: v ((1 - eps) nll + (eps / n) smooth), plus the z-loss",
                        v * ((1 - eps) * nll + eps / n * smooth
                             + z * lse(SYMBOLIC_ROW, vec(x))**2))
    d.check(LABEL_TORCH, SYMBOLIC, symbolic_zero(unfold(label_loss) - torch_form))

    raw, label_grad = _gradient(d, label_loss, "labels")
    d.results["ce_grad_label_opts"] = label_grad
    d.check(LABEL_GRADIENT, SYMBOLIC, symbolic_zero(unfold(label_grad) - raw),
            "unfolded, it is the diff")
    y_label = label_target()
    total = pull_out_constants(collapse_delta(expand_sum_bodies(sp.Sum(y_label(k),
                                                                       (k, 0, n - 1)))))
    d9_form = ((total + 2 * v * z * lse(SYMBOLIC_ROW, vec(x)))
               * softmax(SYMBOLIC_ROW, vec(x), i) - y_label(i))
    d.check(LABEL_GRADIENT, SYMBOLIC, symbolic_zero(unfold(label_grad) - d9_form),
            "it is D9's sum(y) softmax(x) - y at y = y' plus D7's 2 v z LSE softmax(x)")
    _check_gradient(d, LABEL_GRADIENT, label_grad, label_def)

    prob_loss = _loss_from_d8(d, prob_target, 1, "probabilities")
    _check_loss(d, PROB_LOSS, prob_loss, prob_def)
    guarded = d.step("each term with a factor y_k x_k given its limit at y_k = 0 (D8): 0",
                     guard_zero_targets(prob_loss))
    d.check(PROB_GUARDED, SYMBOLIC, guards_ok(guarded, prob_loss),
            "the default branches give the loss back; each y_k = 0 branch is 0")
    d.results["ce_loss_prob_opts"] = guarded
    raw, prob_grad = _gradient(d, prob_loss, "probabilities")
    d.results["ce_grad_prob_opts"] = prob_grad
    d.check(PROB_GRADIENT, SYMBOLIC, symbolic_zero(unfold(prob_grad) - raw),
            "unfolded, it is the diff")
    _check_gradient(d, PROB_GRADIENT, prob_grad, prob_def)

    given = d.step("nll_loss: -sum_k y'_k logp_k at eps = 0, z = 0, logp given",
                   -sp.Sum(label_target()(k).subs(eps, 0) * logp[k], (k, 0, n - 1)))
    nll_loss = d.step("the delta collapsed", collapse_delta(expand_sum_bodies(given)))
    d.results["nll_loss"] = nll_loss
    at_logits = nll_loss.replace(lambda e: isinstance(e, sp.Indexed) and e.base == logp,
                                 lambda e: sp.log(softmax(SYMBOLIC_ROW, vec(x), e.indices[0])))
    d.check(NLL, SYMBOLIC, symbolic_zero(at_logits - unfold(label_loss.subs({eps: 0, z: 0}))),
            "at logp = log softmax(x) it is the label loss with eps = 0, z = 0")


def _check_gradient(d: Derivation, claim: str, grad: sp.Expr, definition) -> None:
    """Against sympy.diff of the written-out definition (n = 1..8, every index, exact) and
    mpmath's numerical derivative (50 digits, option values fixed)."""
    d.check(claim, CONCRETE, *_concrete_derivative(
        grad, lambda row, ix: definition(row).subs(ix), lambda ix: x[ix[i]]))
    check_derivative(d, claim, _numeric_values(grad), _fixed(
        lambda row, ix: definition(row).subs(ix)), lambda ix: x[ix[i]], concrete=False)
