"""The CPU emitter: a RowKernel becomes a parallel Numba function, printed as Python source.

Shape of every row kernel: ``prange`` over rows; per row, one pass over chunks of the class
axis computes the max and the sums (shifted sums merged chunk by chunk with D11, so each row is
read once for its reductions), then one pass writes the elementwise outputs, a chunk at a time
through ``softce.stream.put``. Where the outputs need exp(x[i] - m) (softmax, the label
gradients), the reduction pass keeps each chunk's exps in the output row and the output pass
rescales them there instead: one exp per element; there a span of chunks (``MAX_SPAN``) shares
one max, read first. A KroneckerDelta(i, c) in an output is taken
out of its loop. A kernel that needs scratch buffers loops ``prange`` over blocks of rows (``BLOCK``
elements each) and allocates them once per block.
"""

from __future__ import annotations

import sympy as sp

from softce.derive.symbols import d1, d2, i, k, m1, m2

from .ir import Assignment, ElementwiseKernel, RowKernel
from .lower import m
from .numerics import (
    MERGED_SUM_DTYPE,
    DeltaSplit,
    ExpNonPos,
    RoundedShift,
    RoundShifts,
    Unmasked,
    on_kernel,
)
from .parameters import names, signatures, table
from .printer import DTYPES, NumbaPrinter

#: Elements per chunk of the online (m, d) pass: a chunk stays in L1 between its max and sums.
CHUNK = 1024

#: Elements per span of a kernel that stores its exps (``_stored_exp``). Such a kernel takes the
#: max of a span in a loop that only reads x, then computes, stores and sums the span's exps
#: chunk by chunk with that max as every chunk's m_c (D11 holds for any m_c at or above the
#: chunk's elements), re-reading x from L2. A loop that only reads keeps its speed in the
#: machine's slow stretches, where reads and exps in one loop stop overlapping. Measured on
#: 4096 x 32000 float32, two threads, medians of interleaved calls against a max per 256-element
#: chunk: the label gradient 36.5 -> 37.1 ms calm, 55.9 -> 45.5 ms slow; softmax 34.4 -> 35.6
#: calm, 47.6 -> 43.0 slow. 32768 float64 elements and their output lines fill half a 1 MiB L2.
MAX_SPAN = 32768

#: Elements per task of a kernel with scratch buffers: each task (a block of rows) allocates its
#: buffers once, so short rows do not pay an allocation each.
BLOCK = 16384


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.indent = 0  # added to every depth: 1 inside a block of rows

    def add(self, depth: int, text: str) -> None:
        self.lines.append("    " * (depth + self.indent) + text if text else "")


def _assign(out: _Lines, depth: int, pr: NumbaPrinter, assigns: tuple[Assignment, ...]) -> None:
    for a in assigns:
        out.add(depth, f"{a.symbol} = {pr.doprint(a.expr)}")


class _HeldPrinter(NumbaPrinter):
    """Prints the loads in ``held`` as the locals that hold them (read before the row is
    overwritten); the expression keeps its Indexed, so x[c] - m still prints as a shift."""

    def __init__(self, dtype: str, held: dict[sp.Indexed, str]) -> None:
        super().__init__(dtype)
        self.held = held

    def _print_Indexed(self, expr: sp.Indexed) -> str:
        return self.held.get(expr) or super()._print_Indexed(expr)


def _row_loads(kernel: RowKernel) -> set[sp.Indexed]:
    """Loads of the input rows at a row-level index (x[c]) in row values and row outputs."""
    exprs = [a.expr for a in kernel.row_level] + [v for _, v in kernel.row_outputs]
    return {e for expr in exprs for e in expr.atoms(sp.Indexed) if e.base in kernel.rows}


def _stored_exp(kernel: RowKernel) -> sp.Expr | None:
    """exp(x[i] - m) when the outputs can read it back from the first output row.

    The sum pass then stores exp(x[k] - m_c) there, and the output pass multiplies it by the
    chunk's D11 factor exp(m_c - m): one exp per element instead of two. Only where the output
    pass then reads no input row (out may alias one), row values read rows unconditionally
    (they are loaded before the row is overwritten) and no pair outputs or scratch rows exist.
    """
    if not kernel.outputs or kernel.pair_outputs or kernel.scratch:
        return None
    exps = [r.summand for r in kernel.reductions if r.shifted and isinstance(r.summand, ExpNonPos)]
    if not exps:
        return None
    pattern = exps[0].xreplace({k: i})
    element = [a.expr for a in kernel.element_level] + [v for _, v in kernel.outputs]
    if not any(e.has(pattern) for e in element):
        return None
    left = [e.xreplace({pattern: sp.Symbol("e_x")}) for e in element]
    if any(e.base in kernel.rows for expr in left for e in expr.atoms(sp.Indexed)):
        return None
    rows = [a.expr for a in kernel.row_level] + [v for _, v in kernel.row_outputs]
    if any(p.has(*_row_loads(kernel)) for e in rows for p in e.atoms(sp.Piecewise, Unmasked)):
        return None
    return pattern


