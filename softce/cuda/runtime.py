"""What the generated CUDA kernels call besides the printed math, and the reduction path.

On a GPU, ``exp_f32``/``log_f32``/``log1p_f32`` are ``math.exp``/``math.log``/``math.log1p``,
which Numba lowers to
libdevice's ``__nv_expf``/``__nv_logf`` for float32 (at most 2 and 1 ulp, CUDA's math API
table) and ``__nv_exp``/``__nv_log`` for float64 (1 ulp). No ``fastmath``: Numba's CUDA
``fastmath=True`` swaps in ``__nv_fast_expf`` (error growing with |x|), flushes subnormals and
lets LLVM assume no NaN/inf, which would break the NaN and -inf the kernels must carry.
In the simulator (``NUMBA_ENABLE_CUDASIM=1``) they are NumPy's IEEE exp/log on NumPy scalars
(Python's ``math.log(0)`` raises there; libdevice returns NaN there).

``SHUFFLE`` picks how a row's threads merge their partial (m, d) states: warp shuffles on a
GPU, a shared-memory tree in the simulator (which has no shuffles) or when
``SOFTCE_CUDA_REDUCE=shared`` is set before the kernels are imported.

The 16-bit variants (``<kernel>_bf16``, ``<kernel>_f16``) read their rows as uint16 bit
patterns, as on the CPU (``softce.half``): ``widen_bf16``/``widen_f16`` give a load's float32
value (exact), ``narrow_bf16_to``/``narrow_f16_to(v, like)`` the value a store of float32 v
into the array ``like`` writes: v rounded to 16 bits, nearest even, as its bit pattern for a
uint16 array, v itself for a float32 one (a float16 variant's float32 outputs). On a GPU they
are intrinsics emitting the CPU's LLVM IR (``softce.half.build_*``): bfloat16 is a shift,
and its rounding integer adds with NaN made 0x7FC0; float16 goes through LLVM's half type,
which NVVM lowers to PTX's ``cvt.f32.f16`` and ``cvt.rn.f16.f32`` (round to nearest even,
overflow to inf, subnormals kept). Bit patterns rather than numba-cuda's float16 arrays keep
one kernel signature for both backends. In the simulator they are ``softce.half``'s NumPy
scalar functions.

Vector access, for the row kernels' loops: ``vector_head(a, width)`` is the number of
elements of the 1-D row ``a`` before its first element aligned to ``width`` elements (-1 when
none is: a class axis that is not contiguous), ``vector_load(a, k, width)`` the ``width``
elements from ``a[k]`` (aligned) as a tuple, one ``ld.global.v4`` on a GPU, and
``vector_store(a, k, values)`` their store (one ``st.global.v4``).
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import config, cuda

from softce.half import (
    build_narrow_bf16,
    build_narrow_f16,
    build_widen_bf16,
    build_widen_f16,
    py_widen_bf16,
    py_widen_f16,
)
from softce.half import narrow_bf16_to as half_narrow_bf16_to
from softce.half import narrow_f16_to as half_narrow_f16_to

SIMULATOR = bool(config.ENABLE_CUDASIM)
SHUFFLE = not SIMULATOR and os.environ.get("SOFTCE_CUDA_REDUCE", "shuffle") != "shared"
#: Most threads in a block (and in a row's group). An SM has 64 K registers per block, so 512
#: threads launch any kernel of up to 128 registers; the float64 cross-entropy kernels take up
#: to ~106, and a 1024-thread launch of anything above 64 fails with
#: CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (seen on an H200). The shared-memory tree keeps one slot
#: per thread, which also keeps it under the 48 KiB of static shared memory.
MAX_THREADS = 512


def fmax(a, b):
    """max that propagates NaN from either side (as NumPy's maximum)."""
    return a if a > b or a != a else b


def fmin(a, b):
    """min that propagates NaN from either side (as NumPy's minimum)."""
    return a if a < b or a != a else b


def vector_head(a, width):
    """Elements of the row ``a`` before its first ``width``-element aligned one; -1 if its
    elements are not contiguous (``_address``: its first element's address)."""
    itemsize = a.itemsize
    address = _address(a)
    if (a.shape[0] > 1 and a.strides[0] != itemsize) or address % itemsize:
        return -1
    return (-address % (width * itemsize)) // itemsize


if SIMULATOR:

    def _ieee(function, ftype):
        """NumPy's IEEE ``function`` of a ``ftype`` scalar, without floating-point warnings."""

        def call(v):
            with np.errstate(all="ignore"):
                return function(ftype(v))

        return call

    exp_f32, exp_f64 = _ieee(np.exp, np.float32), _ieee(np.exp, np.float64)
    log_f32, log_f64 = _ieee(np.log, np.float32), _ieee(np.log, np.float64)
    log1p_f32, log1p_f64 = _ieee(np.log1p, np.float32), _ieee(np.log1p, np.float64)

    widen_bf16, widen_f16 = py_widen_bf16, py_widen_f16
    narrow_bf16_to, narrow_f16_to = half_narrow_bf16_to, half_narrow_f16_to

    def _address(a):
        """The address of a's first element."""
        return a.__array_interface__["data"][0]

    def vector_load(a, k, width):
        """a[k], ..., a[k + width - 1]."""
        return tuple(a[k + j] for j in range(width))

    def vector_store(a, k, values):
        """a[k + j] = values[j], each rounded to a's dtype."""
        for j, value in enumerate(values):
            a[k + j] = value

else:
    _device = cuda.jit(device=True, inline="always")
    fmax = _device(fmax)
    fmin = _device(fmin)

    @_device
    def _exp(v):
        return math.exp(v)

    @_device
    def _log(v):
        return math.log(v)

    @_device
    def _log1p(v):
        return math.log1p(v)

    # one device function each, compiled per argument type: libdevice's expf/logf/log1pf for
    # float32
    exp_f32 = exp_f64 = _exp
    log_f32 = log_f64 = _log
    log1p_f32 = log1p_f64 = _log1p

    from llvmlite import ir
    from numba.cuda import types
    from numba.cuda.extending import intrinsic

    def _sixteen(ty: types.Type) -> bool:
        return isinstance(ty, types.Integer) and ty.bitwidth == 16

    def _widen_codegen(build):
        """An intrinsic's codegen: ``build`` applied to its one argument."""
        return lambda context, builder, signature, args: build(builder, args[0])

    def _narrow_typing(v, like, build):
        """(signature, codegen) of v stored into ``like``: ``build``'s 16 bits of v as a
        float32 into a uint16 array, the float32 v into a float32 one (None: neither)."""
        if not isinstance(v, types.Float) or not isinstance(like, types.Array):
            return None

        def wide(context, builder, signature, args):
            return context.cast(builder, args[0], signature.args[0], types.float32)

        def narrow(context, builder, signature, args):
            return build(builder, wide(context, builder, signature, args))

        if like.dtype == types.uint16:
            return types.uint16(v, like), narrow
        if like.dtype == types.float32:
            return types.float32(v, like), wide
        return None

    @intrinsic
    def widen_bf16(typingctx, b):
        """The float32 value of a bfloat16 bit pattern (exact)."""
        return (types.float32(b), _widen_codegen(build_widen_bf16)) if _sixteen(b) else None

    @intrinsic
    def widen_f16(typingctx, b):
        """The float32 value of a float16 bit pattern (exact)."""
        return (types.float32(b), _widen_codegen(build_widen_f16)) if _sixteen(b) else None

    @intrinsic
    def narrow_bf16_to(typingctx, v, like):
        """v as an element of ``like``: its bfloat16 bits (nearest even, NaN -> 0x7FC0) in a
        uint16 array, float32 v in a float32 one."""
        return _narrow_typing(v, like, build_narrow_bf16)

    def _address_codegen(context, builder, signature, args):
        (aryty,) = signature.args
        data = context.make_array(aryty)(context, builder, args[0]).data
        return builder.ptrtoint(data, context.get_value_type(types.intp))

    @intrinsic
    def _address(typingctx, a):
        """The address of a's first element."""
        return (types.intp(a), _address_codegen) if isinstance(a, types.Array) else None

    vector_head = _device(vector_head)

    def _element_pointer(context, builder, aryty, ary, k, kty, width):
        """a[k]'s address as a pointer to a vector of ``width`` elements."""
        data = context.make_array(aryty)(context, builder, ary).data
        index = context.cast(builder, k, kty, types.intp)
        vty = ir.VectorType(context.get_data_type(aryty.dtype), width)
        return builder.bitcast(builder.gep(data, [index]), vty.as_pointer()), vty

    def _row(a) -> bool:
        return isinstance(a, types.Array) and a.ndim == 1 and isinstance(
            a.dtype, (types.Float, types.Integer))

    @intrinsic
    def vector_load(typingctx, a, k, width):
        """a[k], ..., a[k + width - 1] by one aligned vector load."""
        if not (_row(a) and isinstance(k, types.Integer)
                and isinstance(width, types.IntegerLiteral)):
            return None
        n = width.literal_value
        tuple_type = types.UniTuple(a.dtype, n)

        def codegen(context, builder, signature, args):
            pointer, vty = _element_pointer(context, builder, a, args[0], args[1], k, n)
            size = context.get_abi_sizeof(vty.element)
            vector = builder.load(pointer, align=size * n)
            values = [builder.extract_element(vector, ir.Constant(ir.IntType(32), j))
                      for j in range(n)]
            return context.make_tuple(builder, tuple_type, values)

        return tuple_type(a, k, width), codegen

    @intrinsic
    def vector_store(typingctx, a, k, values):
        """a[k + j] = values[j] (each cast to a's dtype) by one aligned vector store."""
        if not (_row(a) and isinstance(k, types.Integer)
                and isinstance(values, types.BaseTuple)
                and all(isinstance(v, types.Number) for v in values)):
            return None
        n = len(values)

        def codegen(context, builder, signature, args):
            pointer, vty = _element_pointer(context, builder, a, args[0], args[1], k, n)
            vector = ir.Constant(vty, ir.Undefined)
            for j, ty in enumerate(values):
                value = context.cast(builder, builder.extract_value(args[2], j), ty, a.dtype)
                vector = builder.insert_element(vector, value, ir.Constant(ir.IntType(32), j))
            builder.store(vector, pointer, align=context.get_abi_sizeof(vty.element) * n)
            return context.get_dummy_value()

        return types.void(a, k, values), codegen

    @intrinsic
    def narrow_f16_to(typingctx, v, like):
        """v as an element of ``like``: its float16 bits (nearest even) in a uint16 array,
        float32 v in a float32 one."""
        return _narrow_typing(v, like, build_narrow_f16)
