"""softce on Dask arrays: the same results for arrays larger than one machine's memory.

Every function takes a ``dask.array.Array`` (or anything ``da.asarray`` takes) and returns a
lazy Dask array with the input's row chunks; nothing is computed until ``compute()``.
Chunks may split the rows and the class axis:

- a class axis held in one chunk: each block goes through softce's in-memory API (its
  generated kernel), so the numbers are those of ``softce.<function>`` on that block;
- a class axis split over chunks: each block reduces to its online state (m, s), the max
  and D18's excess normaliser, with softce's online_state kernel, plus the row sums its loss
  needs; the states of a row's blocks are merged pairwise with D18's derived merge in a tree
  reduction (``split_every`` blocks at a time), so the row's LSE is exact (and near 0 as
  accurate relative to itself as in memory, LSE = m + log1p(s)), and every output
  block is evaluated from its row's merged state with functions printed from the derivations
  (``softce.generated.partitioned``). No task ever holds more than ``split_every`` blocks' row
  states, or one block of the input.

Across rows, "mean" and "sum" are Dask's tree reductions. The dtype rules are the in-memory
API's (float32 stays float32, float16 becomes float32, other dtypes raise TypeError).
Integer labels held in a Dask array are range-checked when their blocks run (a ValueError at
``compute()``); labels given as a NumPy array are checked at once.

Needs the ``softce[dask]`` extra; ``import softce`` never imports Dask.
"""

from __future__ import annotations

from functools import partial, wraps
from operator import itemgetter

import dask.array as da
import numpy as np

import softce as F
from softce.checks import (
    check_axes,
    check_axis,
    check_bool,
    check_entropy_base,
    check_reduction,
    kept_shape,
)
from softce.generated import partitioned as P

__all__ = [
    "cross_entropy",
    "cross_entropy_grad",
    "entropy",
    "log_softmax",
    "logsumexp",
    "softmax",
]

#: Row-state fields merged with D11/D18 (the rest are plain sums, added).
_ONLINE = ("m", "s")


# inputs ------------------------------------------------------------------------------------

def _as_float(value: object, name: str) -> da.Array:
    arr = value if isinstance(value, da.Array) else da.asarray(value)
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}")
    return arr


def _known_chunks(arr: da.Array) -> None:
    if any(np.isnan(n) for n in arr.shape):
        raise ValueError("arrays with unknown chunk sizes are not supported: call "
                         "compute_chunk_sizes() first")


def _classes_last(arr: da.Array, axis: object) -> tuple[da.Array, int]:
    ax = check_axis(axis, arr.ndim)
    _known_chunks(arr)
    return (arr if ax == arr.ndim - 1 else da.moveaxis(arr, ax, -1)), ax


def _class_axes_last(arr: da.Array, axis: object) -> tuple[da.Array, tuple[int, ...]]:
    """arr with the class axes (an int, a tuple or None, as ``softce.softmax`` takes them)
    moved last and reshaped into one (of length 1 for a 0-d array); the sorted axes."""
    axes = check_axes(axis, arr.ndim)
    _known_chunks(arr)
    nb = arr.ndim - len(axes)
    last = tuple(range(nb, arr.ndim))
    moved = arr if axes == last else da.moveaxis(arr, axes, last)
    if len(axes) != 1:
        n = int(np.prod([arr.shape[a] for a in axes], dtype=np.int64))
        moved = moved.reshape(moved.shape[:nb] + (n,))
    return moved, axes


def _restore_axes(out: da.Array, shape: tuple[int, ...], axes: tuple[int, ...]) -> da.Array:
    """The inverse of _class_axes_last for an output laid out as its result."""
    nb = len(shape) - len(axes)
    if len(axes) != 1:
        out = out.reshape(out.shape[:nb] + tuple(shape[a] for a in axes))
    last = tuple(range(nb, len(shape)))
    return out if axes == last else da.moveaxis(out, last, axes)


def _reduced(out: da.Array, shape: tuple[int, ...], axes: tuple[int, ...],
             keepdims: object) -> da.Array:
    """A per-row result (the batch shape), with the reduced axes kept as 1 if asked."""
    return out.reshape(kept_shape(shape, axes)) if check_bool(keepdims, "keepdims") else out


def _indices(ndim: int) -> tuple[str, str]:
    """blockwise index strings: the whole array's and its batch part's (class axis last)."""
    full = "abcdefghijklmnopqrstuvwxyz"[:ndim]
    return full, full[:-1]


def _record(dtype: np.dtype, fields: tuple[str, ...]) -> np.dtype:
    return np.dtype([(f, dtype) for f in fields])


