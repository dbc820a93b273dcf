"""Where PyTorch, JAX and SciPy give NaN and softce does not (and the reverse), on the inputs of
scripts/record_nan_references.py.

tests/fixtures/nan_references.json holds each reference's recorded result. Always (no torch or
jax needed): softce gives what README "Guarantees" documents — the exact value (mpmath, 50
digits) wherever it is documented finite, NaN where it is documented NaN — and the fixture's
softce column and README table match this run. Where torch, jax or scipy is importable, each
reference is recomputed and must agree with the fixture, so the fixture cannot drift.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _recorder():
    path = ROOT / "scripts" / "record_nan_references.py"
    spec = importlib.util.spec_from_file_location("record_nan_references", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REC = _recorder()
DATA = json.loads(REC.FIXTURE.read_text())
ENTRIES = {e["id"]: e for e in DATA["cases"]}
IDS = [c["id"] for c in REC.CASES]
BUDGET_ULPS = 8.0  # README "Guarantees": 8 ulp, log-domain results with a floor of 1

# softce is documented to give NaN here (README "Guarantees", "Edge values"), with the reason
DOCUMENTED_NAN = {
    "softmax/all-neg-inf/f64": "a row of all -inf: softmax NaN, as PyTorch",
    "log_softmax/all-neg-inf/f64": "a row of all -inf: log_softmax NaN, as PyTorch",
    "softmax/plus-inf/f64": "+inf in a row: softmax NaN at the +inf, 0 elsewhere (the exp of "
                            "log_softmax; PyTorch, JAX, SciPy: NaN everywhere)",
    "log_softmax/plus-inf/f64": "+inf in a row: log_softmax NaN at the +inf, -inf elsewhere "
                                "(as SciPy; PyTorch: NaN everywhere)",
    "cross_entropy[label]/all-neg-inf/f64": "a row of all -inf: LSE - x_c = -inf + inf",
    "logsumexp_vjp/all-neg-inf/f64": "g softmax(x) of a row of all -inf: NaN",
    "logsumexp_vjp/plus-inf/f64": "g softmax(x) with +inf in the row: NaN at the +inf, as "
                                  "PyTorch",
}
LOG_DOMAIN = {"log_softmax", "logsumexp", "cross_entropy_label", "cross_entropy_prob", "kl",
              "entropy", "cross_entropy_label_grad", "cross_entropy_prob_grad",
              "logsumexp_vjp", "softmax_vjp", "log_softmax_vjp"}


# exact results at 50 digits (-inf entries are masks: probability 0) ---------------------------

def _mp(v: float):
    return mpmath.mpf(float(v))


def _lse(x):
    if all(v == -math.inf for v in x):
        return mpmath.mpf("-inf")
    if any(v == math.inf for v in x):
        return mpmath.mpf("inf")
    return mpmath.log(mpmath.fsum(mpmath.exp(_mp(v)) for v in x if v != -math.inf))


def _softmax(x):
    lse = _lse(x)
    return [mpmath.mpf(0) if v == -math.inf else mpmath.exp(_mp(v) - lse) for v in x]


def _log_softmax(x):
    lse = _lse(x)
    return [mpmath.mpf("-inf") if v == -math.inf else _mp(v) - lse for v in x]


def exact(case: dict) -> list:
    """The mathematically right result of ``case`` on its dtype-rounded inputs."""
    a = REC.inputs(case)
    x = [float(v) for v in a["x"]]
    y = [_mp(v) for v in a.get("y", [])]
    g = [_mp(v) for v in np.ravel(a.get("g", []))]
    op = case["op"]
    if op == "softmax":
        return _softmax(x)
    if op == "log_softmax":
        return _log_softmax(x)
    if op == "logsumexp":
        return [_lse(x)]
    if op == "sigmoid":
        return [1 / (1 + mpmath.exp(-_mp(v))) for v in x]
    if op == "entropy":
        return [-mpmath.fsum(_mp(p) * mpmath.log(_mp(p)) for p in x if p > 0)]
    if op == "cross_entropy_label":
        return [_lse(x) - _mp(x[a["label"]])]
    if op == "cross_entropy_label_grad":
        s = _softmax(x)
        s[a["label"]] -= 1
        return s
    if op == "cross_entropy_prob":
        return [-mpmath.fsum(t * ls for t, ls in zip(y, _log_softmax(x)) if t != 0)]
    if op == "cross_entropy_prob_grad":
        return [mpmath.fsum(y) * s - t for s, t in zip(_softmax(x), y)]
    if op == "kl":
        return [mpmath.fsum(t * (mpmath.log(t) - ls) for t, ls in zip(y, _log_softmax(x))
                            if t != 0)]
    if op == "logsumexp_vjp":
        return [g[0] * s for s in _softmax(x)]
    if op == "softmax_vjp":
        s = _softmax(x)
        sg = mpmath.fsum(a * b for a, b in zip(s, g))
        return [a * (b - sg) for a, b in zip(s, g)]
    if op == "log_softmax_vjp":
        sg = mpmath.fsum(g)
        return [b - s * sg for s, b in zip(_softmax(x), g)]
    raise ValueError(op)


def assert_exact(got: np.ndarray, want: list, case: dict) -> None:
    """Each element within the README budget of the exact value; infinities exactly."""
    dtype = np.dtype(case["dtype"]).type
    floor = 1.0 if case["op"] in LOG_DOMAIN else float(np.finfo(dtype).tiny)
    assert len(got) == len(want), case["id"]
    for q, (v, e) in enumerate(zip(got.tolist(), want)):
        if mpmath.isinf(e):
            assert v == float(e), (case["id"], q, v, e)
            continue
        assert math.isfinite(v), (case["id"], q, v, mpmath.nstr(e, 17))
        ulp = float(np.spacing(dtype(max(abs(float(e)), floor))))
        err = float(abs(_mp(v) - e)) / ulp
        assert err <= BUDGET_ULPS, (case["id"], q, v, mpmath.nstr(e, 17), err)


@pytest.fixture(autouse=True)
def _fifty_digits():
    with mpmath.workdps(50):
        yield


# softce against what is documented ------------------------------------------------------------

@pytest.mark.parametrize("cid", IDS)
def test_softce_as_documented(cid: str) -> None:
    case = REC.case_by_id(cid)
    got = REC.softce_result(case)
    if cid in DOCUMENTED_NAN:
        assert np.isnan(got).any(), (cid, DOCUMENTED_NAN[cid], got)
        return
    # documented finite (or the exact +-inf): never NaN, whatever the references gave
    assert not np.isnan(got).any(), (cid, got)
    assert_exact(got, exact(case), case)


def test_documented_nan_ids_exist() -> None:
    assert set(DOCUMENTED_NAN) <= set(IDS)


def test_where_references_give_nan_and_softce_does_not() -> None:
    """The recorded finding, spelled out: every (case, reference) pair with a NaN where softce
    is finite. On these inputs only the naive -(p log p).sum() of PyTorch and JAX, and the
    references' cross-entropy with a -inf logit under a zero target (PyTorch's F.cross_entropy,
    the naive -(y * log_softmax(x)).sum()) do that: softce takes the term's limit 0 (D8)."""
    pairs = {(e["id"], r["framework"], r["kind"]) for e in DATA["cases"]
             for r in e["references"] if r["nan"] and not e["softce"]["nan"]}
    recorded = {r["framework"] for e in DATA["cases"] for r in e["references"]}
    want = {(cid, fw, "naive") for cid in ("entropy/p-zero/f64", "entropy/p-zero/f32",
                                          "entropy/one-hot/f64", "entropy/all-zero/f64")
            for fw in ("torch", "jax") if fw in recorded}
    masked = ("cross_entropy[prob]/zero-target-on-neg-inf/f64", "kl/zero-target-on-neg-inf/f64")
    want |= {(e["id"], r["framework"], r["kind"]) for e in DATA["cases"] if e["id"] in masked
             for r in e["references"] if r["nan"]}
    assert pairs == want
    for cid in masked:  # PyTorch's F.cross_entropy is NaN there
        assert (cid, "torch", "lib") in pairs or "torch" not in recorded
    # and the reverse: softce NaN where a reference is not: only log_softmax at the +inf of a
    # row, NaN in softce as in PyTorch (SciPy too), where JAX gives a number
    reverse = {e["id"] for e in DATA["cases"] if e["softce"]["nan"]
               and any(not r["nan"] for r in e["references"])}
    assert reverse <= {"log_softmax/plus-inf/f64"}
    assert reverse <= set(DOCUMENTED_NAN)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_with_plus_inf_is_plus_inf(dtype) -> None:
    """The limit, as PyTorch, JAX and SciPy: the +inf is the row's tie with its max, the
    other terms exp(-inf) = 0, so s = 0 and m + log1p(s) = +inf (D18)."""
    import softce

    assert softce.logsumexp(np.array([[np.inf, 1.0, 2.0]], dtype))[0] == np.inf
    assert softce.logsumexp(np.array([[np.inf, np.inf, -np.inf]], dtype))[0] == np.inf


