"""The generator's parts: printer, lowering and emitters, on small expressions."""

import re
from pathlib import Path

import sympy as sp

from softce.codegen.cpu import CHUNK, MAX_SPAN
from softce.codegen.lower import KernelSpec, extract_reductions, lower, m
from softce.codegen.printer import NumbaPrinter
from softce.derive.symbols import c, d1, d2, i, k, m1, m2, row_sum, t, x, y

MERGE = (sp.Max(m1, m2), d1 * sp.exp(m1 - sp.Max(m1, m2)) + d2 * sp.exp(m2 - sp.Max(m1, m2)))


def test_float32_printing_types_every_constant() -> None:
    pr = NumbaPrinter("f32")
    assert pr.doprint(2 * x[i] + sp.Rational(1, 2)) == "np.float32(2)*x_r[i] + np.float32(0.5)"
    assert pr.doprint(sp.exp(x[i] - m)) == "exp_f32(x_r[i] - m)"
    assert pr.doprint(1 / sp.Symbol("d")) == "np.float32(1) / d"
    assert "0.0" not in pr.doprint(sp.Piecewise((0, sp.Eq(x[k], 0)), (x[k], True)))


def test_float64_printing_uses_the_float64_exp() -> None:
    assert NumbaPrinter("f64").doprint(sp.exp(-x[i])) == "exp_f64(-x_r[i])"


def test_max_min_delta_print_as_selects() -> None:
    pr = NumbaPrinter("f64")
    assert pr.doprint(sp.Max(m1, m2)) == "fmax(m1, m2)"
    assert pr.doprint(sp.Min(0, t)) == "fmin(np.float64(0), t)"
    assert pr.doprint(sp.KroneckerDelta(i, c)) == "(np.float64(1) if c == i else np.float64(0))"


def test_sums_become_named_reductions() -> None:
    exprs = [row_sum(y[k]) * sp.exp(x[i] - m) / row_sum(sp.exp(x[k] - m)) - y[i]]
    (out,), reductions = extract_reductions(exprs)
    names = {str(r.symbol): r.shifted for r in reductions}
    assert names == {"d": True, "sum_y": False}
    assert not out.has(sp.Sum)


def test_lowering_hoists_row_constants_out_of_the_element_loop() -> None:
    softmax = sp.exp(x[i] - m) / row_sum(sp.exp(x[k] - m))
    kernel = lower(KernelSpec(name="s", doc="", rows=(x,), outputs={"out": softmax},
                              merge=MERGE))
    (name, value), = kernel.outputs
    assert [str(a.expr) for a in kernel.row_level] == ["1/d"]
    assert value.free_symbols & {a.symbol for a in kernel.row_level}
    assert kernel.max_of == x


def test_a_shifted_sum_without_its_exp_factor_is_refused() -> None:
    bad = row_sum(x[k] * m**2)
    try:
        extract_reductions([bad])
    except ValueError as exc:
        assert "exp(x[k] - m)" in str(exc)
    else:
        raise AssertionError("a sum in m, neither exp(x[k] - m) h nor linear, was lowered")


def test_a_sum_linear_in_m_gets_the_plain_sum_of_its_slope() -> None:
    """D19: sum_k y[k] (m - x[k]) is merged with its slope sum_k y[k], which the lowering adds
    when the expression has no such sum; the guard's factor is taken out of the select."""
    guarded = sp.Piecewise((0, sp.Eq(y[k], 0)), ((m - x[k]) * y[k], True))
    exprs, reductions = extract_reductions([row_sum(guarded)])
    linear, slope = reductions
    assert exprs == [linear.symbol] and linear.slope == slope.symbol
    assert slope.summand == y[k] and slope.plain and not linear.plain
    assert linear.summand == y[k] * sp.Piecewise((0, sp.Eq(y[k], 0)), (m - x[k], True))


def _emitted(outputs: dict[str, sp.Expr], **spec: object) -> str:
    from softce.codegen.cpu import emit_module_body

    return emit_module_body(lower(KernelSpec(name="s", doc="", rows=(x,), outputs=outputs,
                                             merge=MERGE, **spec)))