def _meta(ndim: int, dtype: np.dtype) -> np.ndarray:
    return np.empty((0,) * ndim, dtype)


def _quiet(func):
    """Run a block function as the kernels run: NaN and inf flow through without warnings (a
    row of all -inf gives NaN, as in the in-memory API)."""

    @wraps(func)
    def run(*args, **kwargs):
        with np.errstate(all="ignore"):
            return func(*args, **kwargs)

    return run


# row states: one record per row and class block, merged across the class blocks ---------------

@_quiet
def _online_state(xb: np.ndarray, rec: np.dtype) -> np.ndarray:
    """The block's online state (m, s), from softce's online_state kernel (D18)."""
    out = np.zeros(xb.shape[:-1] + (1,), rec)
    out["m"], out["s"] = F.online_state(xb, axis=-1, keepdims=True)
    return out


@_quiet
def _merge_records(a: np.ndarray, axis: tuple[int, ...] | int, keepdims: bool,
                   computing_meta: bool = False) -> np.ndarray:
    """Fold the records along the class axis: (m, s) by D18's merge, other fields summed."""
    ax = axis[0] if isinstance(axis, tuple) else axis
    a = np.moveaxis(a, ax, -1)
    if computing_meta or a.shape[-1] == 0:
        empty = np.empty(a.shape[:-1] + (0,) * keepdims, a.dtype)
        return np.moveaxis(empty, -1, ax) if keepdims else empty
    out = a[..., 0].copy()
    online = all(f in a.dtype.names for f in _ONLINE)
    linear = "t" in a.dtype.names
    sums = [f for f in a.dtype.names if f not in (*_ONLINE, "t")]
    for j in range(1, a.shape[-1]):
        part = a[..., j]
        if linear:  # D19: before the maxima and the slopes merge
            out["t"] = P.merge_t(out["m"], out["t"], out["sum_y"], part["m"], part["t"],
                                 part["sum_y"])
        if online:
            out["m"], out["s"] = P.merge(out["m"], out["s"], part["m"], part["s"])
        for f in sums:
            out[f] += part[f]
    return np.expand_dims(out, ax) if keepdims else out


def _identity(a: np.ndarray, axis: object, keepdims: bool,
              computing_meta: bool = False) -> np.ndarray:
    return a


def _row_reduce(states: da.Array, split_every: int | None) -> da.Array:
    """Tree-reduce per-block records (..., n_class_blocks) to one record per row."""
    return da.reduction(states, _identity, partial(_merge_records), combine=_merge_records,
                        axis=-1, keepdims=False, dtype=states.dtype, split_every=split_every,
                        concatenate=True, meta=_meta(states.ndim - 1, states.dtype),
                        name="softce-row-merge")


def _block_records(func, x: da.Array, rec: np.dtype, *args: object) -> da.Array:
    """blockwise(func, x, *args) -> records of shape (..., 1) per block of x.

    args are (array, index) pairs or plain values, as ``da.blockwise`` takes them."""
    full, _ = _indices(x.ndim)
    return da.blockwise(func, full, x, full, *args, dtype=rec,
                        adjust_chunks={full[-1]: 1}, meta=_meta(x.ndim, rec),
                        token="softce-block-state")


def _lse_state(x: da.Array, split_every: int | None) -> da.Array:
    rec = _record(x.dtype, _ONLINE)
    return _row_reduce(_block_records(partial(_online_state, rec=rec), x, rec), split_every)


def _per_row(func, dtype: np.dtype, *arrays: da.Array) -> da.Array:
    """func applied to row arrays of one batch shape, block by block."""
    _, batch = _indices(arrays[0].ndim + 1)
    args = [a for arr in arrays for a in (arr, batch)]
    return da.blockwise(func, batch, *args, dtype=dtype, meta=_meta(len(batch), dtype))


def _restore(out: da.Array, ax: int) -> da.Array:
    return out if ax == out.ndim - 1 else da.moveaxis(out, -1, ax)


def _split(x: da.Array) -> bool:
    """Whether the class axis (last) is split over more than one chunk."""
    return x.numblocks[-1] > 1


# the API ---------------------------------------------------------------------------------------

def logsumexp(x: object, axis: int | tuple[int, ...] | None = -1, *, keepdims: bool = False,
              split_every: int | None = None) -> da.Array:
    """LSE(x) along ``axis`` (reduced; a tuple of axes or None as one), as
    ``softce.logsumexp``."""
    src = _as_float(x, "x")
    arr, axes = _class_axes_last(src, axis)
    if not _split(arr):
        out = arr.map_blocks(F.logsumexp, axis=-1, drop_axis=arr.ndim - 1, dtype=arr.dtype,
                             meta=_meta(arr.ndim - 1, arr.dtype))
    else:
        states = _lse_state(arr, split_every)
        out = _per_row(_lse_from_states, arr.dtype, states)
    return _reduced(out, src.shape, axes, keepdims)


