"""The CPU emitter: a RowKernel becomes a parallel Numba function, printed as Python source.

Shape of every row kernel: ``prange`` over rows; per row, one pass over chunks of the class
axis computes the max and the sums (shifted sums merged chunk by chunk with D11, so each row is
read once for its reductions), then one pass writes the elementwise outputs, a chunk at a time
through ``softce.stream.put``. Where the outputs need exp(x[i] - m) (softmax, the label
gradients), the reduction pass keeps each chunk's exps in the output row and the output pass
rescales them there instead: one exp per element; there a span of chunks (``MAX_SPAN``) shares
one max, read first. A KroneckerDelta(i, c) in an output is taken out of its loop. A kernel
that needs scratch buffers loops ``prange`` over blocks of rows (``BLOCK`` elements each) and
allocates them once per block. Which of these loops a kernel runs is decided once, in its
``RowPlan``; the functions below print the plan.

A 16-bit variant (``<kernel>_bf16``, ``<kernel>_f16``, for ``parameters.HALF_KERNELS``) is the
float32 kernel with its rows read as uint16 bit patterns: the printer wraps each load of a row
(and of its chunk and span views) in ``widen_<half>``, each store to an output of rows goes
through ``narrow_<half>_to`` (``softce.half``), the stored exps go to a float32 row ``e_r`` of
their own, and the streamed outputs' buffers take the output's element type.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from softce.derive.d18_excess import s1, s2
from softce.derive.d19_shifted_prob import A1, A2, T1, T2, A
from softce.derive.symbols import d1, d2, i, k, m1, m2

from .ir import ElementwiseKernel, Reduction, RowKernel
from .lower import m
from .numerics import (
    MERGED_SUM_DTYPE,
    DeltaSplit,
    ExpNonPos,
    RoundedShift,
    RoundShifts,
    Unmasked,
    chunk_excess,
    on_kernel,
)
from .parameters import HALF_KERNELS, names, signatures
from .printer import DTYPES, HALF_DTYPES, NumbaPrinter
from .source import Code, compute_dtype, definitions, element_body, kind, load_row

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

#: Elements per block of a chunk's shifted sums, per dtype (none: the chunk is summed in one
#: loop). LLVM sums a vectorised loop in a few dozen partial sums, each a sequential sum of
#: its share of the chunk, so a float64 s of 1000 equal terms was 6.8 ulp off (7.5 ulp in the
#: log-probability); sums of 256-element blocks, added per chunk, make that 0.5 ulp, for 3-6%
#: more time in a float64 row that stays in cache (none measurable from memory). float32 sums
#: are merged in float64 (``MERGED_SUM_DTYPE``) and keep one loop.
SUM_BLOCK = {"f64": 256}

#: Elements per task of a kernel with scratch buffers: each task (a block of rows) allocates its
#: buffers once, so short rows do not pay an allocation each.
BLOCK = 16384


class _HeldPrinter(NumbaPrinter):
    """Prints the loads in ``held`` as the locals that hold them (read before the row is
    overwritten); the expression keeps its Indexed, so x[c] - m still prints as a shift."""

    def __init__(self, pr: NumbaPrinter, held: dict[sp.Indexed, str]) -> None:
        super().__init__(pr.dtype, pr.widen, pr.widened)
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
    if not any(r.shifted for r in kernel.reductions):
        return None
    if any(r.slope is not None for r in kernel.reductions):
        return None
    pattern = ExpNonPos(kernel.max_of[i] - m)
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


@dataclass(frozen=True)
class RowPlan:
    """The loop structure of one row kernel, decided once from its IR.

    stored: exp(x[i] - m), kept in the first output row between the reduction pass and the
    output pass (``_stored_exp``); such a kernel takes one max per ``MAX_SPAN`` span, has a sum
    loop of its own for out = x, and rescales its outputs in place (None: not stored).
    streamed: the outputs are computed a chunk at a time into buffers and handed to ``put``.
    shift_buffer: the streamed outputs read RoundedShift(x[i], m) from ``shift_r``, stored by
    a loop of its own.
    """

    stored: sp.Expr | None
    streamed: bool
    shift_buffer: bool
    #: a 16-bit variant ("bf16", "f16"; None: float32/float64): its rows are bit patterns,
    #: widened at each load, its outputs of rows narrowed at each store; a stored exp goes to
    #: a float32 row of its own, ``e_r``, not to the output row (so each output is rounded to
    #: 16 bits once)
    half: str | None = None

    @classmethod
    def of(cls, kernel: RowKernel, half: str | None = None) -> RowPlan:
        """The plan of a kernel as the emitter prints it (after ``round_shifts``)."""
        stored = _stored_exp(kernel)
        streamed = stored is None and bool(kernel.outputs)
        exprs = [a.expr for a in kernel.element_level] + [v for _, v in kernel.outputs]
        shift = kernel.max_of is not None and any(
            e.has(RoundedShift(kernel.max_of[i], m)) for e in exprs)
        return cls(stored, streamed, streamed and shift, half)

    def store(self, kernel: RowKernel) -> str:
        """The row that holds the stored exps: the first output's, or ``e`` (16-bit)."""
        return "e" if self.half else kernel.outputs[0][0]

    def buffers(self, kernel: RowKernel) -> list[tuple[str, str, str]]:
        """(name, length, element type) of each scratch buffer of a block of rows."""
        wide = "np.float32" if self.half else None
        buffers = []
        if self.stored is not None:
            buffers.append(("m_chunks", "(n + CHUNK - 1) // CHUNK", wide))
            if self.half:
                buffers.append(("e_r", "n", wide))
        elif kernel.outputs:
            # a 16-bit variant's output buffers take the output's element type
            buffers += [(f"{name}_buf", "CHUNK", f"{name}.dtype" if self.half else None)
                        for name, _ in kernel.outputs]
            if self.shift_buffer:
                buffers.append(("shift_r", "CHUNK", wide))
        return buffers + [(f"{base}_r", "n", wide) for base, _, _ in kernel.scratch]


