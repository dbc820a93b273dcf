"""softce.dask against the in-memory API, on the threaded scheduler and on a LocalCluster.

Chunkings split the rows and the class axis unevenly, a chunk of one class included; every
result must equal softce's in-memory result to float rounding, keep the input's row (and
class) chunks, dtype and NumPy meta, and stay lazy until compute(). One test reduces a 4 GiB
array generated lazily in 64 MiB chunks to a scalar loss on two worker processes and checks
that each worker's peak memory stays a few chunks above its idle footprint.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

import softce

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
sd = pytest.importorskip("softce.dask")

ROWS, CLASSES = 9, 23
#: (row chunks, class chunks): one chunk; rows only; uneven class splits with a one-class chunk.
CHUNKINGS = [
    ((9,), (23,)),
    ((4, 5), (23,)),
    ((4, 5), (7, 1, 15)),
    ((2, 2, 5), (1, 1, 1, 10, 10)),
    ((9,), (11, 12)),
]
IDS = ["whole", "rows", "7-1-15", "1-1-1-10-10", "11-12"]
TOL = {np.float32: dict(rtol=3e-6, atol=3e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _data(dtype, masked: bool = True):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((ROWS, CLASSES)) * 4).astype(dtype)
    if masked:
        x[1, 3:17] = -np.inf  # masks spanning several class chunks
        x[4, :1] = -np.inf
    labels = rng.integers(0, CLASSES, ROWS)
    labels[2] = 7  # in the one-class chunk of "7-1-15"
    probs = softce.softmax(rng.standard_normal((ROWS, CLASSES)).astype(dtype))
    probs[3, 5] = 0.0
    return x, labels, probs


def _same(got, expected, dtype) -> None:
    got = np.asarray(got)
    assert got.shape == np.shape(expected)
    assert got.dtype == np.asarray(expected).dtype == dtype
    np.testing.assert_allclose(got, expected, equal_nan=True, **TOL[dtype])


def _lazy(result, dtype, chunks=None) -> None:
    assert isinstance(result, da.Array)
    assert result.dtype == dtype and result._meta.dtype == dtype
    assert type(result._meta) is np.ndarray
    if chunks is not None:
        assert result.chunks == chunks


def _all_results(x, labels, probs, dtype, chunks, scheduler=None):
    """(name, lazy dask result, in-memory result) for every function and option."""
    X = da.from_array(x, chunks=chunks)
    Y = da.from_array(probs, chunks=chunks)
    L = da.from_array(labels, chunks=chunks[:1])
    cases = [
        ("logsumexp", sd.logsumexp(X), softce.logsumexp(x)),
        ("logsumexp keepdims", sd.logsumexp(X, keepdims=True),
         softce.logsumexp(x, keepdims=True)),
        ("softmax", sd.softmax(X), softce.softmax(x)),
        ("log_softmax", sd.log_softmax(X), softce.log_softmax(x)),
        ("entropy", sd.entropy(Y), softce.entropy(probs)),
        ("entropy base 2", sd.entropy(Y, base=2), softce.entropy(probs, base=2)),
    ]
    for reduction in ("none", "mean", "sum"):
        cases += [
            (f"ce labels {reduction}", sd.cross_entropy(X, L, reduction=reduction),
             softce.cross_entropy(x, labels, reduction=reduction)),
            (f"ce probs {reduction}", sd.cross_entropy(X, Y, reduction=reduction),
             softce.cross_entropy(x, probs, reduction=reduction)),
        ]
        for name, tgt_d, tgt in (("labels", L, labels), ("probs", Y, probs)):
            loss, grad = sd.cross_entropy_grad(X, tgt_d, reduction=reduction,
                                               grad_output=0.5)
            ref_loss, ref_grad = softce.cross_entropy_grad(x, tgt, reduction=reduction,
                                                           grad_output=0.5)
            cases += [(f"ce_grad {name} {reduction} loss", loss, ref_loss),
                      (f"ce_grad {name} {reduction} grad", grad, ref_grad)]
    return cases


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks", CHUNKINGS, ids=IDS)
def test_threaded_scheduler_equals_the_in_memory_api(chunks, dtype) -> None:
    x, labels, probs = _data(dtype)
    cases = _all_results(x, labels, probs, dtype, chunks)
    for name, lazy, _ in cases:
        _lazy(lazy, dtype)
        if lazy.ndim == 2:
            assert lazy.chunks == (chunks if "keepdims" not in name else chunks[:1] + ((1,),)), name
        elif lazy.ndim == 1:
            assert lazy.chunks == chunks[:1], name
    computed = da.compute(*(lazy for _, lazy, _ in cases), scheduler="threads")
    for (name, _, expected), got in zip(cases, computed):
        try:
            _same(got, expected, dtype)
        except AssertionError as exc:
            raise AssertionError(f"{name}, chunks {chunks}") from exc


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shifted_probability_loss_across_class_blocks(dtype) -> None:
    """D19 across class blocks: each block's T = sum y (m_b - x) against its own max, merged
    with merge_t. Logits of 1e4 (float64) or 100 (float32): the loss equals the in-memory one
    to 4 ulp of itself; a block of -inf logits only under positive targets gives +inf, under
    zero targets nothing; a row of -inf only NaN."""
    rng = np.random.default_rng(19)
    base = 1e4 if dtype == np.float64 else 100.0
    x = (base + 3 * rng.standard_normal((4, 30))).astype(dtype)
    x[:, 25] = base + 12  # the row's max in the last block
    y = softce.softmax(rng.standard_normal((4, 30)).astype(dtype))
    x[1:3, :10] = -np.inf  # the first block
    y[2, :10] = 0
    x[3] = -np.inf
    got = sd.cross_entropy(da.from_array(x, chunks=(2, 10)), da.from_array(y, chunks=(2, 10)),
                           reduction="none").compute()
    want = softce.cross_entropy(x, y, reduction="none")
    np.testing.assert_allclose(got[[0, 2]], want[[0, 2]], rtol=4 * np.finfo(dtype).eps)
    assert got[1] == want[1] == np.inf and np.isnan(got[3]) and np.isnan(want[3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_near_zero_across_class_blocks(dtype) -> None:
    """D18 across class blocks: blocks' (m, s) merged with merge_s keep log-probabilities, the
    LSE and label losses near 0 relative to themselves, equal to the in-memory results to
    4 ulp of their own size (the max in a later block than most of the small terms)."""
    far = -100.0 if dtype == np.float64 else -80.0
    rows = np.array([[far] * 600 + [0.0] + [far] * 400,
                     [-10.0, -1455.0] + [-2000.0] * 598 + [0.0] + [-2000.0] * 400], dtype)
    X = da.from_array(rows, chunks=(1, (300, 301, 400)))
    eps = np.finfo(dtype).eps
    for got, want in [
        (sd.log_softmax(X).compute()[:, 600], softce.log_softmax(rows)[:, 600]),
        (sd.logsumexp(X).compute(), softce.logsumexp(rows)),
        (sd.cross_entropy(X, da.from_array(np.array([600, 600]), chunks=1),
                          reduction="none").compute(),
         softce.cross_entropy(rows, np.array([600, 600]), reduction="none")),
    ]:
        assert np.all(np.abs(want) > 0) and np.all(np.abs(want) < 1e-4)
        np.testing.assert_allclose(got, want, rtol=4 * eps, atol=0)


def test_class_axis_not_last_and_batch_dims() -> None:
    """PyTorch's layout (N, C, d1): the class axis at 1, split unevenly, labels (N, d1)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 9, 4)).astype(np.float32)
    labels = rng.integers(0, 9, (5, 4))
    X = da.from_array(x, chunks=(2, (4, 1, 4), 3))
    soft = sd.softmax(X, axis=1)
    assert soft.chunks == X.chunks
    _same(soft.compute(), softce.softmax(x, axis=1), np.float32)
    _same(sd.log_softmax(X, axis=1).compute(), softce.log_softmax(x, axis=1), np.float32)
    _same(sd.logsumexp(X, axis=1, keepdims=True).compute(),
          softce.logsumexp(x, axis=1, keepdims=True), np.float32)
    _same(sd.cross_entropy(X, labels, axis=1, reduction="none").compute(),
          softce.cross_entropy(x, labels, axis=1, reduction="none"), np.float32)
    loss, grad = sd.cross_entropy_grad(X, labels, axis=1)
    ref_loss, ref_grad = softce.cross_entropy_grad(x, labels, axis=1)
    assert grad.chunks == X.chunks
    _same(loss.compute(), ref_loss, np.float32)
    _same(grad.compute(), ref_grad, np.float32)
    go = rng.standard_normal((5, 4)).astype(np.float32)
    loss, grad = sd.cross_entropy_grad(X, labels, axis=1, reduction="none", grad_output=go)
    ref_loss, ref_grad = softce.cross_entropy_grad(x, labels, axis=1, reduction="none",
                                                   grad_output=go)
    _same(grad.compute(), ref_grad, np.float32)