@_quiet
def _lse_from_states(s: np.ndarray) -> np.ndarray:
    return P.lse_of_pair(s["m"], s["s"])


def softmax(x: object, axis: int | tuple[int, ...] | None = -1, *,
            split_every: int | None = None) -> da.Array:
    """softmax(x) along ``axis`` (a tuple of axes or None as one), chunked as x."""
    return _elementwise_rows(F.softmax, _softmax_block, x, axis, split_every)


@_quiet
def _softmax_block(xb: np.ndarray, s: np.ndarray) -> np.ndarray:
    return P.softmax(xb, s["m"][..., None], s["s"][..., None])


def log_softmax(x: object, axis: int | tuple[int, ...] | None = -1, *,
                split_every: int | None = None) -> da.Array:
    """log_softmax(x) along ``axis`` (a tuple of axes or None as one), chunked as x."""
    return _elementwise_rows(F.log_softmax, _log_softmax_block, x, axis, split_every)


def _elementwise_rows(whole, block, x: object, axis: object, split_every: int | None
                      ) -> da.Array:
    """An output of x's shape: ``whole`` on blocks holding whole rows, else ``block`` on each
    block and its rows' merged (m, d) state."""
    src = _as_float(x, "x")
    arr, axes = _class_axes_last(src, axis)
    if not _split(arr):
        return _restore_axes(arr.map_blocks(whole, dtype=arr.dtype), src.shape, axes)
    states = _lse_state(arr, split_every)
    full, batch = _indices(arr.ndim)
    out = da.blockwise(block, full, arr, full, states, batch, dtype=arr.dtype,
                       meta=_meta(arr.ndim, arr.dtype))
    return _restore_axes(out, src.shape, axes)


@_quiet
def _log_softmax_block(xb: np.ndarray, s: np.ndarray) -> np.ndarray:
    return P.log_softmax(xb, s["m"][..., None], s["s"][..., None])


def entropy(p: object, axis: int | tuple[int, ...] | None = -1, base: float | None = None, *,
            keepdims: bool = False, split_every: int | None = None) -> da.Array:
    """H(p) = -sum p log_b p along ``axis`` (a tuple of axes or None as one; nats when base
    is None), as ``softce.entropy``."""
    src = _as_float(p, "p")
    arr, axes = _class_axes_last(src, axis)
    check_entropy_base(base)
    if not _split(arr):
        out = arr.map_blocks(F.entropy, axis=-1, base=base, drop_axis=arr.ndim - 1,
                             dtype=arr.dtype, meta=_meta(arr.ndim - 1, arr.dtype))
        return _reduced(out, src.shape, axes, keepdims)
    rec = _record(arr.dtype, ("sum_p",))
    states = _row_reduce(_block_records(partial(_entropy_state, rec=rec), arr, rec),
                         split_every)
    finish = (P.entropy if base is None
              else partial(_entropy_base, b=arr.dtype.type(base)))
    out = _per_row(partial(_entropy_from_states, finish=finish), arr.dtype, states)
    return _reduced(out, src.shape, axes, keepdims)


@_quiet
def _entropy_state(pb: np.ndarray, rec: np.dtype) -> np.ndarray:
    out = np.empty(pb.shape[:-1] + (1,), rec)
    (out["sum_p"][..., 0],) = P.entropy_sums(pb)
    return out


@_quiet
def _entropy_base(sum_p: np.ndarray, b: np.floating) -> np.ndarray:
    return P.entropy_base(sum_p, b)


@_quiet
def _entropy_from_states(s: np.ndarray, finish) -> np.ndarray:
    return finish(s["sum_p"])


# cross-entropy ---------------------------------------------------------------------------------

