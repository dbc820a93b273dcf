"""Numba's cache filled ahead of use over a pool of processes (softce warmup), and the
verification of the generated kernels spread over the same kind of pool."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from softce import warmup
from softce.cli import main
from softce.verify import verify_all

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["nll_loss", "sigmoid"]  # two quick kernels: one with labels, one elementwise

FIRST_CALLS = """
import numpy as np
import softce.generated.cpu.nll_loss as nll, softce.generated.cpu.sigmoid as sig
x = np.zeros((2, 3), np.float64)
nll.nll_loss_f64(x, np.ones(3), np.array([0, 2]), np.ones(2), np.empty(2))
nll.nll_loss_f64(x, np.ones(3), np.array([0, 2], np.int32), np.ones(2), np.empty(2))
sig.sigmoid_f32(np.zeros(4, np.float32), np.empty(4, np.float32))
kernels = (nll.nll_loss_f64, sig.sigmoid_f32)
print(sum(sum(k.stats.cache_misses.values()) for k in kernels),
      sum(sum(k.stats.cache_hits.values()) for k in kernels))
"""


@pytest.fixture
def numba_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Numba cache for the processes this test starts."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    return tmp_path / "numba"


def _first_calls() -> list[int]:
    proc = subprocess.run([sys.executable, "-c", FIRST_CALLS], capture_output=True, text=True,
                          cwd=ROOT, env=os.environ.copy(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    return [int(v) for v in proc.stdout.split()]


def test_modules_lists_every_kernel_module_longest_first() -> None:
    from softce.generated.cpu import KERNELS

    names = warmup.modules()
    assert sorted(names) == sorted(set(KERNELS.values()))
    sizes = [(ROOT / "generated" / "cpu" / f"{name}.py").stat().st_size for name in names]
    assert sizes == sorted(sizes, reverse=True)


def test_warmup_fills_the_cache_that_first_calls_read(numba_cache: Path) -> None:
    assert _first_calls() == [3, 0]  # cold: every first call compiled
    for path in numba_cache.rglob("*"):
        if path.is_file():
            path.unlink()
    done = []
    results = warmup.warmup(2, names=SMALL, done=done.append)
    assert [r.module for r in results] == [r.module for r in done] == SMALL
    # nll_loss: two dtypes x two label types; sigmoid: two dtypes
    assert [r.signatures for r in results] == [4, 2]
    assert _first_calls() == [0, 3]  # warm: nothing compiled


def test_warmup_of_one_label_type_compiles_that_one(numba_cache: Path) -> None:
    # in a process of its own: this one read NUMBA_CACHE_DIR when it imported Numba
    code = ("from softce import warmup; "
            "print(warmup.warmup(1, labels=('int64',), names=['nll_loss'])[0].signatures)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=os.environ.copy(), timeout=600)
    assert proc.stdout.split() == ["2"], proc.stderr
    assert _first_calls() == [2, 1]  # the int32 signature and sigmoid compile


def test_the_command_warms_every_module(numba_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(warmup, "modules", lambda: list(SMALL))
    assert main(["warmup", "--workers", "2", "--labels", "int64"]) == 0
    out = capsys.readouterr().out
    assert "nll_loss" in out and "sigmoid" in out
    assert "2 kernel modules, 4 signatures" in out


def test_verification_over_processes_equals_it_in_one(numba_cache: Path) -> None:
    one = verify_all(workers=1, names=SMALL)
    two = verify_all(workers=2, names=SMALL)
    assert [(v.kernel, v.dtype) for v in one] == [(k, d) for k in SMALL for d in ("f32", "f64")]
    assert one == two
    assert all(v.ok for v in two)


@pytest.mark.parametrize("workers", [None, 1])
def test_generate_verify_compiles_while_it_derives(workers: int | None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """softce generate --verify: kernels compiled in the background on the cores but one
    while this process derives (every derivation, for the audit), then verification; one
    worker does all of it in this process."""
    import contextlib

    import softce.derive
    import softce.verify
    from softce.codegen import writer

    events: list[str] = []

    @contextlib.contextmanager
    def background(n: int, labels: tuple[str, ...] = warmup.LABELS, names=None):
        events.append(f"compiling on {n} {labels}")
        yield ["a future"]
        events.append("compiled")

    monkeypatch.setattr(warmup, "cores", lambda: 2)
    monkeypatch.setattr(warmup, "background", background)
    monkeypatch.setattr(writer, "write", lambda out: events.append("write") or [])
    monkeypatch.setattr(softce.derive, "run_all", lambda: events.append("derive all") or [])
    monkeypatch.setattr(softce.verify, "verify_all",
                        lambda workers=None: events.append(f"verify on {workers}") or [])
    flags = [] if workers is None else ["--workers", str(workers)]
    assert main(["generate", "--verify", *flags]) == 0
    if workers is None:
        assert events == ["compiling on 1 ('int64',)", "write", "derive all", "compiled",
                          "verify on None"]
    else:
        assert events == ["write", "verify on 1"]
