"""The audit: each derivation's checks and its comparison with the note's closed forms, and
the note's errata, rendered as a rich table, a Markdown report or JSON.

A derivation is "proved" when every check passed; its method is the weakest, over its
claims, of the strongest method that checked each claim (symbolic n > concrete n <= 8 >
numeric).
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field

import sympy as sp
from rich.console import Console
from rich.table import Table

from softce.derive.checking import SIZES, compare, numeric_ok
from softce.derive.closed_forms import (
    CLOSED_FORMS,
    cross_entropy_gradient_vector,
    jacobian_matrix,
    note_gradient,
)
from softce.derive.core import (
    CONCRETE,
    NUMERIC,
    SYMBOLIC,
    Check,
    Derivation,
    Step,
    claim_methods,
    method_of,
    verdict_of,
)
from softce.derive.d12_note_check import derived_gradient, note_points
from softce.derive.errata import Finding, findings
from softce.derive.registry import ALL, run_all
from softce.derive.symbols import b, i, j

FORMATS = ("table", "markdown", "json")


@dataclass
class Entry:
    """One line of the audit: a derivation (with its closed-form comparisons) or a finding."""

    id: str
    title: str
    seed_formula: str
    kind: str
    checks: list[Check]
    steps: list[Step] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    note_says: str = ""

    @property
    def method(self) -> str:
        return method_of(self.checks)

    @property
    def verdict(self) -> str:
        return verdict_of(self.checks)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "title": self.title, "seed_formula": self.seed_formula,
            "kind": self.kind, "method": self.method, "verdict": self.verdict,
            "seconds": round(self.seconds, 3),
            "claims": [{"claim": ch.claim, "method": ch.method, "ok": ch.ok,
                        "detail": ch.detail} for ch in self.checks],
            "steps": [s.latex for s in self.steps],
            "step_texts": [s.text for s in self.steps],
            "results": self.results,
            **({"note_says": self.note_says} if self.note_says else {}),
        }


def closed_form_checks(d: Derivation) -> list[Check]:
    """The derived results of d against the note's closed forms (and their matrix forms)."""
    checks: list[Check] = []
    for cf in CLOSED_FORMS:
        if cf.derivation != d.id:
            continue
        claim = f"{cf.result} = the note's {cf.formula}: {sp.sstr(cf.expr)}"
        if cf.result not in d.results:
            checks.append(Check(claim, SYMBOLIC, False, "the derivation gave no such result"))
            continue
        derived = d.results[cf.result].subs(dict(cf.at))
        checks += [Check(claim, method, ok, detail) for method, ok, detail
                   in compare(derived, cf.expr, sum_y_one=cf.sum_y_one)]
        if (d.id, cf.formula) == ("D4", "(4)"):
            checks.append(Check(claim, CONCRETE, *_matrix_check(
                derived, jacobian_matrix, lambda a, c: {i: a, j: c}, "diag(s) - s s^T")))
        if (d.id, cf.formula) == ("D6", "(8)"):
            checks.append(Check(claim, CONCRETE, *_matrix_check(
                derived, cross_entropy_gradient_vector, lambda a, c: {i: a}, "(9) -p / q")))
    if d.id == "D12":
        checks.append(Check("(12) softmax(x) - y, float64, at the note's setting", NUMERIC,
                            *_note_setting()))
    return checks


def _matrix_check(derived: sp.Expr, closed, indices, name: str) -> tuple[bool, str]:
    """The derived form written out as a matrix equals the closed matrix, n = 1..8."""
    for size in SIZES:
        m = closed(size)
        for a in range(m.rows):
            for c in range(m.cols):
                value = derived.subs(indices(a, c)).subs(b, sp.E)
                if sp.expand(value - m[a, c]) != 0:
                    return False, f"{name} differs at n = {size}, ({a}, {c})"
    return True, f"{name} as a matrix, n = 1..8"


def _note_setting() -> tuple[bool, str]:
    worst = max(float(abs(derived_gradient()(v, w) - note_gradient(v, w)).max())
                for v, w in note_points())
    ok, _ = numeric_ok(sp.Float(0))
    return ok and worst < 1e-15, f"max |derived - (softmax(x) - y)| = {worst:.1e}"


