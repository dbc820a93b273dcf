"""Kernel source built block by block: the emitters' writer.

``with code.block("for k in range(n):"):`` prints the header and indents everything added
inside it, so an emitter states its loop nest as nested ``with`` blocks, not depths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from .ir import Assignment, ElementwiseKernel, RowKernel
from .parameters import half_arrays, table
from .printer import DTYPES, HALF_DTYPES, NumbaPrinter


class Code:
    """Lines of Python source at the current block's indentation."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def add(self, *lines: str) -> None:
        self.lines += ["    " * self.depth + line if line else "" for line in lines]

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """``header`` (a line ending in a colon), then what the ``with`` body adds, indented."""
        self.add(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def assign(self, pr: NumbaPrinter, assigns: Iterable[Assignment]) -> None:
        """``symbol = value`` for each assignment."""
        self.add(*(f"{a.symbol} = {pr.doprint(a.expr)}" for a in assigns))


def load_row(code: Code, kernel: RowKernel) -> None:
    """The row r of each input and output array, as ``<name>_r``, and its per-row scalars."""
    code.add(*(f"{row}_r = {row}[r]" for row in kernel.rows))
    code.add(*(f"{vector}_r = {vector}  # shared by every row" for vector in kernel.class_rows))
    code.add(*(f"{sym} = {name}[r]" for name, sym in kernel.row_scalars))
    code.add(*(f"{name}_r = {name}[r]" for name, _ in (*kernel.outputs, *kernel.pair_outputs)))


def compute_dtype(dtype: str) -> str:
    """The dtype a variant computes in: float32 for the 16-bit ones."""
    return "f32" if dtype in HALF_DTYPES else dtype


def element_body(code: Code, pr: NumbaPrinter, kernel: ElementwiseKernel, dtype: str) -> None:
    """One element q of an elementwise kernel, printed by ``pr`` (at ``compute_dtype``): its
    inputs loaded (a 16-bit variant's 16-bit arrays widened to float32), the element-level
    assignments, the output stored (rounded to 16 bits when the variant holds it in 16
    bits)."""
    half = dtype if dtype in HALF_DTYPES else None
    held = half_arrays(kernel) if half else frozenset()
    code.add(*(f"{a} = widen_{half}({a}_in[q])" if f"{a}_in" in held else f"{a} = {a}_in[q]"
               for a in kernel.args))
    code.assign(pr, kernel.element_level)
    value = pr.doprint(kernel.output)
    code.add(f"out[q] = narrow_{half}_to({value}, out)" if "out" in held else f"out[q] = {value}")


def kind(dtype: str) -> str:
    """How a variant's docstring names its element type."""
    if dtype in HALF_DTYPES:
        return f"{HALF_DTYPES[dtype]}, computed in float32"
    return DTYPES[dtype]


def definitions(kernel: RowKernel | ElementwiseKernel,
                emit: Callable[[RowKernel | ElementwiseKernel, str], list[str]],
                dtypes: tuple[str, ...] = tuple(DTYPES)) -> list[str]:
    """The kernel's source at each dtype (``emit``), then its ``PARAMETERS`` table, each
    after two blank lines."""
    lines: list[str] = []
    for dtype in dtypes:
        lines += ["", "", *emit(kernel, dtype)]
    return [*lines, "", "", *table(kernel)]
