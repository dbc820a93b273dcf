"""Matrix products and the small array updates of ``softce.linear``'s chunk loop on the device.

These move and combine arrays for the fused linear + cross-entropy (D20's products
z = h W^T + b, d h = G W, d W += G^T h, d b += sum G, and the class split's targets); none of
them computes the softmax family, which stays in generated/cuda/. The matrix product is a tiled
one through shared memory, summing each element's products in order of k (a numba kernel, so
that numba and CuPy arrays need no BLAS library; PyTorch tensors take cuBLAS through
softce.torch). It is one output element per thread, with no register tiling: correct for any
strides, and not measured on a GPU yet. Arrays are numba device arrays of any strides; a
vector is taken as a one-row or one-column matrix view of it.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32, float64

from .device import HELPER_THREADS, helper_grid, view
from .runtime import SIMULATOR
from .streams import current

#: The side of a matrix product's tile (threads per block: its square).
TILE = 4 if SIMULATOR else 16
#: Most blocks along each axis of a matrix product's grid; more tiles loop in grid strides.
TILE_BLOCKS = 3 if SIMULATOR else 65535


def _matmul_kernel(ty: object):
    """c = a @ b, or c += a @ b with ``accumulate``, for arrays of numba type ``ty``."""

    @cuda.jit
    def matmul(a, b, c, accumulate, zero):
        sa = cuda.shared.array((TILE, TILE), ty)
        sb = cuda.shared.array((TILE, TILE), ty)
        tr, tc = cuda.threadIdx.y, cuda.threadIdx.x
        m, k = a.shape
        n = b.shape[1]
        for i0 in range(cuda.blockIdx.y * TILE, m, cuda.gridDim.y * TILE):
            for j0 in range(cuda.blockIdx.x * TILE, n, cuda.gridDim.x * TILE):
                i, j = i0 + tr, j0 + tc
                acc = zero
                for t in range(0, k, TILE):
                    sa[tr, tc] = a[i, t + tc] if i < m and t + tc < k else zero
                    sb[tr, tc] = b[t + tr, j] if t + tr < k and j < n else zero
                    cuda.syncthreads()
                    for q in range(TILE):
                        acc += sa[tr, q] * sb[q, tc]
                    cuda.syncthreads()
                if i < m and j < n:
                    c[i, j] = c[i, j] + acc if accumulate else acc

    return matmul


_MATMUL = {np.dtype(np.float32): _matmul_kernel(float32),
           np.dtype(np.float64): _matmul_kernel(float64)}


@cuda.jit
def _add(dest, src):
    """dest[i, j] += src[i, j], or src[0, j] for a one-row src."""
    m, n = dest.shape
    step = cuda.gridDim.x * cuda.blockDim.x
    for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, m * n, step):
        i, j = q // n, q % n
        dest[i, j] += src[i % src.shape[0], j]


@cuda.jit
def _add_column_sums(g, dest, zero):
    """dest[j] += sum_i g[i, j], the rows added in order."""
    step = cuda.gridDim.x * cuda.blockDim.x
    for j in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, g.shape[1], step):
        total = zero
        for i in range(g.shape[0]):
            total += g[i, j]
        dest[j] += total


@cuda.jit
def _fill(flat, value):
    step = cuda.gridDim.x * cuda.blockDim.x
    for q in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, flat.shape[0], step):
        flat[q] = value


@cuda.jit
def _smoothed_target(y, source, label, keep, spread, smoothed, weights):
    """y[k] = (keep source[k] + spread, or source[k] unsmoothed; without a source, spread plus
    keep at ``label``), times weights[k] where weights has y's length."""
    n = y.shape[0]
    step = cuda.gridDim.x * cuda.blockDim.x
    for k in range(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x, n, step):
        if source.shape[0] == n:
            v = source[k]
            if smoothed:
                v = v * keep + spread
        else:
            v = spread
            if k == label:
                v += keep
        if weights.shape[0] == n:
            v *= weights[k]
        y[k] = v


def as_matrix(arr, column: bool = False):
    """A 2-D view of arr: itself, or a vector as one row (one column with ``column``)."""
    if arr.ndim == 2:
        return arr
    n, st = arr.shape[0], arr.strides[0]
    return view(arr, (n, 1) if column else (1, n), (st, st))


def matmul(a, b, out, accumulate: bool = False) -> None:
    """out = a @ b (out += a @ b with ``accumulate``) for matrices, or a vector on either side
    (then out is a vector)."""
    a2 = as_matrix(a)
    b2 = as_matrix(b, column=True)
    c2 = as_matrix(out, column=a.ndim == 2)
    m, n = c2.shape
    if not m * n:
        return
    grid = (min(-(-n // TILE), TILE_BLOCKS), min(-(-m // TILE), TILE_BLOCKS))
    dtype = np.dtype(out.dtype)
    _MATMUL[dtype][grid, (TILE, TILE), current()](a2, b2, c2, accumulate, dtype.type(0))


def add(dest, src) -> None:
    """dest += src, src of dest's shape or of its last axis (added to every row)."""
    d2, s2 = as_matrix(dest), as_matrix(src)
    if dest.size:
        _add[helper_grid(dest.size), HELPER_THREADS, current()](d2, s2)


def add_column_sums(g, dest) -> None:
    """dest += the sums of g's columns."""
    if dest.size:
        _add_column_sums[helper_grid(dest.size), HELPER_THREADS, current()](
            g, dest, dest.dtype.type(0))


def fill(arr, value: float) -> None:
    """Every element of a C-contiguous array set to value."""
    if arr.size:
        flat = view(arr, (arr.size,), (arr.dtype.itemsize,))
        _fill[helper_grid(arr.size), HELPER_THREADS, current()](flat, arr.dtype.type(value))


def smoothed_target(y, source, label: int | None, eps: float, n_classes: int, weights) -> None:
    """y = w ((1 - eps) t + eps / n_classes), t the probabilities ``source`` or the one-hot
    vector of ``label`` (None: no class of y), w ``weights`` (None: 1) [D13]."""
    t = y.dtype.type
    none = view(y, (0,), (y.dtype.itemsize,))
    _smoothed_target[helper_grid(y.size), HELPER_THREADS, current()](
        y, none if source is None else source, -1 if label is None else label, t(1 - eps),
        t(eps / n_classes), bool(eps), none if weights is None else weights)


def kernels() -> list[tuple[str, object, str]]:
    """(name, kernel, signature) of every kernel here, with the argument types the chunk loop
    gives it (arrays of any strides), for the PTX checks."""
    found = []
    for dt in ("float32", "float64"):
        m, v = f"{dt}[:, :]", f"{dt}[:]"
        found += [
            (f"matmul_{dt}", _MATMUL[np.dtype(dt)], f"void({m}, {m}, {m}, boolean, {dt})"),
            (f"add_{dt}", _add, f"void({m}, {m})"),
            (f"add_column_sums_{dt}", _add_column_sums, f"void({m}, {v}, {dt})"),
            (f"fill_{dt}", _fill, f"void({dt}[::1], {dt})"),
            (f"smoothed_target_{dt}", _smoothed_target,
             f"void({v}, {v}, int64, {dt}, {dt}, boolean, {v})"),
        ]
    return found
