"""The row-kernel IR: what one kernel computes for each row of a (rows, n) array.

A row kernel reads rows along the class axis (and per-row scalars such as a label), runs row
reductions over the class index k (a max, sums, and sums carried in D11's online (m, d) form),
then evaluates row-level values and elementwise outputs over the element index i (or i and j).
Every expression here is a SymPy expression taken from the derivations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp


@dataclass(frozen=True)
class Source:
    """A derived expression a kernel is built from: derivation id, result name, its hash."""

    derivation: str
    result: str
    hash: str


@dataclass(frozen=True)
class Reduction:
    """acc = sum_k summand over the row; ``shifted`` sums carry exp(x[k] - m) and are merged
    chunk by chunk with D11's rule, the rest are plain sums. An excess (D18, ``ties`` set):
    a chunk's value is ``chunk`` of sigma = sum_k summand and tau = sum_k ties, merged with
    D18's merge_s from ``identity``, the value of no element. A sum linear in the shift m
    (D19, ``slope`` set): a chunk's value is taken at the chunk's max and moved to the row's
    with D19's merge_t, ``slope`` naming the plain sum of d summand / dm."""

    symbol: sp.Symbol
    summand: sp.Expr
    shifted: bool
    ties: sp.Expr | None = None
    chunk: sp.Expr | None = None
    identity: sp.Expr | None = None
    slope: sp.Symbol | None = None

    @property
    def plain(self) -> bool:
        """A plain sum: no shift in it, added element by element."""
        return not self.shifted and self.slope is None


@dataclass(frozen=True)
class Assignment:
    """symbol = expr, evaluated once per row (row level) or once per element."""

    symbol: sp.Symbol
    expr: sp.Expr


@dataclass(frozen=True)
class KernelInputs:
    """A row kernel's name, its docstring and what it reads.

    rows: names of the (rows, n) input arrays, each an IndexedBase of the derivations.
    class_rows: length-n arrays shared by every row (per-class weights), indexed like a row.
    row_scalars: (array name, per-row symbol) pairs, e.g. ("labels", c).
    params: scalar arguments shared by all rows.
    """

    name: str
    doc: str
    rows: tuple[sp.IndexedBase, ...]
    class_rows: tuple[sp.IndexedBase, ...] = ()
    row_scalars: tuple[tuple[str, sp.Symbol], ...] = ()
    params: tuple[sp.Symbol, ...] = ()


@dataclass(frozen=True)
class RowKernel(KernelInputs):
    """One lowered kernel: its inputs (``KernelInputs``) and

    max_of: the row whose max m is the shift of every shifted reduction (None: no shift).
    merge_m, merge_d: D11's merge of (m, d) states; merge_s: D18's of (m, s) (the excess);
    merge_t: D19's of (m, T, A) (sums linear in m), masked_t: D19's T of a chunk of -inf only.
    scratch: rows materialised before the outputs (name -> element expression in i).
    outputs: elementwise outputs (name -> expression in i); pair_outputs in i and j.
    row_outputs: per-row scalar outputs.
    """

    max_of: sp.IndexedBase | None = None
    merge_m: sp.Expr | None = None
    merge_d: sp.Expr | None = None
    merge_s: sp.Expr | None = None
    merge_t: sp.Expr | None = None
    masked_t: sp.Expr | None = None
    reductions: tuple[Reduction, ...] = ()
    row_level: tuple[Assignment, ...] = ()
    scratch: tuple[tuple[sp.IndexedBase, tuple[Assignment, ...], sp.Expr], ...] = ()
    element_level: tuple[Assignment, ...] = ()
    outputs: tuple[tuple[str, sp.Expr], ...] = ()
    pair_outputs: tuple[tuple[str, sp.Expr], ...] = ()
    row_outputs: tuple[tuple[str, sp.Expr], ...] = ()
    sources: tuple[Source, ...] = field(default_factory=tuple)
    #: output name -> the expression before lowering (Sums, the shift m, scratch rows still
    #: symbolic): what ``softce.verify`` evaluates to check the printed kernel.
    formulas: tuple[tuple[str, sp.Expr], ...] = ()
    scratch_formulas: tuple[tuple[sp.IndexedBase, sp.Expr], ...] = ()


@dataclass
class ElementwiseKernel:
    """out[q] = expr(args[q]...) over flat arrays of equal length, one per symbol of ``args``
    (input array ``<symbol>_in``), with scalar ``params`` shared by every element;
    ``formula`` is the expression before lowering (any per-element shift substituted, no
    rewrites)."""

    name: str
    doc: str
    args: tuple[sp.Symbol, ...]
    params: tuple[sp.Symbol, ...]
    element_level: tuple[Assignment, ...]
    output: sp.Expr
    formula: sp.Expr
    sources: tuple[Source, ...] = field(default_factory=tuple)