def test_kronecker_delta_is_taken_out_of_the_element_loop() -> None:
    """d/dx_i of CE: softmax - [i = c]. The loop runs with the delta at 0; the element i = c is
    computed before the loop (which overwrites the stored exp it reads) with the delta at 1, and
    stored after it."""
    grad = sp.exp(x[i] - m) / row_sum(sp.exp(x[k] - m)) - sp.KroneckerDelta(i, c)
    text = _emitted({"grad": grad}, row_scalars=(("labels", c),))
    assert " if c == i else " not in text
    f32 = text.split("def s_f64")[0]
    heads = r"\n\s*if at_c:\n|\n\s*for k in range\(stop - start\):\n(?=(?:(?!for k).)*if at_c)"
    before, fixed, loop, after = re.split(heads, f32, flags=re.S)[-4:]
    assert "at_c = start <= c < stop" in before
    assert "k = c - start" in fixed and re.search(r"np\.float32\(-?1\)", fixed)
    assert "e_x = grad_chunk_r[k]*f_c" in fixed  # read before the loop overwrites it
    assert not re.search(r"np\.float32\(-?1\)", loop)
    assert "grad_chunk_r[c - start] = grad_chunk_r_at_c" in after


def test_kernels_that_store_their_exps_take_one_max_per_span() -> None:
    """softmax stores exp(x - m_c) in its output row with m_c its span's max, read in a loop of
    its own, and keeps a loop for out = x; log_softmax computes its output from x again and
    takes each chunk's max."""
    softmax = sp.exp(x[i] - m) / row_sum(sp.exp(x[k] - m))
    log_softmax = x[i] - m - sp.log(row_sum(sp.exp(x[k] - m)))
    stored, computed = _emitted({"out": softmax}), _emitted({"out": log_softmax})
    assert f"\nMAX_SPAN = {MAX_SPAN}\n" in stored and "MAX_SPAN" not in computed
    assert MAX_SPAN % CHUNK == 0  # a span's chunks end where it does
    f32 = stored.split('@nb.njit(["void(float64')[0]
    assert "in_place = out.ctypes.data == x.ctypes.data" in f32
    assert "e_k = exp_nonpos_f32(out_chunk_r[k] - m_c)" in f32  # in place: nonpositive too
    assert "e_k = exp_nonpos_f32(x_chunk_r[k] - m_c)" in f32
    assert "e_chunk" not in f32
    assert f32.count("m_c = fmax(m_c, ") == 1 and "fmax(m_c, x_span_r[k])" in f32
    assert "m_c = fmax(m_c, x_chunk_r[k])" in computed


def test_float32_kernels_merge_the_row_sum_in_float64_only() -> None:
    """The D11 merges of a float32 row accumulate in float64 (``MERGED_SUM_DTYPE``), and so do
    a span's chunk sums; the sum is narrowed once, so the element loops stay float32 and
    vectorise as wide."""
    softmax = sp.exp(x[i] - m) / row_sum(sp.exp(x[k] - m))
    f32 = _emitted({"out": softmax}).split('@nb.njit(["void(float64')[0]
    wide = [line.strip() for line in f32.splitlines() if "float64" in line]
    assert wide == ["d_row = np.float64(0)  # merged in float64", "d_sp = np.float64(0)"], wide
    assert "d = np.float32(d_row)" in f32 and "d_sp += d_c" in f32
    assert re.search(r"d_row = d_row\*exp_nonpos_f32\(.*\) \+ d_sp\*exp_nonpos_f32", f32)


def test_the_normaliser_is_carried_as_its_excess() -> None:
    """With D18's excess form, sum_k exp(x[k] - m) becomes 1 + s: s summed from the exps with
    the ties of the max multiplied out (counted apart, in the dtype), the other maxima added
    after (never -1 + the sum), merged with D18's merge_s from its identity -1, and
    log(1 + s) printed as log1p(s)."""
    from softce.codegen.cpu import emit_module_body
    from softce.codegen.kernels import Catalogue
    from softce.derive import results

    cat = Catalogue(results)
    lse = cat.lse()
    text = emit_module_body(cat.spec(name="s", doc="", rows=(x,), row_outputs={"lse": lse}))
    f32 = text.split('@nb.njit(["void(float64')[0]
    assert "s_row = np.float64(-1)  # merged in float64" in f32
    assert "t_k = np.float32((m_c == x_chunk_r[k]))  # D18 tie_term" in f32
    assert "s_c += e_k*(np.float32(1) - t_k)" in f32 and "ties_c += t_k" in f32
    assert "ties_c -= np.float32(1)" in f32
    assert "s_c = (s_c + ties_c if (m_c != np.float32(np.inf)) else ties_c)" in f32
    assert "# D18 merge_s" in f32 and "d_c" not in f32
    assert "lse[r] = m + math.log1p(s)" in f32


#: What each role of a ``PARAMETERS`` table is: (dimensions, a scalar when 0).
ROLE_DIMS = {"rows": 2, "class_vector": 1, "row_labels": 1, "row_values": 1, "param": 0,
             "out_rows": 2, "out_pairs": 3, "out_row": 1, "flat": 1, "out_flat": 1}


