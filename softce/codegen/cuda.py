"""The CUDA emitter: the same RowKernel the CPU emitter prints becomes a ``numba.cuda`` kernel.

Layout of every row kernel: a block of ``blockDim.y`` thread groups, ``blockDim.x`` threads
(a power of two, 32 or more) per group, one group per row; the grid loops over rows in strides
when there are more rows than groups. A group reads its row in coalesced strided chunks: each
thread starts from D11's identity (-inf, 0), and per chunk takes the max, then the shifted sums
against the chunk max, merged into its state with D11's merge_m/merge_d (the CPU kernel's chunk
pass, with a stride). The threads' states are then merged with the same rule: warp shuffles and
one shared slot per warp on a GPU, a shared-memory tree in the CUDA simulator (which has no
shuffles); ``softce.cuda.runtime.SHUFFLE`` picks one. Elementwise outputs are written in a
second coalesced pass. Kernels compile lazily (no signature), so importing them needs no GPU.
"""

from __future__ import annotations

import sympy as sp

from softce.derive.symbols import d1, d2, i, k, m1, m2

from .ir import Assignment, ElementwiseKernel, Reduction, RowKernel
from .lower import m
from .parameters import names, signatures, table
from .printer import DTYPES, NumbaPrinter

#: Elements per thread in one chunk of the online (m, d) pass: a chunk of a group is
#: CHUNK * blockDim.x elements, read a second time (from L1) for the shifted sums.
CHUNK = 8
#: Every lane of a warp takes part in each shuffle.
FULL_MASK = "0xFFFFFFFF"


class CudaPrinter(NumbaPrinter):
    """The CPU printer, with log through the CUDA runtime's log (libdevice on a GPU, NumPy's
    IEEE log in the simulator, where Python's math.log raises on 0), and one exp for every
    argument (``ExpNonPos`` too). CUDA kernels compile without fast-math, so x[i] - m needs no
    ``RoundedShift``: the CUDA emitter does not run that pass."""

    def _print_ExpNonPos(self, expr: sp.Expr) -> str:
        return f"exp_{self.dtype}({self._print(expr.args[0])})"

    def _print_log(self, expr: sp.log) -> str:
        return f"log_{self.dtype}({self._print(expr.args[0])})"


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text if text else "")


def _assign(out: _Lines, depth: int, pr: NumbaPrinter, assigns: tuple[Assignment, ...]) -> None:
    for a in assigns:
        out.add(depth, f"{a.symbol} = {pr.doprint(a.expr)}")


def _state(kernel: RowKernel) -> list[str]:
    """A thread's partial row state: m and the shifted sums (D11), then the plain sums."""
    shifted = [str(r.symbol) for r in kernel.reductions if r.shifted]
    plain = [str(r.symbol) for r in kernel.reductions if not r.shifted]
    return (["m"] if shifted else []) + shifted + plain


def _identity(pr: NumbaPrinter, name: str) -> str:
    return pr.const("-np.inf") if name == "m" else pr.const("0")


def _merge_lines(out: _Lines, depth: int, pr: NumbaPrinter, kernel: RowKernel,
                 shifted: list[Reduction], other: dict[str, str]) -> None:
    """m, d... = D11 merge of (m, d...) with (other["m"], other[d]...), printed from the IR."""
    m_o = sp.Symbol(other["m"])
    merge_m = kernel.merge_m.xreplace({m1: m, m2: m_o})
    out.add(depth, f"m_new = {pr.doprint(merge_m)}  # D11 merge_m")
    for r in shifted:
        merged = kernel.merge_d.xreplace({d1: r.symbol, d2: sp.Symbol(other[str(r.symbol)])})
        merged = merged.xreplace({kernel.merge_m: sp.Symbol("m_new"), m1: m, m2: m_o})
        out.add(depth, f"{r.symbol} = {pr.doprint(merged)}  # D11 merge_d")
    out.add(depth, "m = m_new")


def _emit_merge(out: _Lines, pr: NumbaPrinter, kernel: RowKernel, dtype: str) -> None:
    """A device function merging two partial row states."""
    state = _state(kernel)
    shifted = [r for r in kernel.reductions if r.shifted]
    plain = [r for r in kernel.reductions if not r.shifted]
    args = ", ".join(state + [f"{s}_o" for s in state])
    out.add(0, '@cuda.jit(device=True, inline="always")')
    out.add(0, f"def _merge_{dtype}({args}):")
    out.add(1, '"""Merge two partial row states: D11 for (m, d), plain sums add."""')
    for r in plain:
        out.add(1, f"{r.symbol} = {r.symbol} + {r.symbol}_o")
    if shifted:
        out.add(1, f"if m_o != {pr.const('-np.inf')}:  # (-inf, 0) is D11's identity")
        _merge_lines(out, 2, pr, kernel, shifted, {s: f"{s}_o" for s in state})
    out.add(1, f"return {', '.join(state)}")


