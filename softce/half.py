"""16-bit floats read and written by the kernels as their bit patterns (uint16).

Numba has no bfloat16 type, and its CPU target no float16 arrays either, so the 16-bit
variants of the generated kernels (``<kernel>_bf16``, ``<kernel>_f16``) take their logits as
``uint16`` arrays of bit patterns: a PyTorch bfloat16 tensor viewed as int16 and then as
NumPy uint16, a NumPy float16 array viewed as uint16, both without a copy. Each load is
widened to float32 inside the kernel (exactly: every 16-bit value is a float32 value), the
kernel computes in float32 as its float32 variant does, and each element of an output of the
logits' shape is rounded back to 16 bits to nearest, ties to even:

- bfloat16 is the upper half of a float32: widening is ``uint32(bits) << 16`` read as a
  float32; narrowing adds ``0x7FFF`` plus the lowest kept bit (ties to even) and keeps the
  upper half, which carries a value past the largest finite bfloat16 to inf; a NaN becomes
  PyTorch's canonical NaN ``0x7FC0`` (the addition could carry a NaN's payload into inf).
- float16 goes through LLVM's ``half`` type: ``fpext`` and ``fptrunc`` (round to nearest
  even, overflow to inf, subnormals kept), one ``vcvtph2ps``/``vcvtps2ph`` per 8 elements on
  x86 with F16C.

All of them are integer or conversion instructions with selects, so the kernels' loops still
vectorise. ``narrow_*_to(value, like)`` stores into an output whose element type decides: the
16-bit pattern into a uint16 array, the float32 value itself into a float32 one (float16
logits give float32 results in the NumPy API unless ``out=`` is 16-bit).

The conversions are built once as LLVM IR (``build_*``), for the CPU intrinsics here and the
CUDA ones of ``softce.cuda.runtime``; ``py_*`` compute the same on NumPy scalars. Under
``NUMBA_DISABLE_JIT=1`` every function runs as plain NumPy with the same results.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import config, types
from numba.extending import intrinsic, overload

#: The element types of a 16-bit kernel's outputs of rows: its 16-bit bit patterns, and for
#: float16 also float32 (float16 input gives float32 results in the NumPy API).
OUTPUTS = {"bf16": ("uint16",), "f16": ("uint16", "float32")}

#: NumPy has no bfloat16: a bfloat16 array is a uint16 array of bit patterns whose dtype
#: carries this metadata (it survives views, reshapes and copies; ``==`` ignores it).
BFLOAT16 = np.dtype(np.uint16, metadata={"softce": "bfloat16"})

_I16, _I32 = ir.IntType(16), ir.IntType(32)


def is_bfloat16(dtype: object) -> bool:
    """Whether ``dtype`` is ``BFLOAT16`` (uint16 marked as bfloat16 bit patterns)."""
    dt = np.dtype(dtype)
    return dt == np.uint16 and (dt.metadata or {}).get("softce") == "bfloat16"


def storage(dtype: object) -> str | None:
    """The 16-bit kernels' suffix for an array of ``dtype`` ("bf16", "f16"), or None."""
    dt = np.dtype(dtype)
    if dt == np.float16:
        return "f16"
    return "bf16" if is_bfloat16(dt) else None


def bits(arr: np.ndarray) -> np.ndarray:
    """A 16-bit float array (float16, or ``BFLOAT16``) as the uint16 array of its bits, a view."""
    return arr.view(np.uint16)


def bfloat16_view(arr: np.ndarray) -> np.ndarray:
    """A uint16/int16 array of bfloat16 bit patterns viewed as a ``BFLOAT16`` array."""
    return arr.view(BFLOAT16)


