"""D6: cross-entropy, its gradient in base b, and H(p|q) - H(p) = KL(p||q) >= 0 [7, 8, 9]."""

from __future__ import annotations

import sympy as sp

from .checking import (
    all_concrete_zero,
    check_derivative,
    numeric_error,
    numeric_ok,
    symbolic_zero,
    termwise_zero,
)
from .core import CONCRETE, NUMERIC, SYMBOLIC, Derivation, derivation
from .definitions import SYMBOLIC_ROW, cross_entropy, entropy, kl, vec
from .lemmas import gibbs
from .rules import collapse_delta, combine_sums, pull_out_constants
from .symbols import b, i, p, q

GRADIENT = "dH(p|q)/dq_i = -p_i / (q_i ln b); with the natural log -p_i / q_i (8), (9)"
KL_GAP = "H(p|q) - H(p) = KL(p||q)"
GIBBS = "KL(p||q) >= 0, 0 at q = p: H(p|q) >= H(p), least at q = p"


@derivation("D6", "cross-entropy", "(7), (8), (9)")
def cross_entropy_base_b(d: Derivation) -> None:
    """sympy.diff of the definition (7) in base b; the KL gap summed termwise."""
    h_pq = d.step("definition (7), in base b", cross_entropy(SYMBOLIC_ROW, vec(p), vec(q), b))
    h_pq = d.step("1 / log b leaves the sum", pull_out_constants(h_pq))
    raw = d.step("d/dq_i", sp.diff(h_pq, q[i]))
    grad = d.step("collapse the delta", collapse_delta(raw))
    d.step("natural log, b = e: (8)", grad.subs(b, sp.E))
    d.results["cross_entropy_grad"] = grad
    d.check(GRADIENT, SYMBOLIC, symbolic_zero(grad - raw), "the delta collapsed")
    check_derivative(d, GRADIENT, grad, lambda row, ix: cross_entropy(row, vec(p), vec(q), b),
                     lambda ix: q[ix[i]])

    h_p = pull_out_constants(entropy(SYMBOLIC_ROW, vec(p), b))
    divergence = kl(SYMBOLIC_ROW, vec(p), vec(q), b)
    combined = d.step("H(p|q) - H(p) - KL(p||q), as one sum",
                      combine_sums(h_pq - h_p - divergence))
    d.check(KL_GAP, SYMBOLIC, isinstance(combined, sp.Sum) and termwise_zero(combined.function),
            "every term is 0 (the p_k = 0 term by the limit)")
    d.check(KL_GAP, CONCRETE, *all_concrete_zero(h_pq - h_p - divergence))
    d.check(KL_GAP, NUMERIC, *numeric_ok(numeric_error(h_pq - h_p - divergence, 0)))
    gibbs(d, GIBBS, vec(q))

