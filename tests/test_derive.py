"""The derivations: verdicts, honest methods, the results contract, the closed forms."""

import ast
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import sympy as sp

import softce.derive.symbols as symbols
from softce.derive import ALL, cache, results, run, run_all
from softce.derive.checking import compare
from softce.derive.closed_forms import CLOSED_FORMS
from softce.derive.core import CONCRETE, NUMERIC, SYMBOLIC, Check, Derivation, derivation
from softce.derive.symbols import (
    LSE,
    D,
    b,
    c,
    d1,
    d2,
    g,
    i,
    j,
    k,
    m1,
    m2,
    p,
    q,
    row_sum,
    t,
    x,
    y,
)

DERIVE = Path(__file__).resolve().parents[1] / "derive"
KD = sp.KroneckerDelta
M = sp.Max(m1, m2)

#: What the generator consumes, exactly (structural equality).
CONTRACT = {
    ("D1", "softmax"): sp.exp(x[i]) / row_sum(sp.exp(x[k])),
    ("D2", "softmax_shifted"): sp.exp(x[i] - D) / row_sum(sp.exp(x[k] - D)),
    ("D2", "lse_shifted"): D + sp.log(row_sum(sp.exp(x[k] - D))),
    ("D3", "sigmoid"): sp.exp(t - D) / (sp.exp(t - D) + sp.exp(-D)),
    ("D4", "jacobian"): p[i] * (KD(i, j) - p[j]),
    ("D5", "entropy"): -row_sum(sp.Piecewise((0, sp.Eq(p[k], 0)),
                                             (p[k] * sp.log(p[k]), True))) / sp.log(b),
    ("D7", "grad_lse"): p[i],
    ("D8", "ce_loss"): LSE * row_sum(y[k]) - row_sum(x[k] * y[k]),
    ("D9", "ce_grad"): row_sum(y[k]) * p[i] - y[i],
    ("D9", "ce_loss_label"): LSE - x[c],
    ("D9", "ce_grad_label"): p[i] - KD(i, c),
    ("D10", "log_softmax"): x[i] - LSE,
    ("D10", "log_softmax_vjp"): g[i] - p[i] * row_sum(g[k]),
    ("D10", "softmax_vjp"): p[i] * (g[i] - row_sum(g[k] * p[k])),
    ("D11", "merge_m"): M,
    ("D11", "merge_d"): d1 * sp.exp(m1 - M) + d2 * sp.exp(m2 - M),
    ("D11", "lse_of_pair"): m1 + sp.log(d1),
}

#: Wrong closed forms the comparison must reject.
MUTATIONS = [
    ("D4", "jacobian", p[i] * KD(i, j) + p[i] * p[j], False),  # diag(s) + s s^T
    ("D4", "jacobian", p[i] * KD(i, j) - p[j] * p[j], False),
    ("D9", "ce_grad", p[i] + y[i], True),  # softmax + y
    ("D9", "ce_grad", p[i] - y[i], False),  # (12) without sum(y) = 1
    ("D8", "ce_loss", LSE - row_sum(x[k] * y[k]), False),
    ("D7", "grad_lse", 1 - p[i], False),
    ("D10", "softmax_vjp", p[i] * (g[i] - row_sum(g[k]) * p[i]), False),
    ("D10", "log_softmax", x[i] + LSE, False),
    ("D3", "sigmoid", 1 / (1 + sp.exp(t)), False),
    ("D5", "entropy", -row_sum(p[k] * sp.log(p[k])), False),  # base e, not b
    ("D11", "merge_d", d1 * sp.exp(m1 - M) + d2 * sp.exp(M - m2), False),
]


def test_every_derivation_is_proved() -> None:
    failed = {d.id: [ch for ch in d.checks if not ch.ok] for d in run_all()
              if d.verdict != "proved"}
    assert not failed


def test_methods_are_as_strong_as_sympy_reaches() -> None:
    methods = {d.id: d.method for d in run_all()}
    assert methods == {**{f"D{n}": SYMBOLIC for n in range(1, 11)},
                       "D11": CONCRETE, "D12": NUMERIC,
                       **{f"D{n}": SYMBOLIC for n in range(13, 18)}, "D18": CONCRETE,
                       "D19": CONCRETE, "D20": SYMBOLIC}


def test_the_concrete_claim_of_d11_is_labelled_concrete() -> None:
    d11 = run("D11")
    maximum = [ch for ch in d11.checks if "max of the union" in ch.claim]
    assert [ch.method for ch in maximum] == [CONCRETE]


def test_every_general_claim_is_also_expanded_or_evaluated() -> None:
    """A claim proved for symbolic n is also checked another way (concrete n or 50 digits),
    except the exact claims about one instance or one scalar lemma."""
    for d in run_all()[:10]:
        claims = {ch.claim for ch in d.checks}
        backed = {ch.claim for ch in d.checks if ch.method != SYMBOLIC}
        assert len(backed) >= len(claims) // 2, d.id


