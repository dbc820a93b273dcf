"""The derivation cache: read by a second process, keyed by the sources each derivation depends
on, robust to corrupted entries and unwritable directories, and indistinguishable from deriving
again for every consumer (results, verdicts, steps, checks, the generated files)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

from softce.codegen.writer import render, stale
from softce.derive import ALL, cache, registry
from softce.derive.core import SYMBOLIC, Derivation, expr_hash

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "generated"
MODULES = registry.MODULES
CHEAP = "D7"  # the quickest derivation, for the tests that derive for real


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory, switched on, for this process and its subprocesses."""
    monkeypatch.setenv(cache.DIR_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.delenv(cache.SWITCH_VARIABLE, raising=False)
    return tmp_path / "cache" / "derivations"


@pytest.fixture(scope="module")
def fresh() -> dict[str, Derivation]:
    """Every derivation derived in this process (the one full cold derivation of the suite)."""
    with cache.disabled():
        return {f.id: f.derive() for f in ALL}


def _keys() -> dict[str, str]:
    return {id: cache.key(module, MODULES.values()) for id, module in MODULES.items()}


def _counting(id: str, calls: list[str]):
    derive = registry.BY_ID[id]

    def counted() -> Derivation:
        calls.append(id)
        return derive()

    return counted


def _in_subprocess(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


RUN_AND_COUNT = """
import sys
from softce.derive import registry
from softce.derive.core import expr_hash
id = sys.argv[1]
calls = []
derive = registry.BY_ID[id]
registry.BY_ID[id] = lambda: calls.append(id) or derive()
d = registry.run(id)
print(len(calls), d.verdict, sorted((name, expr_hash(e)) for name, e in d.results.items()))
"""


def test_a_second_process_reads_the_derivation_instead_of_deriving(cache_dir: Path) -> None:
    first = _in_subprocess(RUN_AND_COUNT, CHEAP)
    second = _in_subprocess(RUN_AND_COUNT, CHEAP)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    calls_first, _, rest_first = first.stdout.strip().partition(" ")
    calls_second, _, rest_second = second.stdout.strip().partition(" ")
    assert (calls_first, calls_second) == ("1", "0")
    d = registry.BY_ID[CHEAP]()
    hashes = sorted((name, expr_hash(e)) for name, e in d.results.items())
    assert rest_first == rest_second == f"{d.verdict} {hashes}"
    assert [p.name.split("-")[0] for p in cache_dir.iterdir()] == [CHEAP]


def test_concurrent_processes_share_one_entry(cache_dir: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", RUN_AND_COUNT, CHEAP], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outs
    assert len({out.partition(" ")[2] for out, _ in outs}) == 1
    assert [p.name for p in cache_dir.iterdir()] == [cache.entry(CHEAP, _keys()[CHEAP]).name]
    assert cache.load(CHEAP, _keys()[CHEAP]) is not None


def _importers(id: str) -> set[str]:
    """id and the derivations whose modules hold its derivation function, directly or through
    one another (read from the imported modules' namespaces, not from their text)."""
    def holds(user: str, used: str) -> bool:
        namespace = vars(sys.modules[registry.BY_ID[user].__module__]).values()
        return any(value is registry.BY_ID[used] for value in namespace)

    found = {id}
    while True:
        more = {user for user in registry.BY_ID if any(holds(user, used) for used in found)}
        if more <= found:
            return found
        found |= more


@pytest.mark.parametrize("id", [f.id for f in ALL])
def test_editing_a_derivation_rekeys_it_and_its_importers_only(
        id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _keys()
    source = cache.source
    monkeypatch.setattr(cache, "source", lambda module: source(module) + (
        b"# edited\n" if module == MODULES[id] else b""))
    after = _keys()
    assert {d for d in before if before[d] != after[d]} == _importers(id)


@pytest.mark.parametrize(("module", "rekeys_all"),
                         [("symbols", True), ("core", True), ("checking", True),
                          ("closed_forms", True), ("cache", True), ("registry", False),
                          ("__init__", False)])
def test_editing_a_shared_module_rekeys_everything(module: str, rekeys_all: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    before = _keys()
    source = cache.source
    monkeypatch.setattr(cache, "source", lambda name: source(name) + (
        b"# edited\n" if name == module else b""))
    after = _keys()
    changed = {d for d in before if before[d] != after[d]}
    assert changed == (set(before) if rekeys_all else set())


def test_another_sympy_rekeys_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _keys()
    monkeypatch.setattr(sp, "__version__", sp.__version__ + ".post1")
    after = _keys()
    assert all(before[d] != after[d] for d in before)


def test_a_corrupted_entry_is_derived_again(cache_dir: Path) -> None:
    calls: list[str] = []
    derive = _counting(CHEAP, calls)
    module = MODULES[CHEAP]
    first = cache.cached(CHEAP, module, MODULES.values(), derive)
    path = cache.entry(CHEAP, _keys()[CHEAP])
    intact = path.read_bytes()
    for damaged in (b"not a pickle", intact[: len(intact) // 2], b""):
        path.write_bytes(damaged)
        again = cache.cached(CHEAP, module, MODULES.values(), derive)
        assert cache.fingerprint(again) == cache.fingerprint(first)
    assert calls == [CHEAP] * 4
    assert path.read_bytes() == intact  # the entry was written again, whole
    assert cache.cached(CHEAP, module, MODULES.values(), derive) is not first
    assert calls == [CHEAP] * 4


@pytest.mark.parametrize("off", ["environment", "disabled()"])
def test_switched_off_it_neither_reads_nor_writes(off: str, cache_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    derive = _counting(CHEAP, calls)
    cache.cached(CHEAP, MODULES[CHEAP], MODULES.values(), derive)  # a warm entry
    stored = sorted(cache_dir.iterdir())
    if off == "environment":
        monkeypatch.setenv(cache.SWITCH_VARIABLE, "0")
        assert not cache.enabled()
        cache.cached(CHEAP, MODULES[CHEAP], MODULES.values(), derive)
    else:
        with cache.disabled():
            assert not cache.enabled()
            cache.cached(CHEAP, MODULES[CHEAP], MODULES.values(), derive)
        assert cache.enabled()
    assert calls == [CHEAP, CHEAP]
    assert sorted(cache_dir.iterdir()) == stored


def test_an_unwritable_directory_caches_nothing(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv(cache.DIR_VARIABLE, str(blocker / "cache"))
    monkeypatch.delenv(cache.SWITCH_VARIABLE, raising=False)
    calls: list[str] = []
    d = cache.cached(CHEAP, MODULES[CHEAP], MODULES.values(), _counting(CHEAP, calls))
    assert d.verdict == "proved" and calls == [CHEAP]
    assert not cache.store(CHEAP, _keys()[CHEAP], d)


def test_a_failed_derivation_is_not_stored(cache_dir: Path) -> None:
    failed = Derivation("DX", "broken", "(0)")
    failed.check("holds", SYMBOLIC, False)
    assert not cache.store("DX", "k", failed)
    assert not cache_dir.exists()


def test_the_directory_follows_the_environment(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.DIR_VARIABLE, str(tmp_path / "own"))
    assert cache.directory().parent == tmp_path / "own"
    monkeypatch.delenv(cache.DIR_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.directory().parent == tmp_path / "xdg" / "softce"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.directory().parent == tmp_path / "home" / ".cache" / "softce"


def test_cached_derivations_equal_fresh_ones(fresh: dict[str, Derivation],
                                             cache_dir: Path) -> None:
    keys = _keys()
    for id, d in fresh.items():
        assert cache.store(id, keys[id], d), id
    loaded = {id: cache.load(id, keys[id]) for id in fresh}
    for id, d in fresh.items():
        back = loaded[id]
        assert back is not d
        assert (back.verdict, back.method, back.steps, back.checks) == (
            d.verdict, d.method, d.steps, d.checks), id
        assert back.results == d.results, id
        assert {n: expr_hash(e) for n, e in back.results.items()} == {
            n: expr_hash(e) for n, e in d.results.items()}, id
        for name, expr in d.results.items():
            assumptions = {s.name: s.assumptions0 for s in expr.free_symbols}
            assert {s.name: s.assumptions0 for s in back.results[name].free_symbols} == (
                assumptions), (id, name)
    from_cache = render(lambda id: loaded[id].results)
    assert from_cache == render(lambda id: fresh[id].results)
    assert stale(GENERATED, lambda id: loaded[id].results) == []


CACHE_ONLY = """
import runpy, sys
from softce.derive import core, registry
def derive(*args, **kwargs):
    raise SystemExit("derived instead of read from the cache")
for id in registry.BY_ID:
    registry.BY_ID[id] = derive
core.Derivation.__init__ = derive  # a derivation called by another one, derived directly
if sys.argv[1] == "-m":
    sys.argv = sys.argv[2:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _warm(fresh: dict[str, Derivation]) -> None:
    keys = _keys()
    for id, d in fresh.items():
        assert cache.store(id, keys[id], d), id


@pytest.mark.parametrize("command", [["scripts/regenerate.py", "--check"],
                                     ["-m", "softce.cli", "generate", "--check"],
                                     ["-m", "softce.cli", "audit", "--format", "json"]])
def test_a_warm_process_reads_every_derivation_from_the_cache(
        command: list[str], fresh: dict[str, Derivation], cache_dir: Path) -> None:
    _warm(fresh)
    result = _in_subprocess(CACHE_ONLY, *command)
    assert result.returncode == 0, result.stdout + result.stderr
    if "audit" in command:
        assert {e["id"] for e in json.loads(result.stdout)} >= set(fresh)
    else:
        assert "up to date" in result.stdout


COUNT_DERIVED = """
import sys
from softce.derive import core, registry
derived = []
init = core.Derivation.__init__
def counted(self, id, *args, **kwargs):
    derived.append(id)
    init(self, id, *args, **kwargs)
core.Derivation.__init__ = counted
for id in sys.argv[1:]:
    assert registry.run(id).verdict == "proved", id
print(" ".join(derived))
"""


@pytest.mark.parametrize(("id", "cached"), [("D13", ["D8", "D9"]), ("D11", ["D2"]),
                                            ("D15", ["D2", "D3"])])
def test_a_derivation_reads_the_ones_it_calls_from_the_cache(
        id: str, cached: list[str], fresh: dict[str, Derivation], cache_dir: Path) -> None:
    keys = _keys()
    for used in cached:
        assert cache.store(used, keys[used], fresh[used])
    first = _in_subprocess(COUNT_DERIVED, id)
    second = _in_subprocess(COUNT_DERIVED, id, *cached)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.split() == [id]  # what it calls came from the cache
    assert second.stdout.split() == []  # and it came from the cache itself


def test_the_derivations_another_one_calls_are_cached_too(cache_dir: Path) -> None:
    result = _in_subprocess(COUNT_DERIVED, "D15", "D3", "D2")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["D15", "D2", "D3"]  # each derived once
    assert {p.name.split("-")[0] for p in cache_dir.iterdir()} == {"D15", "D2", "D3"}


def _regenerate():
    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "scripts/regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flags", [[], ["--no-cache"]])
def test_regenerate_no_cache_switches_the_cache_off(flags: list[str], cache_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    regenerate = _regenerate()
    seen: list[bool] = []
    monkeypatch.setattr(regenerate, "stale", lambda out: seen.append(cache.enabled()) or [])
    assert regenerate.main(["--check", *flags]) == 0
    assert seen == [not flags]
    assert cache.enabled()