def _emit_reduce_shuffle(out: _Lines, pr: NumbaPrinter, kernel: RowKernel, dtype: str) -> None:
    """Merge the states of a row's threads with warp shuffles, then (rows wider than a warp)
    through one shared slot per warp; every thread of the group gets the merged state."""
    state = _state(kernel)
    st = ", ".join(state)
    merge = f"_merge_{dtype}"

    def down(depth: int) -> None:
        out.add(depth, "offset = 16")
        out.add(depth, "while offset > 0:")
        for s in state:
            out.add(depth + 1, f"{s}_o = cuda.shfl_down_sync(FULL_MASK, {s}, offset)")
        others = ", ".join(f"{s}_o" for s in state)
        out.add(depth + 1, f"{st} = {merge}({st}, {others})")
        out.add(depth + 1, "offset //= 2")

    out.add(0, '@cuda.jit(device=True, inline="always")')
    out.add(0, f"def _reduce_shuffle_{dtype}({st}):")
    out.add(1, '"""Row state of the group: warp shuffles, then one shared slot per warp (GPU)."""')
    down(1)
    out.add(1, "width = cuda.blockDim.x")
    out.add(1, "if width > 32:")
    for s in state:  # one declaration per line: the simulator keys shared arrays by line
        out.add(2, f"{s}_w = cuda.shared.array(32, np.{DTYPES[dtype]})")
    out.add(2, "lane = cuda.threadIdx.x % 32")
    out.add(2, "warps = width // 32")
    out.add(2, "first = cuda.threadIdx.y * warps")
    out.add(2, "if lane == 0:")
    for s in state:
        out.add(3, f"{s}_w[first + cuda.threadIdx.x // 32] = {s}")
    out.add(2, "cuda.syncthreads()")
    out.add(2, "if lane < warps:")
    for s in state:
        out.add(3, f"{s} = {s}_w[first + lane]")
    out.add(2, "else:")
    for s in state:
        out.add(3, f"{s} = {_identity(pr, s)}")
    out.add(2, "cuda.syncthreads()")
    down(2)
    for s in state:
        out.add(1, f"{s} = cuda.shfl_sync(FULL_MASK, {s}, 0)")
    out.add(1, f"return {st}")


def _emit_reduce_shared(out: _Lines, pr: NumbaPrinter, kernel: RowKernel, dtype: str) -> None:
    """Merge the states of a row's threads through shared memory, no shuffles (the simulator's
    path): every thread stores its state, the group's first thread merges them in order and
    publishes the row state. Two barriers (the simulator pays for each barrier, not for work)."""
    state = _state(kernel)
    st = ", ".join(state)
    dt = DTYPES[dtype]
    out.add(0, '@cuda.jit(device=True, inline="always")')
    out.add(0, f"def _reduce_shared_{dtype}({st}):")
    out.add(1, '"""Row state of the group through shared memory: one slot per thread."""')
    for s in state:  # one declaration per line: the simulator keys shared arrays by line
        out.add(1, f"{s}_s = cuda.shared.array(MAX_THREADS, np.{dt})")
    for s in state:
        out.add(1, f"{s}_g = cuda.shared.array(32, np.{dt})")
    out.add(1, "width = cuda.blockDim.x")
    out.add(1, "group = cuda.threadIdx.y")
    out.add(1, "slot = group * width + cuda.threadIdx.x")
    for s in state:
        out.add(1, f"{s}_s[slot] = {s}")
    out.add(1, "cuda.syncthreads()")
    out.add(1, "if cuda.threadIdx.x == 0:")
    out.add(2, "for q in range(slot + 1, slot + width):")
    for s in state:
        out.add(3, f"{s}_o = {s}_s[q]")
    others = ", ".join(f"{s}_o" for s in state)
    out.add(3, f"{st} = _merge_{dtype}({st}, {others})")
    for s in state:
        out.add(2, f"{s}_g[group] = {s}")
    out.add(1, "cuda.syncthreads()")
    out.add(1, f"return {', '.join(f'{s}_g[group]' for s in state)}")


