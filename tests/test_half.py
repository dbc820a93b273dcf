"""16-bit logits read as 16 bits: the conversion helpers of ``softce.half`` (every pattern),
the kernels' 16-bit variants against their float32 variants, the NumPy API's float16 and
bfloat16 arrays (results, ``out=``, no float32 copy of the logits)."""

from __future__ import annotations

import tracemalloc

import numba as nb
import numpy as np
import pytest

import softce
from softce.half import (
    BFLOAT16,
    bfloat16_to_float32,
    float32_to_bfloat16,
    is_bfloat16,
    narrow_bf16_to,
    narrow_f16_to,
    py_narrow_bf16,
    py_narrow_f16,
    py_widen_bf16,
    py_widen_f16,
    storage,
    widen_bf16,
    widen_f16,
)

ALL = np.arange(1 << 16, dtype=np.uint16)


@nb.njit
def _widen_all(bits, kind):  # noqa: ANN001, ANN202
    out = np.empty(bits.shape[0], np.float32)
    for k in range(bits.shape[0]):
        out[k] = widen_bf16(bits[k]) if kind == 0 else widen_f16(bits[k])
    return out


@nb.njit
def _narrow_all(values, out, kind):  # noqa: ANN001, ANN202
    for k in range(values.shape[0]):
        if kind == 0:
            out[k] = narrow_bf16_to(values[k], out)
        else:
            out[k] = narrow_f16_to(values[k], out)


def _around(wide: np.ndarray) -> np.ndarray:
    """Every value of ``wide`` (float32, sorted by pattern), the midpoints between neighbours
    (ties) and the float32 values next to each midpoint: every rounding case of 16 bits."""
    finite = np.sort(wide[np.isfinite(wide)].astype(np.float64))
    mids = ((finite[1:] + finite[:-1]) / 2).astype(np.float32)
    up = np.nextafter(mids, np.float32(np.inf))
    down = np.nextafter(mids, np.float32(-np.inf))
    big = np.array([65504, 65519.996, 65520, 1e6, 3.4e38, 3.3961776e38, 3.3961778e38, np.inf,
                    np.nan], np.float32)
    return np.concatenate([wide, mids, up, down, big, -big])


def test_bfloat16_widening_is_exact_for_every_pattern() -> None:
    got = _widen_all(ALL, 0)
    np.testing.assert_array_equal(got.view(np.uint32), ALL.astype(np.uint32) << 16)
    np.testing.assert_array_equal(bfloat16_to_float32(ALL).view(np.uint32),
                                  ALL.astype(np.uint32) << 16)
    assert all(py_widen_bf16(b).view(np.uint32) == np.uint32(b) << 16 for b in ALL[::97])


def test_float16_widening_is_exact_for_every_pattern() -> None:
    ref = ALL.view(np.float16).astype(np.float32)
    got = _widen_all(ALL, 1)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), ref[~nan].view(np.uint32))
    assert np.isnan(got[nan]).all() and nan.sum() == 2 * 1023
    assert all(py_widen_f16(b) == ref[b] for b in ALL[::97] if not nan[b])


def test_bfloat16_narrowing_rounds_to_nearest_even_as_torch() -> None:
    torch = pytest.importorskip("torch")
    values = _around((ALL.astype(np.uint32) << 16).view(np.float32))
    got = np.empty(values.size, np.uint16)
    _narrow_all(values, got, 0)
    ref = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(values)
    np.testing.assert_array_equal(got[~nan], ref[~nan])  # ties to even, overflow to inf
    assert (got[nan] == 0x7FC0).all()  # NaN stays NaN (PyTorch's canonical one)
    np.testing.assert_array_equal(float32_to_bfloat16(values).view(np.uint16), got)
    assert all(py_narrow_bf16(v) == g for v, g in zip(values[::501], got[::501]))
    # the float32 variant of the store keeps the value
    wide = np.empty(values.size, np.float32)
    _narrow_all(values, wide, 0)
    np.testing.assert_array_equal(wide, values)


def test_float16_narrowing_rounds_to_nearest_even_as_numpy() -> None:
    values = _around(ALL.view(np.float16).astype(np.float32))
    got = np.empty(values.size, np.uint16)
    _narrow_all(values, got, 1)
    with np.errstate(over="ignore"):
        ref = values.astype(np.float16).view(np.uint16)
    nan = np.isnan(values)
    np.testing.assert_array_equal(got[~nan], ref[~nan])  # subnormals, ties, overflow to inf
    assert np.isnan(got[nan].view(np.float16)).all()
    assert all(py_narrow_f16(v) == g for v, g in zip(values[::501], got[::501])
               if not np.isnan(v))


