"""Verify the printed kernels against the derivations they were printed from.

For every kernel and dtype, the generated function runs on small random rows (with a -inf
logit); the same rows are substituted into the kernel's formulas before lowering (sums
expanded for the concrete n, the shift m = max, exactly as derived) and evaluated by SymPy at
30 digits. A kernel passes when every output agrees to the dtype's tolerance. This checks the
lowering, the printer, the emitter and Numba's compilation; tests/ holds the kernels against
independent hand-written references.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import sympy as sp

from softce.codegen.ir import ElementwiseKernel, RowKernel
from softce.codegen.kernels import row_kernels
from softce.codegen.lower import m
from softce.derive.symbols import i, j, n

TOLERANCE = {"f32": (2e-5, 1e-6), "f64": (1e-12, 1e-13)}
NUMPY = {"f32": np.float32, "f64": np.float64}


@dataclass(frozen=True)
class Verdict:
    kernel: str
    dtype: str
    cases: int
    max_error: float
    ok: bool


def _row_inputs(kernel: RowKernel, rows: int, size: int, rng: np.random.Generator
                ) -> dict[str, np.ndarray]:
    """Inputs by argument name: logits with a -inf, distributions with a zero, labels."""
    values: dict[str, np.ndarray] = {}
    for base in kernel.rows:
        name = str(base)
        if name == "x":
            v = 3 * rng.standard_normal((rows, size))
            if size > 1:
                v[0, 0] = -np.inf
        elif name == "g":
            v = rng.standard_normal((rows, size))
        else:
            e = np.exp(rng.standard_normal((rows, size)))
            v = e / e.sum(axis=1, keepdims=True)
            if name == "p" and size > 1:
                v[0, 0] = 0.0
            if name == "logp":
                v = np.log(v)
        values[name] = v
    for base in kernel.class_rows:
        values[str(base)] = 0.5 + rng.random(size)
    for name, sym in kernel.row_scalars:
        values[name] = (rng.integers(1 if size > 1 else 0, size, rows) if sym.is_integer
                        else rng.standard_normal(rows))
    for param in kernel.params:
        values[str(param)] = np.float64(2.0)
    return values


def _expected(kernel: RowKernel, values: dict[str, np.ndarray], rows: int, size: int
              ) -> dict[str, np.ndarray]:
    """Every output evaluated from the formulas with SymPy, row by row."""
    scratch = dict(kernel.scratch_formulas)
    out: dict[str, np.ndarray] = {}
    for name, formula in kernel.formulas:
        for base, value in scratch.items():
            formula = formula.replace(
                lambda e, b=base: isinstance(e, sp.Indexed) and e.base == b,
                lambda e, v=value: v.subs(i, e.indices[0]))
        formula = formula.subs(n, size).doit()
        pair = formula.has(j)
        shape = (rows, size, size) if pair else (rows, size) if formula.has(i) else (rows,)
        result = np.empty(shape)
        for r in range(rows):
            subs = {p: sp.Float(float(values[str(p)]), 30) for p in kernel.params}
            scalars = {sym: values[arr_name][r] for arr_name, sym in kernel.row_scalars}
            for base in kernel.rows:
                for q in range(size):
                    subs[base[q]] = sp.Float(float(values[str(base)][r, q]), 30)
            for base in kernel.class_rows:
                for q in range(size):
                    subs[base[q]] = sp.Float(float(values[str(base)][q]), 30)
            if kernel.max_of is not None:
                subs[m] = sp.Float(float(np.max(values[str(kernel.max_of)][r])), 30)
            for index in np.ndindex(*shape[1:]):
                at = formula.subs(dict(zip((i, j), index))).subs(scalars)
                value = sp.N(at.subs(subs), 30)
                if not value.is_number:
                    raise ValueError(f"{kernel.name}.{name}: {value} has free symbols left")
                result[(r, *index)] = float(value)
        out[name] = result
    return out


def _run_row_kernel(kernel: RowKernel, dtype: str, values: dict[str, np.ndarray], rows: int,
                    size: int) -> dict[str, np.ndarray]:
    """Run the generated kernel, its arguments taken by name in the order of its module's
    ``PARAMETERS`` table (labels as int64, the rest in the dtype)."""
    module = importlib.import_module(f"softce.generated.cpu.{kernel.name}")
    fn = getattr(module, f"{kernel.name}_{dtype}")
    ftype = NUMPY[dtype]
    shapes = {"out_rows": (rows, size), "out_pairs": (rows, size, size), "out_row": (rows,)}
    outs = {name: np.zeros(shapes[role], ftype) for name, role, _ in module.PARAMETERS
            if role in shapes}
    args = []
    for name, role, kind in module.PARAMETERS:
        if role in shapes:
            args.append(outs[name])
        elif kind == "label":
            args.append(np.ascontiguousarray(values[name], np.int64))
        elif role == "param":
            args.append(ftype(values[name]))
        else:
            args.append(np.ascontiguousarray(values[name], ftype))
    fn(*args)
    return outs


def _cast_inputs(values: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The inputs as the kernel sees them (rounded to the dtype), back in float64."""
    return {k: (v if np.asarray(v).dtype.kind in "iu" else
                np.asarray(v, NUMPY[dtype]).astype(np.float64)) for k, v in values.items()}