def _viewed(expr: sp.Expr, names: dict[sp.IndexedBase, sp.IndexedBase]) -> sp.Expr:
    """expr reading each row of ``names`` through its view (the same index)."""
    return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base in names,
                        lambda e: sp.Indexed(names[e.base], *e.indices))


def _chunk_view(expr: sp.Expr, views: dict[sp.IndexedBase, sp.IndexedBase]) -> sp.Expr:
    """expr with each load base[i] of a row in ``views`` read as view[k] (k = i - start)."""
    return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base in views
                        and e.indices == (i,), lambda e: sp.Indexed(views[e.base], k))


def _views(out: Code, kernel: RowKernel, exprs: list[sp.Expr], suffix: str, bounds: str
           ) -> dict[sp.IndexedBase, sp.IndexedBase]:
    """``<row>_<suffix>_r = <row>_r[bounds]`` for each row that ``exprs`` read; its views.

    Loops index views from 0: LLVM then sees k >= 0 and vectorises plain loads (indexing the
    row from ``start`` leaves Numba's negative-index wraparound in place, and the loads become
    gathers, 2-4x slower)."""
    bases = {e.base for expr in exprs for e in expr.atoms(sp.Indexed)}
    read = [row for row in (*kernel.rows, *kernel.class_rows) if row in bases]
    views = {row: sp.IndexedBase(f"{row}_{suffix}") for row in read}
    out.add(*(f"{views[row]}_r = {row}_r[{bounds}]" for row in read))
    return views


def _slopes(kernel: RowKernel) -> set[sp.Symbol]:
    """The plain sums that are slopes of sums linear in m (D19): summed per chunk
    (``<sum>_c``), since D19's merge takes each part's."""
    return {r.slope for r in kernel.reductions if r.slope is not None}


def _max_loop(out: Code, pr: NumbaPrinter, kernel: RowKernel,
              views: dict[sp.IndexedBase, sp.IndexedBase], length: str) -> None:
    """m_c, the max of x over the view, and the plain sums over it (a slope's into the
    chunk's ``<sum>_c``)."""
    slopes = _slopes(kernel)
    out.add(f"m_c = {pr.const('-np.inf')}")
    out.add(*(f"{r}_c = {pr.const('0')}" for r in sorted(slopes, key=str)))
    with out.block(f"for k in range({length}):"):
        out.add(f"m_c = fmax(m_c, {pr.doprint(_viewed(kernel.max_of[k], views))})")
        out.add(*(f"{r.symbol}{'_c' if r.symbol in slopes else ''} += "
                  f"{pr.doprint(_viewed(r.summand, views))}"
                  for r in kernel.reductions if r.plain))


