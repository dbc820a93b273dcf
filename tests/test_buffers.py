"""The output cache (softce/buffers.py): large outputs reuse the buffers of dead outputs,
never the memory of a live array or of a view of one."""

import gc
import threading

import numpy as np
import pytest

import softce
from softce import buffers

BIG = (64, 1 << 14)  # 4 MiB of float32: the smallest cached size


@pytest.fixture(autouse=True)
def _fresh_cache():
    old = buffers.configure(0)
    buffers.configure(256 << 20)
    yield
    buffers.configure(0)
    buffers.configure(old)


def _x(shape=BIG, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_a_dead_output_buffer_is_reused_for_the_next_output_of_its_size() -> None:
    x = _x()
    first = softce.softmax(x)
    address = first.ctypes.data
    assert address % buffers.ALIGN == 0
    del first
    gc.collect()
    assert buffers.held_bytes() >= x.nbytes
    second = softce.log_softmax(x)
    assert second.ctypes.data == address
    assert buffers.held_bytes() == 0
    np.testing.assert_allclose(second, x - softce.logsumexp(x)[:, None], rtol=1e-5, atol=1e-5)


def test_live_outputs_and_their_views_are_never_handed_out_again() -> None:
    x = _x()
    kept = softce.softmax(x)
    want = kept.copy()
    view = softce.softmax(x)[::3, 1:]  # only a view of the second output survives
    view_want = view.copy()
    gc.collect()
    for _ in range(3):
        other = softce.log_softmax(x)
        assert not np.shares_memory(other, kept)
        assert not np.shares_memory(other, view)
        loss, grad = softce.cross_entropy_grad(x, np.arange(BIG[0]))
        assert not np.shares_memory(grad, kept) and not np.shares_memory(grad, view)
    np.testing.assert_array_equal(kept, want)
    np.testing.assert_array_equal(view, view_want)


def test_outputs_are_plain_writeable_arrays() -> None:
    for dtype in (np.float32, np.float64):
        y = softce.softmax(_x(dtype=dtype))
        assert type(y) is np.ndarray and y.dtype == dtype and y.shape == BIG
        assert y.flags.c_contiguous and y.flags.writeable and y.flags.aligned
        y[0, 0] = 7.0
        assert y[0, 0] == 7.0
        assert y.copy().flags.owndata


def test_small_outputs_and_a_disabled_cache_hold_nothing() -> None:
    small = softce.softmax(_x((4, 5)))
    del small
    gc.collect()
    assert buffers.held_bytes() == 0
    buffers.configure(0)
    y = softce.softmax(_x())
    del y
    gc.collect()
    assert buffers.held_bytes() == 0


def test_the_cache_keeps_at_most_its_limit() -> None:
    x = _x()
    buffers.configure(x.nbytes + 2 * buffers.ALIGN)  # room for one buffer of this size
    outs = [softce.softmax(x) for _ in range(3)]
    del outs
    gc.collect()
    assert 0 < buffers.held_bytes() <= x.nbytes + 2 * buffers.ALIGN
    assert buffers.configure(0) == x.nbytes + 2 * buffers.ALIGN
    assert buffers.held_bytes() == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1"])
def test_a_bad_limit_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        buffers.configure(bad)


def test_threads_get_distinct_buffers() -> None:
    xs = [_x(seed=s) for s in range(4)]
    want = [softce.softmax(x).copy() for x in xs]
    got: list[np.ndarray | None] = [None] * 4
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                got[i] = softce.softmax(xs[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert len({g.ctypes.data for g in got}) == 4
