"""softce.primitives: accuracy as the kernels call them, special values, vectorisation, caching."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import mpmath
import numba as nb
import numpy as np
import pytest
from numba.core.errors import TypingError

from softce.jit import FASTMATH
from softce.primitives import exp_f32, exp_f64, exp_nonpos_f32, exp_nonpos_f64, fmax, fmin

ROOT = Path(__file__).resolve().parents[1]
KERNEL = {"fastmath": set(FASTMATH), "error_model": "numpy"}


# --- kernels in the generated kernels' context (fastmath incl. reassoc) --------------------------


@nb.njit(**KERNEL)
def _exp32_loop(x, out):
    for k in range(x.shape[0]):
        out[k] = exp_f32(x[k])


@nb.njit(**KERNEL)
def _exp64_loop(x, out):
    for k in range(x.shape[0]):
        out[k] = exp_f64(x[k])


@nb.njit(**KERNEL)
def _shifted_exp32(x, m, out):
    for k in range(x.shape[0]):
        out[k] = exp_f32(x[k] - m)


@nb.njit(**KERNEL)
def _shifted_exp64(x, m, out):
    for k in range(x.shape[0]):
        out[k] = exp_f64(x[k] - m)


@nb.njit(**KERNEL)
def _nonpos_exp32(x, out):
    for k in range(x.shape[0]):
        out[k] = exp_nonpos_f32(x[k])


@nb.njit(**KERNEL)
def _nonpos_exp64(x, out):
    for k in range(x.shape[0]):
        out[k] = exp_nonpos_f64(x[k])


@nb.njit(**KERNEL)
def _max_reduce(x):
    m = x[0]
    for k in range(x.shape[0]):
        m = fmax(m, x[k])
    return m


@nb.njit(**KERNEL)
def _min_reduce(x):
    m = x[0]
    for k in range(x.shape[0]):
        m = fmin(m, x[k])
    return m


@nb.njit(**KERNEL)
def _fmax_jit(a, b):
    return fmax(a, b)


@nb.njit(**KERNEL)
def _fmin_jit(a, b):
    return fmin(a, b)


# Without nsz: llvm.maximum/minimum order -0 < +0 only when the caller lets signed zeros matter.
@nb.njit(fastmath={"contract"}, error_model="numpy")
def _fmax_strict(a, b):
    return fmax(a, b)


@nb.njit(fastmath={"contract"}, error_model="numpy")
def _fmin_strict(a, b):
    return fmin(a, b)


COMPILED = {fmax: _fmax_jit, fmin: _fmin_jit}
STRICT = {fmax: _fmax_strict, fmin: _fmin_strict}


@nb.njit(parallel=True, error_model="numpy")
def _ulp_error_f32(x, y):
    """|y - e^x| in float32 ulps of e^x, with np.exp in float64 as the reference."""
    err = np.empty(x.shape[0])
    for k in nb.prange(x.shape[0]):
        ref = math.exp(np.float64(x[k]))
        got = np.float64(y[k])
        if np.isinf(got) or np.isinf(np.float32(ref)):
            err[k] = 0.0 if got == np.float64(np.float32(ref)) else np.inf
        else:
            e = math.frexp(ref)[1] - 1 if ref > 0.0 else -126
            err[k] = abs(got - ref) / math.ldexp(1.0, max(e, -126) - 23)
    return err


_F64_OVERFLOW = mpmath.mpf(2) ** 1024 * (1 - mpmath.mpf(2) ** -54)  # rounds to inf above


def _ulp_error_f64(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|y - e^x| in float64 ulps of e^x, with mpmath at 50 digits as the reference."""
    err = np.empty(x.shape[0])
    with mpmath.workdps(50):
        for k, (xv, yv) in enumerate(zip(x.tolist(), y.tolist())):
            ref = mpmath.exp(xv)
            if math.isinf(yv) or ref > _F64_OVERFLOW:
                err[k] = 0.0 if math.isinf(yv) and ref > _F64_OVERFLOW else math.inf
                continue
            e = max(int(mpmath.floor(mpmath.log(ref, 2))), -1022) if ref > 0 else -1022
            err[k] = float(abs(mpmath.mpf(yv) - ref) / mpmath.ldexp(1, e - 52))
    return err