def _check_types(table: tuple, argtypes: tuple, float_type: object) -> str | None:
    """The label type of one signature, after checking each argument against its table row."""
    from numba import types

    labels = set()
    assert len(argtypes) == len(table)
    for (name, role, kind), arg in zip(table, argtypes):
        element = arg.dtype if isinstance(arg, types.Array) else arg
        if ROLE_DIMS[role]:
            assert isinstance(arg, types.Array) and arg.layout == "C", (name, arg)
        assert (arg.ndim if isinstance(arg, types.Array) else 0) == ROLE_DIMS[role], (name, arg)
        if kind == "label":
            assert isinstance(element, types.Integer), (name, arg)
            labels.add(str(element))
        else:
            assert element == float_type, (name, arg)
    assert len(labels) <= 1
    return labels.pop() if labels else None


def test_every_kernel_carries_its_parameter_table() -> None:
    """For each generated kernel (CPU and CUDA, both dtypes) ``PARAMETERS`` names the
    function's arguments in order, and its roles and dtypes are those of the compiled
    signatures: a kernel with labels is compiled for int32 and int64 labels."""
    import importlib
    import inspect

    from numba import types
    from numba.core.sigutils import normalize_signature

    from softce.generated.cpu import KERNELS

    comments = set()
    for module_name in sorted(set(KERNELS.values())):
        cpu = importlib.import_module(f"softce.generated.cpu.{module_name}")
        cuda = importlib.import_module(f"softce.generated.cuda.{module_name}")
        assert cpu.PARAMETERS == cuda.PARAMETERS
        table = cpu.PARAMETERS
        assert all(len(row) == 3 and all(isinstance(f, str) for f in row) for row in table)
        assert {kind for _, _, kind in table} <= {"float", "label"}
        assert table[-1][1].startswith("out")
        has_labels = any(kind == "label" for _, _, kind in table)
        for dtype, float_type in (("f32", types.float32), ("f64", types.float64)):
            for module in (cpu, cuda):
                fn = getattr(module, f"{module_name}_{dtype}")
                assert list(inspect.signature(fn.py_func).parameters) == [r[0] for r in table]
            compiled = [_check_types(table, sig, float_type) for sig in
                        getattr(cpu, f"{module_name}_{dtype}").signatures]
            launches = [_check_types(table, normalize_signature(sig)[0], float_type)
                        for sig in cuda.SIGNATURES[f"{module_name}_{dtype}"]]
            expected = ["int32", "int64"] if has_labels else [None]
            assert sorted(compiled, key=str) == launches == expected, module_name
        for module in (cpu, cuda):
            text = Path(module.__file__).read_text()
            comments.add(text[text.index("#: Parameters in call order"):text.index("PARAMETERS")])
    assert len(comments) == 1


def test_the_loop_plan_follows_what_the_outputs_read() -> None:
    """softmax keeps its exps in the output row (one max per span, a block's chunk maxima as
    its buffer); log_softmax streams its outputs and reads x[i] - m from a shift buffer; a
    kernel with row outputs only needs no buffers."""
    from softce.codegen.cpu import RowPlan, round_shifts
    from softce.codegen.numerics import ExpNonPos

    def plan(**spec: object) -> tuple[RowPlan, list[str]]:
        kernel = round_shifts(lower(KernelSpec(name="s", doc="", rows=(x,), merge=MERGE,
                                               **spec)))
        return RowPlan.of(kernel), [name for name, _, _ in RowPlan.of(kernel).buffers(kernel)]

    lse = sp.log(row_sum(sp.exp(x[k] - m)))
    softmax, buffers = plan(outputs={"out": sp.exp(x[i] - m) / row_sum(sp.exp(x[k] - m))})
    assert softmax == RowPlan(ExpNonPos(x[i] - m), streamed=False, shift_buffer=False)
    assert buffers == ["m_chunks"]
    # a 16-bit variant keeps its exps in a float32 row of its own, not in its 16-bit output
    kernel = round_shifts(lower(KernelSpec(name="s", doc="", rows=(x,), merge=MERGE, outputs={
        "out": sp.exp(x[i] - m) / row_sum(sp.exp(x[k] - m))})))
    half = RowPlan.of(kernel, "bf16")
    assert half.store(kernel) == "e" and RowPlan.of(kernel).store(kernel) == "out"
    assert [(b, t) for b, _, t in half.buffers(kernel)] == [("m_chunks", "np.float32"),
                                                           ("e_r", "np.float32")]
    log_softmax, buffers = plan(outputs={"out": x[i] - m - lse})
    assert log_softmax == RowPlan(None, streamed=True, shift_buffer=True)
    assert buffers == ["out_buf", "shift_r"]
    logsumexp, buffers = plan(row_outputs={"lse": m + lse})
    assert logsumexp == RowPlan(None, streamed=False, shift_buffer=False) and buffers == []
