"""The audit and `softce audit`: verdicts, findings, the three formats, the exit status."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

from softce import audit, cli
from softce.derive import ALL, cache, run
from softce.derive.core import CONCRETE, NUMERIC, SYMBOLIC, Check, Derivation
from softce.derive.symbols import i, j, p


@pytest.fixture(scope="module")
def entries() -> list[audit.Entry]:
    return audit.audit()


def test_every_entry_is_proved(entries: list[audit.Entry]) -> None:
    assert [e.id for e in entries] == [f.id for f in ALL] + ["E1", "E2", "E3", "E4"]
    assert all(e.verdict == "proved" for e in entries), [
        (e.id, [ch for ch in e.checks if not ch.ok]) for e in entries if e.verdict != "proved"]


def test_each_derivation_is_held_against_the_note(entries: list[audit.Entry]) -> None:
    for e in entries[:12]:
        note = [ch for ch in e.checks if "the note's" in ch.claim or "(12)" in ch.claim]
        assert note, e.id


def test_the_findings_name_the_errata(entries: list[audit.Entry]) -> None:
    found = {e.id: e for e in entries if e.kind == "finding"}
    assert "sum(y)" in found["E1"].title and "log2" in found["E2"].title
    assert "0 log 0" in found["E3"].title and "comments" in found["E4"].title
    assert found["E1"].method == SYMBOLIC and found["E4"].method == NUMERIC


def test_a_mutated_result_fails_the_comparison() -> None:
    d4 = run("D4")
    wrong = Derivation(d4.id, d4.title, d4.seed_formula,
                       results={"jacobian": p[i] * sp.KroneckerDelta(i, j) + p[i] * p[j]})
    checks = audit.closed_form_checks(wrong)
    assert checks and not any(ch.ok for ch in checks)
    assert {ch.method for ch in checks} == {SYMBOLIC, CONCRETE, NUMERIC}


def test_json_has_the_keys(entries: list[audit.Entry]) -> None:
    data = json.loads(audit.to_json(entries))
    for item in data:
        assert {"id", "title", "seed_formula", "method", "verdict", "steps"} <= item.keys()
        assert item["verdict"] in ("proved", "failed")
        assert item["method"] in ("symbolic n", "concrete n <= 8", "numeric")
    assert data[3]["steps"] and all(isinstance(s, str) for s in data[3]["steps"])


def test_markdown_shows_the_steps_in_latex(entries: list[audit.Entry]) -> None:
    text = audit.to_markdown(entries)
    assert "## D4: softmax Jacobian" in text and "$$" in text and r"\delta_{i j}" in text
    assert "## Findings" in text and "### E2" in text


def test_table_lists_every_entry(entries: list[audit.Entry]) -> None:
    text = audit.to_table_text(entries)
    for e in entries:
        assert e.id in text
    assert "concrete n <= 8" in text
    assert f"{ALL[0].id}-{ALL[-1].id} and the note's errata" in text


def test_cli_writes_json_and_exits_0(tmp_path: Path, monkeypatch,
                                     entries: list[audit.Entry]) -> None:
    monkeypatch.setattr(audit, "audit", lambda: entries)
    out = tmp_path / "audit.json"
    assert cli.main(["audit", "--format", "json", "--output", str(out)]) == 0
    assert [item["id"] for item in json.loads(out.read_text())][:2] == ["D1", "D2"]


def test_cli_exits_1_when_a_verdict_fails(tmp_path: Path, monkeypatch,
                                          entries: list[audit.Entry]) -> None:
    failed = audit.Entry("D0", "broken", "(0)", "derivation", [Check("x", SYMBOLIC, False)])
    monkeypatch.setattr(audit, "audit", lambda: [*entries, failed])
    assert cli.main(["audit", "--format", "markdown", "--output",
                     str(tmp_path / "a.md")]) == 1


def test_cli_prints_the_table(capsys, monkeypatch, entries: list[audit.Entry]) -> None:
    monkeypatch.setattr(audit, "audit", lambda: entries)
    assert cli.main(["audit"]) == 0
    assert "D12" in capsys.readouterr().out


@pytest.mark.parametrize("flags", [[], ["--no-cache"]])
def test_cli_no_cache_audits_with_the_derivation_cache_off(
        flags: list[str], tmp_path: Path, monkeypatch, entries: list[audit.Entry]) -> None:
    monkeypatch.delenv(cache.SWITCH_VARIABLE, raising=False)
    seen: list[bool] = []
    monkeypatch.setattr(audit, "audit", lambda: seen.append(cache.enabled()) or entries)
    assert cli.main(["audit", *flags, "--format", "json", "--output",
                     str(tmp_path / "a.json")]) == 0
    assert seen == [not flags]
    assert cache.enabled()


def test_the_cli_loads_no_sympy_until_a_subcommand_runs() -> None:
    code = "import sys, softce.cli; print('sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(SystemExit):
        cli.main(["audit", "--format", "html"])
