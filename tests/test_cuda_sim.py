"""The CUDA API under the CUDA simulator or on a GPU: every function agrees with the CPU
kernels and with hand-written references, on odd sizes, with more rows than the grid, in
float32 and float64, with the CPU side's checks and errors.

NUMBA_ENABLE_CUDASIM must be set before numba is imported, so the test ``test_cuda_api_in_
the_simulator`` runs this file again in a fresh process with it set; there the other tests run
(here they are deselected, see conftest.py). The simulator runs one Python thread per CUDA
thread and pays about 20 ms per barrier, so grids are tiny: 64-thread blocks, at most 2 blocks.
With ``SOFTCE_TEST_GPU=1`` on a GPU the same tests run on the device with the default launch
(warp shuffles, or shared memory with ``SOFTCE_CUDA_REDUCE=shared``), and the ``gpu`` tests
add the benchmark's shapes.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import simulator

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
#: Runs in the simulator process that test_cuda_api_in_the_simulator starts, or on a GPU.
on_cuda = pytest.mark.cuda

F32, F64 = np.float32, np.float64
#: float32: the simulator's exp is NumPy's, the CPU's its own 1-ulp exp, sums in other orders.
TOL = {F32: {"rtol": 2e-5, "atol": 2e-6}, F64: {"rtol": 1e-12, "atol": 1e-14}}


def test_cuda_api_in_the_simulator() -> None:
    """The simulator tests, shared out over two processes at once (the simulator is
    single-threaded Python)."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    pytest_args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "-W", "ignore::RuntimeWarning"]
    listed = subprocess.run([*pytest_args, "--collect-only", __file__], env=env,
                            capture_output=True, text=True, timeout=300)
    ids = [ln for ln in listed.stdout.splitlines() if "::" in ln]
    assert len(ids) > 20, listed.stdout[-3000:] + listed.stderr[-2000:]
    runs = [subprocess.Popen([*pytest_args, *ids[shard::2]], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for shard in range(2)]
    for run in runs:
        out, _ = run.communicate(timeout=1200)
        tail = out[-6000:].strip()
        print(tail.splitlines()[-1] if tail else "")
        assert run.returncode == 0, tail
        last = tail.splitlines()[-1]
        assert " passed" in last and " failed" not in last, tail


# helpers (simulator or GPU process) ---------------------------------------------------------

@pytest.fixture(autouse=True)
def _launch_configuration():
    with simulator.tiny_grids():
        yield


def dev(a):
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


def host(d):
    return d.copy_to_host()


def close(got, want, dtype) -> None:
    got = host(got) if hasattr(got, "copy_to_host") else np.asarray(got)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, np.asarray(want), equal_nan=True, **TOL[dtype])


def softmax_ref(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def lse_ref(x):
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]