def _compare(got: dict[str, np.ndarray], want: dict[str, np.ndarray], dtype: str,
             scale: float = 1.0) -> tuple[float, bool]:
    """Worst error in units of the tolerance: rtol relative, or atol times ``scale`` (the
    inputs' magnitude: a row's results carry the rounding of its shift, ulp(max |x|))."""
    rtol, atol = TOLERANCE[dtype]
    atol *= scale
    worst, ok = 0.0, True
    for name, expected in want.items():
        actual = got[name].astype(np.float64)
        same_special = (np.isnan(actual) & np.isnan(expected)) | (actual == expected)
        with np.errstate(invalid="ignore"):
            err = np.where(same_special, 0.0, np.abs(actual - expected)
                           / (atol + rtol * np.abs(expected)))
        worst = max(worst, float(np.max(err, initial=0.0)) * rtol)
        ok &= bool(np.all(err <= 1.0))
    return worst, ok


def verify_row_kernel(kernel: RowKernel, rng: np.random.Generator) -> list[Verdict]:
    verdicts = []
    for dtype in NUMPY:
        worst, ok, cases = 0.0, True, 0
        for size in (1, 6):
            rows = 3
            values = _cast_inputs(_row_inputs(kernel, rows, size, rng), dtype)
            got = _run_row_kernel(kernel, dtype, values, rows, size)
            finite = [np.abs(v[np.isfinite(v)]) for v in values.values() if np.ndim(v)]
            scale = max([1.0] + [float(v.max()) for v in finite if v.size])
            e, good = _compare(got, _expected(kernel, values, rows, size), dtype, scale)
            worst, ok, cases = max(worst, e), ok and good, cases + rows
        verdicts.append(Verdict(kernel.name, dtype, cases, worst, ok))
    return verdicts


def _elementwise_points(kernel: ElementwiseKernel, rng: np.random.Generator
                       ) -> dict[sp.Symbol, np.ndarray]:
    """The first argument runs over signed magnitudes and both infinities; the others are
    drawn in their symbol's domain (nonnegative symbols from [0, 3], zeros included)."""
    first = np.array([-80.0, -20.0, -1.5, -0.0, 0.0, 0.75, 3.0, 20.0, 80.0, -np.inf, np.inf])
    points = {kernel.args[0]: first}
    for a in kernel.args[1:]:
        v = 3 * rng.random(first.size) if a.is_nonnegative else 2 * rng.standard_normal(
            first.size)
        if a.is_nonnegative:
            v[::4] = 0.0
        points[a] = v
    return points


def verify_elementwise_kernel(kernel: ElementwiseKernel, rng: np.random.Generator
                              ) -> list[Verdict]:
    module = importlib.import_module(f"softce.generated.cpu.{kernel.name}")
    verdicts = []
    first = kernel.args[0]
    params = {p: 2.0 for p in kernel.params}
    for dtype in NUMPY:
        points = {a: v.astype(NUMPY[dtype]) for a, v in _elementwise_points(kernel, rng).items()}
        out = np.empty_like(points[first])
        values = {f"{a}_in": v for a, v in points.items()}
        values |= {str(p): NUMPY[dtype](v) for p, v in params.items()} | {"out": out}
        getattr(module, f"{kernel.name}_{dtype}")(
            *(values[name] for name, _, _ in module.PARAMETERS))
        want = []
        for q, v in enumerate(points[first]):
            rest = {a: sp.Float(float(points[a][q]), 30) for a in kernel.args[1:]}
            rest |= {p: sp.Float(v, 30) for p, v in params.items()}
            formula = kernel.formula.subs(rest)
            want.append(float(sp.N(formula.subs(first, sp.Float(float(v), 30)), 30))
                        if np.isfinite(v) else float(sp.limit(formula, first,
                                                              sp.oo if v > 0 else -sp.oo)))
        worst, ok = _compare({"out": out}, {"out": np.array(want)}, dtype)
        verdicts.append(Verdict(kernel.name, dtype, len(want), worst, ok))
    return verdicts


def verify_kernel(kernel: RowKernel | ElementwiseKernel, seed: int = 0) -> list[Verdict]:
    """Verdicts for one kernel, both dtypes, on rows drawn from ``seed`` and its name."""
    rng = np.random.default_rng([seed, *kernel.name.encode()])
    if isinstance(kernel, RowKernel):
        return verify_row_kernel(kernel, rng)
    return verify_elementwise_kernel(kernel, rng)


def verify_all(seed: int = 0, workers: int | None = None,
               names: Collection[str] | None = None) -> list[Verdict]:
    """Verdicts for every generated CPU kernel (or those named), both dtypes, in catalogue
    order.

    The kernels are verified over ``workers`` spawned processes (default: one per core; 1:
    in this process), each compiling its share into Numba's on-disk cache, the longest
    kernels first; a kernel travels to its process pickled, with its formulas, so a process
    needs no derivation."""
    from softce import warmup

    kernels = [kn for kn in row_kernels(_results) if names is None or kn.name in names]
    workers = warmup.workers_for(len(kernels), workers)
    if workers == 1:
        return [v for kernel in kernels for v in verify_kernel(kernel, seed)]
    order = {name: rank for rank, name in enumerate(warmup.modules())}
    longest_first = sorted(kernels, key=lambda kn: order.get(kn.name, -1))
    with warmup.pool(workers) as executor:
        found = dict(zip([kn.name for kn in longest_first],
                         executor.map(verify_kernel, longest_first,
                                      [seed] * len(kernels))))
    return [v for kernel in kernels for v in found[kernel.name]]


def _results(derivation: str):
    from softce.derive import results

    return results(derivation)