def _f32_grid(step: int) -> np.ndarray:
    """Every ``step``-th float32 bit pattern in [-104, 89] (both signs), plus the range's ends."""
    pos = np.arange(0, np.float32(89).view(np.int32) + 1, step, dtype=np.int32).view(np.float32)
    neg = np.arange(0, np.float32(104).view(np.int32) + 1, step, dtype=np.int32).view(np.float32)
    return np.concatenate([pos, -neg, np.float32([89, -104])])


def test_exp_f32_error_dense_sample() -> None:
    x = _f32_grid(97)
    y = np.empty_like(x)
    _exp32_loop(x, y)
    assert _ulp_error_f32(x, y).max() <= 2.0


def test_exp_f32_error_in_shifted_kernel_loop() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-80, 80, 200_000).astype(np.float32)
    m = np.float32(3.25)
    y = np.empty_like(x)
    _shifted_exp32(x, m, y)
    assert _ulp_error_f32(x - m, y).max() <= 2.0


def test_exp_f32_subnormal_results_within_one_ulp() -> None:
    # Every 7th float32 in [-103.98, -87.34], built from bit patterns (no full-range grid).
    lo, hi = np.float32(87.34).view(np.int32), np.float32(103.98).view(np.int32)
    x = -np.arange(lo + 1, hi, 7, dtype=np.int32).view(np.float32)
    y = np.empty_like(x)
    _exp32_loop(x, y)
    assert (y < np.finfo(np.float32).tiny).sum() > 1000
    assert _ulp_error_f32(x, y).max() <= 1.0


def test_exp_f64_error_sample() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.uniform(-745.2, 709.8, 2000),
            rng.uniform(-1.0, 1.0, 1000),
            rng.uniform(-745.2, -708.0, 500),  # subnormal results
            np.array([709.78, 709.782712893384, -745.13, -708.4, 1e-300, -1e-20, 0.5, -0.3466]),
        ]
    )
    y = np.empty_like(x)
    _exp64_loop(x, y)
    assert _ulp_error_f64(x, y).max() <= 2.0
    m = np.float64(-1.75)
    _shifted_exp64(x[:500], m, y[:500])
    assert _ulp_error_f64(x[:500] - m, y[:500]).max() <= 2.0


SPECIAL = [
    (0.0, 1.0),
    (-0.0, 1.0),
    (np.inf, np.inf),
    (-np.inf, 0.0),
    (1e4, np.inf),
    (-1e4, 0.0),
    (np.finfo(np.float32).max, np.inf),
    (-np.finfo(np.float32).max, 0.0),
]


@pytest.mark.parametrize("fn", [exp_f32, exp_f64], ids=["f32", "f64"])
def test_exp_special_values(fn) -> None:
    dtype = np.float32 if fn is exp_f32 else np.float64
    x = np.array([v for v, _ in SPECIAL] + [np.nan, 1.0], dtype=dtype)
    y = np.empty_like(x)
    (_exp32_loop if fn is exp_f32 else _exp64_loop)(x, y)
    want = np.array([w for _, w in SPECIAL], dtype=dtype)
    np.testing.assert_array_equal(y[:-2], want)
    assert np.isnan(y[-2])
    assert abs(y[-1] - dtype(math.e)) <= np.spacing(dtype(math.e))
    for v, w in SPECIAL:
        assert fn(dtype(v)) == w and fn.py_func(dtype(v)) == w
    assert np.isnan(fn(dtype(np.nan))) and np.isnan(fn.py_func(dtype(np.nan)))