def logits(rows, n, dtype, seed=0):
    rng = np.random.default_rng(seed + n)
    x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
    if n > 1:
        x[1, n // 2] = -np.inf  # a masked logit
    return x


# correctness --------------------------------------------------------------------------------

@on_cuda
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", [1, 31, 33, 1025])
def test_row_functions_agree_with_cpu_and_references(n: int, dtype) -> None:
    import softce

    rows = 5  # more rows than the grid holds: 2 blocks x (64 // threads per row) rows
    x = logits(rows, n, dtype)
    d = dev(x)
    p, lp = softmax_ref(x.astype(F64)), None
    lp = x.astype(F64) - lse_ref(x.astype(F64))[:, None]
    for got, cpu, ref in [
        (softce.softmax(d), softce.softmax(x), p),
        (softce.log_softmax(d), softce.log_softmax(x), lp),
        (softce.logsumexp(d), softce.logsumexp(x), lse_ref(x.astype(F64))),
    ]:
        close(got, cpu, dtype)
        close(got, ref, dtype)

    w = np.linspace(-1, 2, rows).astype(dtype)
    close(softce.logsumexp_vjp(d, dev(w)), softce.logsumexp_vjp(x, w), dtype)
    close(softce.logsumexp_vjp(d, w), w[:, None] * p, dtype)

    probs = softmax_ref(x).astype(dtype)
    close(softce.entropy(dev(probs)), softce.entropy(probs), dtype)
    close(softce.entropy(dev(probs), base=2.0), softce.entropy(probs, base=2.0), dtype)

    g = np.random.default_rng(1).standard_normal((rows, n)).astype(dtype)
    close(softce.softmax_vjp(dev(probs), dev(g)), softce.softmax_vjp(probs, g), dtype)
    close(softce.softmax_vjp(dev(probs), dev(g)),
          probs * (g - (g * probs).sum(-1, keepdims=True)), dtype)
    logp = softce.log_softmax(x)
    close(softce.log_softmax_vjp(dev(logp), dev(g)), softce.log_softmax_vjp(logp, g), dtype)
    close(softce.log_softmax_vjp(dev(logp), dev(g)),
          g - np.exp(logp) * g.sum(-1, keepdims=True), dtype)
    close(softce.sigmoid(d), softce.sigmoid(x), dtype)


@on_cuda
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", [1, 33, 1025])
def test_cross_entropy_agrees_with_cpu_and_references(n: int, dtype) -> None:
    import softce

    rows = 5
    x = logits(rows, n, dtype)
    x[1, :] = np.where(np.isinf(x[1]), 0, x[1])  # keep the labelled logits finite
    labels = np.arange(rows) * 7 % n
    onehot = np.eye(n, dtype=dtype)[labels]
    d, dl = dev(x), dev(labels.astype(np.int32))
    ref_loss = lse_ref(x.astype(F64)) - x[np.arange(rows), labels]
    for reduction, ref in [("none", ref_loss), ("mean", ref_loss.mean()), ("sum", ref_loss.sum())]:
        got = softce.cross_entropy(d, dl, reduction=reduction)
        close(got, softce.cross_entropy(x, labels, reduction=reduction), dtype)
        close(got, ref, dtype)
    close(softce.cross_entropy(d, dev(onehot), reduction="none"), ref_loss, dtype)

    grad_ref = (softmax_ref(x.astype(F64)) - onehot) / rows
    loss, grad = softce.cross_entropy_grad(d, dl)
    cpu_loss, cpu_grad = softce.cross_entropy_grad(x, labels)
    close(loss, cpu_loss, dtype)
    close(grad, cpu_grad, dtype)
    close(grad, grad_ref, dtype)

    y = softmax_ref(np.random.default_rng(2).standard_normal((rows, n))).astype(dtype)
    w = np.linspace(0.5, 1.5, rows).astype(dtype)
    loss, grad = softce.cross_entropy_grad(d, dev(y), reduction="none", grad_output=dev(w))
    cpu_loss, cpu_grad = softce.cross_entropy_grad(x, y, reduction="none", grad_output=w)
    close(loss, cpu_loss, dtype)
    close(grad, cpu_grad, dtype)
    close(grad, w[:, None] * (y.sum(-1, keepdims=True) * softmax_ref(x.astype(F64)) - y), dtype)

    inplace = dev(x)  # the gradient over the logits
    loss, grad = softce.cross_entropy_grad(inplace, dl, reduction="sum", out=inplace)
    assert grad is inplace
    close(grad, grad_ref * rows, dtype)
    close(loss, ref_loss.sum(), dtype)


@on_cuda
@pytest.mark.parametrize(("n", "dtype"), [(2, F64), (33, F32)])
def test_cross_entropy_options_agree_with_cpu(n: int, dtype) -> None:
    """D13/D14's kernels on the device: weights, ignore_index (PyTorch's default -100 and
    another), smoothing, z-loss, soft-cap, the LSE, the empty mean; labels and probabilities;
    host and device targets; in place."""
    import softce

    rows = 6
    rng = np.random.default_rng(n)
    x = (3 * rng.standard_normal((rows, n))).astype(dtype)
    labels = (np.arange(rows) * 5 % n).astype(np.int64)
    labels[2] = -100
    other = np.where(labels < 0, 0, labels)
    other[0] = n - 1
    weight = rng.random(n) + 0.25
    y = softmax_ref(rng.standard_normal((rows, n))).astype(dtype)
    options = [{}, {"weight": weight}, {"ignore_index": n - 1},
               {"weight": weight, "label_smoothing": 0.2, "z_loss": 0.01, "softcap": 4.0,
                "return_lse": True}]
    for o, opts in enumerate(options):
        tgt_labels = other if "ignore_index" in opts else labels
        for tgt in (tgt_labels, y):
            for r, reduction in enumerate(("none", "mean", "sum")):
                on_device = (o + r) % 2 == 1  # host and device targets take turns
                t = dev(tgt) if on_device else tgt
                got = softce.cross_entropy_grad(dev(x), t, reduction=reduction, **opts)
                want = softce.cross_entropy_grad(x, tgt, reduction=reduction, **opts)
                for g, w in zip(got, want):
                    close(g, w, dtype)
                got = softce.cross_entropy(dev(x), tgt, reduction=reduction, **opts)
                want = softce.cross_entropy(x, tgt, reduction=reduction, **opts)
                for g, w in zip(*(v if isinstance(v, tuple) else (v,) for v in (got, want))):
                    close(g, w, dtype)
    ignored = np.full(rows, -100)
    assert np.isnan(softce.cross_entropy(dev(x), ignored).copy_to_host())
    assert softce.cross_entropy(dev(x), ignored, empty_mean=0.0).copy_to_host() == 0
    inplace = dev(x)
    loss, grad = softce.cross_entropy_grad(inplace, labels, weight=weight, softcap=3.0,
                                           out=inplace)
    assert grad is inplace
    close(grad, softce.cross_entropy_grad(x, labels, weight=weight, softcap=3.0)[1], dtype)


@on_cuda
@pytest.mark.parametrize("dtype", [F32, F64])
def test_the_rest_of_the_family_agrees_with_cpu(dtype) -> None:
    """nll_loss, BCE with logits (and its gradient), kl_div, softmax_entropy (and its
    gradient) on the device against the CPU kernels, every reduction."""
    import softce

    rng = np.random.default_rng(7)
    x = (3 * rng.standard_normal((5, 7))).astype(dtype)
    y = rng.random((5, 7)).astype(dtype)
    weight, pos_weight = rng.random(7), rng.random(7) + 0.5
    labels = np.array([0, 6, -100, 3, 2])
    lq = np.log(softmax_ref(rng.standard_normal((5, 7)))).astype(dtype)
    yt = softmax_ref(rng.standard_normal((5, 7))).astype(dtype)
    yt[0, 2] = 0
    masked = x.copy()
    masked[0, 1] = -np.inf

    def same(got, want):
        for g, w in zip(*(v if isinstance(v, tuple) else (v,) for v in (got, want))):
            close(g, w, dtype)

    for reduction in ("none", "mean", "sum"):
        same(softce.nll_loss(dev(lq), dev(labels), weight=weight, reduction=reduction),
             softce.nll_loss(lq, labels, weight=weight, reduction=reduction))
        kwargs = {"weight": weight, "pos_weight": pos_weight, "reduction": reduction}
        same(softce.binary_cross_entropy_with_logits(dev(x), y, **kwargs),
             softce.binary_cross_entropy_with_logits(x, y, **kwargs))
        same(softce.binary_cross_entropy_with_logits_grad(dev(x), dev(y), **kwargs),
             softce.binary_cross_entropy_with_logits_grad(x, y, **kwargs))
    for reduction in ("none", "mean", "sum", "batchmean"):
        for log_target, tgt in ((False, yt), (True, np.log(yt + dtype(0.1)))):
            same(softce.kl_div(dev(lq), dev(tgt), reduction=reduction, log_target=log_target),
                 softce.kl_div(lq, tgt, reduction=reduction, log_target=log_target))
    same(softce.softmax_entropy(dev(masked)), softce.softmax_entropy(masked))
    same(softce.softmax_entropy_grad(dev(masked), grad_output=2.0),
         softce.softmax_entropy_grad(masked, grad_output=2.0))


@on_cuda
@pytest.mark.parametrize("dtype", [F32, F64])
def test_limits_at_zero_targets_agree_with_cpu(dtype) -> None:
    """The limits of 0 * inf terms on the device: a -inf logit under a 0 probability target
    (D8's guard: finite loss; +inf with label smoothing) and a -inf log-target of kl_div
    (D16's guard: 0 for a finite input, NaN for an infinite or NaN one), as on the CPU."""
    import softce

    rng = np.random.default_rng(9)
    x = (3 * rng.standard_normal((3, 33))).astype(dtype)
    y = softmax_ref(rng.standard_normal((3, 33))).astype(dtype)
    y[:2, ::4], x[0, ::4], x[1, 8] = 0, -np.inf, -np.inf
    weight = rng.random(33) + 0.5
    for kwargs in ({}, {"weight": weight}, {"weight": weight, "label_smoothing": 0.1}):
        loss = softce.cross_entropy(dev(x), dev(y), reduction="none", **kwargs)
        cpu = softce.cross_entropy(x, y, reduction="none", **kwargs)
        close(loss, cpu, dtype)
        smoothed = "label_smoothing" in kwargs
        assert (np.isposinf(cpu[:2]) if smoothed else np.isfinite(cpu)).all(), (kwargs, cpu)
        got, grad = softce.cross_entropy_grad(dev(x), dev(y), reduction="none", **kwargs)
        want, cpu_grad = softce.cross_entropy_grad(x, y, reduction="none", **kwargs)
        close(got, want, dtype)
        close(grad, cpu_grad, dtype)
    lq = np.array([-1.0, -np.inf, np.inf, np.nan, -2.0, -0.5], dtype)
    lt = np.array([-np.inf, -np.inf, -np.inf, -np.inf, -1.0, np.nan], dtype)
    got = softce.kl_div(dev(lq), dev(lt), reduction="none", log_target=True)
    got = host(got) if hasattr(got, "copy_to_host") else np.asarray(got)
    close(got, softce.kl_div(lq, lt, reduction="none", log_target=True), dtype)
    assert got[0] == 0 and np.isnan(got[[1, 2, 3, 5]]).all() and np.isfinite(got[4])


@on_cuda
@pytest.mark.parametrize("dtype", [F32, F64])
def test_shifted_probability_loss_across_thread_chunks(dtype) -> None:
    """D19 on the device: logits of 1e4 (float64) or 100 (float32) keep the probability loss
    to the CPU's, whose error is relative to the loss; a leading stretch of -inf logits (whole
    thread chunks of -inf only) under positive targets gives +inf, under zero targets the loss
    of the rest; a row of -inf only NaN; the threads' (m, T, A) states merge with D19's
    merge_t."""
    import softce

    base = 1e4 if dtype == F64 else 100.0
    rng = np.random.default_rng(19)
    n = 700
    x = (base + 3 * rng.standard_normal((4, n))).astype(dtype)
    x[:, 650] = base + 12
    y = softmax_ref(rng.standard_normal((4, n))).astype(dtype)
    x[1:3, :600] = -np.inf
    y[2, :600] = 0
    x[3] = -np.inf
    weight = rng.random(n) + 0.5
    for kwargs in ({}, {"weight": weight}, {"weight": weight, "label_smoothing": 0.1}):
        cpu = softce.cross_entropy(x, y, reduction="none", **kwargs)
        got = host(softce.cross_entropy(dev(x), dev(y), reduction="none", **kwargs))
        np.testing.assert_allclose(got[[0, 2]], cpu[[0, 2]], rtol=4 * np.finfo(dtype).eps)
        smoothed = "label_smoothing" in kwargs
        assert got[1] == np.inf and np.isnan(got[3]) and (got[2] == np.inf) == smoothed
        loss, _ = softce.cross_entropy_grad(dev(x), dev(y), reduction="none", **kwargs)
        np.testing.assert_array_equal(host(loss), got)


@on_cuda
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", [1, 31, 33])
def test_softmax_jacobian(n: int, dtype) -> None:
    import softce

    x = logits(3, n, dtype)
    s = softmax_ref(x.astype(F64))
    ref = np.einsum("ri,ij->rij", s, np.eye(n)) - s[:, :, None] * s[:, None, :]
    got = softce.softmax_jacobian(dev(x))
    close(got, softce.softmax_jacobian(x), dtype)
    close(got, ref, dtype)


@on_cuda
@pytest.mark.parametrize("threads", [32, 128])
def test_thread_groups_wider_than_a_warp_and_rows_beyond_the_grid(threads: int) -> None:
    import softce
    from softce import cuda as sc

    sc.configure(threads_per_row=threads, block_threads=128, max_blocks=1)
    x = logits(3, 1025, F32)  # 128-wide groups: one row per block, three grid strides
    close(softce.log_softmax(dev(x)), softce.log_softmax(x), F32)
    close(softce.logsumexp(dev(x)), softce.logsumexp(x), F32)


@on_cuda
def test_special_values_propagate_as_on_the_cpu() -> None:
    import softce

    x = logits(6, 33, F32)
    x[0, 3] = np.nan
    x[2, :] = -np.inf  # a fully masked row
    x[3, 5] = np.inf
    x[4, 7] = -1e30
    for fn in (softce.softmax, softce.log_softmax, softce.logsumexp):
        close(fn(dev(x)), fn(x), F32)
    close(softce.sigmoid(dev(x)), softce.sigmoid(x), F32)
    huge = np.full((1, 33), 1e30, F32)  # x - m is exact, then log(33) is subtracted
    close(softce.log_softmax(dev(huge)), np.full((1, 33), -np.log(33.0)), F32)
    close(softce.softmax(dev(huge)), np.full((1, 33), 1 / 33), F32)
    p = softmax_ref(logits(2, 5, F32))
    p[0, 1], p[1, :] = 0, [0, 0, 1, 0, 0]  # 0 log 0 = 0
    close(softce.entropy(dev(p)), softce.entropy(p), F32)


# layouts -----------------------------------------------------------------------------------

@on_cuda
def test_any_axis_and_strides_and_out() -> None:
    import softce

    # The simulator runs every thread in Python, so its time grows with the rows: the axes
    # take a small array, the 33 classes of the label tests lie along axis 1 (12 rows).
    small = np.random.default_rng(4).standard_normal((3, 5, 4)).astype(F32)
    s = dev(small)
    for axis in (0, 1, 2, -1):
        close(softce.softmax(s, axis=axis), softce.softmax(small, axis=axis), F32)
        close(softce.logsumexp(s, axis=axis, keepdims=True),
              softce.logsumexp(small, axis=axis, keepdims=True), F32)
    out_last = dev(np.zeros_like(small))
    assert softce.softmax(s, out=out_last) is out_last  # written directly
    close(out_last, softce.softmax(small), F32)
    same = dev(small)
    softce.log_softmax(same, out=same)
    close(same, softce.log_softmax(small), F32)

    x = np.random.default_rng(3).standard_normal((3, 33, 4)).astype(F32)
    d = dev(x)
    strided = d[:, ::2, 1:]  # a non-contiguous view: rows gathered on the device
    close(softce.log_softmax(strided, axis=1), softce.log_softmax(x[:, ::2, 1:], axis=1), F32)
    p = softmax_ref(np.moveaxis(x, 1, -1)).transpose(0, 2, 1).copy()
    reversed_rows = dev(p)[:, ::-2, 1:]  # negative strides
    close(softce.entropy(reversed_rows, axis=1), softce.entropy(p[:, ::-2, 1:], axis=1), F32)

    out = dev(np.zeros_like(x))
    assert softce.softmax(d, axis=1, out=out) is out  # written through a scatter
    close(out, softce.softmax(x, axis=1), F32)
    flat_out = dev(np.zeros_like(x))
    assert softce.sigmoid(d, out=flat_out) is flat_out
    close(flat_out, softce.sigmoid(x), F32)

    labels = np.array([[0, 5, 32, 1], [2, 2, 2, 2], [31, 0, 0, 7]])
    close(softce.cross_entropy(d, dev(labels), axis=1, reduction="none"),
          softce.cross_entropy(x, labels, axis=1, reduction="none"), F32)
    loss, grad = softce.cross_entropy_grad(d, labels, axis=1)  # host labels, device logits
    cpu_loss, cpu_grad = softce.cross_entropy_grad(x, labels, axis=1)
    close(loss, cpu_loss, F32)
    close(grad, cpu_grad, F32)
    jac = softce.softmax_jacobian(dev(x[:, :5, 0]), axis=-1)
    assert jac.shape == (3, 5, 5)


@on_cuda
def test_tuple_axes_none_and_0d_inputs() -> None:
    """Several class axes laid out as one (a view when they are already contiguous), axis=None,
    keepdims, out=, and 0-d inputs, as on the CPU."""
    import softce
    from softce.cuda import device

    x = np.random.default_rng(5).standard_normal((3, 4, 5))
    d = dev(x)
    for axes in ((1, 2), (0, 1, 2)):  # contiguous: the layout views the input
        rows = device.to_rows(device.as_device(d), axes)
        assert device.same_array(device.reshape_c(rows.data, x.shape), d), axes
    for axis in ((1, 2), (0, 2), (2, 0), None, ()):
        for keep in (False, True):
            close(softce.logsumexp(d, axis=axis, keepdims=keep),
                  softce.logsumexp(x, axis=axis, keepdims=keep), F64)
        close(softce.softmax(d, axis=axis), softce.softmax(x, axis=axis), F64)
        p = softce.softmax(x, axis=axis)
        close(softce.entropy(dev(p), axis=axis, keepdims=True),
              softce.entropy(p, axis=axis, keepdims=True), F64)
    strided = dev(x[:, ::-1, ::2].copy())[:, ::-1]  # negative strides: gathered
    close(softce.log_softmax(strided, axis=(0, 2)),
          softce.log_softmax(x[:, :, ::2], axis=(0, 2)), F64)
    for axis in ((1, 2), (0, 2)):  # out= written directly, then through a scatter
        out = dev(np.zeros_like(x))
        assert softce.log_softmax(d, axis=axis, out=out) is out
        close(out, softce.log_softmax(x, axis=axis), F64)
    g = np.random.default_rng(6).standard_normal(4)
    close(softce.logsumexp_vjp(d, dev(g), axis=(0, 2)),
          softce.logsumexp_vjp(x, g, axis=(0, 2)), F64)
    from numba import cuda

    zero_d = cuda.to_device(np.array(0.5, F32))  # (dev() would make it 1-d)
    assert zero_d.shape == ()
    for fn, want in ((softce.softmax, 1.0), (softce.log_softmax, 0.0),
                     (softce.logsumexp, 0.5), (softce.entropy, -0.5 * np.log(0.5))):
        got = fn(zero_d)
        assert got.shape == () and got.dtype == F32
        close(got, np.array(want, F32), F32)
    with pytest.raises(ValueError, match="axis"):
        softce.softmax(d, axis=(1, -2))


@on_cuda
def test_results_are_device_arrays_of_the_input_dtype() -> None:
    import softce

    x = logits(2, 7, np.float16)
    got = softce.softmax(dev(x))
    assert hasattr(got, "copy_to_host") and got.dtype == F32
    loss = softce.cross_entropy(dev(x.astype(F64)), dev(np.array([1, 2], np.uint8)))
    assert hasattr(loss, "copy_to_host") and loss.shape == () and loss.dtype == F64
    assert softce.cross_entropy(dev(np.zeros((0, 4), F32)), dev(np.zeros(0, np.int64)),
                                reduction="sum").copy_to_host() == 0


# validation ----------------------------------------------------------------------------------

def _error(fn, *args, **kwargs):
    with pytest.raises((ValueError, TypeError)) as info:
        fn(*args, **kwargs)
    return info.type, str(info.value)


@on_cuda
def test_the_same_checks_and_errors_as_the_cpu() -> None:
    import softce

    x = logits(4, 6, F32)
    d = dev(x)
    labels = np.array([0, 5, 6, 1])
    cases = [
        ("softmax", (x,), {"axis": 2}),
        ("softmax", (x,), {"axis": 1.0}),
        ("logsumexp", (x.astype(np.int32),), {}),
        ("log_softmax", (x,), {"out": np.zeros((4, 5), F32)}),
        ("log_softmax", (x,), {"out": np.zeros((4, 6), F64)}),
        ("cross_entropy", (x, labels), {}),
        ("cross_entropy", (x, np.array([0, 1, 2])), {}),
        ("cross_entropy", (x, labels.astype(bool)), {}),
        ("cross_entropy", (x, np.zeros((4, 5), F32)), {}),
        ("cross_entropy", (x, labels % 6), {"reduction": "avg"}),
        ("cross_entropy_grad", (x, labels % 6), {"grad_output": np.ones(4, F32)}),
        ("cross_entropy_grad", (x, labels % 6), {"grad_output": np.ones(3, F32),
                                                 "reduction": "none"}),
        ("entropy", (x,), {"base": 1}),
        ("softmax_vjp", (x, x[:, :5]), {}),
        ("logsumexp_vjp", (x, np.ones(5, F32)), {}),
    ]

    def on_device(value):
        return dev(value) if isinstance(value, np.ndarray) else value

    for name, args, kwargs in cases:
        fn = getattr(softce, name)
        cpu = _error(fn, *args, **kwargs)
        gpu_args = [d if a is x else on_device(a) for a in args]
        gpu_kwargs = {k: on_device(v) for k, v in kwargs.items()}
        assert _error(fn, *gpu_args, **gpu_kwargs) == cpu, (name, kwargs)
    assert _error(softce.softmax, d, out=np.zeros((4, 6), F32))[0] is TypeError
    part = dev(np.zeros((4, 12), F32))
    with pytest.raises(ValueError, match="overlaps"):
        softce.softmax(part[:, :6], out=part[:, 3:9])


@on_cuda
def test_labels_are_checked_on_the_device_without_copying_the_logits(monkeypatch) -> None:
    import softce

    if SIMULATED:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as Array
    else:
        from numba.cuda.cudadrv.devicearray import DeviceNDArray as Array
    copied: list[int] = []
    original = Array.copy_to_host

    def recording(self, *args, **kwargs):
        copied.append(self.size)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Array, "copy_to_host", recording)
    n = 1000
    d = dev(logits(3, n, F32))
    with pytest.raises(ValueError, match=r"label 1000 at position \(1,\)"):
        softce.cross_entropy(d, dev(np.array([0, n, -1])))
    assert copied and max(copied) <= 3  # one index and one label came back
    copied.clear()
    softce.cross_entropy_grad(d, dev(np.array([0, 1, 2])), out=d)
    assert copied == [1]  # only the index of the first bad label (none: 3)


