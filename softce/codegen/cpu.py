"""The CPU emitter: a RowKernel becomes a parallel Numba function, printed as Python source.

Shape of every row kernel: ``prange`` over rows; per row, one pass over chunks of the class
axis computes the max and the sums (shifted sums merged chunk by chunk with D11, so each row is
read once for its reductions), then one pass writes the elementwise outputs.
"""

from __future__ import annotations

import sympy as sp

from softce.derive.symbols import d1, d2, k, m1, m2

from .ir import Assignment, ElementwiseKernel, RowKernel
from .lower import m
from .printer import DTYPES, NumbaPrinter

#: Elements per chunk of the online (m, d) pass: a chunk stays in L1 between its max and sums.
CHUNK = 1024


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text if text else "")


def _label_types(kernel: RowKernel) -> list[str | None]:
    has_labels = any(sym.is_integer for _, sym in kernel.row_scalars)
    return ["int32", "int64"] if has_labels else [None]


def signature(kernel: RowKernel, dtype: str, label: str | None) -> str:
    """Numba signature: rows C-contiguous 2-D, per-row arrays 1-D, then outputs."""
    dt = DTYPES[dtype]
    args = [f"{dt}[:, ::1]"] * len(kernel.rows)
    args += [f"{dt}[::1]"] * len(kernel.class_rows)
    args += [f"{label if sym.is_integer else dt}[::1]" for _, sym in kernel.row_scalars]
    args += [dt] * len(kernel.params)
    args += [f"{dt}[:, ::1]"] * len(kernel.outputs)
    args += [f"{dt}[:, :, ::1]"] * len(kernel.pair_outputs)
    args += [f"{dt}[::1]"] * len(kernel.row_outputs)
    return f"void({', '.join(args)})"


def arguments(kernel: RowKernel) -> list[str]:
    return ([str(r) for r in kernel.rows] + [str(v) for v in kernel.class_rows]
            + [name for name, _ in kernel.row_scalars]
            + [str(p) for p in kernel.params] + [name for name, _ in kernel.outputs]
            + [name for name, _ in kernel.pair_outputs] + [name for name, _ in kernel.row_outputs])


def _assign(out: _Lines, depth: int, pr: NumbaPrinter, assigns: tuple[Assignment, ...]) -> None:
    for a in assigns:
        out.add(depth, f"{a.symbol} = {pr.doprint(a.expr)}")


def _reductions(out: _Lines, pr: NumbaPrinter, kernel: RowKernel) -> None:
    """The reduction pass over one row (depth 2 inside the row loop)."""
    zero, ninf = pr.const("0"), pr.const("-np.inf")
    shifted = [r for r in kernel.reductions if r.shifted]
    plain = [r for r in kernel.reductions if not r.shifted]
    for r in kernel.reductions:
        out.add(2, f"{r.symbol} = {zero}")
    if not shifted:
        if plain:
            out.add(2, "for k in range(n):")
            for r in plain:
                out.add(3, f"{r.symbol} += {pr.doprint(r.summand)}")
        return
    x = kernel.max_of
    chunk = {r.symbol: sp.Symbol(f"{r.symbol}_c") for r in shifted}
    # Chunk loops index views from 0: LLVM then sees k >= 0 and vectorises plain loads
    # (indexing the row from ``start`` leaves Numba's negative-index wraparound in place,
    # and the loads become gathers, 2-4x slower).
    views = {row: sp.IndexedBase(f"{row}_chunk") for row in (*kernel.rows, *kernel.class_rows)}

    def in_chunk(expr: sp.Expr) -> sp.Expr:
        return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base in views,
                            lambda e: sp.Indexed(views[e.base], *e.indices))

    m_c, m_new = sp.Symbol("m_c"), sp.Symbol("m_new")
    merge_m = kernel.merge_m.xreplace({m1: m, m2: m_c})
    out.add(2, f"m = {ninf}")
    out.add(2, "for start in range(0, n, CHUNK):")
    out.add(3, "stop = min(start + CHUNK, n)")
    for row in views:
        out.add(3, f"{views[row]}_r = {row}_r[start:stop]")
    out.add(3, f"m_c = {ninf}")
    out.add(3, "for k in range(stop - start):")
    out.add(4, f"m_c = fmax(m_c, {pr.doprint(in_chunk(x[k]))})")
    for r in plain:
        out.add(4, f"{r.symbol} += {pr.doprint(in_chunk(r.summand))}")
    out.add(3, "if m_c != -np.inf:  # a chunk of -inf only is D11's identity (-inf, 0)")
    for r in shifted:
        out.add(4, f"{chunk[r.symbol]} = {zero}")
    out.add(4, "for k in range(stop - start):")
    for r in shifted:
        summand = in_chunk(r.summand.xreplace({m: m_c}))
        out.add(5, f"{chunk[r.symbol]} += {pr.doprint(summand)}")
    out.add(4, f"m_new = {pr.doprint(merge_m)}  # D11 merge_m")
    for r in shifted:
        merged = kernel.merge_d.xreplace({d1: r.symbol, d2: chunk[r.symbol]})
        merged = merged.xreplace({kernel.merge_m: m_new, m1: m, m2: m_c})
        out.add(4, f"{r.symbol} = {pr.doprint(merged)}  # D11 merge_d")
    out.add(4, "m = m_new")


