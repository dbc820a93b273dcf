"""The generated CUDA kernels: printed from the derivations, float32 kept float32, and every
kernel compiled to PTX for sm_90 (no GPU needed; ``scripts/ptx_report.py`` adds sm_80) and
assembled by ptxas with no spills, no float64 instruction in a float32 kernel, registers
within a 512-thread block, and the row loops' vector loads and stores as 128-bit
instructions."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "generated" / "cuda"
MODULES = sorted(p.stem for p in CUDA_DIR.glob("*.py") if p.name != "__init__.py")
SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
#: The suite checks sm_90 (H100/H200); scripts/ptx_report.py checks sm_80 too.
HOPPER = (9, 0)


def test_there_is_a_cuda_kernel_for_every_cpu_kernel() -> None:
    cpu = sorted(p.stem for p in (ROOT / "generated" / "cpu").glob("*.py")
                 if p.name != "__init__.py")
    assert MODULES and MODULES == cpu


@pytest.mark.parametrize("module", MODULES)
def test_every_file_names_its_derivations_and_is_lazily_compiled(module: str) -> None:
    text = (CUDA_DIR / f"{module}.py").read_text()
    head = text.split("\n\n")[0]
    assert "Do not edit" in head and "softce.codegen.cuda" in head
    assert re.search(r"#   D\d+ +\w+ +[0-9a-f]{16}", head)
    assert "@cuda.jit\n" in text  # no signature: compiling at import needs a GPU
    assert not re.search(r"@cuda\.jit\(['\"\[]", text)


@pytest.mark.parametrize("module", MODULES)
def test_float32_kernels_print_no_float64(module: str) -> None:
    """The float32 kernels, and the 16-bit ones that compute in float32."""
    blocks = (CUDA_DIR / f"{module}.py").read_text().split("\n\n\n")
    f32 = [b for b in blocks if re.search(r"def \w+_(?:f32|bf16|f16)\(", b)]
    assert f32
    for block in f32:
        body = block.split('"""')[-1]
        assert "float64" not in body and "_f64(" not in body, module
        assert not re.search(r"(?<![\w.(])\d+\.\d+", body), module  # an untyped float literal
        assert "-np.inf" not in body.replace("np.float32(-np.inf)", ""), module


def test_every_merge_of_thread_states_is_printed_from_d11() -> None:
    """The chunk merges (the scalar loops' and the vector loops') and the cross-thread merge
    print D11's merge_m/merge_d as given: a changed rule changes all three; a float64 kernel
    has no vector loops."""
    import sympy as sp

    from softce.codegen.cuda import emit_row_kernel
    from softce.codegen.lower import KernelSpec, lower, m
    from softce.derive.symbols import d1, d2, i, k, m1, m2, row_sum, x

    top = sp.Max(m1, m2)
    softmax = {"out": sp.exp(x[i] - m) / row_sum(sp.exp(x[k] - m))}

    def printed(merge_d: sp.Expr, dtype: str = "f32") -> str:
        spec = KernelSpec(name="t", doc="t", rows=(x,), outputs=softmax, merge=(top, merge_d))
        return "\n".join(emit_row_kernel(lower(spec), dtype))

    text = printed(d1 * sp.exp(m1 - top) + d2 * sp.exp(m2 - top))
    assert text.count("# D11 merge_m") == 3 and text.count("# D11 merge_d") == 3
    assert text.count("d = d*exp_f32(m - m_new) + d_c*exp_f32(m_c - m_new)  # D11 merge_d") == 2
    assert "_o*exp_f32(" in text and "fmax(m, m_o)  # D11 merge_m" in text
    changed = printed(2 * d1 * sp.exp(m1 - top) + d2 * sp.exp(m2 - top))
    assert changed.count("np.float32(2)*d*exp_f32(m - m_new)") == 3
    f64 = printed(d1 * sp.exp(m1 - top) + d2 * sp.exp(m2 - top), "f64")
    assert f64.count("# D11 merge_d") == 2 and "vector_load" not in f64


def test_importing_softce_does_not_import_numba_cuda() -> None:
    code = "import sys, softce; assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(SIMULATED, reason="the CUDA simulator cannot compile PTX")
@pytest.mark.parametrize("module", MODULES)
def test_kernels_compile_to_ptx_without_spills(module: str) -> None:
    import importlib

    from softce.codegen.parameters import HALF_KERNELS
    from softce.cuda.ptx import check
    from softce.cuda.runtime import MAX_THREADS

    mod = importlib.import_module(f"softce.generated.cuda.{module}")
    halves = ("bf16", "f16") if module in HALF_KERNELS else ()
    assert set(mod.SIGNATURES) == {f"{module}_{dt}" for dt in ("f32", "f64", *halves)}
    source = _kernel_sources(module)
    for name in (f"{module}_f32", f"{module}_f64"):  # the 16-bit ones: test_cuda_half.py
        for sig in mod.SIGNATURES[name]:
            res = check(name, getattr(mod, name), sig, HOPPER)
            assert res.registers > 0, (name, sig)
            assert res.spills == 0 and res.stack_bytes == 0, res
            assert not res.f64_in_f32, res
            assert res.shared_bytes <= 48 * 1024, res
            assert res.registers * MAX_THREADS <= 64 * 1024, res  # a full block launches
            # each printed vector access is one 128-bit instruction, none split into scalars
            assert (res.vector_loads > 0) == ("vector_load(" in source[name]), res
            assert (res.vector_stores > 0) == ("vector_store(" in source[name]), res


def _kernel_sources(module: str) -> dict[str, str]:
    """Each kernel's printed source, by name."""
    blocks = (CUDA_DIR / f"{module}.py").read_text().split("\n\n\n")
    return {found.group(1): block for block in blocks
            if (found := re.search(r"^def (\w+)\(", block, re.M))}


def test_every_float32_row_kernel_reads_its_rows_in_vectors() -> None:
    """A float32 or 16-bit row kernel that loops over its rows loads them by vectors (the
    PTX check above sees the 128-bit instructions); a loop that writes an output of rows
    stores by vectors unless it writes pairs (the Jacobian)."""
    checked = 0
    for module in MODULES:
        for name, block in _kernel_sources(module).items():
            if not re.search(r"_(f32|bf16|f16)$", name) or "rows, n = " not in block:
                continue
            loops = "for k in range(" in block or "for i in range(" in block
            assert ("vector_load(" in block) == loops, name
            writes_rows = re.search(r"\w+_r\[i\] = ", block) is not None
            assert ("vector_store(" in block) == writes_rows, name
            checked += 1
    assert checked > 40


@pytest.mark.skipif(SIMULATED, reason="the CUDA simulator cannot compile PTX")
def test_a_gpu_takes_the_shuffle_path() -> None:
    """Outside the simulator the row states merge through warp shuffles (shfl.sync in PTX)."""
    from numba import cuda

    from softce.cuda.runtime import SHUFFLE
    from softce.generated.cuda import softmax

    assert SHUFFLE or os.environ.get("SOFTCE_CUDA_REDUCE") == "shared"
    sig = softmax.SIGNATURES["softmax_f32"][0]
    ptx, _ = cuda.compile_ptx(softmax.softmax_f32.py_func, sig, cc=(9, 0))
    assert ("shfl.sync.down" in ptx) == SHUFFLE
    assert "call" not in re.sub(r"//.*", "", ptx)  # device helpers inlined