def _reductions(out: _Lines, pr: NumbaPrinter, kernel: RowKernel,
                stored: sp.Expr | None = None) -> None:
    """The reduction pass over one row (depth 2 inside the row loop); with ``stored``, each
    chunk's exp(x[k] - m_c) is kept in the first output row and m_c in ``m_chunks``, m_c being
    the max of the chunk's span (``MAX_SPAN``) rather than of the chunk."""
    zero, ninf = pr.const("0"), pr.const("-np.inf")
    shifted = [r for r in kernel.reductions if r.shifted]
    plain = [r for r in kernel.reductions if not r.shifted]
    for r in plain:
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
    rows = (*kernel.rows, *kernel.class_rows)
    views = {row: sp.IndexedBase(f"{row}_chunk") for row in rows}

    def viewed(expr: sp.Expr, names: dict[sp.IndexedBase, sp.IndexedBase]) -> sp.Expr:
        return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base in names,
                            lambda e: sp.Indexed(names[e.base], *e.indices))

    m_c, m_new = sp.Symbol("m_c"), sp.Symbol("m_new")
    merge_m = kernel.merge_m.xreplace({m1: m, m2: m_c})
    wide = MERGED_SUM_DTYPE[pr.dtype]
    widened = wide != DTYPES[pr.dtype]
    merged = {r.symbol: sp.Symbol(f"{r.symbol}_row") if widened else r.symbol for r in shifted}
    for r in shifted:
        out.add(2, f"{merged[r.symbol]} = np.{wide}(0)" + f"  # merged in {wide}" * widened)
    out.add(2, f"m = {ninf}")

    def max_loop(depth: int, names: dict[sp.IndexedBase, sp.IndexedBase], stop: str) -> None:
        out.add(depth, f"m_c = {ninf}")
        out.add(depth, f"for k in range({stop}):")
        out.add(depth + 1, f"m_c = fmax(m_c, {pr.doprint(viewed(x[k], names))})")
        for r in plain:
            out.add(depth + 1, f"{r.symbol} += {pr.doprint(viewed(r.summand, names))}")

    def read(exprs: list[sp.Expr]) -> list[sp.IndexedBase]:
        """The rows that ``exprs`` index, in the kernel's order."""
        bases = {e.base for expr in exprs for e in expr.atoms(sp.Indexed)}
        return [row for row in rows if row in bases]

    maxed = [x[k], *(r.summand for r in plain)]
    summed = [r.summand for r in shifted] + ([stored] if stored is not None else [])
    depth = 3
    if stored is not None:
        spans = {row: sp.IndexedBase(f"{row}_span") for row in read(maxed)}
        out.add(2, "for span in range(0, n, MAX_SPAN):")
        out.add(3, "span_stop = min(span + MAX_SPAN, n)")
        for row in spans:
            out.add(3, f"{spans[row]}_r = {row}_r[span:span_stop]")
        max_loop(3, spans, "span_stop - span")
        out.add(3, "for start in range(span, span_stop, CHUNK):")
        depth = 4
    else:
        out.add(2, "for start in range(0, n, CHUNK):")
    out.add(depth, f"stop = min(start + CHUNK, {'n' if stored is None else 'span_stop'})")
    for row in read(summed if stored is not None else maxed + summed):
        out.add(depth, f"{views[row]}_r = {row}_r[start:stop]")
    if stored is None:
        max_loop(depth, views, "stop - start")
    else:
        store = f"{kernel.outputs[0][0]}_chunk_r"
        out.add(depth, f"{store} = {kernel.outputs[0][0]}_r[start:stop]")
        out.add(depth, "m_chunks[start // CHUNK] = m_c")
    out.add(depth, "if m_c != -np.inf:  # a chunk of -inf only is D11's identity (-inf, 0)")
    for r in shifted:
        out.add(depth + 1, f"{chunk[r.symbol]} = {zero}")

    def sum_loop(depth: int, names: dict[sp.IndexedBase, sp.IndexedBase]) -> None:
        out.add(depth, "for k in range(stop - start):")
        kept = {}
        if stored is not None:
            e_k = viewed(stored.xreplace({i: k, m: m_c}), names)
            kept = {e_k: sp.Symbol("e_k")}
            out.add(depth + 1, f"e_k = {pr.doprint(e_k)}")
            out.add(depth + 1, f"{store}[k] = e_k")
        for r in shifted:
            summand = viewed(r.summand.xreplace({m: m_c}), names).xreplace(kept)
            out.add(depth + 1, f"{chunk[r.symbol]} += {pr.doprint(summand)}")

    if stored is None:
        sum_loop(depth + 1, views)
    else:
        # in place (out = x) a loop reading x and writing out sees two arrays that may alias,
        # and LLVM runs it scalar; reading the output row itself, it vectorises
        held = store.removesuffix("_r")
        out.add(depth + 1, "if in_place:")
        sum_loop(depth + 2, {**views, x: sp.IndexedBase(held)})
        out.add(depth + 1, "else:")
        sum_loop(depth + 2, views)
    out.add(depth + 1, f"m_new = {pr.doprint(merge_m)}  # D11 merge_m")
    for r in shifted:
        merge = kernel.merge_d.xreplace({d1: merged[r.symbol], d2: chunk[r.symbol]})
        merge = merge.xreplace({kernel.merge_m: m_new, m1: m, m2: m_c})
        out.add(depth + 1, f"{merged[r.symbol]} = {pr.doprint(merge)}  # D11 merge_d")
    out.add(depth + 1, "m = m_new")
    if stored is not None:
        out.add(depth, "else:  # exp(x[k] - m) is 0 there")
        out.add(depth + 1, "for k in range(stop - start):")
        out.add(depth + 2, f"{store}[k] = {zero}")
    if widened:  # narrowed once, so the row-level values and element loops stay in the dtype
        for r in shifted:
            out.add(2, f"{r.symbol} = {pr.np_type}({merged[r.symbol]})")