# the kernels' 16-bit variants ------------------------------------------------------------

RNG = np.random.default_rng(16)


def _logits(shape: tuple[int, ...], scale: float = 4.0) -> np.ndarray:
    x = (RNG.standard_normal(shape) * scale).astype(np.float32)
    x.reshape(-1, shape[-1])[0, 1 % shape[-1]] = -np.inf  # a mask
    x.reshape(-1, shape[-1])[-1, 0] = np.nan  # NaN propagates to its row
    return x


def _as(x: np.ndarray, kind: str) -> np.ndarray:
    return x.astype(np.float16) if kind == "f16" else float32_to_bfloat16(x)


def _wide(x: np.ndarray) -> np.ndarray:
    return bfloat16_to_float32(x) if is_bfloat16(x.dtype) else x.astype(np.float32)


def _rounded(ref32: np.ndarray, kind: str) -> np.ndarray:
    """The float32 kernel's result rounded once to 16 bits, as float32 values."""
    return _wide(_as(np.asarray(ref32, np.float32), kind))


def _same(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to the order of a vectorised sum (the 16-bit loops vectorise with other widths
    than the float32 ones): 3 float32 ulps, or 8 of the largest result (a gradient's
    y_k - A p_k cancels); NaN where NaN, infinities equal."""
    b = np.asarray(b)
    scale = np.abs(b[np.isfinite(b)]).max(initial=0.0)
    np.testing.assert_allclose(np.asarray(a), b, rtol=3 * 2.0 ** -23,
                               atol=8 * 2.0 ** -23 * scale)


#: One unit in the last place of each 16-bit dtype (relative), its smallest subnormal.
ULP = {"f16": (2.0 ** -10, 2.0 ** -24), "bf16": (2.0 ** -7, 2.0 ** -133)}


def _close16(a: np.ndarray, b: np.ndarray, kind: str) -> None:
    """a (16-bit results, as float32) is b rounded to 16 bits, up to one 16-bit ulp where b
    sits by a rounding boundary (b's own sums in another order)."""
    rtol, atol = ULP[kind]
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


KINDS = ["f16", "bf16"]
CE_OPTIONS = [{}, {"label_smoothing": 0.1}, {"weight": np.linspace(0.5, 2, 300)},
              {"ignore_index": 3}, {"z_loss": 1e-3, "return_lse": True}, {"softcap": 5.0}]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 300, 2500])
def test_softmax_family_reads_16_bits_as_the_float32_kernel_computes(kind, n) -> None:
    """Every result equals the float32 kernel's on the widened logits, rounded to 16 bits
    once where it is 16-bit (bfloat16 results; float16 only with a float16 out=)."""
    x16 = _as(_logits((3, 4, n)), kind)
    x32 = _wide(x16)
    for fn in (softce.softmax, softce.log_softmax):
        for axis in (-1, 1):
            ref = fn(x32, axis=axis)
            got = fn(x16, axis=axis)
            if kind == "f16":
                assert got.dtype == np.float32
                _same(got, ref)
                out = np.empty(x16.shape, np.float16)
                assert fn(x16, axis=axis, out=out) is out
                _close16(out.astype(np.float32), _rounded(ref, kind), kind)
            else:
                assert is_bfloat16(got.dtype)
                _close16(_wide(got), _rounded(ref, kind), kind)
    lse = softce.logsumexp(x16, axis=(0, 2))
    assert lse.dtype == np.float32
    _same(lse, softce.logsumexp(x32, axis=(0, 2)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2500])
