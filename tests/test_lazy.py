"""Generated CPU kernels compile the declared signature a call needs, on that call: importing
a kernel compiles nothing, a call compiles one signature, and the declared signatures are
still the only ones a kernel accepts (softce.lazy)."""

import importlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numba as nb
import numpy as np
import pytest

from softce.half import OUTPUTS
from softce.lazy import LazyDispatcher, compile_declared

ROOT = Path(__file__).resolve().parents[1]

LAZY = """
import numpy as np
import softce.generated.cpu.nll_loss as module
from softce import shift
from softce.lazy import compile_declared

f32, f64 = module.nll_loss_f32, module.nll_loss_f64
print("import", len(f32.overloads), len(f64.overloads), len(shift.shift_f32.overloads))
logp = np.log(np.full((3, 4), 0.25, np.float32))
weight = np.ones(4, np.float32)
counted, loss = np.ones(3, np.float32), np.empty(3, np.float32)
f32(logp, weight, np.array([0, 1, 3]), counted, loss)
print("int64", len(f32.overloads), len(f32.pending_signatures), f32._can_compile,
      len(f64.overloads), int(np.allclose(loss, np.log(4))))
try:
    f32(logp.astype(np.float64), weight, np.array([0, 1, 3]), counted, loss)
except TypeError as exc:
    print("float64 TypeError", "No matching definition" in str(exc), len(f32.overloads),
          f32._can_compile)
f32(logp, weight, np.array([0, 1, 3], np.int32), counted, loss)
print("int32", sum(f32.stats.cache_misses.values()), sum(f32.stats.cache_hits.values()))
print("warmup", compile_declared(f64), len(f64.overloads), f64._can_compile)
"""


def _run(code: str, cache: Path) -> list[list[str]]:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line.split() for line in proc.stdout.splitlines()]


def test_a_call_compiles_only_the_signature_it_needs(tmp_path: Path) -> None:
    lines = _run(LAZY, tmp_path)
    assert lines[0] == ["import", "0", "0", "0"]  # importing compiles nothing
    # int64 labels: one of float32's two signatures compiled, float64's none, the result right
    assert lines[1] == ["int64", "1", "1", "True", "0", "1"]
    # types no signature declares: the rest compiled, then refused as by @njit([...])
    assert lines[2] == ["float64", "TypeError", "True", "2", "False"]
    assert lines[3] == ["int32", "2", "0"]  # two signatures compiled, each once
    assert lines[4] == ["warmup", "2", "2", "False"]
    again = _run(LAZY, tmp_path)  # a second process: every signature from the cache
    assert again[1] == lines[1]
    assert again[3] == ["int32", "0", "2"]


def test_generated_kernels_are_lazy_with_their_declared_signatures() -> None:
    from softce.generated.cpu import KERNELS

    for name, module_name in KERNELS.items():
        module = importlib.import_module(f"softce.generated.cpu.{module_name}")
        kernel = getattr(module, name)
        assert isinstance(kernel, LazyDispatcher), name
        labels = any(kind == "label" for _, _, kind in module.PARAMETERS)
        half = name.rpartition("_")[2]  # bf16/f16 variants: one signature per output type
        outputs = any(role.startswith("out") and p in getattr(module, "HALF_ARRAYS", ())
                      for p, role, _ in module.PARAMETERS)  # 16-bit outputs
        per_output = len(OUTPUTS[half]) if half in OUTPUTS and outputs else 1
        assert len(kernel.declared_signatures) == (2 if labels else 1) * per_output, name


def test_a_jitted_caller_compiles_the_signature_it_calls() -> None:
    kernel = nb.njit(lambda a, b: a + b, _target="softce_cpu")

    @nb.njit(["float64(float64, float64)", "int64(int64, int64)"], _target="softce_cpu")
    def add(a, b):
        return a + b

    @nb.njit
    def caller(a, b):
        return add(a, b)

    assert isinstance(add, LazyDispatcher) and not add.overloads
    assert caller(1.5, 2.0) == 3.5
    assert [str(s) for s in add.overloads] == ["(float64, float64)"]
    assert add.pending_signatures
    assert kernel(1, 2) == 3  # no signatures: an ordinary dispatcher
    assert not kernel.declared_signatures


def test_signatures_and_inspection_see_every_declared_signature() -> None:
    @nb.njit(["float32(float32)", "float64(float64)"], _target="softce_cpu")
    def twice(a):
        return a * 2

    assert not twice.overloads
    assert len(twice.signatures) == 2 and not twice._can_compile
    assert len(twice.inspect_llvm()) == 2
    with pytest.raises(TypeError, match="No matching definition"):
        twice(np.arange(3))


def test_a_pickled_kernel_keeps_its_declared_signatures() -> None:
    @nb.njit(["int64(int64)", "float64(float64)"], _target="softce_cpu")
    def plus_one(a):
        return a + 1

    assert plus_one(np.int64(1)) == 2
    state = plus_one._reduce_states()
    assert state["declared"] == plus_one.declared_signatures and state["can_compile"]
    rebuilt = LazyDispatcher._rebuild(**dict(state, uuid="not the same"))
    assert rebuilt is not plus_one
    assert rebuilt.declared_signatures == plus_one.declared_signatures
    assert rebuilt(2.5) == 3.5 and len(rebuilt.overloads) == 1
    assert pickle.loads(pickle.dumps(plus_one)) is plus_one
    assert compile_declared(plus_one) == 1 and compile_declared(plus_one) == 0
    assert compile_declared(nb.njit(lambda a: a)) == 0


def test_threads_making_the_first_calls_together() -> None:
    """Threads that all find nothing compiled: one compiles, the others use it (compilation
    disabled by the first one to finish is not an error for the rest)."""
    import threading

    @nb.njit(["float64(float64)"], _target="softce_cpu")
    def half(a):
        return a / 2

    barrier = threading.Barrier(4)
    results, errors = [], []

    def call() -> None:
        barrier.wait()
        try:
            results.append(half(3.0))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [1.5] * 4
    assert not half._can_compile and len(half.overloads) == 1