def test_launch_shapes() -> None:
    """One warp per row up to 1024 classes, then about 32 elements per thread, at most 512
    threads (a 1024-thread launch of a kernel above 64 registers fails on a GPU)."""
    if SIMULATED:
        pytest.skip("launch defaults differ in the simulator")
    from softce.cuda import row_launch, threads_for

    assert [threads_for(n) for n in (1, 10, 1000, 1024, 1025, 32000, 128256)] == [
        32, 32, 32, 32, 64, 512, 512]
    assert row_launch(65536, 10) == (8192, (32, 8))
    assert row_launch(1024, 128256) == (1024, (512, 1))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize(("rows", "n"), [(4099, 10), (257, 1000), (9, 32000), (3, 128256)])
def test_benchmark_shapes_on_the_gpu(rows: int, n: int, dtype) -> None:
    """The benchmark's class counts with the default launch (one warp per row up to 1024
    classes, then 512-thread rows): every row function and the fused CE against the CPU;
    softmax_entropy to the logits' scale (LSE - sum p x, the README's floor)."""
    import softce

    x = logits(rows, n, dtype)
    x[1, :] = np.where(np.isinf(x[1]), -30, x[1])
    x[-1, 0] = -np.inf
    d = dev(x)
    for fn in (softce.softmax, softce.log_softmax, softce.logsumexp):
        close(fn(d), fn(x), dtype)
    scale = max(1.0, float(np.abs(x[np.isfinite(x)]).max()))
    np.testing.assert_allclose(host(softce.softmax_entropy(d)), softce.softmax_entropy(x),
                               rtol=0, atol=32 * np.finfo(dtype).eps * scale)
    labels = np.random.default_rng(n).integers(0, n, rows)
    labels[-1] = 1 % n
    labels[0] = -100
    for opts in ({}, {"label_smoothing": 0.1, "z_loss": 1e-4, "weight": np.linspace(0.5, 2, n)}):
        got = softce.cross_entropy_grad(d, dev(labels), **opts)
        want = softce.cross_entropy_grad(x, labels, **opts)
        close(got[0], want[0], dtype)
        close(got[1], want[1], dtype)
    inplace = dev(x)
    loss, grad = softce.cross_entropy_grad(inplace, labels, reduction="sum", out=inplace)
    close(grad, softce.cross_entropy_grad(x, labels, reduction="sum")[1], dtype)
    close(loss, softce.cross_entropy(x, labels, reduction="sum"), dtype)