def _excess(kernel: RowKernel) -> Reduction | None:
    """The kernel's excess normaliser (D18), if it has one."""
    return next((r for r in kernel.reductions if r.ties is not None), None)


def _sum_loop(out: Code, pr: NumbaPrinter, kernel: RowKernel, plan: RowPlan,
              views: dict[sp.IndexedBase, sp.IndexedBase]) -> None:
    """The chunk's shifted sums against m_c (``<sum>_c``); in a dtype with a ``SUM_BLOCK``,
    summed per block of the chunk (``<sum>_sub``) and the blocks' sums added."""
    block = SUM_BLOCK.get(pr.dtype)
    if block is None:
        _sum_body(out, pr, kernel, plan, views, "_c", "chunk", "stop - start")
        return
    sums = _loop_sums(kernel)
    with out.block(f"for sub in range(0, stop - start, {block}):"):
        out.add(f"sub_stop = min(sub + {block}, stop - start)")
        blocks = {row: sp.IndexedBase(f"{view}_sub") for row, view in views.items()}
        stores = [f"{plan.store(kernel)}_chunk"] if plan.stored is not None else []
        for view in dict.fromkeys([*views.values(), *stores]):
            out.add(f"{view}_sub_r = {view}_r[sub:sub_stop]")
        out.add(*(f"{r}_sub = {pr.const('0')}" for r in sums))
        _sum_body(out, pr, kernel, plan, blocks, "_sub", "chunk_sub", "sub_stop - sub")
        out.add(*(f"{r}_c += {r}_sub" for r in sums))


def _loop_sums(kernel: RowKernel) -> list[str]:
    """The accumulators of the sum loop: the shifted sums, and the tie count of an excess."""
    sums = [str(r.symbol) for r in kernel.reductions if not r.plain]
    return sums + (["ties"] if _excess(kernel) is not None else [])


def _sum_body(out: Code, pr: NumbaPrinter, kernel: RowKernel, plan: RowPlan,
              views: dict[sp.IndexedBase, sp.IndexedBase], part: str, store: str,
              length: str) -> None:
    """One loop over ``length`` elements of the views adding the shifted sums against m_c into
    ``<sum><part>``; with a stored exp, each exp(x[k] - m_c) is also stored in the first output
    row's ``<out>_<store>`` view. An excess s (D18) sums exp(x[k] - m_c) (1 - T_k) and counts
    the ties T_k (in the dtype, exact up to 2^24 ties: an integer count beside a float sum
    costs LLVM's vector loop a third more)."""
    m_c = sp.Symbol("m_c")
    exp_k = _viewed(ExpNonPos(kernel.max_of[k] - m_c), views)
    excess = _excess(kernel)
    others = [r for r in kernel.reductions if r.shifted and r.ties is None or r.slope]
    kept = {}
    with out.block(f"for k in range({length}):"):
        if excess is not None:
            e_k, t_k = sp.Symbol("e_k"), sp.Symbol("t_k")
            ties = _viewed(excess.ties.xreplace({m: m_c}), views)
            summand = _viewed(excess.summand.xreplace({m: m_c}), views)
            summand = summand.xreplace({exp_k: e_k, ties: t_k})
            out.add(f"e_k = {pr.doprint(exp_k)}",
                    f"t_k = {pr.np_type}({pr.doprint(ties.args[0][1])})  # D18 tie_term",
                    f"{excess.symbol}{part} += {pr.doprint(summand)}  # D18 excess_term_finite",
                    f"ties{part} += t_k")
            kept = {exp_k: e_k}
        elif plan.stored is not None:
            out.add(f"e_k = {pr.doprint(exp_k)}")
            kept = {exp_k: sp.Symbol("e_k")}
        if plan.stored is not None:
            out.add(f"{plan.store(kernel)}_{store}_r[k] = e_k")
        for r in others:
            summand = _viewed(r.summand.xreplace({m: m_c}), views).xreplace(kept)
            out.add(f"{r.symbol}{part} += {pr.doprint(summand)}")