def test_float16_is_upcast_and_bad_arguments_raise() -> None:
    x = da.ones((4, 6), dtype=np.float16, chunks=(2, 3))
    assert sd.softmax(x).dtype == np.float32
    with pytest.raises(TypeError, match="x must be a float32 or float64"):
        sd.softmax(da.ones((4, 6), dtype=np.int32, chunks=2))
    with pytest.raises(ValueError, match="reduction must be one of"):
        sd.cross_entropy(x, np.zeros(4, int), reduction="avg")
    with pytest.raises(ValueError, match="label 6 at position"):
        sd.cross_entropy(x, np.array([0, 1, 6, 2]))
    lazy_bad = sd.cross_entropy(x, da.from_array(np.array([0, 1, 6, 2]), chunks=2))
    with pytest.raises(ValueError, match="label 6"):
        lazy_bad.compute(scheduler="threads")
    with pytest.raises(ValueError, match="shape of logits without axis"):
        sd.cross_entropy(x, np.zeros(3, int))
    with pytest.raises(ValueError, match="base must be"):
        sd.entropy(x, base=1)


def test_no_task_holds_a_whole_row() -> None:
    """With the class axis split, no task's result is larger than one input block (2 x 8 of
    2 x 64): the row merge is a tree of per-block states, never a rechunk to whole rows."""
    from dask.callbacks import Callback

    sizes: list[tuple[int, ...]] = []

    class Sizes(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if isinstance(result, np.ndarray) and "finalize" not in str(key):
                sizes.append(result.shape)  # (compute()'s own finalize gathers the result)

    X = da.random.default_rng(1).random((4, 64), dtype=np.float32, chunks=(2, 8))
    results = (sd.softmax(X, split_every=2), sd.logsumexp(X),
               *sd.cross_entropy_grad(X, np.arange(4) * 15, reduction="sum"))
    with Sizes():
        da.compute(*results, scheduler="sync")
    assert sizes and max(int(np.prod(shape)) for shape in sizes) <= 16
    assert max(shape[-1] for shape in sizes if shape) <= 8


# a real cluster -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each, 2 GiB memory limit each."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       memory_limit="2GiB", dashboard_address=None,
                                       silence_logs=40)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def test_local_cluster_equals_the_in_memory_api(client) -> None:
    dtype = np.float32
    x, labels, probs = _data(dtype)
    chunks = ((4, 5), (7, 1, 15))
    cases = _all_results(x, labels, probs, dtype, chunks)
    computed = client.compute([lazy for _, lazy, _ in cases], sync=True)
    for (name, _, expected), got in zip(cases, computed):
        try:
            _same(got, expected, dtype)
        except AssertionError as exc:
            raise AssertionError(name) from exc
    ran_on = client.run(lambda: "softce.generated.partitioned" in sys.modules)
    assert len(ran_on) == 2 and all(ran_on.values())


