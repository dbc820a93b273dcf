"""The derivations D1-D17 in order, run once each (cached) and looked up by id."""

from __future__ import annotations

import sympy as sp

from .core import Derivation
from .d01_distribution import distribution
from .d02_shift import shift_invariance
from .d03_sigmoid import two_class
from .d04_jacobian import jacobian
from .d05_entropy import entropy_base_b
from .d06_cross_entropy import cross_entropy_base_b
from .d07_lse_gradient import lse_gradient
from .d08_ce_loss import ce_loss_form
from .d09_ce_gradient import ce_gradient
from .d10_log_softmax import log_softmax_vjps
from .d11_online import online_normaliser
from .d12_note_check import note_check
from .d13_ce_options import ce_options
from .d14_softcap import softcap
from .d15_bce_logits import bce_logits
from .d16_kl_div import kl_div_terms
from .d17_softmax_entropy import softmax_entropy

ALL = (distribution, shift_invariance, two_class, jacobian, entropy_base_b,
       cross_entropy_base_b, lse_gradient, ce_loss_form, ce_gradient, log_softmax_vjps,
       online_normaliser, note_check, ce_options, softcap, bce_logits, kl_div_terms,
       softmax_entropy)
BY_ID = {f.id: f for f in ALL}


def run(id: str) -> Derivation:
    """The derivation ``id`` ("D1".."D17"), run on first use."""
    try:
        return BY_ID[id]()
    except KeyError:
        raise KeyError(f"no derivation {id!r}; known: {', '.join(BY_ID)}") from None


def run_all() -> list[Derivation]:
    """Every derivation, D1 to D17."""
    return [f() for f in ALL]


def results(id: str) -> dict[str, sp.Expr]:
    """The named results of derivation ``id``."""
    return run(id).results