def _thread_pass(out: _Lines, pr: NumbaPrinter, kernel: RowKernel) -> None:
    """One thread's share of the row reductions (depth 2, inside the row loop)."""
    shifted = [r for r in kernel.reductions if r.shifted]
    plain = [r for r in kernel.reductions if not r.shifted]
    for s in _state(kernel):
        out.add(2, f"{s} = {_identity(pr, s)}")
    if not shifted:
        if plain:
            out.add(2, "for k in range(lane, stop, width):")
        for r in plain:
            out.add(3, f"{r.symbol} += {pr.doprint(r.summand)}")
        return
    x = kernel.max_of
    ninf = pr.const("-np.inf")
    out.add(2, "for start in range(lane, stop, width * CHUNK):")
    out.add(3, "end = min(start + width * CHUNK, stop)")
    out.add(3, f"m_c = {ninf}")
    out.add(3, "for k in range(start, end, width):")
    out.add(4, f"m_c = fmax(m_c, {pr.doprint(x[k])})")
    for r in plain:
        out.add(4, f"{r.symbol} += {pr.doprint(r.summand)}")
    out.add(3, f"if m_c != {ninf}:  # a chunk of -inf only is D11's identity (-inf, 0)")
    for r in shifted:
        out.add(4, f"{r.symbol}_c = {pr.const('0')}")
    out.add(4, "for k in range(start, end, width):")
    for r in shifted:
        out.add(5, f"{r.symbol}_c += {pr.doprint(r.summand.xreplace({m: sp.Symbol('m_c')}))}")
    _merge_lines(out, 4, pr, kernel, shifted,
                 {"m": "m_c", **{str(r.symbol): f"{r.symbol}_c" for r in shifted}})


def _scratch_inline(kernel: RowKernel, exprs: list[sp.Expr]
                    ) -> tuple[list[Assignment], dict[sp.Expr, sp.Symbol]]:
    """Scratch rows are not materialised on the GPU: each scratch element the outputs read
    (base[i], base[j]) is evaluated in place from the scratch's own expression."""
    assigns: list[Assignment] = []
    mapping: dict[sp.Expr, sp.Symbol] = {}
    for base, scratch_assigns, value in kernel.scratch:
        used = sorted({ix for e in exprs for ix in e.atoms(sp.Indexed) if ix.base == base},
                      key=sp.default_sort_key)
        for ix in used:
            (index,) = ix.indices
            suffix = str(index)
            rename = {a.symbol: sp.Symbol(f"{a.symbol}_{suffix}", real=True)
                      for a in scratch_assigns}
            for a in scratch_assigns:
                assigns.append(Assignment(rename[a.symbol],
                                          a.expr.xreplace(rename).xreplace({i: index})))
            sym = sp.Symbol(f"{base}_{suffix}", real=True)
            assigns.append(Assignment(sym, value.xreplace(rename).xreplace({i: index})))
            mapping[ix] = sym
    return assigns, mapping


def _reads_rows(assigns: tuple[Assignment, ...], exprs: list[sp.Expr]) -> bool:
    return any(e.atoms(sp.Indexed) for e in [a.expr for a in assigns] + exprs)