def _status(field: str) -> int:
    """A size from /proc/self/status (Linux), in bytes."""
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith(field))
    return int(line.split()[1]) * 1024


def _reset_peak() -> int:
    """The peak RSS set back to the current RSS (Linux's clear_refs 5); the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS:")


def _peak_rss() -> int:
    return _status("VmHWM:")


GiB, MiB = 1 << 30, 1 << 20


def test_peak_worker_memory_is_bounded_by_the_chunk_size(client) -> None:
    """A 4 GiB float32 array of logits, generated lazily in 64 MiB chunks (2048 x 8192, the
    class axis split in four), reduced to its mean cross-entropy: each worker's peak resident
    memory grows by a few chunks, not by the array (2 GiB per worker were it gathered)."""
    rows, classes = 32768, 32768
    chunks = (2048, 8192)
    chunk_bytes = chunks[0] * chunks[1] * 4
    assert chunk_bytes == 64 * MiB and rows * classes * 4 == 4 * GiB
    rng = da.random.default_rng(0)
    logits = rng.random((rows, classes), dtype=np.float32, chunks=chunks)
    labels = rng.integers(0, classes, rows, chunks=chunks[0])
    loss = sd.cross_entropy(logits, labels)
    # warm each worker (kernels loaded) on a small problem: the growth below is then the data's
    small = rng.random((64, 256), dtype=np.float32, chunks=(32, 100))
    client.compute(sd.cross_entropy(small, labels[:64] % 256), sync=True)
    before = client.run(_reset_peak)
    start = time.perf_counter()
    value = client.compute(loss, sync=True)
    seconds = time.perf_counter() - start
    after = client.run(_peak_rss)
    assert np.isfinite(value) and abs(value - (np.log(classes) + 0.0)) < 0.1  # ~log(C) for U(0,1)
    growth = {w: after[w] - before[w] for w in after}
    print(f"4 GiB in {seconds:.1f} s; peak RSS per worker (MiB): "
          + ", ".join(f"{after[w] / MiB:.0f} (+{growth[w] / MiB:.0f})" for w in after))
    # from the RSS after the warm-up, the peak set back to it: with an empty Numba cache the
    # process's peak since its start holds the warm-up's compilation of the kernels (1.2 GiB
    # seen on a fresh clone)
    for w in after:
        assert growth[w] < 6 * chunk_bytes, (w, growth[w] / MiB)


def test_importing_softce_does_not_import_dask() -> None:
    code = "import sys, softce; softce.softmax([[1.0, 2.0]]); print('dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