def test_softmax_family_backward_reads_16_bits(kind, n) -> None:
    """softmax_vjp, log_softmax_vjp (y and g both 16-bit) and logsumexp_vjp (16-bit x) equal
    the float32 kernels' on the widened inputs, rounded to 16 bits once where the result is
    16-bit; y and g of different types are both computed in float32, as before; in place."""
    x32 = _wide(_as(_logits((3, 4, n)), kind))
    g16 = _as((RNG.standard_normal((3, 4, n)) * 3).astype(np.float32), kind)
    g32 = _wide(g16)
    for vjp, fn in ((softce.softmax_vjp, softce.softmax),
                    (softce.log_softmax_vjp, softce.log_softmax)):
        y16 = _as(fn(x32, axis=1), kind)
        y32 = _wide(y16)
        ref = vjp(y32, g32, axis=1)
        got = vjp(y16, g16, axis=1)
        if kind == "f16":
            assert got.dtype == np.float32
            _same(got, ref)
        else:
            assert is_bfloat16(got.dtype)
            _close16(_wide(got), _rounded(ref, kind), kind)
        mixed = vjp(y16, g32, axis=1)  # g not 16-bit: both computed in float32
        assert mixed.dtype == np.float32
        _same(mixed, ref)
        inplace = y16.copy()
        assert vjp(inplace, g16, axis=1, out=inplace) is inplace
        _close16(_wide(inplace), _rounded(ref, kind), kind)
    x16 = _as(x32, kind)
    go = RNG.standard_normal((3, n)).astype(np.float32)
    ref = softce.logsumexp_vjp(x32, go, axis=1)
    got = softce.logsumexp_vjp(x16, go, axis=1)
    if kind == "f16":
        assert got.dtype == np.float32
        _same(got, ref)
    else:
        assert is_bfloat16(got.dtype)
        _close16(_wide(got), _rounded(ref, kind), kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("options", CE_OPTIONS, ids=lambda o: ",".join(o) or "plain")
@pytest.mark.parametrize("target", ["labels", "probs"])
def test_cross_entropy_reads_16_bits_as_the_float32_kernel_computes(kind, options, target):
    if target == "probs":
        options = {k: v for k, v in options.items() if k != "ignore_index"}
    x16 = _as(_logits((5, 300, 2)), kind)
    x32 = _wide(x16)
    if target == "labels":
        t16 = t32 = RNG.integers(0, 300, (5, 2))
    else:
        t16 = _as(softce.softmax(_logits((5, 300, 2), 1.0), axis=1), kind)
        t32 = _wide(t16)
    kw = {"axis": 1, "reduction": "none", **options}
    ref = softce.cross_entropy_grad(x32, t32, **kw)
    got = softce.cross_entropy_grad(x16, t16, **kw)
    for g, r in zip(got[::2], ref[::2]):  # losses (and lse): float32, the same numbers
        assert g.dtype == np.float32
        _same(g, r)
    if kind == "f16":
        assert got[1].dtype == np.float32
        _same(got[1], ref[1])
    else:
        assert is_bfloat16(got[1].dtype)
        _close16(_wide(got[1]), _rounded(ref[1], kind), kind)
    _same(softce.cross_entropy(x16, t16, **kw)[0] if options.get("return_lse")
          else softce.cross_entropy(x16, t16, **kw), ref[0])
    # the gradient written over the 16-bit logits themselves
    inplace = x16.copy()
    loss, grad, *_ = softce.cross_entropy_grad(inplace, t16, **kw, out=inplace)
    assert grad is inplace
    _close16(_wide(inplace), _rounded(ref[1], kind), kind)


def test_bfloat16_arrays_are_marked_bit_patterns() -> None:
    bits = float32_to_bfloat16(np.array([1.0, 2.0], np.float32))
    assert is_bfloat16(bits.dtype) and not is_bfloat16(bits.view(np.uint16).dtype)
    with pytest.raises(TypeError, match="x"):  # plain uint16 is an integer array
        softce.softmax(bits.view(np.uint16))
    with pytest.raises(TypeError, match="out"):
        softce.softmax(bits, out=np.empty(2, np.float32))  # bfloat16 results are bfloat16
    assert is_bfloat16(softce.softmax(bits.reshape(1, 2)[:, ::-1]).dtype)  # a copied layout
    assert BFLOAT16 == np.uint16  # NumPy's == ignores the marking: softce checks it


@pytest.mark.parametrize("kind", KINDS)
def test_no_float32_copy_of_16_bit_logits(kind) -> None:
    """NumPy's allocations, traced: the calls allocate their float32 per-row results and
    small buffers, never a float32 array of the logits' size (16 MiB here)."""
    x16 = _as(_logits((1024, 4096)), kind)
    labels = RNG.integers(0, 4096, 1024)
    out = np.empty_like(x16)
    calls = [lambda: softce.cross_entropy(x16, labels),
             lambda: softce.cross_entropy_grad(x16, labels, label_smoothing=0.1, out=out),
             lambda: softce.softmax(x16, out=out), lambda: softce.logsumexp(x16)]
    for call in calls:
        call()  # kernels compiled or loaded
        tracemalloc.start()
        call()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < x16.nbytes / 8, peak



@pytest.mark.parametrize("kind", KINDS)
def test_a_soft_cap_reads_16_bit_logits_as_they_are(kind, monkeypatch) -> None:
    """Under a soft-cap the 16-bit logits go to the soft-cap's 16-bit variant, which writes
    the float32 capped copy (float32 logits need it too; it comes from softce.buffers, not
    traced), and the chain rule's 16-bit variant writes the gradient: no other copy."""
    from softce.cpu import BACKEND

    x16 = _as(_logits((1024, 4096)), kind)
    labels = RNG.integers(0, 4096, 1024)
    out = np.empty_like(x16)
    launched = []
    launch = BACKEND.launch
    monkeypatch.setattr(BACKEND, "launch", lambda name, dtype, **args: launched.append(
        (name, storage(dtype))) or launch(name, dtype, **args))
    for call in (lambda: softce.cross_entropy(x16, labels, softcap=3.0),
                 lambda: softce.cross_entropy_grad(x16, labels, softcap=3.0, out=out)):
        call()
        launched.clear()
        tracemalloc.start()
        call()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < x16.nbytes / 8, peak
        assert ("softcap", kind) in launched, launched
        assert all(half is None for name, half in launched if name.startswith("cross")), launched
    assert ("softcap_grad", kind) in launched, launched


def test_a_kernel_refuses_the_other_16_bit_dtype() -> None:
    from softce.cpu import KERNELS

    x = np.zeros((2, 3), np.float16)
    with pytest.raises(TypeError, match="kernel softmax: x"):
        KERNELS.call("softmax", np.dtype(np.float16),
                     {"x": float32_to_bfloat16(np.zeros((2, 3), np.float32)),
                      "out": np.empty((2, 3), np.float32)})
    with pytest.raises(TypeError, match="kernel softmax: out"):
        KERNELS.call("softmax", BFLOAT16, {"x": float32_to_bfloat16(x.astype(np.float32)),
                                           "out": np.empty((2, 3), np.float32)})
    kernel, args = KERNELS.call("softmax", np.dtype(np.float16),
                                {"x": x, "out": np.empty((2, 3), np.float16)})
    assert kernel.__name__ == "softmax_f16" and all(a.dtype == np.uint16 for a in args)
    # an elementwise kernel's 16-bit arrays are those its module names (HALF_ARRAYS)
    t, dy = np.zeros(6, np.float16), np.zeros(6, np.float32)
    with pytest.raises(TypeError, match="kernel softcap_grad: dy_in"):
        KERNELS.call("softcap_grad", np.dtype(np.float16),
                     {"t_in": t, "dy_in": t, "cap": 2.0, "out": t})
    with pytest.raises(TypeError, match="kernel softcap: out"):
        KERNELS.call("softcap", np.dtype(np.float16), {"t_in": t, "cap": 2.0, "out": t})
    kernel, args = KERNELS.call("softcap_grad", np.dtype(np.float16),
                                {"t_in": t, "dy_in": dy, "cap": 2.0, "out": t})
    assert kernel.__name__ == "softcap_grad_f16"
    assert [a.dtype for a in args] == [np.uint16, np.float32, np.float32, np.uint16]


@pytest.mark.parametrize("kind", KINDS)
def test_large_16_bit_outputs_stream_and_keep_their_dtype(kind) -> None:
    """16 MiB of 16-bit output: from softce's output buffers (4 MiB or more: the bfloat16
    marking kept) and written around the caches (``softce.stream``, 16 MiB or more)."""
    x16 = _as(_logits((1024, 8192)), kind)
    x32 = _wide(x16)
    out = np.empty_like(x16) if kind == "f16" else None
    for fn in (softce.log_softmax, softce.softmax):
        got = fn(x16) if out is None else fn(x16, out=out)
        assert got.nbytes >= 16 << 20 and got.dtype == x16.dtype
        assert storage(got.dtype) == kind
        _close16(_wide(got), _rounded(fn(x32), kind), kind)