def emit_row_kernel(kernel: RowKernel, dtype: str) -> list[str]:
    """Source lines of ``<name>_<dtype>`` for one RowKernel."""
    pr = NumbaPrinter(dtype)
    out = _Lines()
    sigs = ", ".join(f'"{signature(kernel, dtype, lab)}"' for lab in _label_types(kernel))
    out.add(0, f"@nb.njit([{sigs}], **CPU_OPTIONS)")
    out.add(0, f"def {kernel.name}_{dtype}({', '.join(arguments(kernel))}):")
    out.add(1, f'"""{kernel.doc} ({DTYPES[dtype]})"""')
    first = kernel.rows[0]
    out.add(1, f"rows, n = {first}.shape")
    out.add(1, "for r in nb.prange(rows):")
    for row in kernel.rows:
        out.add(2, f"{row}_r = {row}[r]")
    for vector in kernel.class_rows:
        out.add(2, f"{vector}_r = {vector}  # shared by every row")
    for name, sym in kernel.row_scalars:
        out.add(2, f"{sym} = {name}[r]")
    for name, _ in (*kernel.outputs, *kernel.pair_outputs):
        out.add(2, f"{name}_r = {name}[r]")
    _reductions(out, pr, kernel)
    _assign(out, 2, pr, kernel.row_level)
    for base, assigns, value in kernel.scratch:
        out.add(2, f"{base}_r = np.empty(n, np.{DTYPES[dtype]})")
        out.add(2, "for i in range(n):")
        _assign(out, 3, pr, assigns)
        out.add(3, f"{base}_r[i] = {pr.doprint(value)}")
    for name, value in kernel.row_outputs:  # before the outputs: out may alias an input
        out.add(2, f"{name}[r] = {pr.doprint(value)}")
    if kernel.outputs:
        out.add(2, "for i in range(n):")
        _assign(out, 3, pr, kernel.element_level)
        for name, value in kernel.outputs:
            out.add(3, f"{name}_r[i] = {pr.doprint(value)}")
    if kernel.pair_outputs:
        out.add(2, "for i in range(n):")
        out.add(3, "for j in range(n):")
        _assign(out, 4, pr, kernel.element_level)
        for name, value in kernel.pair_outputs:
            out.add(4, f"{name}_r[i, j] = {pr.doprint(value)}")
    return out.lines


def elementwise_arguments(kernel: ElementwiseKernel) -> list[str]:
    return ([f"{a}_in" for a in kernel.args] + [str(p) for p in kernel.params] + ["out"])


def elementwise_signature(kernel: ElementwiseKernel, dtype: str) -> str:
    dt = DTYPES[dtype]
    args = [f"{dt}[::1]"] * len(kernel.args) + [dt] * len(kernel.params) + [f"{dt}[::1]"]
    return f"void({', '.join(args)})"


def emit_elementwise_kernel(kernel: ElementwiseKernel, dtype: str) -> list[str]:
    """Source lines of ``<name>_<dtype>`` for a flat elementwise kernel."""
    pr = NumbaPrinter(dtype)
    out = _Lines()
    out.add(0, f'@nb.njit(["{elementwise_signature(kernel, dtype)}"], **CPU_OPTIONS)')
    out.add(0, f"def {kernel.name}_{dtype}({', '.join(elementwise_arguments(kernel))}):")
    out.add(1, f'"""{kernel.doc} ({DTYPES[dtype]})"""')
    out.add(1, "for q in nb.prange(out.shape[0]):")
    for a in kernel.args:
        out.add(2, f"{a} = {a}_in[q]")
    _assign(out, 2, pr, kernel.element_level)
    out.add(2, f"out[q] = {pr.doprint(kernel.output)}")
    return out.lines


def emit_module_body(kernel: RowKernel | ElementwiseKernel) -> str:
    """Imports and both dtype variants of one kernel (the header is added by the writer)."""
    emit = emit_row_kernel if isinstance(kernel, RowKernel) else emit_elementwise_kernel
    body: list[str] = []
    for dtype in DTYPES:
        body += ["", "", *emit(kernel, dtype)]
    text = "\n".join(body)
    used = [name for name in ("exp_f32", "exp_f64", "fmax", "fmin") if f"{name}(" in text]
    shifts = [name for name in ("shift_f32", "shift_f64") if f"{name}(" in text]
    lines = ["import math", ""] if "math." in text else []
    lines += ["import numba as nb", "import numpy as np", "", "from softce.jit import CPU_OPTIONS"]
    if used:
        lines.append(f"from softce.primitives import {', '.join(used)}")
    if shifts:
        lines.append(f"from softce.shift import {', '.join(shifts)}")
    if "CHUNK" in text:
        lines += ["", f"CHUNK = {CHUNK}"]
    return "\n".join(lines + body) + "\n"

