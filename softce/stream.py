"""Writing a chunk of a kernel's output to memory, through the caches or around them.

A row kernel's output pass computes each chunk of an output row in a small buffer (it stays in
L1) and hands it to ``put``. A plain store to a line that is not in the cache first reads that
line from memory (read-for-ownership), so writing an output far larger than the caches costs a
read and a write of it. A non-temporal store writes whole lines without reading them: for
log_softmax of 500 MiB that is a third of its memory traffic (measured on two cores: its
output pass took about 26 ms with plain stores, 14 ms with these). ``put(dst, src, True)``
stores that way: plain stores up to dst's first 64-byte boundary, one full line per aligned
vector store marked ``!nontemporal`` (LLVM's loop vectoriser does not emit these itself: it
cannot prove the alignment), then plain stores for the tail. ``stream_fence`` after a row's
last ``put`` orders its non-temporal stores before anything the thread does next.

Kernels stream only outputs of at least ``STREAM_BYTES``: a smaller output is better left in
the cache, where the caller will read it. Kernels that store a row's exp(x - m_c) in the output
row and rescale it there (softmax, the cross-entropy gradients) do not stream: their output
lines are in the cache already when the final values are written.
"""

from __future__ import annotations

import numba as nb
from llvmlite import ir
from numba.core import cgutils, config, types
from numba.extending import intrinsic

#: Outputs of at least this many bytes are stored around the caches (16 MiB: about where an
#: output stops fitting a server's last-level cache share).
STREAM_BYTES = 16 << 20

#: Bytes per non-temporal vector store: one cache line.
LINE = 64


def _copy(dst, src) -> None:  # noqa: ANN001 - 1-D arrays
    """dst[:] = src[: len(dst)] (pure-Python path of the intrinsic, NUMBA_DISABLE_JIT=1)."""
    dst[:] = src[: len(dst)]


def _no_fence() -> None:
    """Python has no store buffer to drain (NUMBA_DISABLE_JIT=1)."""


@intrinsic
def _stream_copy_ir(typingctx, dst, src):
    """dst[k] = src[k] for k < len(dst), whole aligned lines of dst stored non-temporally
    (floats, or the uint16 bit patterns of a 16-bit kernel's output)."""
    ok = (isinstance(dst, types.Array) and isinstance(src, types.Array)
          and dst.ndim == src.ndim == 1 and dst.dtype == src.dtype
          and isinstance(dst.dtype, (types.Float, types.Integer))
          and dst.layout == src.layout == "C")
    if not ok:
        return None

    def codegen(context, builder, signature, args):
        dst_t, src_t = signature.args
        d = context.make_array(dst_t)(context, builder, args[0])
        s = context.make_array(src_t)(context, builder, args[1])
        intp = context.get_value_type(types.intp)
        fty = context.get_value_type(dst_t.dtype)
        size = context.get_abi_sizeof(fty)
        width = LINE // size
        vty = ir.VectorType(fty, width)
        n = builder.extract_value(d.shape, 0)
        # elements before dst's first line boundary: ((-address) mod LINE) / size, at most n
        address = builder.ptrtoint(d.data, intp)
        gap = builder.and_(builder.neg(address), ir.Constant(intp, LINE - 1))
        head = builder.udiv(gap, ir.Constant(intp, size))
        head = builder.select(builder.icmp_signed("<", head, n), head, n)
        lines = builder.sdiv(builder.sub(n, head), ir.Constant(intp, width))
        body_end = builder.add(head, builder.mul(lines, ir.Constant(intp, width)))

        def scalar(j):
            value = builder.load(builder.gep(s.data, [j]))
            builder.store(value, builder.gep(d.data, [j]))

        with cgutils.for_range(builder, head, intp=intp) as loop:
            scalar(loop.index)
        nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
        with cgutils.for_range(builder, lines, intp=intp) as loop:
            j = builder.add(head, builder.mul(loop.index, ir.Constant(intp, width)))
            source = builder.bitcast(builder.gep(s.data, [j]), vty.as_pointer())
            target = builder.bitcast(builder.gep(d.data, [j]), vty.as_pointer())
            value = builder.load(source, align=size)
            store = builder.store(value, target, align=LINE)
            store.set_metadata("nontemporal", nontemporal)
        with cgutils.for_range(builder, builder.sub(n, body_end), intp=intp) as loop:
            scalar(builder.add(body_end, loop.index))
        return context.get_dummy_value()

    return types.void(dst, src), codegen


@intrinsic
def _fence_ir(typingctx):
    """A sequentially consistent fence (x86: mfence, which also drains non-temporal stores)."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


_stream_copy = _copy if config.DISABLE_JIT else _stream_copy_ir
_fence = _no_fence if config.DISABLE_JIT else _fence_ir


@nb.njit(cache=True)
def put(dst, src, stream):  # noqa: ANN001, ANN201 - Numba-typed
    """dst[k] = src[k] for every k of dst; around the caches when ``stream``."""
    if stream:
        _stream_copy(dst, src)
    else:
        for k in range(dst.shape[0]):
            dst[k] = src[k]


@nb.njit(cache=True)
def stream_fence(stream):  # noqa: ANN001, ANN201 - Numba-typed
    """Order this thread's non-temporal stores before its next memory access."""
    if stream:
        _fence()

