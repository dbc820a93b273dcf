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

Vector loops: in a float32 or 16-bit kernel each thread takes ``VECTOR[dtype]`` consecutive
elements per visit, every array read (and each output row written) by one aligned 128-bit
(64-bit for 16 bits) load or store, and the printed element math repeated once per element
with the loads' names substituted. A row's vectors start at ``head``, the first element where
every array of the loops is aligned (``softce.cuda.runtime.vector_head``); the elements before
it and after the last whole vector go through the scalar loops first. A row whose arrays
disagree on ``head``, or whose class axis is strided, is read by the scalar loops alone.

A 16-bit variant (``<kernel>_bf16``, ``<kernel>_f16``, for ``parameters.HALF_KERNELS``) is the
float32 kernel reading its rows as uint16 bit patterns, as the CPU's are (``softce.half``):
the printer wraps each load of a row in ``widen_<half>``, each store to an output of rows goes
through ``narrow_<half>_to`` (``softce.cuda.runtime``: rounded to 16 bits, nearest even, or
float32 into a float32 output); per-row outputs stay float32, and the row states merge
with the float32 kernel's device functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sympy as sp

from softce.derive.d18_excess import s1, s2
from softce.derive.d19_shifted_prob import A1, A2, T1, T2, A
from softce.derive.symbols import d1, d2, i, k, m1, m2

from .ir import Assignment, ElementwiseKernel, Reduction, RowKernel
from .lower import m
from .numerics import chunk_excess
from .parameters import HALF_KERNELS, names, signatures
from .printer import DTYPES, HALF_DTYPES, NumbaPrinter
from .source import Code, compute_dtype, definitions, element_body, kind, load_row

#: Elements per thread in one chunk of the online (m, d) pass: a chunk of a group is
#: CHUNK * blockDim.x elements, read a second time (from L1) for the shifted sums.
CHUNK = 8
#: Elements per vector load or store of a row: 16 bytes for float32, 8 for 16-bit elements
#: (four copies of the printed element math per loop body either way). float64 kernels stay
#: scalar: two copies of their math take the cross-entropy gradients past the 128 registers a
#: 512-thread block allows.
VECTOR = {"f32": 4, "f64": 1, "bf16": 4, "f16": 4}
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

    def _print_log1p(self, expr: sp.Expr) -> str:
        return f"log1p_{self.dtype}({self._print(expr.args[0])})"


def _state(kernel: RowKernel) -> list[str]:
    """A thread's partial row state: m and the shifted sums (D11), the sums linear in m (D19),
    then the plain sums."""
    shifted = [str(r.symbol) for r in kernel.reductions if r.shifted]
    linear = [str(r.symbol) for r in kernel.reductions if r.slope is not None]
    plain = [str(r.symbol) for r in kernel.reductions if r.plain]
    return (["m"] if shifted else []) + shifted + linear + plain


def _linear(kernel: RowKernel) -> list[Reduction]:
    return [r for r in kernel.reductions if r.slope is not None]


def _merge_linear_lines(out: Code, pr: NumbaPrinter, kernel: RowKernel,
                        other: dict[str, str]) -> None:
    """t = D19's merge_t of (m, t, its slope) with (other["m"], other[t], other[slope]): before
    the maxima and the slopes are merged."""
    for r in _linear(kernel):
        merged = kernel.merge_t.xreplace({
            T1: r.symbol, T2: sp.Symbol(other[str(r.symbol)]), A1: r.slope,
            A2: sp.Symbol(other[str(r.slope)]), m1: m, m2: sp.Symbol(other["m"])})
        out.add(f"{r.symbol} = {pr.doprint(merged)}  # D19 merge_t")


def _identity(pr: NumbaPrinter, kernel: RowKernel, name: str) -> str:
    """The state's value for no element: D11's (-inf, 0), D18's identity for the excess."""
    if name == "m":
        return pr.const("-np.inf")
    excess = next((r for r in kernel.reductions if str(r.symbol) == name and r.ties is not None),
                  None)
    return pr.const("0") if excess is None else pr.doprint(excess.identity)


