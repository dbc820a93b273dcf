"""What a derivation is: steps from definitions to a result, a verdict, and named results.

Contract with the generator (``softce.codegen``): ``Derivation.results`` maps names to SymPy
expressions written in the symbols of ``derive.symbols``; elementwise outputs use the element
index ``i``, row reductions are ``Sum(..., (k, 0, n - 1))``, softmax(x)[q] is folded to ``p[q]``
and log(sum_k exp(x[k])) to ``LSE``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import sympy as sp

METHODS = ("symbolic n", "concrete n <= 8", "numeric")
VERDICTS = ("proved", "failed")


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

    @property
    def method(self) -> str:
        """The weakest method among the checks: symbolic n > concrete n <= 8 > numeric."""
        used = {ch.method for ch in self.checks}
        return next((name for name in reversed(METHODS[:2]) if name in used), "numeric")

    @property
    def verdict(self) -> str:
        return "proved" if self.checks and all(ch.ok for ch in self.checks) else "failed"


def expr_hash(expr: sp.Expr) -> str:
    """A short, deterministic hash of an expression (of its canonical string form)."""
    return hashlib.sha256(sp.srepr(expr).encode()).hexdigest()[:16]
