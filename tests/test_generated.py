"""generated/ is what the derivations print: fresh, deterministic, and moved by a derivation."""

import importlib
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import softce
from softce.codegen.writer import render, stale
from softce.derive import results
from softce.derive.symbols import c, i, p
from softce.verify import verify_all

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "generated"
REGENERATE = [sys.executable, str(ROOT / "scripts" / "regenerate.py")]


def test_generated_matches_the_derivations() -> None:
    """What ``regenerate.py --check`` runs, in this process (its derivations are cached for
    the other tests here): no file of generated/ is stale, edited, missing or left over."""
    assert stale(GENERATED) == []


def test_generation_is_byte_deterministic_across_hash_seeds(tmp_path: Path) -> None:
    """The script under a fixed hash seed prints the same bytes as this process (its own
    random seed) checks generated/ against in test_generated_matches_the_derivations."""
    subprocess.run([*REGENERATE, "--out", str(tmp_path)], check=True, capture_output=True,
                   env={"PYTHONHASHSEED": "1", "PATH": ""})
    files = sorted(q.relative_to(tmp_path) for q in tmp_path.rglob("*.py"))
    assert files
    for rel in files:
        assert (tmp_path / rel).read_bytes() == (GENERATED / rel).read_bytes()


def test_check_names_an_edited_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    regenerate = runpy.run_path(REGENERATE[1])["main"]
    assert regenerate(["--out", str(tmp_path)]) == 0
    edited = tmp_path / "cpu" / "softmax.py"
    text = edited.read_text()
    assert "fmax(" in text
    edited.write_text(text.replace("fmax(", "fmin(", 1))
    capsys.readouterr()
    assert regenerate(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "cpu/softmax.py" in err and "log_softmax.py" not in err
    edited.unlink()
    assert regenerate(["--check", "--out", str(tmp_path)]) == 1
    assert "cpu/softmax.py" in capsys.readouterr().err


def test_every_file_names_its_derivations() -> None:
    for path in (GENERATED / "cpu").glob("*.py"):
        if path.name == "__init__.py":
            continue
        head = path.read_text().split("\n\n")[0]
        assert "Do not edit" in head
        assert re.search(r"#   D\d+ +\w+ +[0-9a-f]{16}", head), path.name


#: The float64 values of a float32 kernel: a shifted sum's D11/D18 merges, and a span's sums of
#: chunk sums, with the span's tie count (MERGED_SUM_DTYPE).
MERGED_SUM = re.compile(r"\w+_row = np\.float64\((0|-1)\)  # merged in float64"
                        r"|\w+_sp = np\.float64\(0\)"
                        r"|\w+_sp \+= np\.float64\(ties_c - 1\)  # D18 excess")


def test_float32_kernels_print_no_float64_constant() -> None:
    for path in (GENERATED / "cpu").glob("*.py"):
        for block in path.read_text().split("\n\n\n"):
            if any(f"_{dt}(" in block for dt in ("f32", "bf16", "f16")) and "def " in block:
                body = block.split('"""')[-1]
                wide = [ln.strip() for ln in body.splitlines() if "np.float64" in ln]
                assert all(MERGED_SUM.fullmatch(ln) for ln in wide), (path.name, wide)
                assert "exp_f64" not in body, path.name
                assert not re.search(r"(?<![\w.(])\d+\.\d+", body), path.name


NO_DOUBLE = """
import re, sys
import softce.generated.cpu as cpu
ARITH = (" fadd ", " fsub ", " fmul ", " fdiv ", " frem ", " fcmp ", "call double")
shard, shards = map(int, sys.argv[1:])
bad = []
names = [name for name in sorted(cpu.KERNELS) if name.endswith(("_f32", "_bf16", "_f16"))]
for name in names[shard::shards]:
    kernel = getattr(cpu, name)
    # every float32 signature; a 16-bit variant's first (the float32 arithmetic they share
    # with it: their other signatures differ by the labels' or a float32 output's type)
    sigs = kernel.declared_signatures[:None if name.endswith("_f32") else 1]
    for sig in sigs:
        kernel.compile(sig)
        ir = kernel.inspect_llvm(sig)
        lines = [ln.strip() for ln in ir.splitlines() if "double" in ln and "@Py" not in ln]
        bad += [(name, ln) for ln in lines if re.search(r"x double>", ln)]
        # the merged sums (named *_row, a span's *_sp) and what is computed from them may
        # be double
        value = r'%(?:"[^"]+"|[\\w.]+)'  # an IR value, its name quoted where it holds a $
        wide = {v for ln in lines for v in re.findall(value, ln)
                if re.search(r"_(?:row|sp)\\b", v)}
        for _ in range(len(lines)):
            for ln in lines:
                out = re.match(f"({value}) = ", ln)
                if out and set(re.findall(value, ln[out.end():])) & wide:
                    wide.add(out.group(1))
        for ln in lines:
            out = re.match(f"({value}) = ", ln)
            if any(op in ln for op in ARITH) and not (out and out.group(1) in wide):
                bad.append((name, ln))
print(bad)
sys.exit(1 if bad else 0)
"""


def test_float32_kernels_compile_without_double(tmp_path: Path) -> None:
    """No float64 arithmetic in the LLVM IR of any float32 kernel (compiled afresh: Numba
    cannot inspect code loaded from its cache) but the D11/D18 merges of its row sums, which
    MERGED_SUM_DTYPE keeps in float64 (values named ``*_row``, a span's ``*_sp``, and what is
    computed from them),
    and no float64 vector anywhere. The Python wrapper's unboxing of a scalar argument
    (PyFloat_AsDouble) is not kernel arithmetic. Every float32 signature is checked, and each
    16-bit variant's first; the kernels are shared out over two processes."""
    shards = 2  # compiled in two processes at once
    runs = [subprocess.Popen([sys.executable, "-c", NO_DOUBLE, str(i), str(shards)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / str(i))})
             for i in range(shards)]
    for run in runs:
        out, _ = run.communicate()
        assert run.returncode == 0, out


def test_every_kernel_agrees_with_its_derived_formulas() -> None:
    verdicts = verify_all()
    assert len(verdicts) >= 2 * 14
    bad = [v for v in verdicts if not v.ok]
    assert not bad, bad


def _perturbed(derivation: str):
    """The derivations, with D9's label gradient sign-flipped: softmax + e_c."""
    found = results(derivation)
    if derivation == "D9":
        found = dict(found)
        found["ce_grad_label"] = p[i] + sp.KroneckerDelta(i, c)
    return found


def test_a_perturbed_derivation_changes_the_kernel_and_fails_the_reference(
        tmp_path: Path) -> None:
    original, perturbed = render(), render(_perturbed)
    changed = {rel for rel in original if original[rel] != perturbed[rel]}
    assert changed == {"cpu/cross_entropy_grad_label.py", "cuda/cross_entropy_grad_label.py",
                       "partitioned.py"}

    package = tmp_path / "perturbed_kernels"
    for rel, text in perturbed.items():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(text)
    (package / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("perturbed_kernels.cpu.cross_entropy_grad_label")
    finally:
        sys.path.remove(str(tmp_path))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5))
    labels = np.array([0, 3, 4, 1])
    w = np.full(4, 0.25)
    grad, loss = np.empty_like(x), np.empty(4)
    module.cross_entropy_grad_label_f64(x, labels, w, grad, loss)
    expected = softce.cross_entropy_grad(x, labels)[1]
    s = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    assert np.allclose(expected, (s - np.eye(5)[labels]) / 4)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(grad, expected)
