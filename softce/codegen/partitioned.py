"""NumPy functions for rows split into class blocks: generated/partitioned.py.

When a row's classes are spread over several blocks (a Dask array chunked along the class
axis), each block reduces to its online state (m, s), the max and D18's excess normaliser, and
its plain row sums; states are merged with D11's merge_m and D18's merge_s, and the row's
results are then evaluated block by block from the merged state. Every function below is
printed from the derived expressions, vectorised over NumPy arrays (row values broadcast
against a block's elements):

- D18 ``merge`` and ``lse_of_pair`` (m + log1p(s));
- D2's shifted softmax with the shift D = m and its sum d = 1 + s (the state of the row);
- D18's log_softmax and label loss, D9 gradients, D5 entropy, their row sums split into a
  per-block partial sum (``*_sums``) and a function of the summed values;
- D19's probability-target loss: a block's T = sum y (m_b - x) against its own max m_b (D19's
  masked_chunk for a block of -inf only), moved to the row's max by ``merge_t``.

A Sum over the row's classes becomes ``numpy.sum(summand, axis=-1)`` over one block; the sums
of the blocks add up to the row's sum.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from softce.derive.d18_excess import m as m_row
from softce.derive.d19_shifted_prob import A1, A2, T1, T2, A
from softce.derive.symbols import D, b, c, i, k, m1, m2, p, x, y

from .ir import Source
from .kernels import Catalogue
from .printer import nested_call

Results = Callable[[str], Mapping[str, sp.Expr]]

# The symbols of the printed functions' arguments.
M = m_row
XE, YE, PE = sp.Symbol("x"), sp.Symbol("y"), sp.Symbol("p")  # a block's elements
XC = sp.Symbol("xc")  # the row's logit at its label
T_ROW = sp.Symbol("t")  # D19's sum_k y_k (m - x_k) of a part of a row
IDX, LABEL, W = sp.Symbol("i"), sp.Symbol("c"), sp.Symbol("w")  # class index, label, weight


class BlockPrinter(NumPyPrinter):
    """NumPy printing that keeps a block's dtype: Max of two arrays is ``numpy.maximum``, a
    Kronecker delta is a 0/1 array of x's dtype, a two-piece Piecewise is ``numpy.where``."""

    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": True})

    def _print_Max(self, expr: sp.Max) -> str:
        return nested_call("numpy.maximum", [self._print(a) for a in expr.args])

    def _print_KroneckerDelta(self, expr: sp.KroneckerDelta) -> str:
        a, bb = (self._print(q) for q in expr.args)
        return f"numpy.equal({a}, {bb}).astype(x.dtype)"

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        (value, cond), (other, last) = expr.args
        if len(expr.args) != 2 or last != sp.true:
            raise NotImplementedError(f"Piecewise of this form: {expr}")
        return f"numpy.where({self._print(cond)}, {self._print(value)}, {self._print(other)})"


def _elementwise(expr: sp.Expr) -> sp.Expr:
    """x[i], x[k], y[...], p[...] -> the block's element symbols; x[c] -> xc."""
    names = {x: XE, y: YE, p: PE}

    def element(e: sp.Indexed) -> sp.Expr:
        if e.base == x and e.indices[0] == c:
            return XC
        return names[e.base]

    return expr.replace(lambda e: isinstance(e, sp.Indexed), element)


def _split_sums(expr: sp.Expr) -> tuple[sp.Expr, dict[sp.Symbol, sp.Expr]]:
    """expr with each row Sum replaced by a symbol sum_<bases>, and those symbols' summands."""
    sums: dict[sp.Symbol, sp.Expr] = {}

    def name(s: sp.Sum) -> sp.Symbol:
        bases = sorted({str(e.base) for e in s.function.atoms(sp.Indexed)})
        symbol = sp.Symbol("sum_" + "".join(bases))
        sums[symbol] = _elementwise(s.function)
        return symbol

    return expr.replace(lambda e: isinstance(e, sp.Sum), name), sums


class _Module:
    def __init__(self, results: Results) -> None:
        self.cat = Catalogue(results)
        self.pr = BlockPrinter()
        self.lines: list[str] = []
        self.sources: list[Source] = []

    def function(self, name: str, args: str, doc: str, body: list[str], returns: str,
                 tags: str | None = None) -> None:
        """def name(args): body; return returns. tags: the derivations it is printed from
        (by default those looked up since the previous function)."""
        used = self.cat.take_sources()
        self.sources.extend(used)
        tags = tags or ", ".join(dict.fromkeys(s.derivation for s in used))
        self.lines += ["", "", f"def {name}({args}):", f'    """{doc} [{tags}]"""',
                       *(f"    {line}" for line in body), f"    return {returns}"]

    def expr(self, expr: sp.Expr) -> str:
        return self.pr.doprint(expr)

    def softmax(self) -> sp.Expr:
        """D2's shifted softmax with D = m, its shifted row sum d = 1 + s (D18): the row's
        state."""
        shifted = self.cat.get("D2", "softmax_shifted").xreplace({D: M})
        row_sum = next(iter(shifted.atoms(sp.Sum)))
        return _elementwise(shifted.xreplace({row_sum: self.cat.get("D18", "normaliser")}))