@pytest.mark.gpu
def test_pytorch_cuda_tensors_as_inputs_targets_and_weights() -> None:
    """PyTorch CUDA tensors go in through ``__cuda_array_interface__`` as logits, labels,
    probabilities and class weights; results match the CPU kernels and PyTorch itself."""
    import torch
    import torch.nn.functional as F

    import softce

    gen = torch.Generator(device="cuda").manual_seed(0)
    x = 3 * torch.randn(6, 33, device="cuda", generator=gen)
    labels = torch.tensor([0, 5, 32, -100, 7, 7], device="cuda")
    weight = torch.rand(33, device="cuda", generator=gen) + 0.25
    y = torch.rand(6, 33, device="cuda", generator=gen)
    xc, lc, wc, yc = (t.cpu().numpy() for t in (x, labels, weight, y))
    for fn in (softce.softmax, softce.log_softmax, softce.logsumexp):
        close(fn(x), fn(xc), F32)
    opts = {"weight": weight, "label_smoothing": 0.1}
    loss, grad = softce.cross_entropy_grad(x, labels, **opts)
    cpu_loss, cpu_grad = softce.cross_entropy_grad(xc, lc, weight=wc, label_smoothing=0.1)
    close(loss, cpu_loss, F32)
    close(grad, cpu_grad, F32)
    leaf = x.clone().requires_grad_(True)
    ref = F.cross_entropy(leaf, labels, **opts)
    ref.backward()
    close(loss, ref.item(), F32)
    close(grad, leaf.grad.cpu().numpy(), F32)
    close(softce.cross_entropy(x, labels, **opts), ref.item(), F32)
    logp = F.log_softmax(x, -1)
    close(softce.nll_loss(logp, labels, weight=weight),
          F.nll_loss(logp, labels, weight=weight).item(), F32)
    close(softce.binary_cross_entropy_with_logits(x, y, pos_weight=weight),
          F.binary_cross_entropy_with_logits(x, y, pos_weight=weight).item(), F32)
    close(softce.binary_cross_entropy_with_logits(x, y, pos_weight=weight),
          softce.binary_cross_entropy_with_logits(xc, yc, pos_weight=wc), F32)