def bfloat16_to_float32(arr: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns as float32 values (exact), a new array."""
    wide = np.ascontiguousarray(arr).view(np.uint16).astype(np.uint32) << np.uint32(16)
    return wide.view(np.float32)


def assign(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[...] = src, converting between float32/float64 and 16-bit floats (``BFLOAT16``
    bit patterns included) by value, rounding to nearest even."""
    if is_bfloat16(dst.dtype) and not is_bfloat16(src.dtype):
        dst[...] = float32_to_bfloat16(np.asarray(src, np.float32)).view(np.uint16)
    elif is_bfloat16(src.dtype) and not is_bfloat16(dst.dtype):
        dst[...] = bfloat16_to_float32(np.ascontiguousarray(src))
    else:
        dst[...] = src


def float32_to_bfloat16(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest, ties to even; NaN -> 0x7FC0), as uint16
    bit patterns (a new ``BFLOAT16`` array)."""
    u = np.ascontiguousarray(values, np.float32).view(np.uint32)
    rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
               >> np.uint32(16)).astype(np.uint16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.where(nan, np.uint16(0x7FC0), rounded).astype(BFLOAT16)


# --- the conversions as LLVM IR (the CPU intrinsics below, softce.cuda.runtime's) ---------------

def build_widen_bf16(builder: ir.IRBuilder, bits: ir.Value) -> ir.Value:
    """IR: the float32 value of a 16-bit bfloat16 bit pattern (``uint32(bits) << 16``)."""
    wide = builder.shl(builder.zext(bits, _I32), ir.Constant(_I32, 16))
    return builder.bitcast(wide, ir.FloatType())


def build_narrow_bf16(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    """IR: a float32 rounded to bfloat16 (nearest, ties to even; NaN -> 0x7FC0), its 16 bits."""
    u = builder.bitcast(value, _I32)
    odd = builder.and_(builder.lshr(u, ir.Constant(_I32, 16)), ir.Constant(_I32, 1))
    up = builder.add(builder.add(u, ir.Constant(_I32, 0x7FFF)), odd)
    rounded = builder.trunc(builder.lshr(up, ir.Constant(_I32, 16)), _I16)
    nan = builder.icmp_unsigned(">", builder.and_(u, ir.Constant(_I32, 0x7FFFFFFF)),
                                ir.Constant(_I32, 0x7F800000))
    return builder.select(nan, ir.Constant(_I16, 0x7FC0), rounded)


def build_widen_f16(builder: ir.IRBuilder, bits: ir.Value) -> ir.Value:
    """IR: the float32 value of a 16-bit float16 bit pattern (``fpext`` of LLVM's half)."""
    return builder.fpext(builder.bitcast(bits, ir.HalfType()), ir.FloatType())


def build_narrow_f16(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    """IR: a float32 rounded to float16 (``fptrunc``: nearest even, overflow to inf,
    subnormals kept), its 16 bits."""
    return builder.bitcast(builder.fptrunc(value, ir.HalfType()), _I16)


# --- intrinsics --------------------------------------------------------------------------------

def _sixteen(ty: types.Type) -> bool:
    return isinstance(ty, types.Integer) and ty.bitwidth == 16


def _codegen(build):  # noqa: ANN001, ANN202
    """An intrinsic's codegen: ``build`` applied to its one argument."""
    return lambda context, builder, signature, args: build(builder, args[0])


@intrinsic
def _widen_bf16_ir(typingctx, b):
    if not _sixteen(b):
        return None
    return types.float32(b), _codegen(build_widen_bf16)


@intrinsic
def _narrow_bf16_ir(typingctx, v):
    if v != types.float32:
        return None
    return types.uint16(v), _codegen(build_narrow_bf16)


@intrinsic
def _widen_f16_ir(typingctx, b):
    if not _sixteen(b):
        return None
    return types.float32(b), _codegen(build_widen_f16)


@intrinsic
def _narrow_f16_ir(typingctx, v):
    if v != types.float32:
        return None
    return types.uint16(v), _codegen(build_narrow_f16)


# --- what the kernels call ---------------------------------------------------------------------

def py_widen_bf16(b: int) -> np.float32:
    """The float32 value of a bfloat16 bit pattern, on NumPy scalars."""
    return np.uint32(np.uint16(b) << np.uint32(16)).view(np.float32)


def py_narrow_bf16(v: float) -> np.uint16:
    """float32 v rounded to bfloat16 (nearest, ties to even; NaN -> 0x7FC0), its bits, on
    NumPy scalars."""
    return float32_to_bfloat16(np.array([v], np.float32)).view(np.uint16)[0]


def py_widen_f16(b: int) -> np.float32:
    """The float32 value of a float16 bit pattern, on NumPy scalars."""
    return np.float32(np.uint16(b).view(np.float16))


def py_narrow_f16(v: float) -> np.uint16:
    """float32 v rounded to float16 (nearest, ties to even), its bits, on NumPy scalars."""
    return np.float16(np.float32(v)).view(np.uint16)


if config.DISABLE_JIT:
    widen_bf16, narrow_bf16 = py_widen_bf16, py_narrow_bf16
    widen_f16, narrow_f16 = py_widen_f16, py_narrow_f16
else:
    @nb.njit(inline="always", cache=True)
    def widen_bf16(b):  # noqa: ANN001, ANN201 - Numba-typed
        """The float32 value of a bfloat16 bit pattern (exact)."""
        return _widen_bf16_ir(b)

    @nb.njit(inline="always", cache=True)
    def narrow_bf16(v):  # noqa: ANN001, ANN201 - Numba-typed
        """float32 v rounded to bfloat16 (nearest, ties to even; NaN -> 0x7FC0), its bits."""
        return _narrow_bf16_ir(np.float32(v))

    @nb.njit(inline="always", cache=True)
    def widen_f16(b):  # noqa: ANN001, ANN201 - Numba-typed
        """The float32 value of a float16 bit pattern (exact)."""
        return _widen_f16_ir(b)

    @nb.njit(inline="always", cache=True)
    def narrow_f16(v):  # noqa: ANN001, ANN201 - Numba-typed
        """float32 v rounded to float16 (nearest, ties to even), its bits."""
        return _narrow_f16_ir(np.float32(v))


def narrow_bf16_to(v: float, like: np.ndarray) -> object:
    """v as an element of ``like``: its bfloat16 bits in a uint16 array, else float32 v."""
    return py_narrow_bf16(v) if like.dtype == np.uint16 else np.float32(v)


def narrow_f16_to(v: float, like: np.ndarray) -> object:
    """v as an element of ``like``: its float16 bits in a uint16 array, else float32 v."""
    return py_narrow_f16(v) if like.dtype == np.uint16 else np.float32(v)


def _narrow_to(narrow):  # noqa: ANN001, ANN202
    def typer(v, like):
        if not isinstance(like, types.Array):
            return None
        if like.dtype == types.uint16:
            return lambda v, like: narrow(v)
        if like.dtype == types.float32:
            return lambda v, like: np.float32(v)
        return None

    return typer


if not config.DISABLE_JIT:
    overload(narrow_bf16_to, inline="always")(_narrow_to(narrow_bf16))
    overload(narrow_f16_to, inline="always")(_narrow_to(narrow_f16))
