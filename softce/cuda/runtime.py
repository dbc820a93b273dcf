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
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import config, cuda

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