def _stored_outputs(out: _Lines, pr: NumbaPrinter, kernel: RowKernel, stored: sp.Expr) -> None:
    """The output pass, chunk by chunk, reading exp(x[i] - m) back from the first output row:
    exp(x[i] - m) = exp(x[i] - m_c) * exp(m_c - m), the factor D11's merge_d gives a chunk's
    sum d_c when the maxima merge to the row's m."""
    m_c = sp.Symbol("m_c")
    factor = sp.diff(kernel.merge_d, d2).xreplace({kernel.merge_m: m, m2: m_c})
    names = [name for name, _ in kernel.outputs]
    views = {v: sp.IndexedBase(f"{v}_chunk") for v in kernel.class_rows}

    def in_chunk(expr: sp.Expr) -> sp.Expr:
        expr = expr.xreplace({stored: sp.Symbol("e_x")})
        return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base in views
                            and e.indices == (i,), lambda e: sp.Indexed(views[e.base], k))

    out.add(2, "for start in range(0, n, CHUNK):")
    out.add(3, "stop = min(start + CHUNK, n)")
    out.add(3, "m_c = m_chunks[start // CHUNK]")
    out.add(3, f"f_c = {pr.doprint(factor)}  # D11 merge_d's factor for d_c")
    for name in names:
        out.add(3, f"{name}_chunk_r = {name}_r[start:stop]")
    for v in kernel.class_rows:
        out.add(3, f"{v}_chunk_r = {v}_r[start:stop]")
    assigns = [(a.symbol, in_chunk(a.expr)) for a in kernel.element_level]
    values = [(f"{name}_chunk_r", in_chunk(value)) for name, value in kernel.outputs]
    first = f"e_x = {names[0]}_chunk_r[k]*f_c  # {stored.rewrite(sp.exp)}"
    _element_loop(out, pr, assigns, values, first)


def _element_loop(out: _Lines, pr: NumbaPrinter, assigns: list[tuple[sp.Symbol, sp.Expr]],
                  values: list[tuple[str, sp.Expr]], first: str | None = None) -> None:
    """``for k`` over the chunk (depth 3): the line ``first``, the element values, then
    ``target[k] = value`` for each (target, value). A KroneckerDelta(i, c) is taken out of the
    loop (``DeltaSplit``): the element i = c is computed before the loop, which may overwrite
    what it reads, and stored after it."""
    exprs = [e for _, e in assigns + values]
    c = DeltaSplit.of(exprs).index

    def element(delta: int, store: str) -> None:
        if first:
            out.add(4, first)
        if any(DeltaSplit.at(e, delta).has(i) for e in exprs):
            out.add(4, "i = start + k")
        for symbol, expr in assigns:
            out.add(4, f"{symbol} = {pr.doprint(DeltaSplit.at(expr, delta))}")
        for target, value in values:
            out.add(4, store.format(target) + pr.doprint(DeltaSplit.at(value, delta)))

    if c is not None:
        out.add(3, f"at_c = start <= {pr.doprint(c)} < stop  # the chunk holds i = c")
        for target, _ in values:
            out.add(3, f"{target}_at_c = {pr.const('0')}")
        out.add(3, "if at_c:")
        out.add(4, f"k = {pr.doprint(c)} - start")
        element(1, "{}_at_c = ")
    out.add(3, "for k in range(stop - start):")
    element(0, "{}[k] = ")
    if c is not None:
        out.add(3, "if at_c:")
        for target, _ in values:
            out.add(4, f"{target}[{pr.doprint(c)} - start] = {target}_at_c")