def test_exp_nonpos_f32_is_exp_f32_bit_for_bit() -> None:
    # Every 37th float32 in [-104, 0], the clamped range below it and the special values.
    top = np.float32(104).view(np.int32)
    x = -np.arange(0, top + 1, 37, dtype=np.int32).view(np.float32)
    below = -np.arange(top, np.float32(np.finfo(np.float32).max).view(np.int32), 999_983,
                       dtype=np.int32).view(np.float32)
    special = np.float32([0.0, -0.0, -np.inf, np.nan, -1e-45, -103.972, -103.973, -87.34])
    x = np.concatenate([x, below, special])
    want, got = np.empty_like(x), np.empty_like(x)
    _exp32_loop(x, want)
    _nonpos_exp32(x, got)
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    assert (got[x.size - 8:-5] == [1, 1, 0]).all() and np.isnan(got[-5])


def test_exp_nonpos_f64_is_exp_f64_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([-rng.uniform(0, 746, 2_000_000), -rng.uniform(700, 760, 500_000),
                        -rng.uniform(0, 1e-3, 100_000),
                        [0.0, -0.0, -np.inf, np.nan, -5e-324, -745.13, -745.14, -1e308]])
    want, got = np.empty_like(x), np.empty_like(x)
    _exp64_loop(x, want)
    _nonpos_exp64(x, got)
    np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))


def test_exp_nonpos_pure_python_matches_compiled() -> None:
    for fn, dtype in ((exp_nonpos_f32, np.float32), (exp_nonpos_f64, np.float64)):
        for v in (0.0, -0.5, -20.25, -87.5, -103.0, -200.0, -np.inf):
            assert fn.py_func(dtype(v)) == fn(dtype(v)), (fn, v)
        assert np.isnan(fn.py_func(dtype(np.nan)))


# (significand bits, 2**emax overflows, 2**emin the smallest subnormal) of each dtype.
_FORMAT = {np.float32: (24, 128, -149), np.float64: (53, 1024, -1074)}
EXP = {np.float32: exp_f32, np.float64: exp_f64}
LOOP = {np.float32: _exp32_loop, np.float64: _exp64_loop}


def _round(v: mpmath.mpf, dtype) -> float:
    """The ``dtype`` value nearest to ``v >= 0`` (ties to even; inf past the overflow threshold)."""
    bits, emax, emin = _FORMAT[dtype]
    if v >= mpmath.ldexp(2 - mpmath.mpf(2) ** -bits, emax - 1):
        return math.inf
    if v == 0:
        return 0.0
    e = max(mpmath.frexp(v)[1] - bits, emin)  # the exponent of one ulp at v
    q = mpmath.ldexp(v, -e)
    n = int(mpmath.floor(q))
    if q - n > 0.5 or (q - n == 0.5 and n % 2):
        n += 1
    return float(mpmath.ldexp(n, e))  # exact: n * 2**e is representable in dtype


def _exp_ulps(got: float, x, dtype) -> float:
    """|got - e^x| in ulps of e^x in ``dtype`` (ulp = the subnormal spacing below the normals)."""
    bits, _, emin = _FORMAT[dtype]
    with mpmath.workdps(50):
        ref = mpmath.exp(mpmath.mpf(float(x)))
        ulp = mpmath.ldexp(1, max(mpmath.frexp(ref)[1] - bits, emin))
        return float(abs(mpmath.mpf(float(got)) - ref) / ulp)


def _step(t, dtype, up: bool):
    return np.nextafter(dtype(t), dtype(np.inf if up else -np.inf))


def _last_finite_exp(dtype):
    """The largest ``dtype`` t whose e^t rounds to a finite ``dtype``: the one just below log of
    the overflow threshold 2**emax (1 - 2**-(bits + 1))."""
    bits, emax, _ = _FORMAT[dtype]
    with mpmath.workdps(50):
        bound = mpmath.log(mpmath.ldexp(1 - mpmath.mpf(2) ** -(bits + 1), emax))
        t = dtype(float(bound))
        while mpmath.mpf(float(t)) >= bound:
            t = _step(t, dtype, up=False)
        while mpmath.mpf(float(_step(t, dtype, up=True))) < bound:
            t = _step(t, dtype, up=True)
    return t


