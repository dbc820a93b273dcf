"""x - m evaluated exactly as written, whatever the calling kernel's fastmath flags.

Kernels compile with ``reassoc`` (their sums must vectorise), which allows LLVM to rewrite
``(x - m) + t`` as ``x + (t - m)``: with x = m = 1e10 and t = -log(33) in float32 that loses t
entirely, and with m = 100 it costs ~2e-6 absolute. ``llvm.arithmetic.fence`` is LLVM's
barrier for exactly this: no re-association crosses it, so x - m (exact when x and m are
close, Sterbenz) is rounded before any row-level term joins it. Measured cost: the loop that
uses it is not vectorised (~0.25 ns per element instead of ~0.06). Compiling the subtraction
in a callee without ``reassoc`` instead vectorises but is not enough: inlined into
log_softmax it still returned 0 for equal float32 logits of 1e30
(tests/test_edges_mpmath.py catches it). So the CPU kernels' elementwise output passes round
x - m another way, by storing it from a loop of its own (the CPU emitter's shift buffer),
which vectorises; the fence stays for row-level values such as the label loss x[c] - m + log d.
The printer calls it for the ``RoundedShift`` nodes of ``codegen.numerics``.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils, config, types
from numba.extending import intrinsic

from .lazy import TARGET


def _identity(value: float) -> float:
    """Python has no re-association to fence off (NUMBA_DISABLE_JIT=1)."""
    return value


@intrinsic
def _fence_ir(typingctx, value):
    """llvm.arithmetic.fence(value): value itself, opaque to re-association."""
    if not isinstance(value, types.Float):
        return None

    def codegen(context, builder, sig, args):
        ty = context.get_value_type(sig.args[0])
        name = "llvm.arithmetic.fence." + ("f32" if ty == ir.FloatType() else "f64")
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty]), name)
        return builder.call(fn, args)

    return value(value), codegen


_fence = _identity if config.DISABLE_JIT else _fence_ir


@nb.njit(nb.float32(nb.float32, nb.float32), cache=True, _target=TARGET)  # on first use
def shift_f32(x: np.float32, m: np.float32) -> np.float32:
    """x - m, never re-associated (float32)."""
    return _fence(x - m)


@nb.njit(nb.float64(nb.float64, nb.float64), cache=True, _target=TARGET)
def shift_f64(x: float, m: float) -> float:
    """x - m, never re-associated (float64)."""
    return _fence(x - m)