def _derivation_entry(d: Derivation) -> Entry:
    start = time.perf_counter()
    checks = list(d.checks) + closed_form_checks(d)
    return Entry(d.id, d.title, d.seed_formula, "derivation", checks, list(d.steps),
                 {name: sp.sstr(e) for name, e in d.results.items()},
                 d.seconds + time.perf_counter() - start)


def _finding_entry(f: Finding, seconds: float) -> Entry:
    return Entry(f.id, f.title, f.seed_formula, "finding", [f.check], seconds=seconds,
                 note_says=f.note_says)


def audit() -> list[Entry]:
    """Every derivation in order (run, or read from the derivation cache), then the findings."""
    entries = [_derivation_entry(d) for d in run_all()]
    start = time.perf_counter()
    found = findings()
    each = (time.perf_counter() - start) / len(found)
    return entries + [_finding_entry(f, each) for f in found]


def render_table(entries: list[Entry], console: Console) -> None:
    """The summary table."""
    table = Table(title=f"softce audit: {ALL[0].id}-{ALL[-1].id} and the note's errata")
    for name in ("id", "title", "seed formula", "method", "verdict", "seconds"):
        table.add_column(name, justify="right" if name == "seconds" else "left")
    for e in entries:
        style = "green" if e.verdict == "proved" else "bold red"
        table.add_row(e.id, e.title, e.seed_formula, e.method,
                      f"[{style}]{e.verdict}[/{style}]", f"{e.seconds:.2f}")
    console.print(table)
    console.print(f"total {sum(e.seconds for e in entries):.1f} s")


def to_table_text(entries: list[Entry]) -> str:
    buffer = io.StringIO()
    render_table(entries, Console(file=buffer, width=120, force_terminal=False))
    return buffer.getvalue()


def to_json(entries: list[Entry]) -> str:
    return json.dumps([e.as_dict() for e in entries], indent=2)


def to_markdown(entries: list[Entry]) -> str:
    """A readable report: the summary, then each derivation's claims and steps in LaTeX."""
    lines = ["# softce audit", "",
             "Each derivation starts from the definitions; *method* is the weakest, over its "
             "claims, of the strongest check of each claim (symbolic n > concrete n <= 8 > "
             "numeric).", "",
             "| id | title | seed formula | method | verdict | seconds |",
             "|---|---|---|---|---|---:|"]
    lines += [f"| {e.id} | {e.title} | {e.seed_formula} | {e.method} | {e.verdict} | "
              f"{e.seconds:.2f} |" for e in entries]
    for e in entries:
        if e.kind == "derivation":
            lines += ["", f"## {e.id}: {e.title} {e.seed_formula}", "",
                      f"**{e.verdict}**, {e.method}, {e.seconds:.2f} s", "", "### Claims", ""]
            best = claim_methods(e.checks)
            for claim, method in best.items():
                ok = all(ch.ok for ch in e.checks if ch.claim == claim)
                details = "; ".join(f"{ch.method}: {ch.detail or ('ok' if ch.ok else 'failed')}"
                                    for ch in e.checks if ch.claim == claim)
                lines.append(f"- {'✓' if ok else '✗'} `{claim}` ({method}): {details}")
            lines += ["", "### Steps", ""]
            lines += [f"{n}. {s.text}\n\n   $$ {s.latex} $$\n"
                      for n, s in enumerate(e.steps, 1)]
            if e.results:
                lines += ["### Results", ""]
                lines += [f"- `{name}` = `{value}`" for name, value in e.results.items()]
    lines += ["", "## Findings: the note's errata", ""]
    for e in entries:
        if e.kind == "finding":
            (ch,) = e.checks
            lines += [f"### {e.id}: {e.title} {e.seed_formula}", "",
                      f"- the note: {e.note_says}",
                      f"- {'✓' if ch.ok else '✗'} {ch.claim} ({ch.method})",
                      f"- {ch.detail}", ""]
    return "\n".join(lines) + "\n"