# the fixture against this run and against the live references ----------------------------------

def test_fixture_covers_every_case_and_reference() -> None:
    assert [e["id"] for e in DATA["cases"]] == IDS
    for e in DATA["cases"]:
        apis = [(r["framework"], r["api"], r["kind"]) for r in e["references"]]
        assert apis == [a for a in REC.APIS[REC.case_by_id(e["id"])["op"]]
                        if DATA["versions"].get(a[0])], e["id"]
    assert all(DATA["versions"][fw] for fw in REC.FRAMEWORKS)  # recorded with all three


def _assert_same(got: np.ndarray, recorded: np.ndarray, dtype: str, what) -> None:
    assert got.shape == recorded.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(recorded), err_msg=str(what))
    fin = np.isfinite(recorded)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(got)],
                                  recorded[~fin & ~np.isnan(recorded)], err_msg=str(what))
    rtol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(got[fin], recorded[fin], rtol=rtol, atol=rtol,
                               err_msg=str(what))


@pytest.mark.parametrize("cid", IDS)
def test_fixture_softce_column_matches_this_run(cid: str) -> None:
    entry = ENTRIES[cid]
    got = REC.softce_result(REC.case_by_id(cid))
    recorded = REC.decode(entry["softce"]["values"])
    assert entry["softce"]["nan"] == bool(np.isnan(recorded).any())
    _assert_same(got, recorded, REC.case_by_id(cid)["dtype"], (cid, "softce"))


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


LIVE = [(c["id"], fw) for c in REC.CASES
        for fw in dict.fromkeys(a[0] for a in REC.APIS[c["op"]])]


@pytest.mark.parametrize(("cid", "framework"), LIVE)
def test_live_reference_matches_fixture(cid: str, framework: str) -> None:
    if not _importable(framework):
        pytest.skip(f"{framework} is not installed")
    refs = [r for r in ENTRIES[cid]["references"] if r["framework"] == framework]
    assert refs, (cid, framework)
    case = REC.case_by_id(cid)
    for r in refs:
        recorded = REC.decode(r["values"])
        assert r["nan"] == bool(np.isnan(recorded).any())
        got = REC.reference_result(case, framework, r["api"])
        _assert_same(got, recorded, case["dtype"], (cid, framework, r["api"]))


def test_readme_table_is_the_fixtures() -> None:
    table = REC.markdown_table(DATA)
    assert table in (ROOT / "README.md").read_text(), "rerun scripts/record_nan_references.py"