@on_cuda
def test_every_launch_goes_on_the_callers_stream(monkeypatch) -> None:
    """Inside on_stream(s) every kernel a call launches (the row kernels, the layout copy of a
    strided input, the label check, the mean's sum) is queued on s; outside, on the default
    stream; the results are the same."""
    from numba import cuda

    import softce
    from softce.cuda import on_stream
    from softce.generated.cuda import softmax as softmax_module

    kernel_type = type(softmax_module.softmax_f32)
    launched = []
    original = kernel_type.__getitem__

    def spy(self, configuration):
        launched.append(configuration[2] if len(configuration) > 2 else None)
        return original(self, configuration)

    monkeypatch.setattr(kernel_type, "__getitem__", spy)
    x = logits(5, 37, F32)
    labels = np.array([0, 3, 36, 9, 1])

    def calls():
        d = dev(x)
        return [host(softce.softmax(d[:, ::2])), host(softce.log_softmax(d, axis=0)),
                np.asarray(host(softce.cross_entropy(d, dev(labels)))),
                host(softce.cross_entropy_grad(d, labels)[1])]

    stream = cuda.stream()
    with on_stream(stream) as got:
        assert got is stream
        inside = calls()
    assert len(launched) >= 6 and all(s is stream for s in launched), launched
    launched.clear()
    outside = calls()
    assert launched and all(s is not None and s is not stream for s in launched)
    for a, b in zip(inside, outside):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="stream"):
        with on_stream("stream"):
            pass


