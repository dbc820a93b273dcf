"""Printing scalar SymPy expressions as Numba-compatible Python for one float dtype.

Every constant is typed (``np.float32(0.5)``), so float32 kernels never widen to float64;
exp goes to the vectorisable primitive of the dtype, the nodes of ``codegen.numerics`` to
theirs (``exp_nonpos_<dtype>``, ``shift_<dtype>``); a row element x[i] prints as ``x_r[i]``.
Sums stay out of here: lowering replaced them by accumulators.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sympy as sp
from sympy.printing.precedence import precedence
from sympy.printing.pycode import PythonCodePrinter

from softce.derive.symbols import n

from .lower import m

DTYPES = {"f32": "float32", "f64": "float64"}
#: 16-bit storage dtypes of the kernels' 16-bit variants (CPU and CUDA), computed in float32
#: (``softce.half``: rows read as bit patterns and widened at each load).
HALF_DTYPES = {"bf16": "bfloat16", "f16": "float16"}


class NumbaPrinter(PythonCodePrinter):
    """A SymPy Python printer whose numbers and functions fit a float32/float64 kernel."""

    def __init__(self, dtype: str, widen: str | None = None,
                 widened: frozenset[str] = frozenset()) -> None:
        super().__init__({"standard": "python3"})
        self.dtype = dtype
        self.np_type = f"np.{DTYPES[dtype]}"
        #: the rows (and their views) holding 16-bit bit patterns: each load of them is
        #: printed as ``<widen>(load)``, a float32
        self.widen = widen
        self.widened = widened
        #: loads and symbols printed as other names (``renamed``)
        self.names: dict[sp.Basic, str] = {}

    @contextmanager
    def renamed(self, names: dict[sp.Basic, str]) -> Iterator[None]:
        """Print each key (a load or a symbol) as its name inside the block: an element's
        math read from variables, printed in the same order as its loads would be."""
        saved, self.names = self.names, {**self.names, **names}
        try:
            yield
        finally:
            self.names = saved

    def const(self, value: str) -> str:
        return f"{self.np_type}({value})"

    # numbers ---------------------------------------------------------------------------
    def _print_Integer(self, expr: sp.Integer) -> str:
        return self.const(str(int(expr)))

    _print_One = _print_Zero = _print_NegativeOne = _print_Integer

    def _print_Rational(self, expr: sp.Rational) -> str:
        return self.const(repr(float(expr)))

    _print_Half = _print_Rational

    def _print_Float(self, expr: sp.Float) -> str:
        return self.const(repr(float(expr)))

    def _print_Infinity(self, expr: sp.Expr) -> str:
        return self.const("np.inf")

    def _print_NegativeInfinity(self, expr: sp.Expr) -> str:
        return self.const("-np.inf")

    def _print_Exp1(self, expr: sp.Expr) -> str:
        return self.const("math.e")

    # structure -------------------------------------------------------------------------
    def _print_Indexed(self, expr: sp.Indexed) -> str:
        if expr in self.names:
            return self.names[expr]
        index = ", ".join(self._print(q) for q in expr.indices)
        load = f"{expr.base}_r[{index}]"
        return f"{self.widen}({load})" if str(expr.base) in self.widened else load

    def _print_Add(self, expr: sp.Add, order: str | None = None) -> str:
        """Loads first, then the shift m, then the rest (left to right, as Python adds)."""

        def rank(term: sp.Expr) -> int:
            return 0 if term.atoms(sp.Indexed) else 1 if term.has(m) else 2

        terms = sorted(expr.args, key=lambda a: (rank(a), sp.default_sort_key(a)))
        out = self._print(terms[0])
        for term in terms[1:]:
            coeff, rest = term.as_coeff_Mul()
            if coeff.is_number and coeff < 0:
                out += " - " + self.parenthesize(-term, precedence(expr))
            else:
                out += " + " + self.parenthesize(term, precedence(expr))
        return out

    def _print_Mul(self, expr: sp.Mul) -> str:
        coeff, rest = expr.as_coeff_Mul()
        if coeff == -1 and rest != 1:
            return "-" + self.parenthesize(rest, precedence(expr))
        return super()._print_Mul(expr)

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exp = expr.as_base_exp()
        b = self.parenthesize(base, precedence(expr), strict=True)
        if exp == -1:
            return f"{self.const('1')} / {b}"
        if exp.is_Integer and 0 < exp <= 4:
            return " * ".join([b] * int(exp))
        if exp.is_Integer and -4 <= exp < 0:
            return f"{self.const('1')} / (" + " * ".join([b] * int(-exp)) + ")"
        return f"{b} ** {self._print(exp)}"

    # functions -------------------------------------------------------------------------
    def _print_exp(self, expr: sp.exp) -> str:
        return f"exp_{self.dtype}({self._print(expr.args[0])})"

    def _print_ExpNonPos(self, expr: sp.Expr) -> str:
        return f"exp_nonpos_{self.dtype}({self._print(expr.args[0])})"

    def _print_RoundedShift(self, expr: sp.Expr) -> str:
        return f"shift_{self.dtype}({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_log(self, expr: sp.log) -> str:
        return f"math.log({self._print(expr.args[0])})"

    def _print_log1p(self, expr: sp.Expr) -> str:
        return f"math.log1p({self._print(expr.args[0])})"

    def _print_Max(self, expr: sp.Max) -> str:
        return nested_call("fmax", [self._print(a) for a in sorted(expr.args,
                                                                   key=sp.default_sort_key)])

    def _print_Min(self, expr: sp.Min) -> str:
        return nested_call("fmin", [self._print(a) for a in sorted(expr.args,
                                                                   key=sp.default_sort_key)])

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta) -> str:
        a, b = (self._print(q) for q in expr.args)
        return f"({self.const('1')} if {a} == {b} else {self.const('0')})"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        *cases, (last, cond) = expr.args
        if cond != sp.true:
            raise ValueError(f"a Piecewise needs a default branch: {expr}")
        out = self._print(last)
        for value, cond in reversed(cases):
            out = f"({self._print(value)} if {self._print(cond)} else {out})"
        return out

    def _print_Unmasked(self, expr: sp.Expr) -> str:
        x, h = (self._print(a) for a in expr.args)
        return f"({h} if {x} != {self.const('-np.inf')} else {self.const('0')})"

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        """The row length n is an integer: as a value it is converted to the dtype."""
        if expr in self.names:
            return self.names[expr]
        return self.const("n") if expr == n else expr.name


def nested_call(function: str, args: list[str]) -> str:
    """A binary function folded over printed arguments: f(f(a, b), c)."""
    out = args[0]
    for arg in args[1:]:
        out = f"{function}({out}, {arg})"
    return out


def print_index(expr: sp.Expr) -> str:
    """Print an integer index expression (n - 1, i, c) without float typing."""
    return PythonCodePrinter().doprint(expr)