def _chunked_outputs(out: _Lines, pr: NumbaPrinter, kernel: RowKernel, shift: bool) -> None:
    """The output pass, chunk by chunk: each output chunk is computed into the block's buffer
    ``<out>_buf`` and handed to ``put``, which stores it around the caches when the first
    output is large (``softce.stream``). With ``shift``, every sum x[i] - m + t reads x[i] - m from
    ``shift_r``, filled by a loop of its own: its store rounds x[i] - m before t joins it,
    which ``reassoc`` would otherwise rewrite as x[i] + (t - m) (``softce.shift``'s fence
    forbids that too, but keeps the loop from vectorising)."""
    x = kernel.max_of
    bases = (*kernel.rows, *kernel.class_rows, *(base for base, _, _ in kernel.scratch))
    views = {base: sp.IndexedBase(f"{base}_chunk") for base in bases}

    def in_chunk(expr: sp.Expr) -> sp.Expr:
        if shift:
            expr = expr.xreplace({RoundedShift(x[i], m): sp.IndexedBase("shift")[k]})
        return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base in views
                            and e.indices == (i,), lambda e: sp.Indexed(views[e.base], k))

    assigns = [(a.symbol, in_chunk(a.expr)) for a in kernel.element_level]
    values = [(name, in_chunk(value)) for name, value in kernel.outputs]
    exprs = [e for _, e in assigns + values]
    used = [base for base in bases if any(e.has(views[base]) for e in exprs)]
    if shift and x not in used:
        used.insert(0, x)
    out.add(2, "for start in range(0, n, CHUNK):")
    out.add(3, "stop = min(start + CHUNK, n)")
    for base in used:
        out.add(3, f"{views[base]}_r = {base}_r[start:stop]")
    if shift:
        out.add(3, "for k in range(stop - start):")
        out.add(4, f"shift_r[k] = {x}_chunk_r[k] - m  # D2's shift, rounded by this store")
    _element_loop(out, pr, assigns, [(f"{name}_buf", v) for name, v in values])
    for name, _ in kernel.outputs:
        out.add(3, f"put({name}_r[start:stop], {name}_buf, stream)")
    out.add(2, "stream_fence(stream)")


def _uses_shift(kernel: RowKernel) -> bool:
    """Whether an element value reads RoundedShift(x[i], m) (stored from a loop of its own)."""
    if kernel.max_of is None:
        return False
    exprs = [a.expr for a in kernel.element_level] + [v for _, v in kernel.outputs]
    return any(e.has(RoundedShift(kernel.max_of[i], m)) for e in exprs)


def _buffers(kernel: RowKernel, stored: sp.Expr | None, shift: bool) -> list[tuple[str, str]]:
    """(name, length) of each scratch buffer of a block of rows."""
    buffers = []
    if stored is not None:
        buffers.append(("m_chunks", "(n + CHUNK - 1) // CHUNK"))
    elif kernel.outputs:
        buffers += [(f"{name}_buf", "CHUNK") for name, _ in kernel.outputs]
        if shift:
            buffers.append(("shift_r", "CHUNK"))
    buffers += [(f"{base}_r", "n") for base, _, _ in kernel.scratch]
    return buffers