def _targets(logits: da.Array, target: object, ax: int):
    """(labels as a batch-shaped int64 Dask array, None) or (None, probabilities rows)."""
    tgt = target if isinstance(target, da.Array) else np.asarray(target)
    batch_shape = logits.shape[:-1]
    if tgt.dtype.kind in "iu":
        if tgt.shape != batch_shape:
            raise ValueError(f"target holds class labels and must have the shape of logits "
                             f"without axis {ax}, {batch_shape}; got {tgt.shape}")
        n = logits.shape[-1]
        if isinstance(tgt, np.ndarray):
            bad = (tgt < 0) | (tgt >= n)
            if bad.any():
                pos = tuple(int(q) for q in np.argwhere(bad)[0])
                raise ValueError(f"target has label {tgt[pos]} at position {pos}, outside "
                                 f"the classes [0, {n})")
        labels = da.asarray(tgt).astype(np.int64).rechunk(logits.chunks[:-1])
        return labels, None
    if tgt.dtype.kind == "f":
        full_shape = batch_shape[:ax] + (logits.shape[-1],) + batch_shape[ax:]
        if tgt.shape != full_shape:
            raise ValueError(f"target holds probabilities and must have the shape of logits "
                             f"{full_shape}; got {tgt.shape}")
        probs = da.asarray(tgt).astype(logits.dtype)
        probs = probs if ax == probs.ndim - 1 else da.moveaxis(probs, ax, -1)
        return None, probs.rechunk(logits.chunks)
    raise TypeError(f"target must hold integer class labels or float probabilities, got dtype "
                    f"{tgt.dtype}")


def _classes(x: da.Array) -> da.Array:
    """The global class index of every column, chunked as x's class axis."""
    return da.arange(x.shape[-1], chunks=x.chunks[-1], dtype=np.int64)


@_quiet
def _label_state(xb: np.ndarray, cls: np.ndarray, labels: np.ndarray, rec: np.dtype,
                 n: int) -> np.ndarray:
    """Online state of the block and the logit at the label where the label is in the
    block."""
    if cls.size and cls[0] == 0:  # the first class block checks the labels of its rows
        bad = (labels < 0) | (labels >= n)
        if bad.any():
            raise ValueError(f"target has label {labels[bad].flat[0]}, outside the classes "
                             f"[0, {n})")
    out = _online_state(xb, rec)
    start = cls[0] if cls.size else 0
    local = labels - start
    inside = (local >= 0) & (local < xb.shape[-1])
    picked = np.take_along_axis(xb, np.where(inside, local, 0)[..., None], axis=-1)
    out["xc"] = np.where(inside[..., None], picked, 0)
    return out


@_quiet
def _prob_state(xb: np.ndarray, yb: np.ndarray, rec: np.dtype) -> np.ndarray:
    out = _online_state(xb, rec)
    sums = P.cross_entropy_prob_sums(xb, yb, out["m"][..., 0])
    for name, value in zip(_PROB_SUMS, sums):
        out[name][..., 0] = value
    return out


#: The row sums of the probability-target loss, in the order the generated functions take them:
#: D19's T = sum y (m - x) (merged with merge_t) and its slope sum(y).
_PROB_SUMS = ("t", "sum_y")


def _ce_states(logits: da.Array, labels, probs, split_every):
    if labels is not None:
        rec = _record(logits.dtype, (*_ONLINE, "xc"))
        _, batch = _indices(logits.ndim)
        func = partial(_label_state, rec=rec, n=logits.shape[-1])
        blocks = _block_records(func, logits, rec, _classes(logits), _indices(logits.ndim)[0][-1],
                                labels, batch)
    else:
        rec = _record(logits.dtype, (*_ONLINE, *_PROB_SUMS))
        func = partial(_prob_state, rec=rec)
        blocks = _block_records(func, logits, rec, probs, _indices(logits.ndim)[0])
    return _row_reduce(blocks, split_every)


@_quiet
def _loss_from_states(s: np.ndarray) -> np.ndarray:
    if "xc" in s.dtype.names:
        return P.cross_entropy_label(s["m"], s["s"], s["xc"])
    return P.cross_entropy_prob(s["s"], *(s[name] for name in _PROB_SUMS))


def _reduce(loss: da.Array, reduction: str) -> da.Array:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum(dtype=loss.dtype)
    return loss.mean(dtype=loss.dtype)


def _loss_rows(arr: da.Array, labels, probs, split_every) -> da.Array:
    """The loss of every row (batch shape), chunked as the rows of arr."""
    if not _split(arr):
        full, batch = _indices(arr.ndim)
        tgt, ind = (labels, batch) if labels is not None else (probs, full)
        return da.blockwise(_ce_block, batch, arr, full, tgt, ind, dtype=arr.dtype,
                            concatenate=True, meta=_meta(arr.ndim - 1, arr.dtype))
    return _per_row(_loss_from_states, arr.dtype, _ce_states(arr, labels, probs, split_every))


def _ce_block(xb: np.ndarray, tb: np.ndarray) -> np.ndarray:
    return F.cross_entropy(xb, tb, reduction="none")