def _first_nonzero_exp(dtype):
    """The smallest ``dtype`` t whose e^t rounds to a non-zero ``dtype``: the one just above
    log(2**(emin - 1)), half the smallest subnormal (which itself rounds to 0, ties to even)."""
    _, _, emin = _FORMAT[dtype]
    with mpmath.workdps(50):
        bound = mpmath.log(mpmath.ldexp(1, emin - 1))
        t = dtype(float(bound))
        while mpmath.mpf(float(t)) <= bound:
            t = _step(t, dtype, up=True)
        while mpmath.mpf(float(_step(t, dtype, up=False))) > bound:
            t = _step(t, dtype, up=False)
    return t


def _calls(dtype):
    """exp as the kernels call it (in a KERNEL-flag loop), as a scalar jit call and in Python."""
    fn, loop = EXP[dtype], LOOP[dtype]

    def in_loop(v):
        out = np.empty(1, dtype)
        loop(np.array([v], dtype), out)
        return out[0]

    return {"loop": in_loop, "jit": fn, "python": fn.py_func}


def _exact_exp(x, dtype) -> float:
    with mpmath.workdps(50):
        return _round(mpmath.exp(mpmath.mpf(float(x))), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_overflow_threshold(dtype) -> None:
    t = _last_finite_exp(dtype)
    above = _step(t, dtype, up=True)
    want = _exact_exp(t, dtype)
    # The derivation itself: t is the last finite one, and e^t is a little below the max.
    assert math.isfinite(want) and _exact_exp(above, dtype) == math.inf
    assert want < np.finfo(dtype).max
    if dtype is np.float64:  # the value an earlier version of this test expected to give max
        assert t == np.float64(709.782712893384) and want == 1.7976931348622732e308
    for name, call in _calls(dtype).items():
        got = call(t)
        assert math.isfinite(got), name
        assert _exp_ulps(got, t, dtype) <= 1.0, (name, got, want)  # the docstrings' budget
        assert call(above) == math.inf, name
        assert call(_step(above, dtype, up=True)) == math.inf, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_underflow_threshold(dtype) -> None:
    _, _, emin = _FORMAT[dtype]
    smallest = math.ldexp(1.0, emin)
    u = _first_nonzero_exp(dtype)
    below = _step(u, dtype, up=False)
    assert _exact_exp(u, dtype) == smallest and _exact_exp(below, dtype) == 0.0
    for name, call in _calls(dtype).items():
        assert call(u) == smallest, name
        assert call(below) == 0.0 and call(_step(below, dtype, up=False)) == 0.0, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_subnormal_results(dtype) -> None:
    bits, _, emin = _FORMAT[dtype]
    tiny = np.finfo(dtype).tiny
    # From just above the underflow threshold up to log(tiny): every result is subnormal.
    with mpmath.workdps(50):
        lo = float(mpmath.log(mpmath.ldexp(1, emin - 1)))
        hi = float(mpmath.log(mpmath.ldexp(1, emin + bits - 1)))
    x = np.linspace(lo, hi, 41)[1:-1].astype(dtype)
    for name, call in _calls(dtype).items():
        for v in x:
            got = float(call(v))
            assert 0.0 < got < tiny, (name, v, got)
            assert _exp_ulps(got, v, dtype) <= 1.0, (name, v, got)
    # Points on each side of the threshold, far enough from a rounding tie to be exact.
    for v in {np.float32: (-103.972, -103.973), np.float64: (-745.13, -745.14)}[dtype]:
        want = _exact_exp(dtype(v), dtype)
        assert EXP[dtype](dtype(v)) == want and EXP[dtype].py_func(dtype(v)) == want, v


def test_exp_pure_python_matches_compiled() -> None:
    rng = np.random.default_rng(2)
    for fn, dtype, lo, hi in ((exp_f32, np.float32, -104, 89), (exp_f64, np.float64, -746, 710)):
        for v in rng.uniform(lo, hi, 200).astype(dtype):
            jit, py = dtype(fn(v)), fn.py_func(v)
            assert type(py) is dtype
            assert jit == py or abs(jit - py) <= np.spacing(max(abs(jit), abs(py)))


def test_exp_returns_its_dtype() -> None:
    for fn, ty in ((exp_f32, nb.float32), (exp_f64, nb.float64)):
        for arg in (nb.float32, nb.float64, nb.int64):
            assert fn.get_compile_result(nb.core.typing.Signature(ty, (arg,), None)) is not None
            fn.compile((arg,))
            assert fn.overloads[(arg,)].signature.return_type == ty


# --- fmax / fmin -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("compiled", [True, False], ids=["jit", "python"])
def test_fmax_fmin_values(dtype, compiled: bool) -> None:
    def call(f, a, b):
        return (COMPILED[f] if compiled else f)(dtype(a), dtype(b))

    nan = float("nan")
    for f in (fmax, fmin):
        assert math.isnan(call(f, nan, 1.0)) and math.isnan(call(f, 1.0, nan))
        assert math.isnan(call(f, nan, -np.inf)) and math.isnan(call(f, np.inf, nan))
    assert call(fmax, 1.0, 2.0) == 2.0 and call(fmax, 2.0, -np.inf) == 2.0
    assert call(fmin, 1.0, 2.0) == 1.0 and call(fmin, -np.inf, 2.0) == -np.inf
    # Under the kernels' nsz flag LLVM may ignore the sign of a zero: only the value is pinned.
    for f in (fmax, fmin):
        assert call(f, 0.0, -0.0) == 0.0 and call(f, -0.0, 0.0) == 0.0
    # The sign is pinned in Python and when the caller has no nsz (llvm.maximum's own rule).
    signed = STRICT if compiled else {fmax: fmax, fmin: fmin}
    for a, b in ((0.0, -0.0), (-0.0, 0.0)):
        assert math.copysign(1.0, signed[fmax](dtype(a), dtype(b))) == 1.0
        assert math.copysign(1.0, signed[fmin](dtype(a), dtype(b))) == -1.0
    if compiled:  # a float32 result is boxed as a Python float: check the compiled signature
        ty = nb.from_dtype(np.dtype(dtype))
        for f in (fmax, fmin):
            assert COMPILED[f].overloads[(ty, ty)].signature.return_type == ty


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_reduction_propagates_nan(dtype) -> None:
    x = np.random.default_rng(3).standard_normal(1001).astype(dtype)
    assert _max_reduce(x) == x.max() and _min_reduce(x) == x.min()
    x[517] = np.nan
    assert np.isnan(_max_reduce(x)) and np.isnan(_min_reduce(x))
    x[517] = -np.inf
    assert _max_reduce(x) == x.max() and _min_reduce(x) == -np.inf


def test_fmax_rejects_mixed_types() -> None:
    with pytest.raises(TypingError):
        _fmax_jit(np.float32(1.0), 2.0)


# --- vectorisation --------------------------------------------------------------------------


def test_loops_vectorise() -> None:
    for loop, args, elem, width in (
        (_shifted_exp32, (np.ones(64, np.float32), np.float32(0), np.ones(64, np.float32)),
         "float", 8),
        (_shifted_exp64, (np.ones(64), 0.0, np.ones(64)), "double", 4),
        (_nonpos_exp32, (np.ones(64, np.float32), np.ones(64, np.float32)), "float", 8),
        (_nonpos_exp64, (np.ones(64), np.ones(64)), "double", 4),
        (_max_reduce, (np.ones(64, np.float32),), "float", 8),
        (_max_reduce, (np.ones(64),), "double", 4),
    ):
        loop(*args)
        sig = tuple(nb.typeof(a) for a in args)  # not signatures[-1]: other tests add some
        text = loop.inspect_llvm(sig)
        widths = {int(w) for w in re.findall(rf"<(\d+) x {elem}>", text)}
        assert widths and max(widths) >= width, (loop, sig)
        assert "@exp" not in text and "@expf" not in text and "llvm.exp." not in text


# --- caching and NUMBA_DISABLE_JIT ------------------------------------------------------------

_CACHED_MODULE = """
import numba as nb
import numpy as np
from softce.primitives import exp_f32, exp_f64, fmax

OPTIONS = dict(parallel=True, cache=True, error_model="numpy",
               fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})
""" + "".join(
    f"""

@nb.njit(**OPTIONS)
def rowsum{bits}(x):
    out = np.empty(x.shape[0], x.dtype)
    for r in nb.prange(x.shape[0]):
        m = x[r, 0]
        for k in range(x.shape[1]):
            m = fmax(m, x[r, k])
        s = np.float{bits}(0)
        for k in range(x.shape[1]):
            s += exp_f{bits}(x[r, k] - m)
        out[r] = m + np.log(s)
    return out
"""
    for bits in (32, 64)
)

_CACHED_RUN = """
import sys, numpy as np, cachedmod
x = np.random.default_rng(0).standard_normal((8, 100))
fns = {np.float32: cachedmod.rowsum32, np.float64: cachedmod.rowsum64}
for dt, fn in fns.items():
    got = fn(x.astype(dt))
    assert got.dtype == dt
    ref = np.log(np.exp(x).sum(axis=1))
    assert np.allclose(got, ref, rtol=1e-5), (got, ref)
print(sum(sum(fn.stats.cache_hits.values()) for fn in fns.values()))
"""


def _python(code: str, cwd: Path, **env: str) -> str:
    full = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{ROOT}", **env}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], cwd=cwd, env=full, capture_output=True,
        text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cache_true_kernel_caches_and_reloads(tmp_path: Path) -> None:
    (tmp_path / "cachedmod.py").write_text(_CACHED_MODULE)
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    assert _python(_CACHED_RUN, tmp_path, **env).strip() == "0"
    assert _python(_CACHED_RUN, tmp_path, **env).strip() == "2"


def test_disable_jit_pure_python(tmp_path: Path) -> None:
    # Expected values: e^v rounded to each dtype (mpmath), with one ulp there as the budget.
    cases = []
    for v in (0.0, 1.0, -20.5, 88.0, -100.0, 100.0, -800.0, np.inf, -np.inf):
        row = [v]
        for dtype in (np.float32, np.float64):
            want = _exact_exp(v, dtype) if math.isfinite(v) else math.exp(v)
            ulp = float(np.spacing(dtype(want))) if math.isfinite(want) else 0.0
            row += [want, ulp]
        cases.append(tuple(row))
    code = textwrap.dedent(
        f"""
        import math, numpy as np
        from softce.primitives import exp_f32, exp_f64, fmax, fmin
        inf = math.inf
        for v, w32, u32, w64, u64 in {cases!r}:
            a, b = exp_f32(np.float32(v)), exp_f64(np.float64(v))
            assert type(a) is np.float32 and type(b) is np.float64
            assert a == w32 or abs(float(a) - w32) <= u32, (v, a, w32)
            assert b == w64 or abs(float(b) - w64) <= u64, (v, b, w64)
        assert math.isnan(exp_f32(np.float32("nan"))) and math.isnan(exp_f64(float("nan")))
        assert math.isnan(fmax(np.float32(1), np.float32("nan"))) and fmin(1.0, 2.0) == 1.0
        """
    )
    _python(code, tmp_path, NUMBA_DISABLE_JIT="1")
