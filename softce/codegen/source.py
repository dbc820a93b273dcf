"""Kernel source built block by block: the emitters' writer.

``with code.block("for k in range(n):"):`` prints the header and indents everything added
inside it, so an emitter states its loop nest as nested ``with`` blocks, not depths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from .ir import Assignment, ElementwiseKernel, RowKernel
from .parameters import table
from .printer import DTYPES, NumbaPrinter


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


def definitions(kernel: RowKernel | ElementwiseKernel,
                emit: Callable[[RowKernel | ElementwiseKernel, str], list[str]],
                dtypes: tuple[str, ...] = tuple(DTYPES)) -> list[str]:
    """The kernel's source at each dtype (``emit``), then its ``PARAMETERS`` table, each
    after two blank lines."""
    lines: list[str] = []
    for dtype in dtypes:
        lines += ["", "", *emit(kernel, dtype)]
    return [*lines, "", "", *table(kernel)]