def _merged(kernel: RowKernel, dtype: str) -> dict[sp.Symbol, sp.Symbol]:
    """Each shifted sum -> the variable its D11 (D18, D19) merges accumulate in (``<d>_row``
    when ``MERGED_SUM_DTYPE`` widens it)."""
    widened = MERGED_SUM_DTYPE[dtype] != DTYPES[dtype]
    return {r.symbol: sp.Symbol(f"{r.symbol}_row") if widened else r.symbol
            for r in kernel.reductions if not r.plain}


def _zero_sums(out: Code, pr: NumbaPrinter, kernel: RowKernel, zero: str, part: str = "_c"
               ) -> None:
    """The accumulators ``<sum><part>`` of a part's shifted sums, and its tie count where an
    excess is summed."""
    out.add(*(f"{r.symbol}{part} = {zero}" for r in kernel.reductions if not r.plain))
    if _excess(kernel) is not None:
        out.add(f"ties_c = {pr.const('0')}")


def _merge_part(out: Code, pr: NumbaPrinter, kernel: RowKernel, part: str = "_c") -> None:
    """A part's (m_c, sums ``<sum><part>``) merged into the row's (m, sums): D11's merge_m and
    merge_d, D18's merge_s for the excess, whose part value is sum E + sum T - 1 (D18
    excess), D19's merge_t for a sum linear in m (with the row's and the part's slopes)."""
    m_c, m_new = sp.Symbol("m_c"), sp.Symbol("m_new")
    excess = _excess(kernel)
    slopes = {r.symbol: r.slope for r in kernel.reductions if r.slope is not None}
    if excess is not None:
        value = chunk_excess(excess.chunk, sp.Symbol(f"{excess.symbol}{part}"),
                             sp.Symbol("ties_c"), m_c)
        out.add(f"ties_c -= {pr.const('1')}  # the other maxima",
                f"{excess.symbol}{part} = {pr.doprint(value)}  # D18 excess_of_sums")
    merge_m = kernel.merge_m.xreplace({m1: m, m2: m_c})
    out.add(f"m_new = {pr.doprint(merge_m)}  # D11 merge_m")
    for d, row in _merged(kernel, pr.dtype).items():
        value = sp.Symbol(f"{d}{part}")
        if excess is not None and d == excess.symbol:
            merge = kernel.merge_s.xreplace({s1: row, s2: value, m1: m, m2: m_c})
            out.add(f"{row} = {pr.doprint(merge)}  # D18 merge_s")
            continue
        if d in slopes:
            slope = slopes[d]
            merge = kernel.merge_t.xreplace({T1: row, T2: value, A1: slope,
                                             A2: sp.Symbol(f"{slope}{part}"), m1: m, m2: m_c})
            out.add(f"{row} = {pr.doprint(merge)}  # D19 merge_t")
            continue
        merge = kernel.merge_d.xreplace({d1: row, d2: value})
        merge = merge.xreplace({kernel.merge_m: m_new, m1: m, m2: m_c})
        out.add(f"{row} = {pr.doprint(merge)}  # D11 merge_d")
    out.add("m = m_new")


def _chunk_merge(out: Code, pr: NumbaPrinter, kernel: RowKernel, plan: RowPlan,
                 views: dict[sp.IndexedBase, sp.IndexedBase]) -> None:
    """A chunk's shifted sums against its max m_c, merged into the row's state (a chunk of
    -inf only is D11's identity and is skipped; a sum linear in m takes D19's value of such a
    chunk); then the chunk's slopes join the row's."""
    with out.block("if m_c != -np.inf:  # a chunk of -inf only is D11's identity (-inf, 0)"):
        _zero_sums(out, pr, kernel, pr.const("0"))
        _sum_loop(out, pr, kernel, plan, views)
        _merge_part(out, pr, kernel)
    linear = [r for r in kernel.reductions if r.slope is not None]
    if linear:
        merged = _merged(kernel, pr.dtype)
        with out.block("else:"):
            out.add(*(f"{merged[r.symbol]} += "
                      f"{pr.doprint(kernel.masked_t.xreplace({A: sp.Symbol(f'{r.slope}_c')}))}"
                      "  # D19 masked_chunk" for r in linear))
        out.add(*(f"{r} += {r}_c" for r in sorted(_slopes(kernel), key=str)))