def test_registry_order_and_cache() -> None:
    numbers = [int(f.id[1:]) for f in ALL]
    assert numbers == sorted(set(numbers)) and numbers[:17] == list(range(1, 18))
    assert run("D4") is run("D4")
    assert results("D7") is run("D7").results
    beyond = f"D{numbers[-1] + 1}"
    with pytest.raises(KeyError, match=beyond):
        run(beyond)


@pytest.mark.parametrize(("derivation", "name"), sorted(CONTRACT))
def test_results_contract(derivation: str, name: str) -> None:
    assert results(derivation)[name] == CONTRACT[derivation, name]


def _declared(module: ModuleType) -> set[sp.Basic]:
    """The symbols and indexed bases a module declares, with their labels."""
    found = {v for v in vars(module).values() if isinstance(v, (sp.Symbol, sp.IndexedBase))}
    return found | {v.label for v in found if isinstance(v, sp.IndexedBase)}


def _imported_derivations(module: ModuleType) -> set[ModuleType]:
    """The derive modules whose derivations ``module`` builds on (imported by name)."""
    package = module.__name__.rpartition(".")[0]
    return {sys.modules[v.__module__] for v in vars(module).values() if callable(v)
            and (getattr(v, "__module__", None) or "").startswith(f"{package}.d")}


def test_results_use_only_the_shared_symbols() -> None:
    """derive.symbols, and the symbols a derivation's own module declares (the options and
    scalar arguments of D13-D17) or the modules of the derivations it builds on declare (D19's
    results carry D13's options), from where the generator imports them."""
    for f in ALL:
        module = sys.modules[f.__module__]
        shared = _declared(symbols).union(
            *(_declared(m) for m in {module, *_imported_derivations(module)}))
        d = run(f.id)
        for name, expr in d.results.items():
            used = expr.atoms(sp.Symbol) | {e.base for e in expr.atoms(sp.Indexed)}
            assert used <= shared, (d.id, name, used - shared)


def test_the_entropy_keeps_the_limit_branch() -> None:
    """p may hold zeros: Eq(p[k], 0) stays undecided, so 0 log 0 = 0 reaches the generator."""
    entropy = results("D5")["entropy"]
    assert entropy.has(sp.Piecewise)
    h = entropy.subs(symbols.n, 2).doit().xreplace({p[0]: 0, p[1]: 1})
    assert sp.simplify(h) == 0


@pytest.mark.parametrize("cf", CLOSED_FORMS, ids=lambda cf: f"{cf.derivation}-{cf.formula}")
def test_derived_forms_agree_with_the_closed_forms(cf) -> None:
    derived = results(cf.derivation)[cf.result].subs(dict(cf.at))
    assert all(ok for _, ok, _ in compare(derived, cf.expr, sum_y_one=cf.sum_y_one))


@pytest.mark.parametrize(("derivation", "name", "wrong", "sum_y_one"), MUTATIONS)
def test_mutated_closed_forms_are_rejected(derivation: str, name: str, wrong: sp.Expr,
                                           sum_y_one: bool) -> None:
    outcome = compare(results(derivation)[name], wrong, sum_y_one=sum_y_one)
    assert [ok for _, ok, _ in outcome] == [False, False]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names |= {f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names}
            names.add(f"{'.' * node.level}{node.module or ''}")
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_derivation_modules_never_import_the_closed_forms() -> None:
    readers = {"closed_forms.py", "errata.py"}  # the hand-written forms and the audit side
    for path in DERIVE.glob("*.py"):
        if path.name not in readers:
            assert not any("closed_forms" in name for name in _imports(path)), path.name


def test_running_the_derivations_loads_no_closed_form() -> None:
    """Derived afresh (the derivation cache off), not read from the cache."""
    code = ("import sys; from softce.derive import run; run('D9'); "
            "print('softce.derive.closed_forms' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, cache.SWITCH_VARIABLE: "0"}).stdout
    assert out.strip() == "False"


def test_a_derivation_that_raises_is_failed_not_fatal() -> None:
    @derivation("DX", "broken", "(0)")
    def broken(d: Derivation) -> None:
        d.check("holds", SYMBOLIC, True)
        raise ValueError("no")

    d = broken()
    assert d.verdict == "failed" and "ValueError" in d.checks[-1].detail
    assert broken() is d


def test_method_is_the_weakest_claim_at_its_strongest_check() -> None:
    d = Derivation("DX", "t", "(0)")
    d.checks = [Check("a", SYMBOLIC, True), Check("a", NUMERIC, True),
                Check("b", CONCRETE, True), Check("b", NUMERIC, True)]
    assert d.method == CONCRETE and d.verdict == "proved"
    d.checks.append(Check("c", NUMERIC, False))
    assert d.method == NUMERIC and d.verdict == "failed"
    assert Derivation("DX", "t", "(0)").verdict == "failed"


def test_d6_gradient_carries_the_base() -> None:
    assert results("D6")["cross_entropy_grad"] == -p[i] / (q[i] * sp.log(b))


def test_steps_are_latex() -> None:
    for d in run_all():
        assert d.steps, d.id
        assert all(isinstance(s.latex, str) and s.latex for s in d.steps), d.id
