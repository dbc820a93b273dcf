"""The softce command line: generate and bench wiring (audit is tested in test_audit.py)."""

from pathlib import Path

import pytest

from softce.cli import main
from softce.codegen import writer
from softce.derive import cache


def test_generate_writes_then_check_passes(tmp_path: Path) -> None:
    assert main(["generate", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "cpu" / "softmax.py").is_file()
    assert main(["generate", "--check", "--out", str(tmp_path)]) == 0


def test_generate_check_fails_on_an_edited_file(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    assert main(["generate", "--out", str(tmp_path)]) == 0
    edited = tmp_path / "cpu" / "logsumexp.py"
    edited.write_text(edited.read_text() + "# an edit\n")
    assert main(["generate", "--check", "--out", str(tmp_path)]) == 1
    assert "logsumexp.py" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [[], ["--check"]])
@pytest.mark.parametrize("no_cache", [False, True])
def test_generate_no_cache_generates_with_the_derivation_cache_off(
        flags: list[str], no_cache: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cache.SWITCH_VARIABLE, raising=False)
    seen: list[bool] = []

    def record(out: Path) -> list[str]:
        seen.append(cache.enabled())
        return []

    monkeypatch.setattr(writer, "write", record)
    monkeypatch.setattr(writer, "stale", record)
    assert main(["generate", *flags, *(["--no-cache"] if no_cache else []),
                 "--out", str(tmp_path)]) == 0
    assert seen == [not no_cache]
    assert cache.enabled()


def test_bench_hands_its_options_to_the_benchmark(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["bench", "--help"])
    assert stop.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_bench_runs_the_checkouts_benchmarks(capsys: pytest.CaptureFixture) -> None:
    """softce bench imports benchmarks/ from beside softce/ (it is not installed)."""
    import sys

    import softce

    with pytest.raises(SystemExit) as stop:
        main(["bench", "--help"])
    assert stop.value.code == 0
    assert "--startup-repeats" in capsys.readouterr().out
    checkout = Path(softce.__file__).resolve().parents[1]
    loaded = Path(sys.modules["benchmarks.cli"].__file__).resolve()
    assert loaded == checkout / "benchmarks" / "cli.py"


def test_bench_without_a_checkout_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    from softce import cli

    monkeypatch.setattr(cli, "__file__", str(tmp_path / "softce" / "cli.py"))
    assert main(["bench", "--help"]) == 2
    assert "source checkout" in capsys.readouterr().err
