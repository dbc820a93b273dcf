"""Numba options shared by every generated CPU kernel.

fastmath is a chosen set of LLVM flags, never ``True``: ``nnan``/``ninf`` would let LLVM assume
away the NaN and -inf that masks and bad inputs carry. ``reassoc`` lets sums vectorise,
``contract`` forms FMAs, ``arcp``/``nsz``/``afn`` are harmless for these kernels.
``SOFTCE_BOUNDSCHECK=1`` compiles the kernels with bounds checks (and without the on-disk
cache, whose key ignores jit options) so an out-of-range index raises IndexError.
``_target`` makes each kernel's dispatcher compile its declared signatures on first use, one
at a time (``softce.lazy``), not all of them at import.
"""

from __future__ import annotations

import os

from .lazy import TARGET

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

BOUNDSCHECK = os.environ.get("SOFTCE_BOUNDSCHECK", "0") not in ("", "0")

CPU_OPTIONS = {
    "parallel": True,
    "cache": not BOUNDSCHECK,
    "error_model": "numpy",
    "fastmath": set(FASTMATH),
    "boundscheck": BOUNDSCHECK,
    "_target": TARGET,
}