def emit_row_kernel(kernel: RowKernel, dtype: str) -> list[str]:
    """Source lines of ``<name>_<dtype>`` for one RowKernel."""
    if kernel.max_of is not None:
        kernel = on_kernel(kernel, RoundShifts(kernel.max_of, m))
    pr = NumbaPrinter(dtype)
    out = _Lines()
    sigs = ", ".join(f'"{sig}"' for sig in signatures(kernel, dtype))
    out.add(0, f"@nb.njit([{sigs}], **CPU_OPTIONS)")
    out.add(0, f"def {kernel.name}_{dtype}({names(kernel)}):")
    out.add(1, f'"""{kernel.doc} ({DTYPES[dtype]})"""')
    first = kernel.rows[0]
    out.add(1, f"rows, n = {first}.shape")
    stored = _stored_exp(kernel)
    chunked = stored is None and bool(kernel.outputs)
    shift = chunked and _uses_shift(kernel)
    buffers = _buffers(kernel, stored, shift)
    if chunked:
        out.add(1, f"stream = {kernel.outputs[0][0]}.nbytes >= STREAM_BYTES  # softce.stream")
    if stored is not None:
        name, row = kernel.outputs[0][0], kernel.max_of
        out.add(1, f"in_place = {name}.ctypes.data == {row}.ctypes.data  # out = {row}")
    if buffers:
        out.add(1, "block = max(1, BLOCK // max(n, 1))  # rows per task; a task allocates buffers")
        out.add(1, "for b in nb.prange((rows + block - 1) // block):")
        for name, length in buffers:
            out.add(2, f"{name} = np.empty({length}, np.{DTYPES[dtype]})")
        out.add(2, "for r in range(b * block, min(b * block + block, rows)):")
        out.indent = 1
    else:
        out.add(1, "for r in nb.prange(rows):")
    for row in kernel.rows:
        out.add(2, f"{row}_r = {row}[r]")
    for vector in kernel.class_rows:
        out.add(2, f"{vector}_r = {vector}  # shared by every row")
    for name, sym in kernel.row_scalars:
        out.add(2, f"{sym} = {name}[r]")
    for name, _ in (*kernel.outputs, *kernel.pair_outputs):
        out.add(2, f"{name}_r = {name}[r]")
    row_pr = pr
    if stored is not None:  # the sum pass overwrites the output row, which may alias x
        held = {load: f"held{q}" for q, load in enumerate(sorted(_row_loads(kernel), key=str))}
        for load, local in held.items():
            out.add(2, f"{local} = {pr.doprint(load)}  # read before the row is overwritten")
        row_pr = _HeldPrinter(dtype, held)
    _reductions(out, pr, kernel, stored)
    _assign(out, 2, row_pr, kernel.row_level)
    for base, assigns, value in kernel.scratch:
        out.add(2, "for i in range(n):")
        _assign(out, 3, pr, assigns)
        out.add(3, f"{base}_r[i] = {pr.doprint(value)}")
    for name, value in kernel.row_outputs:  # before the outputs: out may alias an input
        out.add(2, f"{name}[r] = {row_pr.doprint(value)}")
    if stored is not None:
        _stored_outputs(out, pr, kernel, stored)
    elif chunked:
        _chunked_outputs(out, pr, kernel, shift)
    if kernel.pair_outputs:
        out.add(2, "for i in range(n):")
        out.add(3, "for j in range(n):")
        _assign(out, 4, pr, kernel.element_level)
        for name, value in kernel.pair_outputs:
            out.add(4, f"{name}_r[i, j] = {pr.doprint(value)}")
    out.indent = 0
    return out.lines


def emit_elementwise_kernel(kernel: ElementwiseKernel, dtype: str) -> list[str]:
    """Source lines of ``<name>_<dtype>`` for a flat elementwise kernel."""
    pr = NumbaPrinter(dtype)
    out = _Lines()
    (sig,) = signatures(kernel, dtype)
    out.add(0, f'@nb.njit(["{sig}"], **CPU_OPTIONS)')
    out.add(0, f"def {kernel.name}_{dtype}({names(kernel)}):")
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
    body += ["", "", *table(kernel)]
    text = "\n".join(body)
    used = [name for name in ("exp_f32", "exp_f64", "exp_nonpos_f32", "exp_nonpos_f64", "fmax",
                              "fmin") if f"{name}(" in text]
    shifts = [name for name in ("shift_f32", "shift_f64") if f"{name}(" in text]
    streams = [name for name in ("STREAM_BYTES", "put", "stream_fence")
               if name == "STREAM_BYTES" and name in text or f"{name}(" in text]
    lines = ["import math", ""] if "math." in text else []
    lines += ["import numba as nb", "import numpy as np", "", "from softce.jit import CPU_OPTIONS"]
    if used:
        lines.append(f"from softce.primitives import {', '.join(used)}")
    if shifts:
        lines.append(f"from softce.shift import {', '.join(shifts)}")
    if streams:
        lines.append(f"from softce.stream import {', '.join(streams)}")
    if "CHUNK" in text:
        lines += ["", f"CHUNK = {CHUNK}"]
    if "MAX_SPAN" in text:
        lines.append(f"MAX_SPAN = {MAX_SPAN}")
    if "BLOCK" in text:
        lines.append(f"BLOCK = {BLOCK}")
    return "\n".join(lines + body) + "\n"