def _merge_lines(out: Code, pr: NumbaPrinter, kernel: RowKernel, shifted: list[Reduction],
                 other: dict[str, str]) -> None:
    """m, d... = D11 merge of (m, d...) with (other["m"], other[d]...), printed from the IR
    (D18's merge_s for an excess)."""
    m_o = sp.Symbol(other["m"])
    merge_m = kernel.merge_m.xreplace({m1: m, m2: m_o})
    out.add(f"m_new = {pr.doprint(merge_m)}  # D11 merge_m")
    for r in shifted:
        if r.ties is not None:
            merged = kernel.merge_s.xreplace(
                {s1: r.symbol, s2: sp.Symbol(other[str(r.symbol)]), m1: m, m2: m_o})
            out.add(f"{r.symbol} = {pr.doprint(merged)}  # D18 merge_s")
            continue
        merged = kernel.merge_d.xreplace({d1: r.symbol, d2: sp.Symbol(other[str(r.symbol)])})
        merged = merged.xreplace({kernel.merge_m: sp.Symbol("m_new"), m1: m, m2: m_o})
        out.add(f"{r.symbol} = {pr.doprint(merged)}  # D11 merge_d")
    out.add("m = m_new")


@contextmanager
def _device_function(out: Code, name: str, args: str, doc: str) -> Iterator[None]:
    """An inlined device function: its decorator, its def line and docstring, then the body
    the ``with`` block adds."""
    out.add('@cuda.jit(device=True, inline="always")')
    with out.block(f"def {name}({args}):"):
        out.add(f'"""{doc}"""')
        yield


def _emit_merge(out: Code, pr: NumbaPrinter, kernel: RowKernel, dtype: str) -> None:
    """A device function merging two partial row states."""
    state = _state(kernel)
    shifted = [r for r in kernel.reductions if r.shifted]
    plain = [r for r in kernel.reductions if r.plain]
    args = ", ".join(state + [f"{s}_o" for s in state])
    with _device_function(out, f"_merge_{dtype}", args,
                          "Merge two partial row states: D11 for (m, d), D19 for sums linear "
                          "in m, plain sums add."):
        _merge_linear_lines(out, pr, kernel, {s: f"{s}_o" for s in state})
        out.add(*(f"{r.symbol} = {r.symbol} + {r.symbol}_o" for r in plain))
        if shifted:
            with out.block(f"if m_o != {pr.const('-np.inf')}:  # (-inf, 0) is D11's identity"):
                _merge_lines(out, pr, kernel, shifted, {s: f"{s}_o" for s in state})
        out.add(f"return {', '.join(state)}")


def _shared(out: Code, state: list[str], suffix: str, size: str, dtype: str) -> None:
    """One shared array per state value; one declaration per line: the simulator keys shared
    arrays by line."""
    out.add(*(f"{s}{suffix} = cuda.shared.array({size}, np.{DTYPES[dtype]})" for s in state))


def _emit_reduce_shuffle(out: Code, pr: NumbaPrinter, kernel: RowKernel, dtype: str) -> None:
    """Merge the states of a row's threads with warp shuffles, then (rows wider than a warp)
    through one shared slot per warp; every thread of the group gets the merged state."""
    state = _state(kernel)
    st = ", ".join(state)

    def down() -> None:
        out.add("offset = 16")
        with out.block("while offset > 0:"):
            out.add(*(f"{s}_o = cuda.shfl_down_sync(FULL_MASK, {s}, offset)" for s in state))
            others = ", ".join(f"{s}_o" for s in state)
            out.add(f"{st} = _merge_{dtype}({st}, {others})", "offset //= 2")

    with _device_function(out, f"_reduce_shuffle_{dtype}", st, "Row state of the group: warp "
                          "shuffles, then one shared slot per warp (GPU)."):
        down()
        out.add("width = cuda.blockDim.x")
        with out.block("if width > 32:"):
            _shared(out, state, "_w", "32", dtype)
            out.add("lane = cuda.threadIdx.x % 32", "warps = width // 32",
                    "first = cuda.threadIdx.y * warps")
            with out.block("if lane == 0:"):
                out.add(*(f"{s}_w[first + cuda.threadIdx.x // 32] = {s}" for s in state))
            out.add("cuda.syncthreads()")
            with out.block("if lane < warps:"):
                out.add(*(f"{s} = {s}_w[first + lane]" for s in state))
            with out.block("else:"):
                out.add(*(f"{s} = {_identity(pr, kernel, s)}" for s in state))
            out.add("cuda.syncthreads()")
            down()
        out.add(*(f"{s} = cuda.shfl_sync(FULL_MASK, {s}, 0)" for s in state))
        out.add(f"return {st}")