def _span_merge(out: Code, pr: NumbaPrinter, kernel: RowKernel, plan: RowPlan,
                summed: list[sp.Expr]) -> None:
    """A span's chunks summed against the span's max m_c, their exps stored; each chunk's sums
    (in the dtype) added into the span's ``<sum>_sp`` (in ``MERGED_SUM_DTYPE``), and the span
    merged into the row's state once (its ties counted over the span: the span's max is
    attained in it, not always in each chunk)."""
    zero = pr.const("0")
    store = plan.store(kernel)
    shifted = [r.symbol for r in kernel.reductions if r.shifted]
    with out.block("if m_c != -np.inf:  # a span of -inf only is D11's identity (-inf, 0)"):
        _zero_sums(out, pr, kernel, f"np.{MERGED_SUM_DTYPE[pr.dtype]}(0)", "_sp")
        with out.block("for start in range(span, span_stop, CHUNK):"):
            out.add("stop = min(start + CHUNK, span_stop)")
            views = _views(out, kernel, [*summed, plan.stored], "chunk", "start:stop")
            out.add(f"{store}_chunk_r = {store}_r[start:stop]",
                    "m_chunks[start // CHUNK] = m_c")
            out.add(*(f"{d}_c = {zero}" for d in shifted))
            if plan.half:  # the exps go to a float32 row of their own, never x's
                _sum_loop(out, pr, kernel, plan, views)
            else:
                # in place (out = x) a loop reading x and writing out sees two arrays that
                # may alias, and LLVM runs it scalar; reading the output row, it vectorises
                with out.block("if in_place:"):
                    held = sp.IndexedBase(f"{store}_chunk")
                    _sum_loop(out, pr, kernel, plan, {**views, kernel.max_of: held})
                with out.block("else:"):
                    _sum_loop(out, pr, kernel, plan, views)
            out.add(*(f"{d}_sp += {d}_c" for d in shifted))
        _merge_part(out, pr, kernel, "_sp")
    with out.block("else:  # exp(x[k] - m) is 0 there"):
        with out.block("for start in range(span, span_stop, CHUNK):"):
            out.add("m_chunks[start // CHUNK] = m_c")
            with out.block("for k in range(start, min(start + CHUNK, span_stop)):"):
                out.add(f"{store}_r[k] = {zero}")


def _reductions(out: Code, pr: NumbaPrinter, kernel: RowKernel, plan: RowPlan) -> None:
    """The reduction pass over one row: plain sums, and the shifted sums in D11's online form,
    chunk by chunk; with a stored exp, m_c is the max of the chunk's span (``MAX_SPAN``), not
    of the chunk, and is kept in ``m_chunks``."""
    plain = [r for r in kernel.reductions if r.plain]
    out.add(*(f"{r.symbol} = {pr.const('0')}" for r in plain))
    if kernel.max_of is None:
        if plain:
            with out.block("for k in range(n):"):
                out.add(*(f"{r.symbol} += {pr.doprint(r.summand)}" for r in plain))
        return
    wide = MERGED_SUM_DTYPE[pr.dtype]
    merged = _merged(kernel, pr.dtype)
    excess = _excess(kernel)
    for d, row in merged.items():
        start = excess.identity if excess is not None and d == excess.symbol else 0
        note = "  # D18 identity" if excess is not None and d == excess.symbol else ""
        out.add(f"{row} = np.{wide}({start})" + (f"  # merged in {wide}" if row != d else note))
    out.add(f"m = {pr.const('-np.inf')}")
    maxed = [kernel.max_of[k], *(r.summand for r in plain)]
    summed = [r.summand for r in kernel.reductions if not r.plain]
    if plan.stored is None:
        with out.block("for start in range(0, n, CHUNK):"):
            out.add("stop = min(start + CHUNK, n)")
            views = _views(out, kernel, maxed + summed, "chunk", "start:stop")
            _max_loop(out, pr, kernel, views, "stop - start")
            _chunk_merge(out, pr, kernel, plan, views)
    else:
        with out.block("for span in range(0, n, MAX_SPAN):"):
            out.add("span_stop = min(span + MAX_SPAN, n)")
            spans = _views(out, kernel, maxed, "span", "span:span_stop")
            _max_loop(out, pr, kernel, spans, "span_stop - span")
            _span_merge(out, pr, kernel, plan, summed)
    # narrowed once, so the row-level values and element loops stay in the dtype
    out.add(*(f"{d} = {pr.np_type}({row})" for d, row in merged.items() if row != d))