def cross_entropy(logits: object, target: object, *, axis: int = -1, reduction: str = "mean",
                  split_every: int | None = None) -> da.Array:
    """Cross-entropy of softmax(logits) against integer labels or probabilities, as
    ``softce.cross_entropy`` (PyTorch's ``F.cross_entropy`` with the class axis at ``axis``).
    """
    arr, ax = _classes_last(_as_float(logits, "logits"), axis)
    check_reduction(reduction)
    labels, probs = _targets(arr, target, ax)
    return _reduce(_loss_rows(arr, labels, probs, split_every), reduction)


def _weights(grad_output: object, reduction: str, arr: da.Array) -> da.Array:
    """Per-row chain-rule weights (batch shape), grad_output / rows for "mean"."""
    go = 1.0 if grad_output is None else grad_output
    garr = go if isinstance(go, da.Array) else np.asarray(go)
    if garr.dtype.kind not in "fiu" or garr.dtype == np.bool_:
        raise TypeError(f"grad_output must be a real number or array, got dtype {garr.dtype}")
    batch_shape = arr.shape[:-1]
    if garr.ndim and reduction != "none":
        raise ValueError(f"grad_output must be a scalar for reduction={reduction!r}, got shape "
                         f"{garr.shape}")
    if garr.ndim and garr.shape != batch_shape:
        raise ValueError(f"grad_output has shape {garr.shape}, expected {batch_shape} or a "
                         "scalar")
    w = da.broadcast_to(da.asarray(garr).astype(arr.dtype), batch_shape)
    rows = int(np.prod(batch_shape))
    if reduction == "mean" and rows:
        w = w / arr.dtype.type(rows)
    return w.astype(arr.dtype).rechunk(arr.chunks[:-1])


def cross_entropy_grad(logits: object, target: object, *, axis: int = -1,
                       reduction: str = "mean", grad_output: object = None,
                       split_every: int | None = None) -> tuple[da.Array, da.Array]:
    """(loss, dlogits) of ``cross_entropy``, as ``softce.cross_entropy_grad``; dlogits is
    chunked as logits."""
    arr, ax = _classes_last(_as_float(logits, "logits"), axis)
    check_reduction(reduction)
    labels, probs = _targets(arr, target, ax)
    w = _weights(grad_output, reduction, arr)
    full, batch = _indices(arr.ndim)
    if not _split(arr):
        tgt, ind = (labels, batch) if labels is not None else (probs, full)
        pair = da.blockwise(_ce_grad_block, full, arr, full, tgt, ind, w, batch,
                            dtype=arr.dtype, meta=_meta(arr.ndim, arr.dtype),
                            token="softce-ce-grad")  # each block is (loss, grad)
        grad = pair.map_blocks(itemgetter(1), dtype=arr.dtype, meta=_meta(arr.ndim, arr.dtype))
        loss = da.blockwise(_loss_of_pair, batch, pair, full, concatenate=False,
                            dtype=arr.dtype, meta=_meta(arr.ndim - 1, arr.dtype))
        return _reduce(loss, reduction), _restore(grad, ax)
    states = _ce_states(arr, labels, probs, split_every)
    loss = _per_row(_loss_from_states, arr.dtype, states)
    if labels is not None:
        grad = da.blockwise(_grad_label_block, full, arr, full, _classes(arr), full[-1],
                            states, batch, labels, batch, w, batch, dtype=arr.dtype,
                            meta=_meta(arr.ndim, arr.dtype))
    else:
        grad = da.blockwise(_grad_prob_block, full, arr, full, probs, full, states, batch,
                            w, batch, dtype=arr.dtype, meta=_meta(arr.ndim, arr.dtype))
    return _reduce(loss, reduction), _restore(grad, ax)


def _ce_grad_block(xb: np.ndarray, tb: np.ndarray, wb: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The in-memory fused kernel on a block of whole rows: (loss per row, gradient)."""
    return F.cross_entropy_grad(xb, tb, reduction="none", grad_output=wb)


def _loss_of_pair(pairs: list) -> np.ndarray:
    """The loss of the one (loss, grad) block along the class axis (held in a list)."""
    return pairs[0][0]


@_quiet
def _grad_label_block(xb, cls, s, labels, wb) -> np.ndarray:
    return P.cross_entropy_grad_label(xb, s["m"][..., None], s["s"][..., None],
                                      labels[..., None], cls, wb[..., None])


@_quiet
def _grad_prob_block(xb, yb, s, wb) -> np.ndarray:
    return P.cross_entropy_grad_prob(xb, yb, s["m"][..., None], s["s"][..., None],
                                     s["sum_y"][..., None], wb[..., None])