def _emit_reduce_shared(out: Code, pr: NumbaPrinter, kernel: RowKernel, dtype: str) -> None:
    """Merge the states of a row's threads through shared memory, no shuffles (the simulator's
    path): every thread stores its state, the group's first thread merges them in order and
    publishes the row state. Two barriers (the simulator pays for each barrier, not for work)."""
    state = _state(kernel)
    st = ", ".join(state)
    with _device_function(out, f"_reduce_shared_{dtype}", st,
                          "Row state of the group through shared memory: one slot per thread."):
        _shared(out, state, "_s", "MAX_THREADS", dtype)
        _shared(out, state, "_g", "32", dtype)
        out.add("width = cuda.blockDim.x", "group = cuda.threadIdx.y",
                "slot = group * width + cuda.threadIdx.x")
        out.add(*(f"{s}_s[slot] = {s}" for s in state))
        out.add("cuda.syncthreads()")
        with out.block("if cuda.threadIdx.x == 0:"):
            with out.block("for q in range(slot + 1, slot + width):"):
                out.add(*(f"{s}_o = {s}_s[q]" for s in state))
                others = ", ".join(f"{s}_o" for s in state)
                out.add(f"{st} = _merge_{dtype}({st}, {others})")
            out.add(*(f"{s}_g[group] = {s}" for s in state))
        out.add("cuda.syncthreads()")
        out.add(f"return {', '.join(f'{s}_g[group]' for s in state)}")


class _Scalar:
    """The scalar loops. With vectors: a row's elements outside its aligned vectors, [0, head)
    and [vend, stop) (every element when the row has none), q counting them; without: every
    element. One element per visit."""

    def __init__(self, vectors: bool) -> None:
        self.vectors = vectors
        self.first, self.stop = "lane", "rest" if vectors else "stop"

    def loop(self, start: str, end: str, index: sp.Symbol) -> str:
        return f"for {'q' if self.vectors else index} in range({start}, {end}, width):"

    def load(self, out: Code, kernel: RowKernel, exprs: list[sp.Expr], index: sp.Symbol,
             half: str | None) -> list[dict[sp.Basic, str]]:
        if self.vectors:
            out.add(f"{index} = q if q < head else q + vend - head")
        return [{}]