def _body(results: Results) -> tuple[list[str], list[Source]]:
    mod = _Module(results)
    pr = mod.expr
    ignore = "with numpy.errstate(invalid=\"ignore\", divide=\"ignore\"):"

    merge_m = mod.cat.get("D11", "merge_m")
    merge_s = mod.cat.get("D18", "merge_s")
    mod.function(
        "merge", "m1, s1, m2, s2",
        "The state (m, s) of the union of two parts of rows, from the parts' states.",
        [f"m = {pr(merge_m)}  # D11 merge_m",
         ignore,
         f"    s = {pr(merge_s)}  # D18 merge_s"],
        "m, s")
    lse_pair = mod.cat.get("D18", "lse")
    mod.function("lse_of_pair", "m, s", "LSE of rows whose state is (m, s).",
                 [ignore, f"    lse = {pr(lse_pair)}"], "lse")

    soft = mod.softmax()
    mod.function("softmax", "x, m, s", "softmax of a block's elements x, (m, s) the row's state.",
                 [], pr(soft))
    log_soft = _elementwise(mod.cat.get("D18", "log_softmax").xreplace({x[k]: x[i]}))
    mod.function("log_softmax", "x, m, s",
                 "log_softmax of a block's elements x, (m, s) the row's state.",
                 [ignore, f"    out = {pr(log_soft)}"], "out")

    loss_label = _elementwise(mod.cat.get("D18", "label_loss"))
    mod.function("cross_entropy_label", "m, s, xc", "Loss of a row: its state and its logit at "
                 "the label.", [ignore, f"    loss = {pr(loss_label)}"], "loss")
    grad_label = mod.cat.get("D9", "ce_grad_label").xreplace({i: IDX, c: LABEL})
    grad_label = W * _elementwise(grad_label).xreplace({PE: mod.softmax()})
    mod.function("cross_entropy_grad_label", "x, m, s, c, i, w",
                 "w * d loss / d x of a block's elements x at class indices i, label c.",
                 [], pr(grad_label))

    loss_prob, sums = _split_sums(mod.cat.get("D19", "prob_loss"))
    linear = next(name for name, summand in sums.items() if summand.has(M))
    slope = next(name for name in sums if name != linear)
    loss_prob, sums[T_ROW] = loss_prob.xreplace({linear: T_ROW}), sums.pop(linear)
    linear = T_ROW
    masked = mod.cat.get("D19", "masked_chunk").xreplace({A: slope})
    block_t = f"numpy.sum({pr(sums[linear].xreplace({M: sp.Symbol('m[..., None]')}))}, axis=-1)"
    mod.function(
        "cross_entropy_prob_sums", "x, y, m",
        "A block's part of the probability-target loss: T = sum y (m - x) against the block's "
        "max m (a block of -inf only: masked_chunk), and its slope sum(y).",
        [f"{slope} = numpy.sum({pr(sums[slope])}, axis=-1)", ignore,
         f"    {linear} = numpy.where(numpy.equal(m, -numpy.inf), {pr(masked)}, {block_t})"],
        f"{linear}, {slope}")
    parts = {m1: "m1", T1: "t1", A1: "a1", m2: "m2", T2: "t2", A2: "a2"}
    merge_t = mod.cat.get("D19", "merge_t").xreplace(
        {symbol: sp.Symbol(name) for symbol, name in parts.items()})
    mod.function(
        "merge_t", ", ".join(parts.values()),
        "T of the union of two parts of rows, at the larger max, from the parts' (m, T, A).",
        [ignore, f"    t = {pr(merge_t)}"], "t")
    mod.function("cross_entropy_prob", f"s, {linear}, {slope}",
                 "Loss of a row from its excess s and its merged sums.",
                 [ignore, f"    loss = {pr(loss_prob)}"], "loss", "D19")
    grad_prob, gsums = _split_sums(mod.cat.get("D9", "ce_grad").xreplace({i: IDX}))
    grad_prob = W * _elementwise(grad_prob).xreplace({PE: mod.softmax()})
    mod.function("cross_entropy_grad_prob",
                 "x, y, m, s, " + ", ".join(map(str, sorted(gsums, key=str))) + ", w",
                 "w * d loss / d x of a block's elements x, targets y, and the row's sums.",
                 [], pr(grad_prob))

    entropy, esums = _split_sums(mod.cat.get("D5", "entropy"))
    _sums_function(mod, "entropy_sums", "p", esums, "A block's part of the entropy's row sum.",
                   ignore=ignore)
    esum_args = ", ".join(map(str, sorted(esums, key=str)))
    mod.function("entropy", esum_args, "Entropy of a row in nats from its summed row sum.",
                 [], pr(entropy.subs(b, sp.E)), "D5")
    mod.function("entropy_base", esum_args + ", b", "Entropy of a row in base b.", [],
                 pr(entropy), "D5")
    return mod.lines, list(dict.fromkeys(mod.sources))


def _sums_function(mod: _Module, name: str, args: str, sums: dict[sp.Symbol, sp.Expr],
                   doc: str, ignore: str | None = None) -> None:
    names = sorted(sums, key=str)
    parts = [f"numpy.sum({mod.expr(sums[s])}, axis=-1)" for s in names]
    if ignore:
        body = [ignore, f"    sums = ({', '.join(parts)},)"]
        mod.function(name, args, doc, body, "sums")
    else:
        mod.function(name, args, doc, [], f"({', '.join(parts)},)")


def emit_module(results: Results) -> str:
    """The text of generated/partitioned.py."""
    lines, sources = _body(results)
    head = [
        "# Generated by softce.codegen.partitioned from the derivations in derive/. Do not edit:",
        "# regenerate with `python scripts/regenerate.py` (`--check` reports stale files).",
        "# NumPy functions for rows whose classes are split over blocks (softce.dask): the",
        "# state (m, s) per block, merged; then each block's results from the row's state.",
        "# Derived expressions it was printed from (derivation, result, hash of the expression):",
        *(f"#   {s.derivation:<4} {s.result:<16} {s.hash}" for s in sources),
        f"# SymPy {sp.__version__}.",
        "",
        "import numpy",
    ]
    return "\n".join(head + lines) + "\n"
