"""The derivations in order, each run once per process and looked up by id.

A derivation comes from this process's memo, else from the disk cache (``derive.cache``), else
it is derived and stored there.
"""

from __future__ import annotations

import sympy as sp

from . import cache
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
#: The module of each derivation, by id (names within derive/, as the cache keys them).
MODULES = {f.id: f.__module__.rpartition(".")[2] for f in ALL}

_memo: dict[str, Derivation] = {}


def run(id: str) -> Derivation:
    """The derivation ``id`` ("D1", "D2", ...): this process's, the cached one, or derived."""
    if id in _memo:
        return _memo[id]
    try:
        derive = BY_ID[id]
    except KeyError:
        raise KeyError(f"no derivation {id!r}; known: {', '.join(BY_ID)}") from None
    d = cache.cached(id, MODULES[id], MODULES.values(), derive)
    _memo[id] = d
    return d


def run_all() -> list[Derivation]:
    """Every derivation, in order."""
    return [run(f.id) for f in ALL]


def results(id: str) -> dict[str, sp.Expr]:
    """The named results of derivation ``id``."""
    return run(id).results