class _Vector:
    """The vector loops: ``width`` consecutive elements per visit from an aligned start, each
    array read by one vector load; each element's math is printed with its loads and its
    index renamed (``NumbaPrinter.renamed``)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.first, self.stop = f"head + lane * {width}", "vend"

    def loop(self, start: str, end: str, index: sp.Symbol) -> str:
        return f"for {index} in range({start}, {end}, width * {self.width}):"

    def load(self, out: Code, kernel: RowKernel, exprs: list[sp.Expr], index: sp.Symbol,
             half: str | None) -> list[dict[sp.Basic, str]]:
        halves = set(kernel.rows) if half else set()
        arrays = _read_at(kernel, exprs, index)
        for base in arrays:
            names = [f"{base}_{j}" for j in range(self.width)]
            load = f"vector_load({base}_r, {index}, {self.width})"
            if base in halves:
                out.add(f"{base}_v = {load}")
                out.add(*(f"{name} = widen_{half}({base}_v[{j}])"
                          for j, name in enumerate(names)))
            else:
                out.add(f"{', '.join(names)} = {load}")
        loads = {base[index]: sp.Integer(0) for base in arrays}
        indices = [str(index)] + [f"{index}_{j}" for j in range(1, self.width)]
        if any(index in e.xreplace(loads).free_symbols for e in exprs):  # an index compared
            out.add(*(f"{name} = {index} + {j}" for j, name in enumerate(indices) if j))
        return [{**{base[index]: f"{base}_{j}" for base in arrays}, index: indices[j]}
                for j in range(self.width)]


def _read_at(kernel: RowKernel, exprs: list[sp.Expr], index: sp.Symbol) -> list[sp.IndexedBase]:
    """The rows and class rows ``exprs`` read at ``index``."""
    arrays = {*kernel.rows, *kernel.class_rows}
    return sorted({ix.base for e in exprs for ix in e.atoms(sp.Indexed)
                   if ix.indices == (index,) and ix.base in arrays}, key=str)


def _reduction_reads(kernel: RowKernel) -> list[sp.Expr]:
    """What the reduction loops evaluate at k."""
    ties = [r.ties.args[0][1] for r in kernel.reductions if r.ties is not None]
    maxima = [kernel.max_of[k]] if kernel.max_of is not None else []
    return maxima + [r.summand for r in kernel.reductions] + ties


def _vector_outputs(kernel: RowKernel) -> bool:
    """Whether the outputs are written in vectors where the dtype has them (outputs in i
    alone, no scratch rows)."""
    return bool(kernel.outputs) and not (kernel.pair_outputs or kernel.scratch)


def _output_reads(kernel: RowKernel) -> list[sp.Expr]:
    return [a.expr for a in kernel.element_level] + [e for _, e in kernel.outputs]


def _vector_bounds(out: Code, kernel: RowKernel, width: int) -> None:
    """head, vend, rest of the row: the vector loops take [head, vend), where every array they
    read or write starts a vector; the scalar loops take the rest. A row whose arrays disagree
    on where their vectors start (or whose elements are not contiguous) is read scalar."""
    read = _read_at(kernel, _reduction_reads(kernel), k)
    if _vector_outputs(kernel):
        read += [a for a in _read_at(kernel, _output_reads(kernel), i) if a not in read]
    arrays = [f"{a}_r" for a in read]
    if _vector_outputs(kernel):
        arrays += [f"{name}_r" for name, _ in kernel.outputs]
    if not arrays:
        return  # nothing read along the row (a gather at the label)
    out.add(f"head = vector_head({arrays[0]}, {width})  # elements before the first vector")
    for array in arrays[1:]:
        with out.block(f"if vector_head({array}, {width}) != head:"):
            out.add("head = -1")
    with out.block("if head < 0 or head > stop:"):
        out.add("head = stop  # no aligned vectors: the scalar loops take every element")
    out.add(f"vend = head + (stop - head) // {width} * {width}",
            "rest = stop - vend + head  # the scalar loops' elements")


def _chunk_pass(out: Code, pr: NumbaPrinter, kernel: RowKernel, visit: _Scalar | _Vector,
                half: str | None) -> None:
    """One thread's chunks of the row reductions over the elements ``visit`` takes: per chunk
    the max, then the shifted sums against it, merged into the thread's state (D11, D18,
    D19); a plain sum is added element by element."""
    shifted = [r for r in kernel.reductions if r.shifted]
    linear = _linear(kernel)
    slopes = {r.slope for r in linear}
    plain = [r for r in kernel.reductions if r.plain]
    if not shifted:
        if plain:
            with out.block(visit.loop(visit.first, visit.stop, k)):
                for names in visit.load(out, kernel, [r.summand for r in plain], k, half):
                    with pr.renamed(names):
                        out.add(*(f"{r.symbol} += {pr.doprint(r.summand)}" for r in plain))
        return
    ninf = pr.const("-np.inf")
    with out.block(f"for start in range({visit.first}, {visit.stop}, width * CHUNK):"):
        out.add(f"end = min(start + width * CHUNK, {visit.stop})", f"m_c = {ninf}")
        out.add(*(f"{a}_c = {pr.const('0')}" for a in sorted(slopes, key=str)))
        with out.block(visit.loop("start", "end", k)):
            reads = [kernel.max_of[k]] + [r.summand for r in plain]
            for names in visit.load(out, kernel, reads, k, half):
                with pr.renamed(names):
                    out.add(f"m_c = fmax(m_c, {pr.doprint(kernel.max_of[k])})")
                    out.add(*(f"{r.symbol}{'_c' if r.symbol in slopes else ''} += "
                              f"{pr.doprint(r.summand)}" for r in plain))
        with out.block(f"if m_c != {ninf}:  # a chunk of -inf only is D11's identity (-inf, 0)"):
            out.add(*(f"{r.symbol}_c = {pr.const('0')}" for r in shifted + linear))
            excess = [r for r in shifted if r.ties is not None]
            if excess:
                out.add(f"ties_c = {pr.const('0')}")
            m_c = sp.Symbol("m_c")
            summands = [r.summand.xreplace({m: m_c}) for r in shifted + linear]
            ties = [r.ties.args[0][1].xreplace({m: m_c}) for r in excess]
            with out.block(visit.loop("start", "end", k)):
                for names in visit.load(out, kernel, summands + ties, k, half):
                    with pr.renamed(names):
                        out.add(*(f"{r.symbol}_c += {pr.doprint(e)}"
                                  for r, e in zip(shifted + linear, summands)))
                        out.add(*(f"ties_c += {pr.np_type}({pr.doprint(t)})  # D18 tie_term"
                                  for t in ties))
            for r in excess:
                value = chunk_excess(r.chunk, sp.Symbol(f"{r.symbol}_c"), sp.Symbol("ties_c"), m_c)
                out.add(f"ties_c -= {pr.const('1')}  # the other maxima",
                        f"{r.symbol}_c = {pr.doprint(value)}  # D18 excess_of_sums")
            chunk = {"m": "m_c", **{str(r.symbol): f"{r.symbol}_c" for r in shifted + linear},
                     **{str(a): f"{a}_c" for a in slopes}}
            _merge_linear_lines(out, pr, kernel, chunk)
            _merge_lines(out, pr, kernel, shifted, chunk)
        if linear:
            with out.block("else:"):
                out.add(*(f"{r.symbol} += "
                          f"{pr.doprint(kernel.masked_t.xreplace({A: sp.Symbol(f'{r.slope}_c')}))}"
                          "  # D19 masked_chunk" for r in linear))
            out.add(*(f"{a} += {a}_c" for a in sorted(slopes, key=str)))


def _thread_pass(out: Code, pr: NumbaPrinter, kernel: RowKernel, width: int,
                 half: str | None) -> None:
    """One thread's share of the row reductions (inside the row loop): the scalar loops' chunks,
    then the vector loops'."""
    out.add(*(f"{s} = {_identity(pr, kernel, s)}" for s in _state(kernel)))
    visits = (_Scalar(True), _Vector(width)) if width > 1 else (_Scalar(False),)
    for visit in visits:
        _chunk_pass(out, pr, kernel, visit, half)


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


