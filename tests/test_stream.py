"""softce.stream: put copies exactly, with and without non-temporal stores, at every alignment;
its compiled form really stores whole lines non-temporally; kernels whose outputs cross
STREAM_BYTES give the same bits as below it."""

from __future__ import annotations

import re

import numba as nb
import numpy as np
import pytest

import softce
from softce.stream import LINE, STREAM_BYTES, _copy, put, stream_fence


@nb.njit
def _put_fenced(dst, src, stream):
    put(dst, src, stream)
    stream_fence(stream)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stream", [True, False])
def test_put_copies_every_length_at_every_offset(dtype, stream: bool) -> None:
    size = np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    src = rng.standard_normal(300).astype(dtype)
    src[::7] = np.nan
    src[::11] = -np.inf
    for offset in range(LINE // size + 1):  # every position relative to a line boundary
        for length in (0, 1, 2, 3, LINE // size - 1, LINE // size, LINE // size + 1, 37, 131, 256):
            base = np.full(offset + length + 8, 7, dtype)
            dst = base[offset:offset + length]
            _put_fenced(dst, src, stream)
            np.testing.assert_array_equal(dst.view(f"u{size}"), src[:length].view(f"u{size}"))
            assert (base[:offset] == 7).all() and (base[offset + length:] == 7).all()


def test_put_copies_only_the_destination_length() -> None:
    src = np.arange(64, dtype=np.float32)
    dst = np.zeros(40, np.float32)
    _put_fenced(dst, src, True)
    np.testing.assert_array_equal(dst, src[:40])


def test_streamed_store_is_a_nontemporal_vector_store_of_a_line() -> None:
    for dtype, name in ((np.float32, "float"), (np.float64, "double")):
        args = (np.zeros(64, dtype), np.zeros(64, dtype), True)
        _put_fenced(*args)
        sig = tuple(nb.typeof(a) for a in args)
        text = _put_fenced.inspect_llvm(sig)
        width = LINE // np.dtype(dtype).itemsize
        stores = re.findall(rf"store <{width} x {name}> .*, align {LINE}, !nontemporal", text)
        assert stores, name
        assert "fence seq_cst" in text


def test_pure_python_path_copies() -> None:
    dst = np.zeros(5)
    _copy(dst, np.arange(9.0))
    np.testing.assert_array_equal(dst, np.arange(5.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_above_the_stream_threshold_match_below_it(dtype) -> None:
    """Rows computed in one large call (outputs streamed) equal the same rows computed a few
    at a time (outputs stored through the caches), bit for bit."""
    n = 1000
    rows = STREAM_BYTES // (n * np.dtype(dtype).itemsize) + 3
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
    x[5, ::3] = -np.inf
    x[9, 17] = np.nan
    y = rng.integers(0, n, rows)
    g = rng.standard_normal((rows, n)).astype(dtype)
    some = slice(0, 40)
    calls = {
        "log_softmax": lambda a, sl: softce.log_softmax(a[sl]),
        "log_softmax_vjp": lambda a, sl: softce.log_softmax_vjp(a[sl], g[sl]),
        "cross_entropy_grad (probabilities)": lambda a, sl: softce.cross_entropy_grad(
            a[sl], softce.softmax(g[sl]), reduction="sum")[1],
        "softmax": lambda a, sl: softce.softmax(a[sl]),
        "cross_entropy_grad": lambda a, sl: softce.cross_entropy_grad(
            a[sl], y[sl], reduction="sum")[1],
    }
    for name, call in calls.items():
        whole = call(x, slice(None))
        assert whole.nbytes >= STREAM_BYTES
        part = call(x, some)
        np.testing.assert_array_equal(whole[some], part, err_msg=name)
        tail = call(x, slice(rows - 40, rows))
        np.testing.assert_array_equal(whole[rows - 40:], tail, err_msg=name)