# vector loads ------------------------------------------------------------------------------

@on_cuda
def test_vector_head_finds_each_rows_first_aligned_element() -> None:
    """vector_head (run in a kernel) counts the elements before a row's first 16-byte aligned
    one, and refuses (-1) a row whose elements are not contiguous."""
    from numba import cuda

    from softce.cuda.runtime import vector_head

    @cuda.jit
    def head_of(row, out):
        out[0] = vector_head(row, 4)

    def head(row) -> int:
        out = cuda.to_device(np.full(1, -2, np.int64))
        head_of[1, 1](row, out)
        return int(out.copy_to_host()[0])

    base = cuda.to_device(np.zeros((3, 64), F32))  # a row of 256 bytes: every row aligned
    for offset in range(6):
        assert head(base[1, offset:]) == (-offset) % 4
    assert head(cuda.to_device(np.zeros(64, np.uint16))[3:]) == 1
    assert head(base[:, 0]) == -1  # a column: stride of a row
    assert head(base[1, 5:6]) == 3  # one element: any stride is contiguous


@on_cuda
@pytest.mark.parametrize("n", [1, 6, 37])
def test_rows_at_every_alignment_agree_with_cpu(n: int) -> None:
    """Rows starting anywhere in a vector (rows n + 8 elements apart: each row's own start),
    outputs aligned like the input (vectors from each row's head) or not (scalar), and rows
    updated in place: the vector loops and the scalar loops around them take every element
    once."""
    import softce

    rows = 4
    x = logits(rows, n + 8, F32)
    y = np.random.default_rng(2).integers(0, n, rows)

    def buffer(offset: int):
        return dev(np.zeros((rows, n + 8), F32))[:, offset:offset + n]

    for offset in (0, 1, 3):
        d = dev(x)[:, offset:offset + n]
        part = x[:, offset:offset + n]
        close(softce.logsumexp(d), softce.logsumexp(part), F32)
        for shift in (0, 1):  # out aligned like the rows, or one element off
            out = buffer((offset + shift) % 4)
            softce.log_softmax(d, out=out)
            close(out, softce.log_softmax(part), F32)
        grad = buffer(offset)
        loss, _ = softce.cross_entropy_grad(d, dev(y), reduction="none", label_smoothing=0.1,
                                            out=grad)
        want_loss, want_grad = softce.cross_entropy_grad(part, y, reduction="none",
                                                         label_smoothing=0.1)
        close(loss, want_loss, F32)
        close(grad, want_grad, F32)
        softce.softmax(d, out=d)
        close(d, softce.softmax(part), F32)