def _outputs(out: Code, pr: NumbaPrinter, kernel: RowKernel, width: int,
             half: str | None) -> None:
    """The elementwise outputs: the scalar loop (over the elements outside the row's vectors,
    or every element for a dtype without vectors), then the vector loop (one vector store per
    output and visit); pairs (i, j) and kernels with scratch rows (evaluated in place) in one
    strided loop. A 16-bit variant stores
    ``narrow_<half>_to(value, <output row>)``, the value rounded to the output's type."""

    def stored(name: str, value: sp.Expr) -> str:
        printed = pr.doprint(value)
        return f"narrow_{half}_to({printed}, {name}_r)" if half else printed

    if _vector_outputs(kernel):
        scalar = _Scalar(width > 1)
        with out.block(scalar.loop(scalar.first, scalar.stop, i)):
            scalar.load(out, kernel, [], i, half)
            out.assign(pr, kernel.element_level)
            out.add(*(f"{name}_r[i] = {stored(name, value)}" for name, value in kernel.outputs))
        if width == 1:
            return
        vector = _Vector(width)
        with out.block(vector.loop(vector.first, vector.stop, i)):
            for j, names in enumerate(vector.load(out, kernel, _output_reads(kernel), i, half)):
                names.update({a.symbol: f"{a.symbol}_{j}" for a in kernel.element_level})
                with pr.renamed(names):
                    out.add(*(f"{names[a.symbol]} = {pr.doprint(a.expr)}"
                              for a in kernel.element_level))
                    out.add(*(f"{name}_{j} = {stored(name, value)}"
                              for name, value in kernel.outputs))
            out.add(*(f"vector_store({name}_r, i, "
                      f"({', '.join(f'{name}_{j}' for j in range(width))}))"
                      for name, _ in kernel.outputs))
        return
    elementwise = [e for _, e in (*kernel.outputs, *kernel.pair_outputs)]
    scratch, mapping = _scratch_inline(
        kernel, [a.expr for a in kernel.element_level] + elementwise)
    element_level = [Assignment(a.symbol, a.expr.xreplace(mapping))
                     for a in kernel.element_level]
    for outputs, header, index in ((kernel.outputs, "for i in range(lane, stop, width):", "i"),
                                   (kernel.pair_outputs, "for q in range(lane, stop * stop, "
                                    "width):", "i, j")):
        if not outputs:
            continue
        with out.block(header):
            if index != "i":
                out.add("i = q // n", "j = q - i * n")
            out.assign(pr, scratch)
            out.assign(pr, element_level)
            out.add(*(f"{name}_r[{index}] = {stored(name, value.xreplace(mapping))}"
                      for name, value in outputs))