def _stored_outputs(out: Code, pr: NumbaPrinter, kernel: RowKernel, plan: RowPlan) -> None:
    """The output pass, chunk by chunk, reading exp(x[i] - m) back from the first output row
    (a 16-bit variant: from its float32 row ``e_r``):
    exp(x[i] - m) = exp(x[i] - m_c) * exp(m_c - m), the factor D11's merge_d gives a chunk's
    sum d_c when the maxima merge to the row's m (D18's merge_s, with an excess: 1 where
    m_c = m, also at +inf)."""
    m_c = sp.Symbol("m_c")
    stored = plan.stored
    if _excess(kernel) is not None:
        # the row's m is the larger max: merge_s's first branch, d_c = 1 + s_c
        factor = sp.diff(kernel.merge_s.args[0][0], s2).xreplace({m1: m, m2: m_c})
    else:
        factor = sp.diff(kernel.merge_d, d2).xreplace({kernel.merge_m: m, m2: m_c})
    names = [name for name, _ in kernel.outputs]
    views = {v: sp.IndexedBase(f"{v}_chunk") for v in kernel.class_rows}

    def in_chunk(expr: sp.Expr) -> sp.Expr:
        return _chunk_view(expr.xreplace({stored: sp.Symbol("e_x")}), views)

    with out.block("for start in range(0, n, CHUNK):"):
        out.add("stop = min(start + CHUNK, n)", "m_c = m_chunks[start // CHUNK]",
                f"f_c = {pr.doprint(factor)}  # the merge's factor for the chunk's sum")
        store = plan.store(kernel)
        out.add(*(f"{name}_chunk_r = {name}_r[start:stop]"
                  for name in ([store] if plan.half else []) + names))
        out.add(*(f"{v}_chunk_r = {v}_r[start:stop]" for v in kernel.class_rows))
        assigns = [(a.symbol, in_chunk(a.expr)) for a in kernel.element_level]
        values = [(f"{name}_chunk_r", in_chunk(value)) for name, value in kernel.outputs]
        first = f"e_x = {store}_chunk_r[k]*f_c  # {stored.rewrite(sp.exp)}"
        _element_loop(out, pr, assigns, values, first, _narrow(plan))


def _narrow(plan: RowPlan) -> str | None:
    """The function a 16-bit variant stores its outputs of rows through (``softce.half``)."""
    return f"narrow_{plan.half}_to" if plan.half else None


def _element_loop(out: Code, pr: NumbaPrinter, assigns: list[tuple[sp.Symbol, sp.Expr]],
                  values: list[tuple[str, sp.Expr]], first: str | None = None,
                  narrow: str | None = None) -> None:
    """``for k`` over the chunk: the line ``first``, the element values, then
    ``target[k] = value`` for each (target, value) (``narrow(value, target)`` when given: a
    16-bit variant's rounding to the target's element type). A KroneckerDelta(i, c) is taken
    out of the loop (``DeltaSplit``): the element i = c is computed before the loop, which may
    overwrite what it reads, and stored after it."""
    exprs = [e for _, e in assigns + values]
    c = DeltaSplit.of(exprs).index

    def stored(value: str, target: str) -> str:
        return f"{narrow}({value}, {target})" if narrow else value

    def element(delta: int, store: str) -> None:
        out.add(*([first] if first else []))
        if any(DeltaSplit.at(e, delta).has(i) for e in exprs):
            out.add("i = start + k")
        for symbol, expr in assigns:
            out.add(f"{symbol} = {pr.doprint(DeltaSplit.at(expr, delta))}")
        for target, value in values:
            printed = pr.doprint(DeltaSplit.at(value, delta))
            out.add(store.format(target) + (printed if delta else stored(printed, target)))

    if c is not None:
        out.add(f"at_c = start <= {pr.doprint(c)} < stop  # the chunk holds i = c")
        out.add(*(f"{target}_at_c = {pr.const('0')}" for target, _ in values))
        with out.block("if at_c:"):
            out.add(f"k = {pr.doprint(c)} - start")
            element(1, "{}_at_c = ")
    with out.block("for k in range(stop - start):"):
        element(0, "{}[k] = ")
    if c is not None:
        with out.block("if at_c:"):
            out.add(*(f"{target}[{pr.doprint(c)} - start] = "
                      + stored(f"{target}_at_c", target) for target, _ in values))