def emit_row_kernel(kernel: RowKernel, dtype: str) -> list[str]:
    """Source lines of ``<name>_<dtype>`` (and its merge/reduce device functions)."""
    pr = CudaPrinter(dtype)
    out = _Lines()
    state = _state(kernel)
    st = ", ".join(state)
    if state:
        _emit_merge(out, pr, kernel, dtype)
        out.add(0, "")
        out.add(0, "")
        _emit_reduce_shuffle(out, pr, kernel, dtype)
        out.add(0, "")
        out.add(0, "")
        _emit_reduce_shared(out, pr, kernel, dtype)
        out.add(0, "")
        out.add(0, "")
        out.add(0, f"_reduce_{dtype} = _reduce_shuffle_{dtype} if SHUFFLE else "
                   f"_reduce_shared_{dtype}")
        out.add(0, "")
        out.add(0, "")
    out.add(0, "@cuda.jit")
    out.add(0, f"def {kernel.name}_{dtype}({names(kernel)}):")
    out.add(1, f'"""{kernel.doc} ({DTYPES[dtype]})"""')
    out.add(1, f"rows, n = {kernel.rows[0]}.shape")
    out.add(1, "width = cuda.blockDim.x  # threads per row")
    out.add(1, "lane = cuda.threadIdx.x")
    out.add(1, "groups = cuda.blockDim.y  # rows per block")
    out.add(1, "for first in range(cuda.blockIdx.x * groups, rows, cuda.gridDim.x * groups):")
    out.add(2, "r = first + cuda.threadIdx.y")
    out.add(2, "active = r < rows  # an idle group still takes part in the block's barriers")
    out.add(2, "if not active:")
    out.add(3, "r = rows - 1")
    out.add(2, "stop = n if active else 0")
    for row in kernel.rows:
        out.add(2, f"{row}_r = {row}[r]")
    for vector in kernel.class_rows:
        out.add(2, f"{vector}_r = {vector}  # shared by every row")
    for name, sym in kernel.row_scalars:
        out.add(2, f"{sym} = {name}[r]")
    for name, _ in (*kernel.outputs, *kernel.pair_outputs):
        out.add(2, f"{name}_r = {name}[r]")
    _thread_pass(out, pr, kernel)
    if state:
        out.add(2, f"{st} = _reduce_{dtype}({st})")
    _assign(out, 2, pr, kernel.row_level)
    for name, value in kernel.row_outputs:
        out.add(2, f"{name}_v = {pr.doprint(value)}")
    elementwise = [e for _, e in (*kernel.outputs, *kernel.pair_outputs)]
    if elementwise and _reads_rows(kernel.row_level, [e for _, e in kernel.row_outputs]):
        out.add(2, "cuda.syncthreads()  # row-level loads done before an in-place output "
                   "overwrites them")
    scratch, mapping = _scratch_inline(
        kernel, [a.expr for a in kernel.element_level] + elementwise)
    element_level = tuple(Assignment(a.symbol, a.expr.xreplace(mapping))
                          for a in kernel.element_level)
    if kernel.outputs:
        out.add(2, "for i in range(lane, stop, width):")
        _assign(out, 3, pr, tuple(scratch))
        _assign(out, 3, pr, element_level)
        for name, value in kernel.outputs:
            out.add(3, f"{name}_r[i] = {pr.doprint(value.xreplace(mapping))}")
    if kernel.pair_outputs:
        out.add(2, "for q in range(lane, stop * stop, width):")
        out.add(3, "i = q // n")
        out.add(3, "j = q - i * n")
        _assign(out, 3, pr, tuple(scratch))
        _assign(out, 3, pr, element_level)
        for name, value in kernel.pair_outputs:
            out.add(3, f"{name}_r[i, j] = {pr.doprint(value.xreplace(mapping))}")
    if kernel.row_outputs:
        out.add(2, "if active and lane == 0:")
        for name, _ in kernel.row_outputs:
            out.add(3, f"{name}[r] = {name}_v")
    return out.lines


def emit_elementwise_kernel(kernel: ElementwiseKernel, dtype: str) -> list[str]:
    """Source lines of ``<name>_<dtype>`` for a flat elementwise kernel (grid-stride loop)."""
    pr = CudaPrinter(dtype)
    out = _Lines()
    out.add(0, "@cuda.jit")
    out.add(0, f"def {kernel.name}_{dtype}({names(kernel)}):")
    out.add(1, f'"""{kernel.doc} ({DTYPES[dtype]})"""')
    out.add(1, "step = cuda.gridDim.x * cuda.blockDim.x")
    out.add(1, "for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, "
               "out.shape[0], step):")
    for a in kernel.args:
        out.add(2, f"{a} = {a}_in[q]")
    _assign(out, 2, pr, kernel.element_level)
    out.add(2, f"out[q] = {pr.doprint(kernel.output)}")
    return out.lines


RUNTIME_NAMES = ("exp_f32", "exp_f64", "log_f32", "log_f64", "fmax", "fmin")


def emit_module_body(kernel: RowKernel | ElementwiseKernel) -> str:
    """Imports and both dtype variants of one kernel (the header is added by the writer)."""
    emit = emit_row_kernel if isinstance(kernel, RowKernel) else emit_elementwise_kernel
    body: list[str] = []
    for dtype in DTYPES:
        body += ["", "", *emit(kernel, dtype)]
    body += ["", "", *table(kernel)]
    body += ["", "", "#: Signatures of the C-contiguous launches, for ahead-of-time checks "
             "(``cuda.compile_ptx``).", "SIGNATURES = {"]
    for dtype in DTYPES:
        body.append(f'    "{kernel.name}_{dtype}": [')
        body += [f'        "{sig}",' for sig in signatures(kernel, dtype)]
        body.append("    ],")
    body.append("}")
    text = "\n".join(body)
    used = [name for name in RUNTIME_NAMES if f"{name}(" in text]
    used += [name for name in ("SHUFFLE", "MAX_THREADS") if name in text]
    lines = ["import math", ""] if "math." in text else []
    lines += ["import numpy as np", "from numba import cuda"]
    if used:
        lines += ["", f"from softce.cuda.runtime import {', '.join(used)}"]
    constants = [(name, value) for name, value in
                 (("CHUNK", CHUNK), ("FULL_MASK", FULL_MASK))
                 if name in text]
    if constants:
        lines.append("")
        lines += [f"{name} = {value}" for name, value in constants]
    return "\n".join(lines + body) + "\n"
