"""What a derivation is: steps from definitions to a result, a verdict, and named results.

Contract with the generator (``softce.codegen``): ``Derivation.results`` maps names to SymPy
expressions written in the symbols of ``derive.symbols``; elementwise outputs use the element
index ``i``, row reductions are ``Sum(..., (k, 0, n - 1))``, softmax(x)[q] is folded to ``p[q]``
and log(sum_k exp(x[k])) to ``LSE``.
"""

from __future__ import annotations

import functools
import hashlib
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import sympy as sp

#: From strongest to weakest: exact for every n (or exact, where the claim has no size), exact
#: for every n from 1 to 8 by full expansion, at random points with 50 digits.
METHODS = ("symbolic n", "concrete n <= 8", "numeric")
VERDICTS = ("proved", "failed")
SYMBOLIC, CONCRETE, NUMERIC = METHODS


@dataclass(frozen=True)
class Step:
    """One step of a derivation: what was done, and the expression it produced (LaTeX)."""

    text: str
    latex: str

    @classmethod
    def of(cls, text: str, expr: object) -> Step:
        return cls(text, expr if isinstance(expr, str) else sp.latex(expr))


@dataclass
class Check:
    """One claim checked by one method; ``ok`` is the outcome of the check itself."""

    claim: str
    method: str
    ok: bool
    detail: str = ""

    def __post_init__(self) -> None:
        self.ok = bool(self.ok)  # NumPy and SymPy booleans become plain ones


@dataclass
class Derivation:
    """A derivation: its identity, the steps that reached its results, and the checks."""

    id: str
    title: str
    seed_formula: str
    steps: list[Step] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    results: dict[str, sp.Expr] = field(default_factory=dict)
    seconds: float = 0.0

    def step(self, text: str, expr: sp.Expr | str) -> sp.Expr | str:
        """Record a step (an expression, or LaTeX) and hand it on."""
        self.steps.append(Step.of(text, expr))
        return expr

    def check(self, claim: str, method: str, ok: object, detail: str = "") -> bool:
        """Record the outcome of checking ``claim`` by ``method``."""
        self.checks.append(Check(claim, method, bool(ok), detail))
        return bool(ok)

    @property
    def method(self) -> str:
        """The weakest, over the claims, of the strongest method that checked each claim."""
        return method_of(self.checks)

    @property
    def verdict(self) -> str:
        return verdict_of(self.checks)


def claim_methods(checks: Iterable[Check]) -> dict[str, str]:
    """Each claim with the strongest method among its checks."""
    best: dict[str, str] = {}
    for ch in checks:
        if ch.claim not in best or METHODS.index(ch.method) < METHODS.index(best[ch.claim]):
            best[ch.claim] = ch.method
    return best


def method_of(checks: Iterable[Check]) -> str:
    """symbolic n > concrete n <= 8 > numeric: the weakest claim decides."""
    return max(claim_methods(checks).values(), key=METHODS.index, default=NUMERIC)


def verdict_of(checks: Iterable[Check]) -> str:
    checks = list(checks)
    return VERDICTS[0] if checks and all(ch.ok for ch in checks) else VERDICTS[1]


#: How a derivation called by another one is found: set by ``derive.registry`` to read it
#: from the registry's memo or the disk cache, so that a derivation that calls another one
#: directly (D13 -> D8, D9; D11, D15 -> D2) does not derive it again in a process that can
#: read it. It returns None for a derivation it does not resolve (one that is not registered,
#: or the one it is deriving right now), which is then derived here.
Resolver = Callable[[str], "Derivation | None"]
_resolver: Resolver | None = None


def set_resolver(resolver: Resolver | None) -> None:
    """Route every call of a ``@derivation`` function through ``resolver`` (None: derive)."""
    global _resolver
    _resolver = resolver


def derivation(id: str, title: str, seed_formula: str
               ) -> Callable[[Callable[[Derivation], None]], Callable[[], Derivation]]:
    """Turn ``body(d)``, which fills d with steps, checks and results, into a timed derivation
    resolved through the resolver (``set_resolver``), else derived once per process; an
    exception becomes a failed check instead of escaping. ``f.derive()`` runs the body (once
    per process) without asking the resolver."""

    def wrap(body: Callable[[Derivation], None]) -> Callable[[], Derivation]:
        @functools.cache
        def derive() -> Derivation:
            d = Derivation(id, title, seed_formula)
            start = time.perf_counter()
            try:
                body(d)
            except Exception:
                d.check("the derivation runs to its end", SYMBOLIC, False,
                        traceback.format_exc(limit=3))
            d.seconds = time.perf_counter() - start
            return d

        @functools.wraps(body)
        def run() -> Derivation:
            if _resolver is not None:
                resolved = _resolver(id)
                if resolved is not None:
                    return resolved
            return derive()

        run.id = id  # type: ignore[attr-defined]
        run.derive = derive  # type: ignore[attr-defined]
        return run

    return wrap


def expr_hash(expr: sp.Expr) -> str:
    """A short, deterministic hash of an expression (of its canonical string form)."""
    return hashlib.sha256(sp.srepr(expr).encode()).hexdigest()[:16]
