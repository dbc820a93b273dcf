"""The derivations in order, each run once per process and looked up by id.

Every module ``d<number>_<topic>.py`` of derive/ is imported and each function it defines with
``@derivation`` is registered: adding a derivation is adding its module.

A derivation comes from this process's memo, else from the disk cache (``derive.cache``), else
it is derived and stored there. The same holds for a derivation that another one calls
directly (``core.set_resolver``): a process whose cache is warm derives nothing.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path

import sympy as sp

from . import cache, core
from .core import Derivation

#: A module of derive/ holding derivations is named d<number>_<topic>.py.
DERIVATION_MODULE = re.compile(r"d\d+_\w+")


def _discover() -> tuple[Callable[[], Derivation], ...]:
    """Every derivation defined (with ``@derivation``) in a derivation module, by number."""
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if DERIVATION_MODULE.fullmatch(info.name):
            module = importlib.import_module(f"{__package__}.{info.name}")
            for value in vars(module).values():
                if callable(value) and hasattr(value, "id") and value.__module__ == module.__name__:
                    found[value.id] = value
    return tuple(found[id] for id in sorted(found, key=lambda id: int(id[1:])))


ALL = _discover()
BY_ID = {f.id: f for f in ALL}
#: The module of each derivation, by id (names within derive/, as the cache keys them).
MODULES = {f.id: f.__module__.rpartition(".")[2] for f in ALL}

_memo: dict[str, Derivation] = {}
#: The derivations being derived in this process right now (a call of one of them from its
#: own body, or from the function that derives it, runs its body).
_underway: set[str] = set()


def run(id: str) -> Derivation:
    """The derivation ``id`` ("D1", "D2", ...): this process's, the cached one, or derived."""
    if id in _memo:
        return _memo[id]
    try:
        derive = BY_ID[id]
    except KeyError:
        raise KeyError(f"no derivation {id!r}; known: {', '.join(BY_ID)}") from None
    _underway.add(id)
    try:
        d = cache.cached(id, MODULES[id], MODULES.values(), derive)
    finally:
        _underway.discard(id)
    _memo[id] = d
    return d


def _resolve(id: str) -> Derivation | None:
    """A registered derivation that another one calls: as ``run`` gives it."""
    if id not in BY_ID or id in _underway:
        return None
    return run(id)


core.set_resolver(_resolve)


def run_all() -> list[Derivation]:
    """Every derivation, in order."""
    return [run(f.id) for f in ALL]


def results(id: str) -> dict[str, sp.Expr]:
    """The named results of derivation ``id``."""
    return run(id).results
