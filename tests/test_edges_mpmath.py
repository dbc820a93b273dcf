"""Adversarial rows against mpmath at 50 digits, each element judged relative to its own size.

Error of an element: |got - exact| in units of the dtype's ulp at max(|exact|, tiny), tiny the
smallest normal number (results below it are judged against it). Budget: 4 ulp, float64 and
float32, except where a function's result is ill-conditioned in its inputs; those use the
documented bound ``ulp * (1 + cond)`` with the condition number written out per function
(see README, "Guarantees"). ``MEASURED`` holds the maxima this suite found (printed by
``python tests/test_edges_mpmath.py``), and every test asserts the budget, not the measure.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import softce

F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]
BUDGET_ULPS = 4.0
INF, NAN = np.inf, np.nan

# adversarial rows (name -> values); float32 casts them, so 1e30 stays finite in both dtypes
ROWS = {
    "huge+-1e30": [1e30, -1e30, 0.0, 1.0],
    "all-1e30": [1e30, 1e30, 1e30],
    "all-equal": [3.5] * 7,
    "all-equal-negative-huge": [-1e30] * 5,
    "one-huge-rest-tiny": [60.0] + [1e-30, -1e-30, 0.0, 1e-20],
    "one-dominant-by-15": [15.0, 0.0, -0.5, 0.25],
    "masked": [1.0, -INF, 2.0, -INF, -0.5],
    "mask-all-but-one": [-INF, -INF, 7.0, -INF],
    "length-1": [0.3],
    "length-1-huge": [-1e30],
    "subnormal-softmax": [0.0, -720.0, -90.0, -100.0],  # exp(-720) is subnormal in f64
    "wide-range": [30.0, -30.0, 0.1, 2.5, -7.75, 4.0, 4.0, -1e-8],
    "near-overflow": [700.0, 699.0, 650.0, 88.0],
    "tiny-values": [1e-40, -1e-40, 1e-45, 0.0],
}
PROBS = {
    "with-zeros": [0.5, 0.0, 0.25, 0.0, 0.25],
    "one-hot": [0.0, 0.0, 1.0],
    "subnormal": [1.0 - 1e-7, 1e-7, 1e-310, 1e-44],
    "uniform-7": [1 / 7] * 7,
    "length-1": [1.0],
    "tiny-all": [1e-30, 2e-30, 3e-30],
}


def _mp(v):
    return mpmath.mpf(float(v))


def _ulp_err(got, exact, dtype) -> float:
    """|got - exact| in ulps of max(|exact| rounded to dtype, tiny); exact an mpf or +-inf."""
    got = float(got)
    if mpmath.isinf(exact) or math.isinf(got) or math.isnan(got):
        return 0.0 if got == float(exact) else math.inf
    tiny = float(np.finfo(dtype).tiny)
    scale = max(abs(float(dtype(float(exact)))), tiny)
    ulp = float(np.spacing(dtype(scale)))
    return float(abs(_mp(got) - exact) / ulp)


# exact references (inputs are the dtype-rounded values, as the kernels see them) -----------

def ex_lse(row):
    if all(v == -INF for v in row):
        return mpmath.mpf("-inf")
    return mpmath.log(mpmath.fsum(mpmath.exp(_mp(v)) for v in row if v != -INF))


def ex_softmax(row):
    lse = ex_lse(row)
    return [mpmath.mpf(0) if v == -INF else mpmath.exp(_mp(v) - lse) for v in row]


def ex_log_softmax(row):
    lse = ex_lse(row)
    return [mpmath.mpf("-inf") if v == -INF else _mp(v) - lse for v in row]


def ex_entropy(p, base=None):
    h = -mpmath.fsum(_mp(v) * mpmath.log(_mp(v)) for v in p if v > 0)
    return h if base is None else h / mpmath.log(base)


def ex_sigmoid(v):
    return 1 / (1 + mpmath.exp(-_mp(v)))


MEASURED: dict[tuple[str, str], float] = {}


def _record(name: str, dtype, err: float) -> float:
    key = (name, np.dtype(dtype).name)
    MEASURED[key] = max(MEASURED.get(key, 0.0), err)
    return err


@pytest.fixture(autouse=True)
def _fifty_digits():
    with mpmath.workdps(50):
        yield


def _row(values, dtype):
    return np.array([values], dtype)


def _finite_rows(dtype):
    for name, vals in ROWS.items():
        row = _row(vals, dtype)
        yield name, row, [float(v) for v in row[0]]


def _assert_elements(name, got, exact, dtype, floor=None, cond=None, budget=BUDGET_ULPS):
    """Each element within ``budget`` ulp of exact, the ulp taken at max(|exact|, floor[q],
    tiny) and the budget scaled by (1 + cond[q]); floor/cond None: strict, own size only."""
    got = np.ravel(got)
    worst = 0.0
    for q, (g, e) in enumerate(zip(got, exact)):
        f = 0.0 if floor is None else floor[q]
        if mpmath.isinf(e) or f == 0.0 or abs(e) >= f:
            err = _ulp_err(g, e, dtype)
        else:
            err = float(abs(_mp(g) - e) / float(np.spacing(dtype(f))))
        if cond is not None:
            err = err / (1.0 + cond[q])
        worst = max(worst, err)
        assert err <= budget, (f"{name}[{q}] {np.dtype(dtype).name}: got {g!r}, exact "
                               f"{mpmath.nstr(e, 17)}, {err:.3g} ulp")
    _record(name.split("/")[0], dtype, worst)


def _shift(vals):
    """|x_i - m|: the exp of a rounded x_i - m carries |x_i - m| ulps of that rounding."""
    m = max(vals)
    return [0.0 if v == -INF or m == -INF else abs(v - m) for v in vals]


# documented floors: log-domain results and the label gradient are accurate to 4 ulp of
# max(|result|, 1): log(d) rounds d = 1 + (the other terms) to the dtype first
ONE = 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax(dtype) -> None:
    for name, row, vals in _finite_rows(dtype):
        _assert_elements(f"softmax/{name}", softce.softmax(row), ex_softmax(vals), dtype,
                         cond=_shift(vals))


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_and_logsumexp(dtype) -> None:
    for name, row, vals in _finite_rows(dtype):
        n = len(vals)
        _assert_elements(f"log_softmax/{name}", softce.log_softmax(row), ex_log_softmax(vals),
                         dtype, floor=[ONE] * n)
        _assert_elements(f"logsumexp/{name}", softce.logsumexp(row), [ex_lse(vals)], dtype,
                         floor=[ONE])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_labels_and_gradient(dtype) -> None:
    for name, row, vals in _finite_rows(dtype):
        for c, xc in enumerate(vals):
            if xc == -INF:
                continue
            exact = ex_lse(vals) - _mp(xc)
            loss = softce.cross_entropy(row, np.array([c]), reduction="none")
            _assert_elements(f"cross_entropy[label]/{name}", loss, [exact], dtype, floor=[ONE])
            loss2, grad = softce.cross_entropy_grad(row, np.array([c]), reduction="sum")
            _assert_elements(f"cross_entropy_grad[label]/{name}", [loss2], [exact], dtype,
                             floor=[ONE])
            g = ex_softmax(vals)
            g[c] -= 1
            floor = [0.0] * len(vals)
            floor[c] = ONE
            _assert_elements(f"cross_entropy_grad[label]/{name}", grad, g, dtype, floor=floor,
                             cond=_shift(vals))


def _prob_targets(n):
    rng = np.random.default_rng(n)
    y = rng.random(n)
    y[rng.random(n) < 0.3] = 0.0  # p = 0 entries: 0 log 0 = 0, no NaN
    if not y.any():
        y[0] = 1.0
    return {"random": y / y.sum(), "one-hot-first": np.eye(n)[0], "uniform": np.full(n, 1 / n)}


@pytest.mark.parametrize("dtype", DTYPES)
@mpmath.workdps(120)
def test_cross_entropy_probabilities(dtype) -> None:
    """loss = sum_i y_i (m - x_i) + sum(y) log1p(s) (D19): every term >= 0, nothing cancels,
    so the loss is accurate relative to itself (strict), also for x = 1e30 rows and losses of
    1e-40 (references to 120 digits); rows with -inf masks are test_zero_target_limits' (the
    term's limit 0)."""
    for name, row, vals in _finite_rows(dtype):
        if any(v == -INF for v in vals):
            continue
        for tname, y in _prob_targets(len(vals)).items():
            y = y.astype(dtype)
            yv = [_mp(v) for v in y]
            lsm = ex_log_softmax(vals)
            # 120 digits: below 1e-100 only the references' own rounding is left (a row of
            # one logit: exactly 0)
            exact = mpmath.chop(-mpmath.fsum(a * b for a, b in zip(yv, lsm) if a != 0), 1e-100)
            loss = softce.cross_entropy(row, y[None], reduction="none")
            _assert_elements(f"cross_entropy[prob]/{name}/{tname}", loss, [exact], dtype)
            _, grad = softce.cross_entropy_grad(row, y[None], reduction="sum")
            s = ex_softmax(vals)
            sy = mpmath.fsum(yv)
            g = [sy * a - b for a, b in zip(s, yv)]
            _assert_elements(f"cross_entropy_grad[prob]/{name}/{tname}", grad, g, dtype,
                             floor=[float(sy * a + b) for a, b in zip(s, yv)],
                             cond=_shift(vals))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid(dtype) -> None:
    vals = [1e30, -1e30, 0.0, -0.0, 1e-30, -1e-30, 20.0, -20.0, 88.0, -88.0, 103.0, -103.0,
            700.0, -700.0, -745.0, 36.0, -36.0, 1e-45, 17.0]
    x = np.array(vals, dtype)
    got = softce.sigmoid(x)
    _assert_elements("sigmoid", got, [ex_sigmoid(v) for v in x], dtype)
    np.testing.assert_array_equal(softce.sigmoid(np.array([INF, -INF], dtype)), [1.0, 0.0])
    assert np.isnan(softce.sigmoid(np.array([NAN], dtype)))[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_entropy(dtype) -> None:
    for name, vals in PROBS.items():
        p = np.array([vals], dtype)
        v = [float(a) for a in p[0]]
        h = softce.entropy(p)
        assert np.all(np.isfinite(h))
        _assert_elements(f"entropy/{name}", h, [ex_entropy(v)], dtype)
        for base in (2.0, 10.0):
            _assert_elements(f"entropy[base]/{name}", softce.entropy(p, base=base),
                             [ex_entropy(v, base)], dtype)
    # 0 log 0 = 0: all-zero rows have entropy 0, not NaN
    np.testing.assert_array_equal(softce.entropy(np.zeros((2, 4), dtype)), [0.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_vjps(dtype) -> None:
    """softmax_vjp = y (g - y.g) cancels inside the bracket: floor y_i (|g_i| + |y.g|);
    log_softmax_vjp = g - exp(y) sum(g): floor |g_i| + exp(y_i) |sum(g)|."""
    rng = np.random.default_rng(7)
    for name, row, vals in _finite_rows(dtype):
        if any(v == -INF for v in vals):
            continue
        n = len(vals)
        g = rng.standard_normal(n).astype(dtype)
        gv = [_mp(a) for a in g]
        y = softce.softmax(row)
        yv = [_mp(a) for a in y[0]]
        yg = mpmath.fsum(a * b for a, b in zip(yv, gv))
        exact = [a * (b - yg) for a, b in zip(yv, gv)]
        _assert_elements(f"softmax_vjp/{name}", softce.softmax_vjp(y, g[None]), exact, dtype,
                         floor=[float(a * (abs(b) + abs(yg))) for a, b in zip(yv, gv)])
        ly = softce.log_softmax(row)
        lyv = [_mp(a) for a in ly[0]]
        sg = mpmath.fsum(gv)
        exact = [b - mpmath.exp(a) * sg for a, b in zip(lyv, gv)]
        # exp(y) of a rounded y: cond |y_i|
        _assert_elements(f"log_softmax_vjp/{name}", softce.log_softmax_vjp(ly, g[None]),
                         exact, dtype,
                         floor=[float(abs(b) + mpmath.exp(a) * abs(sg)) for a, b in zip(lyv, gv)],
                         cond=[float(abs(a)) for a in lyv])
        w = dtype(rng.standard_normal())
        exact = [_mp(w) * a for a in ex_softmax(vals)]
        _assert_elements(f"logsumexp_vjp/{name}", softce.logsumexp_vjp(row, w), exact, dtype,
                         cond=_shift(vals))
        s = ex_softmax(vals)
        jac = [s[i] * ((1 if i == j else 0) - s[j]) for i in range(n) for j in range(n)]
        _assert_elements(f"softmax_jacobian/{name}", softce.softmax_jacobian(row), jac, dtype,
                         floor=[float(s[i] * ((1 if i == j else 0) + s[j]))
                                for i in range(n) for j in range(n)],
                         cond=[_shift(vals)[i] + _shift(vals)[j]
                               for i in range(n) for j in range(n)])


# the strict criterion, relative to each element's own size ----------------------------------

NEAR_ZERO = {"one-dominant-by-15": ([15.0, 0.0, -0.5, 0.25], 0),
             "one-dominant-by-40": ([40.0, 0.0, 1.0], 0),
             "one-dominant-by-20": ([20.0, 0.0], 0),  # float32 loss 2e-9
             "masked-far-below": ([-10.0, 0.0, -1455.0], 1),
             "tied-maxima": ([3.0, 3.0, -30.0, -28.0], 1)}
# s = 1000 exp(-100) = 3.7e-41; in float32 exp(-100) is subnormal (each term off by up to
# 2^-150), so there the terms are exp(-80), normal
A_THOUSAND_BELOW = {F64: ([0.0] + [-100.0] * 1000, 0), F32: ([0.0] + [-80.0] * 1000, 0)}


@pytest.mark.parametrize("dtype", DTYPES)
@mpmath.workdps(120)
def test_near_zero_log_probabilities_relative_to_themselves(dtype) -> None:
    """LSE = m + log1p(s), s summed without the max's 1 (D18): log-probabilities and label
    losses near 0 are accurate relative to themselves (references to 120 digits: s of 1e-41
    next to 1 needs them)."""
    cases = {**NEAR_ZERO, "a-thousand-far-below": A_THOUSAND_BELOW[dtype]}
    for name, (vals, c) in cases.items():
        row = np.array([vals], dtype)
        v = [float(a) for a in row[0]]
        _assert_elements(f"strict/{name}", softce.log_softmax(row)[0, c:c + 1],
                         [ex_log_softmax(v)[c]], dtype)
        _assert_elements(f"strict/{name}", softce.cross_entropy(
            row, np.array([c]), reduction="none"), [ex_lse(v) - _mp(v[c])], dtype)
        _assert_elements(f"strict/{name}", softce.cross_entropy_grad(
            row, np.array([c]), reduction="none")[0], [ex_lse(v) - _mp(v[c])], dtype)
        _assert_elements(f"strict/{name}", softce.logsumexp(row), [ex_lse(v)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_probability_loss_of_large_logits_relative_to_itself(dtype) -> None:
    """sum_k y_k (m - x_k) + sum(y) log1p(s) (D19): no cancellation between LSE sum(y) and
    x.y, so logits of 1e4 (float64) or 100 (float32) keep the loss relative to itself."""
    base = 1e4 if dtype == F64 else 100.0
    row = np.array([[base, base - 1.0, base - 2.5]], dtype)
    y = np.array([[0.7, 0.2, 0.1]], dtype)
    v = [float(a) for a in row[0]]
    lsm = ex_log_softmax(v)
    exact = -mpmath.fsum(_mp(a) * b for a, b in zip(y[0], lsm))
    _assert_elements("strict/prob", softce.cross_entropy(row, y, reduction="none"), [exact],
                     dtype)


# 10^6 classes: 1000 distinct values, each 1000 times, so mpmath sums 1000 exps ----------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_a_million_classes(dtype) -> None:
    rng = np.random.default_rng(6)
    distinct = (rng.standard_normal(1000) * 4).astype(dtype)
    counts = np.full(1000, 1000)
    idx = rng.permutation(np.repeat(np.arange(1000), counts))
    row = distinct[idx][None]
    lse = mpmath.log(mpmath.fsum(c * mpmath.exp(_mp(v)) for v, c in zip(distinct, counts)))
    soft = {float(v): mpmath.exp(_mp(v) - lse) for v in distinct}
    lsm = {float(v): _mp(v) - lse for v in distinct}
    m = float(distinct.max())
    # check every distinct value at one of its positions (all positions share the same code)
    first = np.unique(idx, return_index=True)[1]
    vals = [float(v) for v in row[0, first]]
    # a million-term sum: the documented floor of log-domain results grows to 4 ulp of
    # max(|y|, 1) plus the sum's relative error, measured below
    _assert_elements("softmax/1e6", softce.softmax(row)[0, first], [soft[v] for v in vals],
                     dtype, cond=[abs(v - m) for v in vals])
    _assert_elements("log_softmax/1e6", softce.log_softmax(row)[0, first],
                     [lsm[v] for v in vals], dtype, floor=[ONE] * len(vals))
    _assert_elements("logsumexp/1e6", softce.logsumexp(row), [lse], dtype, floor=[ONE])
    c = int(first[0])
    _assert_elements("cross_entropy[label]/1e6", softce.cross_entropy(
        row, np.array([c]), reduction="none"), [lse - _mp(row[0, c])], dtype, floor=[ONE])
    s = softce.softmax(row)
    assert abs(float(s.sum(dtype=np.float64)) - 1.0) < (1e-4 if dtype == F32 else 1e-12)
    # the normaliser d, shared by every element: its relative error is the median one. The row
    # takes a thousand D11 merges; merged in float64 they keep float32's d within 1 eps
    # (merged in float32: 3 eps in 1024-element chunks, 12 eps in 256-element ones)
    rel = [float(_mp(float(g)) / soft[v] - 1) for g, v in zip(s[0, first], vals)]
    assert abs(np.median(rel)) < (1 if dtype == F32 else 4) * np.finfo(dtype).eps


# non-finite rows: the documented results, and where PyTorch / SciPy give NaN and softce not ---

@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_rows(dtype) -> None:
    def one(vals):
        return np.array([vals], dtype)

    # a row of all -inf: softmax/log_softmax NaN (as PyTorch), logsumexp -inf
    allm = one([-INF, -INF, -INF])
    assert np.isnan(softce.softmax(allm)).all() and np.isnan(softce.log_softmax(allm)).all()
    assert softce.logsumexp(allm)[0] == -INF
    # a row with some -inf: finite
    some = one([-INF, 0.0, -INF, 1.0])
    s = softce.softmax(some)
    assert np.isfinite(s).all() and s[0, 0] == 0.0 and s[0, 2] == 0.0
    assert np.isfinite(softce.cross_entropy(some, np.array([1])))
    # +inf: logsumexp +inf, the limit (D18), as PyTorch, JAX and SciPy; log_softmax -inf off
    # the +inf and NaN at it (inf - inf), as SciPy; softmax its exp: 0 off the +inf, NaN at
    # it; the label loss (m - x_c) + log1p(s): +inf (the limit) at a finite label, NaN at the
    # +inf, and its gradient softmax - e_c
    plus = one([INF, 1.0, 2.0])
    assert softce.logsumexp(plus)[0] == INF
    assert softce.logsumexp(one([INF, INF, -INF]))[0] == INF
    lsm = softce.log_softmax(plus)
    assert np.isnan(lsm[0, 0]) and (lsm[0, 1:] == -INF).all()
    sm = softce.softmax(plus)
    assert np.isnan(sm[0, 0]) and (sm[0, 1:] == 0).all()
    _, grad = softce.cross_entropy_grad(plus, np.array([1]), reduction="sum")
    assert np.isnan(grad[0, 0]) and grad[0, 1] == -1 and grad[0, 2] == 0
    assert softce.cross_entropy(plus, np.array([1])) == INF
    assert np.isnan(softce.cross_entropy(plus, np.array([0])))
    # +inf over several chunks and spans of a long row, in any position
    for at in (0, 1500, 4999, 40000):
        long = np.zeros((1, 40001), dtype)
        long[0, at] = INF
        assert softce.logsumexp(long)[0] == INF
        sm = softce.softmax(long)
        assert np.isnan(sm[0, at]) and np.count_nonzero(sm) == 1
    # NaN reaches its row and only its row
    two = np.array([[NAN, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype)
    for fn in (softce.softmax, softce.log_softmax):
        r = fn(two)
        assert np.isnan(r[0]).all() and np.isfinite(r[1]).all()
    lse = softce.logsumexp(two)
    assert np.isnan(lse[0]) and np.isfinite(lse[1])


def test_where_others_give_nan_and_softce_does_not() -> None:
    """PyTorch's -(p * log p).sum() and the naive log(sum(exp(x))) give NaN/inf where softce is
    finite; SciPy's special.softmax of a -inf masked row agrees with softce. JAX is not
    installed here and is not compared."""
    torch = pytest.importorskip("torch")
    scipy_special = pytest.importorskip("scipy.special")
    p = np.array([[0.5, 0.0, 0.5]])
    naive = -(torch.tensor(p) * torch.tensor(p).log()).sum(-1)
    assert torch.isnan(naive).all()
    assert softce.entropy(p)[0] == pytest.approx(math.log(2), rel=1e-15)
    # torch's KL/xlogy path is finite too; SciPy's entr is finite
    assert np.isfinite(scipy_special.entr(p).sum())
    # float32 logits of 1e30 against a probability target: torch's F.cross_entropy gives
    # NaN through (-inf) * 0 on a masked class with zero target (softce: the limit, D8),
    # but with the large-logit one-hot label it is finite in both
    x = np.array([[1e30, -1e30, 0.0]], np.float32)
    t = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor([0]))
    assert float(t) == float(softce.cross_entropy(x, np.array([0]))) == 0.0
    # torch's naive softmax of a row needing the shift: exp(1e30) overflows -> NaN
    naive_soft = torch.tensor(x).exp() / torch.tensor(x).exp().sum()
    assert torch.isnan(naive_soft).any()
    assert np.isfinite(softce.softmax(x)).all()
    # a row of all -inf: PyTorch softmax NaN, SciPy softmax NaN, softce NaN (documented)
    m = np.full((1, 3), -np.inf)
    assert torch.isnan(torch.softmax(torch.tensor(m), -1)).all()
    with np.errstate(invalid="ignore"):
        assert np.isnan(scipy_special.softmax(m, axis=-1)).all()
    assert np.isnan(softce.softmax(m)).all()
    # logsumexp with +inf: PyTorch, SciPy and softce +inf (the limit, D18)
    pl = np.array([[np.inf, 1.0]])
    assert float(torch.logsumexp(torch.tensor(pl), -1)) == np.inf
    assert scipy_special.logsumexp(pl, axis=-1)[0] == np.inf
    assert softce.logsumexp(pl)[0] == np.inf


if __name__ == "__main__":
    # print the measured maxima (ulps) per function and dtype
    with mpmath.workdps(50):
        for fn in [test_softmax, test_log_softmax_and_logsumexp,
                   test_cross_entropy_labels_and_gradient, test_cross_entropy_probabilities,
                   test_sigmoid, test_entropy, test_vjps, test_a_million_classes,
                   test_near_zero_log_probabilities_relative_to_themselves]:
            for dt in DTYPES:
                fn(dt)
    for (name, dt), err in sorted(MEASURED.items()):
        print(f"{name:32s} {dt:8s} {err:8.3f}")
