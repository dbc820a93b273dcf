"""The README's "Adding a kernel" walk-through, step by step: a derivation, a catalogue entry,
generation, one front-end function; then the new kernel runs on the CPU and in the CUDA
simulator through the front end.

The kernel is the maximum softmax probability (a classifier's confidence, the baseline score
of out-of-distribution detection): max_i softmax(x)_i = 1 / sum_k exp(x_k - m), m = max(x).
Where the walk-through edits the repository (a module in derive/, an entry in
softce/codegen/kernels.py, generated/, softce/functions.py), this test does the same in memory
and in a temporary directory.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp

import softce.generated.cpu
import softce.generated.cuda
from softce.codegen import kernels, writer
from softce.codegen.lower import m
from softce.derive import results
from softce.derive.core import NUMERIC, SYMBOLIC, Derivation, derivation
from softce.derive.symbols import D, i, k, n, row_sum, x

MAX_PROBABILITY = "max_i softmax(x)_i = 1 / sum_k exp(x_k - m), m = max_k x_k"


# Step 1: the derivation (in the repository: derive/d21_max_probability.py, found by the
# registry because of its name).
@derivation("D21", "the maximum softmax probability", "max_i softmax(x)_i")
def max_probability(d: Derivation) -> None:
    """softmax_i grows with x_i alone, so its maximum is at a maximal logit; there D2's
    shifted softmax with the shift D = m has exp(x_i - D) = 1."""
    shifted = results("D2")["softmax_shifted"]
    at_max = d.step("D2's shifted softmax at a maximal logit, x_i = D", shifted.subs(x[i], D))
    d.results["max_probability"] = at_max
    d.check(MAX_PROBABILITY, SYMBOLIC,
            sp.simplify(at_max - 1 / row_sum(sp.exp(x[k] - D))) == 0)
    rng, worst = random.Random(18), mpmath.mpf(0)
    with mpmath.workdps(50):
        for size in (1, 2, 3, 5, 8):
            row = [mpmath.mpf(rng.uniform(-30, 30)) for _ in range(size)]
            top = max(mpmath.exp(v) for v in row) / mpmath.fsum(mpmath.exp(v) for v in row)
            got = at_max.subs(n, size).doit()
            got = got.subs({x[q]: sp.Float(str(v), 60) for q, v in enumerate(row)})
            got = got.subs(D, sp.Float(str(max(row)), 60))
            worst = max(worst, abs(mpmath.mpf(str(sp.N(got, 50))) - top) / top)
    d.check(MAX_PROBABILITY, NUMERIC, worst < mpmath.mpf("1e-40"),
            f"max relative error {float(worst):.1e} at 50 digits")


def with_d21(id: str):
    return max_probability().results if id == "D21" else results(id)


# Step 2: the catalogue entry (in the repository: a function in softce/codegen/kernels.py
# registered with @kernels.entry).
def max_probability_kernels(cat: kernels.Catalogue) -> list:
    """mp[r] = D18's maximum probability with the shift D = m, the row's max [D18, D2, D11]."""
    return [cat.spec(
        name="softmax_max", doc="mp[r] = max_i softmax(x)[i] = 1 / sum_k exp(x[k] - m) "
        "[D21, D11]", rows=(x,), row_outputs={"mp": cat.get("D21", "max_probability")
                                              .xreplace({D: m})})]


# Step 4: the front-end function (in the repository: softce/functions.py, exported by
# softce/__init__.py).
FRONT_END = '''
from softce.functions import row_reduction


def max_softmax_probability(x, axis=-1):
    """max_i softmax(x)_i along ``axis`` [D21]."""
    return row_reduction("softmax_max", x, axis, "x", "mp")
'''


@pytest.fixture(scope="module")
def added(tmp_path_factory) -> Path:
    """Steps 1-4: the derivation proved, the entry registered, its kernel files generated
    into a temporary generated/ and the front-end function written beside them."""
    assert max_probability().verdict == "proved"
    root = tmp_path_factory.mktemp("added")
    entries = [*kernels.ENTRIES, max_probability_kernels]
    # Step 3: generation (in the repository: python scripts/regenerate.py)
    files = writer.render(with_d21, entries)
    before = writer.render()
    added_or_changed = {path for path, text in files.items() if before.get(path) != text}
    assert added_or_changed == {"cpu/softmax_max.py", "cuda/softmax_max.py",
                                "cpu/__init__.py", "cuda/__init__.py"}
    for backend in ("cpu", "cuda"):
        (root / backend).mkdir()
        (root / backend / "softmax_max.py").write_text(files[f"{backend}/softmax_max.py"])
    (root / "added_front_end.py").write_text(FRONT_END)
    return root


def test_the_generated_kernel_names_its_derivation(added: Path) -> None:
    text = (added / "cpu" / "softmax_max.py").read_text()
    d21 = max_probability().results["max_probability"]
    from softce.derive.core import expr_hash

    assert f"D21  max_probability  {expr_hash(d21)}" in text
    assert '("mp", "out_row", "float")' in text
    assert "exp_nonpos_f64(" in text  # exp(x[k] - m) <= 0: the shift made it so


def test_the_new_kernel_runs_on_the_cpu_through_the_front_end(added: Path,
                                                              monkeypatch) -> None:
    for backend, package in (("cpu", softce.generated.cpu), ("cuda", softce.generated.cuda)):
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(added / backend)])
    monkeypatch.syspath_prepend(str(added))
    from added_front_end import max_softmax_probability

    rng = np.random.default_rng(18)
    for dtype, rtol in ((np.float32, 2e-6), (np.float64, 1e-14)):
        x3 = rng.normal(scale=5, size=(4, 3, 1500)).astype(dtype)
        x3[0, 0, :7] = -np.inf  # masked logits
        ref = np.exp(x3.astype(np.float64) - np.logaddexp.reduce(x3, axis=1, keepdims=True))
        got = max_softmax_probability(x3, axis=1)
        assert got.dtype == dtype and got.shape == (4, 1500)
        np.testing.assert_allclose(got, ref.max(axis=1), rtol=rtol)
    with pytest.raises(TypeError, match="x must be a float32 or float64 array"):
        max_softmax_probability(np.arange(3))


def test_the_new_kernel_runs_in_the_cuda_simulator_through_the_front_end(added: Path) -> None:
    script = textwrap.dedent(f"""
        import numpy as np
        from numba import cuda
        import softce.generated.cpu, softce.generated.cuda
        from softce import cuda as sc
        softce.generated.cuda.__path__.append({str(added / "cuda")!r})
        softce.generated.cpu.__path__.append({str(added / "cpu")!r})
        from added_front_end import max_softmax_probability
        sc.configure(block_threads=64, max_blocks=2)
        x = np.random.default_rng(18).normal(scale=5, size=(5, 70))
        got = max_softmax_probability(cuda.to_device(x)).copy_to_host()
        ref = np.exp(x - np.logaddexp.reduce(x, axis=1, keepdims=True)).max(axis=1)
        print(float(np.max(np.abs(got / ref - 1))))
    """)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1",
           "PYTHONPATH": os.pathsep.join([str(added), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert float(run.stdout.strip().splitlines()[-1]) < 1e-13