def _streamed_outputs(out: Code, pr: NumbaPrinter, kernel: RowKernel, plan: RowPlan) -> None:
    """The output pass, chunk by chunk: each output chunk is computed into the block's buffer
    ``<out>_buf`` and handed to ``put``, which stores it around the caches when the first
    output is large (``softce.stream``). With a shift buffer, every RoundedShift(x[i], m) is
    read from ``shift_r``, filled by a loop of its own: its store rounds x[i] - m before other
    terms join it, which ``reassoc`` would otherwise rewrite as x[i] + (t - m)
    (``softce.shift``'s fence forbids that too, but keeps the loop from vectorising)."""
    x = kernel.max_of
    bases = (*kernel.rows, *kernel.class_rows, *(base for base, _, _ in kernel.scratch))
    views = {base: sp.IndexedBase(f"{base}_chunk") for base in bases}

    def in_chunk(expr: sp.Expr) -> sp.Expr:
        if plan.shift_buffer:
            expr = expr.xreplace({RoundedShift(x[i], m): sp.IndexedBase("shift")[k]})
        return _chunk_view(expr, views)

    assigns = [(a.symbol, in_chunk(a.expr)) for a in kernel.element_level]
    values = [(name, in_chunk(value)) for name, value in kernel.outputs]
    exprs = [e for _, e in assigns + values]
    used = [base for base in bases if any(e.has(views[base]) for e in exprs)]
    if plan.shift_buffer and x not in used:
        used.insert(0, x)
    with out.block("for start in range(0, n, CHUNK):"):
        out.add("stop = min(start + CHUNK, n)")
        out.add(*(f"{views[base]}_r = {base}_r[start:stop]" for base in used))
        if plan.shift_buffer:
            with out.block("for k in range(stop - start):"):
                load = pr.doprint(sp.IndexedBase(f"{x}_chunk")[k])
                out.add(f"shift_r[k] = {load} - m  # D2's shift, rounded by this store")
        _element_loop(out, pr, assigns, [(f"{name}_buf", v) for name, v in values],
                      narrow=_narrow(plan))
        out.add(*(f"put({name}_r[start:stop], {name}_buf, stream)" for name, _ in kernel.outputs))
    out.add("stream_fence(stream)")


def _row(out: Code, pr: NumbaPrinter, kernel: RowKernel, plan: RowPlan) -> None:
    """Everything one row r computes: its reductions, row values, scratch rows and outputs."""
    load_row(out, kernel)
    row_pr = pr
    if plan.stored is not None:  # the sum pass overwrites the output row, which may alias x
        held = {load: f"held{q}" for q, load in enumerate(sorted(_row_loads(kernel), key=str))}
        out.add(*(f"{local} = {pr.doprint(load)}  # read before the row is overwritten"
                  for load, local in held.items()))
        row_pr = _HeldPrinter(pr, held)
    _reductions(out, pr, kernel, plan)
    out.assign(row_pr, kernel.row_level)
    for base, assigns, value in kernel.scratch:
        with out.block("for i in range(n):"):
            out.assign(pr, assigns)
            out.add(f"{base}_r[i] = {pr.doprint(value)}")
    # before the outputs: out may alias an input
    out.add(*(f"{name}[r] = {row_pr.doprint(value)}" for name, value in kernel.row_outputs))
    if plan.stored is not None:
        _stored_outputs(out, pr, kernel, plan)
    elif plan.streamed:
        _streamed_outputs(out, pr, kernel, plan)
    if kernel.pair_outputs:
        with out.block("for i in range(n):"), out.block("for j in range(n):"):
            out.assign(pr, kernel.element_level)
            out.add(*(f"{name}_r[i, j] = {pr.doprint(value)}"
                      for name, value in kernel.pair_outputs))


def round_shifts(kernel: RowKernel) -> RowKernel:
    """The kernel with every x[q] - m that other terms join as a RoundedShift (the CPU kernels
    compile with ``reassoc``)."""
    if kernel.max_of is None:
        return kernel
    return on_kernel(kernel, RoundShifts(kernel.max_of, m))


#: the views of a row the emitter reads it through (``_views``, ``_streamed_outputs``)
VIEWS = ("", "_chunk", "_span")


