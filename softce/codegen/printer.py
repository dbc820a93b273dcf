"""Printing scalar SymPy expressions as Numba-compatible Python for one float dtype.

Every constant is typed (``np.float32(0.5)``), so float32 kernels never widen to float64;
exp goes to the vectorisable primitive of the dtype; a row element x[i] prints as ``x_r[i]``.
Sums stay out of here: lowering replaced them by accumulators.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import precedence
from sympy.printing.pycode import PythonCodePrinter

from softce.derive.symbols import n

from .lower import m

DTYPES = {"f32": "float32", "f64": "float64"}

#: The running maxima a row kernel names, each a max over those of lower rank (elements: 0).
_MAX_RANK = {"m_c": 1, "m": 2, "m_new": 3}


class NumbaPrinter(PythonCodePrinter):
    """A SymPy Python printer whose numbers and functions fit a float32/float64 kernel."""

    #: Print x[i] - m through ``shift_<dtype>`` (kernels compiled with ``reassoc``).
    ordered_shift = True

    def __init__(self, dtype: str, max_of: sp.IndexedBase | None = None,
                 holding: tuple[str, ...] = ()) -> None:
        super().__init__({"standard": "python3"})
        self.dtype = dtype
        self.np_type = f"np.{DTYPES[dtype]}"
        #: The row whose max is the kernel's shift: exp(a - b) with b a max over a's values
        #: prints as ``exp_nonpos_<dtype>`` (``None``: every exp prints as ``exp_<dtype>``).
        self.max_of = max_of
        #: The arrays whose elements are max_of's: the row, its chunk view, and ``holding``
        #: (an output row that a loop reads in place of x, out = x).
        self.rows_of_max = {str(max_of), f"{max_of}_chunk", *holding}

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
        index = ", ".join(self._print(q) for q in expr.indices)
        return f"{expr.base}_r[{index}]"

    def _print_Add(self, expr: sp.Add, order: str | None = None) -> str:
        """Loads first, then the shift m, then the rest. When row-level terms follow, x[i] - m
        is computed by ``shift_<dtype>``, which LLVM may not re-associate, so it is rounded
        before they join it (a log-probability near 0 stays accurate to itself)."""

        def rank(term: sp.Expr) -> int:
            return 0 if term.atoms(sp.Indexed) else 1 if term.has(m) else 2

        terms = sorted(expr.args, key=lambda a: (rank(a), sp.default_sort_key(a)))
        loads = [a for a in terms if rank(a) == 0]
        rest = [a for a in terms if rank(a) == 2]
        sign = -1 if -m in terms else 1 if m in terms else 0
        if self.ordered_shift and loads and sign and rest:
            load = self._print(sp.Add(*loads) * -sign)
            shifted = f"{'-' if sign > 0 else ''}shift_{self.dtype}({load}, m)"
            others = [a for a in terms if a not in loads and a != sign * m]
            tail = self._print_Add(sp.Add(*others)) if len(others) > 1 else self._print(others[0])
            return f"{shifted} + {tail}" if not tail.startswith("-") else f"{shifted} - {tail[1:]}"
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
        arg = expr.args[0]
        name = "exp_nonpos" if self._nonpositive(arg) else "exp"
        return f"{name}_{self.dtype}({self._print(arg)})"

    def _nonpositive(self, arg: sp.Expr) -> bool:
        """arg = a - b with b a max taken over a (D2: x_k - max_j x_j <= 0), so arg <= 0.

        The maxima, each over everything of lower rank: an element of ``max_of`` (or of an
        array holding its elements, ``rows_of_max``), a chunk's (or its span's) max ``m_c``,
        the row's max ``m`` (final wherever an exp reads it), and ``m_new`` = max(m, m_c),
        D11's merge.
        """
        if self.max_of is None or not arg.is_Add or len(arg.args) != 2:
            return False
        low, high = sorted(arg.args, key=lambda t: t.could_extract_minus_sign())
        if not high.could_extract_minus_sign() or low.could_extract_minus_sign():
            return False
        return _MAX_RANK.get(str(-high), -1) > self._rank(low)

    def _rank(self, term: sp.Expr) -> int:
        if isinstance(term, sp.Indexed) and str(term.base) in self.rows_of_max:
            return 0
        return _MAX_RANK.get(str(term), 4) if isinstance(term, sp.Symbol) else 4

    def _print_log(self, expr: sp.log) -> str:
        return f"math.log({self._print(expr.args[0])})"

    def _print_Max(self, expr: sp.Max) -> str:
        args = sorted(expr.args, key=sp.default_sort_key)
        out = self._print(args[0])
        for a in args[1:]:
            out = f"fmax({out}, {self._print(a)})"
        return out

    def _print_Min(self, expr: sp.Min) -> str:
        args = sorted(expr.args, key=sp.default_sort_key)
        out = self._print(args[0])
        for a in args[1:]:
            out = f"fmin({out}, {self._print(a)})"
        return out

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
        return self.const("n") if expr == n else expr.name


def print_index(expr: sp.Expr) -> str:
    """Print an integer index expression (n - 1, i, c) without float typing."""
    return PythonCodePrinter().doprint(expr)
