"""Ahead-of-time checks of the generated CUDA kernels without a GPU.

Every kernel of generated/cuda/ is compiled to PTX with ``numba.cuda.compile_ptx`` (NVVM from
``numba-cuda[cu13]``) for each signature its module lists, then assembled by ``ptxas -v`` (from
``nvidia-cuda-nvcc``, the NVVM's version) for its registers, shared memory and spills.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Compute capabilities checked: Ampere (A100) and Hopper (H100/H200).
CCS = ((8, 0), (9, 0))


@dataclass(frozen=True)
class Resources:
    kernel: str
    signature: str
    cc: tuple[int, int]
    registers: int
    shared_bytes: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    barriers: int
    f64_in_f32: bool  # a float64 instruction in a float32 (or 16-bit) kernel
    vector_loads: int  # ld.global.v2/v4 instructions
    vector_stores: int  # st.global.v2/v4 instructions

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads


def ptxas() -> str:
    """The ptxas of PyPI's nvidia-cuda-nvcc (it must match NVVM's PTX ISA version)."""
    try:
        import nvidia

        for root in nvidia.__path__:
            candidate = Path(root) / "cu13" / "bin" / "ptxas"
            if candidate.is_file():
                return str(candidate)
    except ImportError:
        pass
    found = shutil.which("ptxas")
    if found is None:
        raise FileNotFoundError("ptxas not found: pip install 'nvidia-cuda-nvcc==13.5.*'")
    return found


def kernels() -> list[tuple[str, object, list[str]]]:
    """(name, kernel, signatures) of every generated CUDA kernel."""
    package = importlib.import_module("softce.generated.cuda")
    out = []
    for module_name in sorted(set(package.KERNELS.values())):
        module = importlib.import_module(f"softce.generated.cuda.{module_name}")
        for name, sigs in module.SIGNATURES.items():
            out.append((name, getattr(module, name), list(sigs)))
    return out


_NUM = r"(\d+)"


def _field(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


def assemble(ptx: str, cc: tuple[int, int]) -> str:
    """ptxas -v's report of one PTX module (raises on an assembler error)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.ptx"
        path.write_text(ptx)
        run = subprocess.run([ptxas(), "-v", f"-arch=sm_{cc[0]}{cc[1]}", str(path),
                              "-o", str(Path(tmp) / "kernel.cubin")],
                             capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"ptxas failed for sm_{cc[0]}{cc[1]}:\n{run.stderr}")
    return run.stderr + run.stdout


def compile_ptx(kernel: object, sig: str, cc: tuple[int, int]) -> str:
    """The PTX of one kernel signature for compute capability ``cc``."""
    from numba import cuda

    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    return ptx


def resources(name: str, sig: str, cc: tuple[int, int], ptx: str) -> Resources:
    """Assemble the PTX of one kernel signature and read its resources."""
    report = assemble(ptx, cc)
    # the 16-bit variants compute in float32 too
    f64 = name.endswith(("_f32", "_bf16", "_f16")) and re.search(r"\.f64\b", ptx) is not None
    return Resources(
        kernel=name, signature=sig, cc=cc,
        registers=_field(rf"Used {_NUM} registers", report),
        shared_bytes=_field(rf"{_NUM} bytes smem", report),
        stack_bytes=_field(rf"{_NUM} bytes stack frame", report),
        spill_stores=_field(rf"{_NUM} bytes spill stores", report),
        spill_loads=_field(rf"{_NUM} bytes spill loads", report),
        barriers=_field(rf"used {_NUM} barriers", report),
        f64_in_f32=f64,
        vector_loads=len(re.findall(r"\bld\.global(?:\.nc)?\.v[24]\.", ptx)),
        vector_stores=len(re.findall(r"\bst\.global\.v[24]\.", ptx)),
    )


def check(name: str, kernel: object, sig: str, cc: tuple[int, int]) -> Resources:
    """Compile one kernel signature to PTX and assemble it."""
    return resources(name, sig, cc, compile_ptx(kernel, sig, cc))


def report_all(ccs: tuple[tuple[int, int], ...] = CCS) -> list[Resources]:
    return [check(name, kernel, sig, cc) for name, kernel, sigs in kernels()
            for sig in sigs for cc in ccs]


def table(results: list[Resources]) -> str:
    """A Markdown table: one line per kernel signature, registers/shared/spills and vector
    loads/stores per cc."""
    ccs = sorted({r.cc for r in results})
    head = "| kernel | signature | " + " | ".join(
        f"sm_{a}{b} regs / smem B / spills B / vector ld, st" for a, b in ccs) + " |"
    lines = [head, "|" + " --- |" * (2 + len(ccs))]
    rows: dict[tuple[str, str], dict[tuple[int, int], Resources]] = {}
    for r in results:
        rows.setdefault((r.kernel, r.signature), {})[r.cc] = r
    for (name, sig), per_cc in rows.items():
        short = re.sub(r"^void\((.*)\)$", r"\1", sig)
        cells = [f"{r.registers} / {r.shared_bytes} / {r.spills} / "
                 f"{r.vector_loads}, {r.vector_stores}" for r in (per_cc[cc] for cc in ccs)]
        lines.append(f"| {name} | `{short}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)