def emit_row_kernel(kernel: RowKernel, dtype: str) -> list[str]:
    """Source lines of ``<name>_<dtype>`` for one RowKernel; a 16-bit ``dtype`` ("bf16",
    "f16") prints the float32 kernel reading its rows as 16-bit bit patterns (each load
    widened) and rounding its outputs of rows to 16 bits at each store."""
    kernel = round_shifts(kernel)
    half = dtype if dtype in HALF_DTYPES else None
    if half and (kernel.pair_outputs or kernel.scratch):
        raise ValueError(f"{kernel.name}: no 16-bit variant for pair outputs or scratch rows")
    plan = RowPlan.of(kernel, half)
    compute = compute_dtype(dtype)
    pr = NumbaPrinter(compute) if not half else NumbaPrinter(
        compute, f"widen_{half}", frozenset(f"{row}{v}" for row in kernel.rows for v in VIEWS))
    out = Code()
    sigs = ", ".join(f'"{sig}"' for sig in signatures(kernel, dtype))
    out.add(f"@nb.njit([{sigs}], **CPU_OPTIONS)")
    with out.block(f"def {kernel.name}_{dtype}({names(kernel)}):"):
        kind = f"{HALF_DTYPES[half]} rows, computed in float32" if half else DTYPES[dtype]
        out.add(f'"""{kernel.doc} ({kind})"""', f"rows, n = {kernel.rows[0]}.shape")
        if plan.streamed:
            out.add(f"stream = {kernel.outputs[0][0]}.nbytes >= STREAM_BYTES  # softce.stream")
        if plan.stored is not None and not half:
            name, row = kernel.outputs[0][0], kernel.max_of
            out.add(f"in_place = {name}.ctypes.data == {row}.ctypes.data  # out = {row}")
        buffers = plan.buffers(kernel)
        if not buffers:
            with out.block("for r in nb.prange(rows):"):
                _row(out, pr, kernel, plan)
            return out.lines
        out.add("block = max(1, BLOCK // max(n, 1))  # rows per task; a task allocates buffers")
        with out.block("for b in nb.prange((rows + block - 1) // block):"):
            out.add(*(f"{name} = np.empty({length}, {etype or f'np.{DTYPES[compute]}'})"
                      for name, length, etype in buffers))
            with out.block("for r in range(b * block, min(b * block + block, rows)):"):
                _row(out, pr, kernel, plan)
    return out.lines


def emit_elementwise_kernel(kernel: ElementwiseKernel, dtype: str) -> list[str]:
    """Source lines of ``<name>_<dtype>`` for a flat elementwise kernel."""
    out = Code()
    sigs = ", ".join(f'"{sig}"' for sig in signatures(kernel, dtype))
    out.add(f"@nb.njit([{sigs}], **CPU_OPTIONS)")
    with out.block(f"def {kernel.name}_{dtype}({names(kernel)}):"):
        out.add(f'"""{kernel.doc} ({kind(dtype)})"""')
        with out.block("for q in nb.prange(out.shape[0]):"):
            element_body(out, NumbaPrinter(compute_dtype(dtype)), kernel, dtype)
    return out.lines


def emit_module_body(kernel: RowKernel | ElementwiseKernel) -> str:
    """Imports and both dtype variants of one kernel (the header is added by the writer)."""
    emit = emit_row_kernel if isinstance(kernel, RowKernel) else emit_elementwise_kernel
    halves = tuple(HALF_DTYPES) if kernel.name in HALF_KERNELS else ()
    body = definitions(kernel, emit, (*DTYPES, *halves))
    text = "\n".join(body)
    used = [name for name in ("exp_f32", "exp_f64", "exp_nonpos_f32", "exp_nonpos_f64", "fmax",
                              "fmin") if f"{name}(" in text]
    shifts = [name for name in ("shift_f32", "shift_f64") if f"{name}(" in text]
    halves = [f"{verb}_{h}{to}" for verb, to in (("widen", ""), ("narrow", "_to"))
              for h in HALF_DTYPES if f"{verb}_{h}{to}(" in text]
    streams = [name for name in ("STREAM_BYTES", "put", "stream_fence")
               if name == "STREAM_BYTES" and name in text or f"{name}(" in text]
    lines = ["import math", ""] if "math." in text else []
    lines += ["import numba as nb", "import numpy as np", ""]
    if halves:
        lines.append(f"from softce.half import {', '.join(halves)}")
    lines.append("from softce.jit import CPU_OPTIONS")
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

