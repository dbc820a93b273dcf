"""Small cases against mpmath at 50 significant digits: every kernel, float64 and float32.

The exact values are computed from the definitions (no max shift, no closed-form shortcut),
so they check the kernels and the references in tests/reference.py alike.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import softce

mp = mpmath.mp
F32, F64 = np.float32, np.float64
# float64: a few ulp relative, plus an absolute floor of a few ulp of the row's largest |x|
# (x_j - LSE cancels); float32 the same in its own epsilon
ULPS = {F64: 8 * np.finfo(F64).eps, F32: 8 * np.finfo(F32).eps}

ROWS = [
    [0.0],
    [-3.25, 0.5, 11.0, 10.999],
    [1e-3, -1e-3, 0.0, 20.0],
    [1.0, 2.0, 3.0],
    [-0.5, -0.5, -0.5, -0.5, -0.5],
    [30.0, -30.0, 0.1, 2.5, -7.75, 4.0, 4.0, -1e-8],
    [-700.0, -701.0, -699.5],
    [700.0, 699.0, 650.0],  # exp would overflow without the shift
    [-np.inf, 0.25, -np.inf, 3.0],  # masked
    [5.0, -np.inf],
]


def _random_rows(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(1, 9))
        yield list(rng.standard_normal(n) * float(rng.choice([0.1, 1.0, 5.0, 40.0])))


ALL_ROWS = ROWS + list(_random_rows(2024, 12))


@pytest.fixture(autouse=True)
def _fifty_digits():
    with mpmath.workdps(50):
        yield


def exact_lse(row):
    return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in row))


def exact_softmax(row):
    den = mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in row)
    return [mpmath.exp(mpmath.mpf(v)) / den for v in row]


def check(got, exact, dtype, floor=1.0, what="", cond=None):
    """|got - exact| <= ulps * (|exact| * (1 + cond) + floor) + tiny, elementwise.

    ``cond`` is the condition number of each element (exp(z) loses |z| ulps of z's rounding:
    softmax entries far below the maximum); ``tiny`` (the smallest normal of the dtype) admits
    results that underflow. exact may hold mpf or +-inf.
    """
    got = np.atleast_1d(np.asarray(got, F64))
    exact = list(exact) if isinstance(exact, (list, tuple)) else [exact]
    cond = [0.0] * len(exact) if cond is None else list(cond)
    assert got.shape[0] == len(exact), what
    for q, (a, e) in enumerate(zip(got, exact)):
        if mpmath.isinf(e):
            assert a == float(e), f"{what}[{q}]: {a} != {e}"
            continue
        err = abs(mpmath.mpf(float(a)) - e)
        bound = ULPS[dtype] * (abs(e) * (1 + cond[q]) + floor) + float(np.finfo(dtype).tiny)
        assert err <= bound, f"{what}[{q}]: got {a!r}, exact {mpmath.nstr(e, 20)}, err {err}"


def _row_floor(row) -> float:
    fin = [abs(v) for v in row if np.isfinite(v)]
    return max([1.0] + fin)


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("row", ALL_ROWS, ids=lambda r: f"n{len(r)}")
def test_softmax_family(row, dtype) -> None:
    if dtype == F32 and max(abs(v) for v in row if np.isfinite(v)) > 80:
        row = [v / 10 for v in row]  # stay inside float32's range of exp
    x = np.array(row, dtype)
    row = [float(v) for v in x]  # the exact values of the inputs as the kernel sees them
    floor = _row_floor(row)
    lse = exact_lse(row)
    s = exact_softmax(row)
    check(softce.logsumexp(x), lse, dtype, floor, "logsumexp")
    m = max(row)
    spread = [abs(v - m) if np.isfinite(v) else 0.0 for v in row]
    # relative even for tiny entries, to the conditioning of exp(x_j - max)
    check(softce.softmax(x), s, dtype, 0.0, "softmax", spread)
    check(softce.log_softmax(x), [mpmath.mpf(v) - lse for v in row], dtype, floor,
          "log_softmax")
    jac = softce.softmax_jacobian(x)
    for i in range(len(row)):
        want = [s[i] * ((1 if i == j else 0) - s[j]) for j in range(len(row))]
        check(jac[i], want, dtype, float(s[i]) * (1 + spread[i]), f"jacobian[{i}]", spread)
    g = np.linspace(-1, 2, len(row)).astype(dtype)
    gm = [mpmath.mpf(float(v)) for v in g]
    sg = mpmath.fsum(a * b for a, b in zip(s, gm))
    check(softce.softmax_vjp(softce.softmax(x), g), [si * (gi - sg) for si, gi in zip(s, gm)],
          dtype, 3.0, "softmax_vjp")
    check(softce.log_softmax_vjp(softce.log_softmax(x), g),
          [gi - si * mpmath.fsum(gm) for si, gi in zip(s, gm)], dtype, 3.0 * len(row),
          "log_softmax_vjp")
    check(softce.logsumexp_vjp(x, dtype(-2.5)), [-2.5 * si for si in s], dtype, 0.0,
          "logsumexp_vjp", spread)


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("row", [r for r in ALL_ROWS if all(np.isfinite(r))],
                         ids=lambda r: f"n{len(r)}")
def test_cross_entropy(row, dtype) -> None:
    if dtype == F32 and max(abs(v) for v in row) > 80:
        row = [v / 10 for v in row]
    x = np.array(row, dtype)
    row = [float(v) for v in x]
    n = len(row)
    floor = _row_floor(row)
    lse = exact_lse(row)
    s = exact_softmax(row)
    for c in {0, n - 1, n // 2}:
        loss, grad = softce.cross_entropy_grad(x[None], np.array([c]), reduction="sum")
        check(loss, lse - mpmath.mpf(row[c]), dtype, floor, f"loss c={c}")
        check(grad[0], [si - (1 if j == c else 0) for j, si in enumerate(s)], dtype, 1.0,
              f"grad c={c}")
        check(softce.cross_entropy(x[None], np.array([c])), lse - mpmath.mpf(row[c]), dtype,
              floor, "cross_entropy")
    # probabilities that do not sum to 1: L = LSE sum(y) - x.y, dL = sum(y) softmax - y
    y = (np.arange(1, n + 1) / (n + 1.5)).astype(dtype)
    ym = [mpmath.mpf(float(v)) for v in y]
    want = -mpmath.fsum(yi * (mpmath.mpf(xi) - lse) for xi, yi in zip(row, ym))
    loss, grad = softce.cross_entropy_grad(x[None], y[None], reduction="mean")
    check(loss, want, dtype, floor * float(mpmath.fsum(ym)) * n, "prob loss")
    check(grad[0], [mpmath.fsum(ym) * si - yi for si, yi in zip(s, ym)], dtype, n,
          "prob grad")


@pytest.mark.parametrize("dtype", [F64, F32])
def test_sigmoid(dtype) -> None:
    xs = [0.0, 1e-20, -1e-20, 0.5, -0.5, 3.0, -3.0, 17.5, -17.5, 36.0, -36.0, 80.0, -80.0]
    if dtype == F64:
        xs += [300.0, -300.0, 700.0, -700.0, -740.0]
    x = np.array(xs, dtype)
    got = softce.sigmoid(x)
    exact = [1 / (1 + mpmath.exp(-mpmath.mpf(float(v)))) for v in x]
    for q, (a, e) in enumerate(zip(got, exact)):
        if e < np.finfo(dtype).tiny:  # subnormal results: absolute, in the smallest normal
            assert abs(float(a) - float(e)) <= float(np.finfo(dtype).tiny), xs[q]
        else:
            check(a, e, dtype, 0.0, f"sigmoid({xs[q]})")


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("base", [None, 2, 10, 0.5, 3.7])
def test_entropy(base, dtype) -> None:
    rows = [[0.5, 0.25, 0.25], [0.0, 1.0], [1e-30, 1 - 1e-30], [0.1] * 10, [1.0],
            [0.7, 0.2, 0.05, 0.05, 0.0], [3.0, 0.5]]  # the last: not normalised, taken as given
    for row in rows:
        p = np.array(row, dtype)
        terms = [mpmath.mpf(0) if v == 0 else -mpmath.mpf(float(v)) * mpmath.log(float(v))
                 for v in p]
        want = mpmath.fsum(terms) / (1 if base is None else mpmath.log(base))
        check(softce.entropy(p, base=base), want, dtype, 1.0, f"H{row} base {base}")
    check(softce.entropy(np.array([0.5, 0.25, 0.25], dtype), base=2), mpmath.mpf(1.5), dtype, 0,
          "the note's 1.5 bits")