def emit_row_kernel(kernel: RowKernel, dtype: str) -> list[str]:
    """Source lines of ``<name>_<dtype>`` (and its merge/reduce device functions); a 16-bit
    ``dtype`` ("bf16", "f16") prints the float32 kernel reading its rows as 16-bit bit
    patterns (each load widened) and rounding its outputs of rows to 16 bits at each store,
    with the float32 kernel's device functions."""
    half = dtype if dtype in HALF_DTYPES else None
    if half and (kernel.pair_outputs or kernel.scratch):
        raise ValueError(f"{kernel.name}: no 16-bit variant for pair outputs or scratch rows")
    compute = compute_dtype(dtype)
    pr = CudaPrinter(compute) if not half else CudaPrinter(
        compute, f"widen_{half}", frozenset(str(row) for row in kernel.rows))
    out = Code()
    state = _state(kernel)
    st = ", ".join(state)
    if state and not half:
        for emit in (_emit_merge, _emit_reduce_shuffle, _emit_reduce_shared):
            emit(out, pr, kernel, dtype)
            out.add("", "")
        out.add(f"_reduce_{dtype} = _reduce_shuffle_{dtype} if SHUFFLE else "
                f"_reduce_shared_{dtype}", "", "")
    out.add("@cuda.jit")
    with out.block(f"def {kernel.name}_{dtype}({names(kernel)}):"):
        kind = f"{HALF_DTYPES[half]} rows, computed in float32" if half else DTYPES[dtype]
        out.add(f'"""{kernel.doc} ({kind})"""', f"rows, n = {kernel.rows[0]}.shape",
                "width = cuda.blockDim.x  # threads per row", "lane = cuda.threadIdx.x",
                "groups = cuda.blockDim.y  # rows per block")
        with out.block("for first in range(cuda.blockIdx.x * groups, rows, "
                       "cuda.gridDim.x * groups):"):
            out.add("r = first + cuda.threadIdx.y",
                    "active = r < rows  # an idle group still takes part in the block's barriers")
            with out.block("if not active:"):
                out.add("r = rows - 1")
            out.add("stop = n if active else 0")
            load_row(out, kernel)
            if VECTOR[dtype] > 1:
                _vector_bounds(out, kernel, VECTOR[dtype])
            _thread_pass(out, pr, kernel, VECTOR[dtype], half)
            if state:
                out.add(f"{st} = _reduce_{compute}({st})")
            out.assign(pr, kernel.row_level)
            out.add(*(f"{name}_v = {pr.doprint(value)}" for name, value in kernel.row_outputs))
            elementwise = [e for _, e in (*kernel.outputs, *kernel.pair_outputs)]
            if elementwise and _reads_rows(kernel.row_level,
                                           [e for _, e in kernel.row_outputs]):
                out.add("cuda.syncthreads()  # row-level loads done before an in-place output "
                        "overwrites them")
            _outputs(out, pr, kernel, VECTOR[dtype], half)
            if kernel.row_outputs:
                with out.block("if active and lane == 0:"):
                    out.add(*(f"{name}[r] = {name}_v" for name, _ in kernel.row_outputs))
    return out.lines


def emit_elementwise_kernel(kernel: ElementwiseKernel, dtype: str) -> list[str]:
    """Source lines of ``<name>_<dtype>`` for a flat elementwise kernel (grid-stride loop)."""
    out = Code()
    out.add("@cuda.jit")
    with out.block(f"def {kernel.name}_{dtype}({names(kernel)}):"):
        out.add(f'"""{kernel.doc} ({kind(dtype)})"""', "step = cuda.gridDim.x * cuda.blockDim.x")
        with out.block("for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, "
                       "out.shape[0], step):"):
            element_body(out, CudaPrinter(compute_dtype(dtype)), kernel, dtype)
    return out.lines


RUNTIME_NAMES = ("exp_f32", "exp_f64", "log_f32", "log_f64", "log1p_f32", "log1p_f64", "fmax",
                 "fmin", "widen_bf16", "widen_f16", "narrow_bf16_to", "narrow_f16_to",
                 "vector_head", "vector_load", "vector_store")


def emit_module_body(kernel: RowKernel | ElementwiseKernel) -> str:
    """Imports and the dtype variants of one kernel (float32, float64, and the 16-bit ones of
    ``HALF_KERNELS``), with their ``SIGNATURES`` (the header is added by the writer)."""
    emit = emit_row_kernel if isinstance(kernel, RowKernel) else emit_elementwise_kernel
    dtypes = (*DTYPES, *(HALF_DTYPES if kernel.name in HALF_KERNELS else ()))
    body = definitions(kernel, emit, dtypes)
    body += ["", "", "#: Signatures of the C-contiguous launches, for ahead-of-time checks "
             "(``cuda.compile_ptx``).", "SIGNATURES = {"]
    for dtype in dtypes:
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