@on_cuda
def test_rows_of_a_rows_array_are_the_array_itself() -> None:
    """The common layout takes no view: (rows, n) with the class axis last is its own rows,
    the kernel's result is returned as it is, and an out= of that layout is written itself."""
    from softce.cuda.device import rows_view_of, to_rows

    d = dev(logits(3, 8, F32))
    rows = to_rows(d, (1,))
    assert rows.data is d and rows.restore(d) is d
    out = dev(np.zeros((3, 8), F32))
    assert rows_view_of(out, rows) is out
    by_columns = to_rows(d, (0,))  # the class axis first: a strided view, restored as one
    assert by_columns.data is not d and tuple(by_columns.data.shape) == (8, 3)
    back = by_columns.restore(by_columns.data)
    assert back is not by_columns.data and tuple(back.shape) == (3, 8)
    square = dev(logits(4, 4, F32))  # (4, 4) with the class axis first: the same shape
    transposed = to_rows(square, (0,))
    assert transposed.data is not square
    assert tuple(transposed.data.strides) == tuple(reversed(square.strides))
    result = dev(logits(4, 4, F32))  # a kernel's C-contiguous (rows, n) result
    back = transposed.restore(result)  # its transposed view, not the result itself
    assert back is not result and tuple(back.strides) == tuple(reversed(result.strides))
