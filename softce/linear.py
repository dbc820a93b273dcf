"""Cross-entropy after a linear layer, z = h W^T + b, without materialising the logits [D20].

PyTorch's ``F.linear_cross_entropy``: input h of shape (N, F) or (F,), linear_weight W of shape
(C, d1, ..., dK, F), logits (N, C, d1, ..., dK) meeting the targets as ``F.cross_entropy``'s
do. The rows are taken in chunks whose logits fit in ``chunk_bytes``: each chunk's logits come
from one matrix product (NumPy's BLAS; for CUDA arrays ``softce.cuda.linalg``'s), its loss and
G = d loss / d z from softce's fused cross-entropy kernel written over those logits (D13, D14),
and then, by D20,

    d loss / d h = G W,    d loss / d W = sum over the chunks of G^T h,    d loss / d b = sum G.

"mean" divides by PyTorch's divisor of the whole batch, taken once before the chunks. A row
whose logits alone exceed the budget is split along the classes too: each class block's LSE,
merged by D11's rule into the row's, gives the block's softmax exactly, and every option
(weights, label smoothing, probabilities, z-loss, soft-cap) is D13's loss at the weighted,
smoothed target y', whose terms the blocks share out.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .backend import Array, backend_for
from .checks import (
    CEOptions,
    check_options,
    check_reduction,
    check_target_kind,
    labels_and_mask,
    mean_divisor,
)
from .functions import logsumexp
from .losses import cross_entropy, cross_entropy_grad, reduced

#: The default budget for one chunk's logits.
CHUNK_BYTES = 64 << 20
#: Classes per block of the weight gradient's product G^T h (its temporary: BLOCK x F).
GRAD_BLOCK = 4096


@dataclass
class SplitBuffers:
    """The class split's buffers, arrays of the plan's kind: a block's raw logits (block,), its
    row (1, block + 1) and that row's targets (1, block + 1)."""

    raw: Any
    row: Any
    y: Any


class Products:
    """The arrays and matrix products of a linear_cross_entropy call: NumPy's (BLAS through
    ``np.matmul``). softce.torch gives the plan torch's instead, on the tensors' device, and
    ``softce.cuda.products`` numba device arrays', so that one chunk loop serves NumPy arrays,
    CUDA arrays and CPU and CUDA tensors. The chunk loop changes arrays only through these
    methods. softce's kernels see an array through ``kernel`` and their results come back
    through ``wrap``."""

    #: The backend whose arrays the plan holds (its input's).
    backend = "cpu"

    def float_array(self, value: object, name: str) -> Any:
        be = backend_for(value)
        if be.name != self.backend:
            raise TypeError(f"{name} lives on the {be.name} backend, but input on the "
                            f"{self.backend} one: linear_cross_entropy takes all its arrays "
                            "from one backend")
        return be.float_array(value, name)

    def describe(self, value: object) -> tuple[np.dtype, tuple[int, ...]]:
        """(dtype, shape) of an array or array-like, without copying it anywhere."""
        return backend_for(value).describe(value)

    def host(self, value: object) -> np.ndarray:
        """A NumPy array of value (targets and weights, for their checks)."""
        return backend_for(value).to_host(value)

    def numpy_dtype(self, arr: Any) -> np.dtype:
        return np.dtype(arr.dtype)

    def asarray(self, host: np.ndarray, like: Any) -> Any:
        """A host array as an array of like's kind, dtype and device."""
        return np.asarray(host, like.dtype)

    def zeros(self, shape: tuple[int, ...], like: Any) -> Any:
        return np.zeros(shape, like.dtype)

    def empty(self, shape: tuple[int, ...], like: Any) -> Any:
        return np.empty(shape, like.dtype)

    def reshape(self, a: Any, shape: tuple[int, ...]) -> Any:
        """a with a new shape, C order (a copy where a view cannot have it)."""
        return a.reshape(shape)

    def matmul(self, a: Any, b: Any, out: Any, accumulate: bool = False) -> None:
        """out = a @ b, or out += a @ b with ``accumulate`` (a, b matrices or vectors)."""
        if accumulate:
            out += a @ b
        else:
            np.matmul(a, b, out=out)

    def add(self, dest: Any, src: Any) -> None:
        """dest += src, src of dest's shape or of its last axis (added to every row)."""
        dest += src

    def add_column_sums(self, g: Any, dest: Any) -> None:
        """dest += the sums of g's columns."""
        dest += g.sum(axis=0)

    def add_outer(self, g: Any, h: Any, dest: Any) -> None:
        """dest += g h^T for vectors g, h."""
        dest += g[:, None] * h[None, :]

    def assign(self, dest: Any, src: object) -> None:
        """dest[...] = src, src of dest's size in C order (a kernel's result, or any array)."""
        dest[...] = self.wrap(src, dest).reshape(tuple(dest.shape))

    def set_item(self, arr: Any, index: tuple[int, ...], value: float) -> None:
        arr[index] = value

    def any(self, a: Any) -> bool:
        """Whether any element of a is non-zero."""
        return bool(a.any())

    def smoothed_target(self, y: Any, source: Any | None, label: int | None, eps: float,
                        n_classes: int, weights: Any | None) -> None:
        """y = w ((1 - eps) t + eps / n_classes), t the block's probabilities ``source`` or
        the one-hot vector of ``label`` (its index in the block; None: outside it), w the
        block's class weights (None: 1) [D13's weighted, smoothed target]."""
        if source is None:
            y[:] = eps / n_classes
            if label is not None:
                y[label] += 1 - eps
        else:
            y[:] = source
            if eps:
                y *= 1 - eps
                y += eps / n_classes
        if weights is not None:
            y *= weights

    def moveaxis(self, a: Any, source: int, destination: int) -> Any:
        return np.moveaxis(a, source, destination)

    def transpose(self, a: Any) -> Any:
        """The transpose of a matrix, a view."""
        return a.T

    def add_gt_h(self, g: Any, h: Any, dest: Any) -> None:
        """dest += G^T h, in blocks of ``GRAD_BLOCK`` classes (a temporary of GRAD_BLOCK x F,
        not of dest's size: NumPy's matmul cannot accumulate into dest; SciPy's BLAS could,
        but a SciPy install makes Numba import scipy.linalg at every process's first kernel
        load, about 0.25 s, for the same speed: measured in BENCHMARKS.md)."""
        tmp = np.empty((min(GRAD_BLOCK, dest.shape[0]), h.shape[1]), dest.dtype)
        for s in range(0, dest.shape[0], GRAD_BLOCK):
            e = min(dest.shape[0], s + GRAD_BLOCK)
            part = tmp[:e - s]
            np.matmul(g[:, s:e].T, h, out=part)
            dest[s:e] += part

    def contiguous(self, a: Any) -> Any:
        return np.ascontiguousarray(a)

    def sum64(self, a: Any) -> float:
        """The sum of a's elements, accumulated in float64."""
        return float(a.sum(dtype=np.float64))

    def item(self, value: object) -> float:
        """A scalar result (or one-element array) as a Python float."""
        return float(np.asarray(value).reshape(-1)[0])

    def kernel(self, a: Any) -> Any:
        """a as softce's kernels take it."""
        return a

    def wrap(self, result: object, like: Any) -> Any:
        """A result of softce's kernels as an array of like's kind."""
        return np.asarray(result)


NUMPY = Products()


def products_for(value: object) -> Products:
    """The products of input's backend: NumPy's, or the device's for CUDA arrays."""
    if backend_for(value).name == "cuda":
        from .cuda.products import CUDA_PRODUCTS

        return CUDA_PRODUCTS
    return NUMPY


def linear_cross_entropy(input: object, linear_weight: object, target: object, *,
                         linear_bias: object = None, weight: object = None,
                         reduction: str = "mean", ignore_index: int | None = None,
                         label_smoothing: float = 0.0, z_loss: float = 0.0,
                         softcap: float | None = None, chunk_bytes: int | None = None
                         ) -> Array:
    """cross_entropy(linear(input, linear_weight, linear_bias), target) as PyTorch's
    ``F.linear_cross_entropy``, chunked over rows so that no more than ``chunk_bytes`` of
    logits exist at once [D20]; ``ignore_index=None`` is -100 for labels. ``z_loss`` and
    ``softcap`` are softce's (``cross_entropy``)."""
    return LinearPlan.check(input, linear_weight, target, linear_bias, weight, reduction,
                            ignore_index, label_smoothing, z_loss, softcap, chunk_bytes,
                            products_for(input)).loss()


def linear_cross_entropy_grad(input: object, linear_weight: object, target: object, *,
                              linear_bias: object = None, weight: object = None,
                              reduction: str = "mean", ignore_index: int | None = None,
                              label_smoothing: float = 0.0, z_loss: float = 0.0,
                              softcap: float | None = None, chunk_bytes: int | None = None,
                              grad_output: object = None) -> tuple[Array, ...]:
    """(loss, d_input, d_linear_weight[, d_linear_bias]) of ``linear_cross_entropy``:
    grad_output times G W, G^T h and sum G over the rows, G = d loss / d logits [D20, D13].
    ``grad_output`` is a scalar, or for reduction="none" an array of the loss's shape."""
    return LinearPlan.check(input, linear_weight, target, linear_bias, weight, reduction,
                            ignore_index, label_smoothing, z_loss, softcap, chunk_bytes,
                            products_for(input)).gradients(grad_output)


def check_chunk_bytes(chunk_bytes: object) -> int:
    """A positive int (None: ``CHUNK_BYTES``)."""
    if chunk_bytes is None:
        return CHUNK_BYTES
    if isinstance(chunk_bytes, (bool, np.bool_)) or not isinstance(chunk_bytes,
                                                                   numbers.Integral):
        raise TypeError(f"chunk_bytes must be an int or None, got {type(chunk_bytes).__name__}")
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    return int(chunk_bytes)


@dataclass
class LinearPlan:
    """One call, checked: the input as rows h (N, F), the weight as W2 (D C, F) with the
    classes innermost (positions d1..dK outside them, D their count), the bias as b2, the
    targets as (N, D) labels or (N, D, C) probabilities, the options and the chunking; the
    arrays of ``products``' kind (NumPy, or torch tensors), the labels on the host."""

    h: Any
    w2: Any
    b2: Any | None
    labels: np.ndarray | None  # (N, D) on the host, as given (ignore_index included)
    probs: Any | None  # (N, D, C), a view of the caller's target
    counted: np.ndarray | None  # (N D,) host mask of counted positions (labels)
    class_weights: Any | None  # (C,) the options' weights as an array of h's kind
    n_classes: int
    positions: tuple[int, ...]  # (d1, ..., dK)
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    loss_shape: tuple[int, ...]  # the loss's shape for reduction="none"
    opts: CEOptions
    reduction: str
    chunk_bytes: int
    dtype: np.dtype
    products: Products

    @classmethod
    def check(cls, input: object, linear_weight: object, target: object, linear_bias: object,
              weight: object, reduction: object, ignore_index: object, label_smoothing: object,
              z_loss: object, softcap: object, chunk_bytes: object,
              products: Products = NUMPY) -> LinearPlan:
        """Every argument checked (errors name it), before any product is computed."""
        h = products.float_array(input, "input")
        w = products.float_array(linear_weight, "linear_weight")
        dtype = products.numpy_dtype(h)
        if h.ndim not in (1, 2):
            raise ValueError(f"input must have shape (N, in_features) or (in_features,), got "
                             f"{tuple(h.shape)}")
        if w.ndim < 2:
            raise ValueError(f"linear_weight must have shape (C, [d1, ..., dK,] in_features), "
                             f"got {tuple(w.shape)}")
        if products.numpy_dtype(w) != dtype:
            raise TypeError(f"linear_weight must have input's dtype {dtype}, got "
                            f"{products.numpy_dtype(w)}")
        features = tuple(h.shape)[-1]
        if tuple(w.shape)[-1] != features:
            raise ValueError(f"linear_weight's last dimension (in_features) is "
                             f"{tuple(w.shape)[-1]}, input's is {features}: they must be equal")
        n_classes, positions = w.shape[0], tuple(w.shape[1:-1])
        if positions and h.ndim == 1:
            raise ValueError(f"a linear_weight of shape {tuple(w.shape)} (K-dimensional loss) "
                             f"needs batched input (N, {features}), got input of shape "
                             f"{tuple(h.shape)}")
        b = None
        if linear_bias is not None:
            b = products.float_array(linear_bias, "linear_bias")
            if tuple(b.shape) != (n_classes, *positions):
                raise ValueError(f"linear_bias must have shape {(n_classes, *positions)}, got "
                                 f"{tuple(b.shape)}")
            if products.numpy_dtype(b) != dtype:
                raise TypeError(f"linear_bias must have input's dtype {dtype}, got "
                                f"{products.numpy_dtype(b)}")
        check_reduction(reduction)
        budget = check_chunk_bytes(chunk_bytes)
        tdt, tshape = products.describe(target)
        kind = check_target_kind(tdt)
        if kind == "probs" and ignore_index is not None:
            raise ValueError("ignore_index cannot be given when target holds probabilities")
        opts = check_options(n_classes, dtype,
                             None if weight is None else products.host(weight),
                             -100 if ignore_index is None else ignore_index, label_smoothing,
                             z_loss, softcap, False, None)

        rows = products.reshape(h, (-1, features))
        batch = (rows.shape[0],) if h.ndim == 2 else ()
        loss_shape = batch + positions
        logits_shape = batch + (n_classes,) + positions
        k, d = len(positions), math.prod(positions)
        # the classes innermost: W2[(d, j)] = W[j, d]; a view when there are no positions
        w2 = products.reshape(products.moveaxis(w, 0, k), (-1, features))
        b2 = (None if b is None
              else products.reshape(products.contiguous(products.moveaxis(b, 0, k)), (-1,)))
        labels = counted = probs = None
        if kind == "labels":
            if tuple(tshape) != loss_shape:
                raise ValueError(f"target holds class labels and must have shape {loss_shape} "
                                 f"(the logits' {logits_shape} without the classes), got "
                                 f"{tuple(tshape)}")
            t = products.host(target)
            _, counted = labels_and_mask(t, n_classes, opts.ignore_index)  # range-checked
            labels = t.reshape(rows.shape[0], d)  # ignore_index kept: the kernels mask it
            if bool(counted.all()):
                counted = None
        else:
            if tuple(tshape) != logits_shape:
                raise ValueError(f"target holds probabilities and must have the logits' shape "
                                 f"{logits_shape}, got {tuple(tshape)}")
            t = products.float_array(target, "target")
            probs = products.moveaxis(products.reshape(t, (rows.shape[0], n_classes, d)), 1, 2)
        class_weights = None if opts.weight is None else products.asarray(opts.weight, h)
        return cls(rows, w2, b2, labels, probs, counted, class_weights, n_classes, positions,
                   tuple(h.shape), tuple(w.shape), loss_shape, opts, str(reduction), budget,
                   dtype, products)

    # sizes -------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return self.h.shape[0]

    @property
    def n_positions(self) -> int:
        return math.prod(self.positions)

    @property
    def copies(self) -> int:
        """Chunk-sized arrays alive at once: the logits, plus the soft-capped copy the kernel
        reads, plus the chunk's probabilities when they must be laid out as rows."""
        return (1 + (self.opts.softcap is not None)
                + (self.probs is not None
                   and (bool(self.positions)
                        or self.products.numpy_dtype(self.probs) != self.dtype)))

    @property
    def split_copies(self) -> int:
        """Class-block-sized arrays alive at once in the class split: the block's row and its
        targets, plus the raw logits under a soft-cap."""
        return 2 + (self.opts.softcap is not None)

    def chunking(self) -> tuple[int, int, int]:
        """(rows, positions, classes) per chunk: whole rows when one fits in the budget, else
        one row's positions, else one position's classes in blocks."""
        item = self.dtype.itemsize
        budget = max(self.chunk_bytes // (self.copies * item), 1)  # logits per chunk
        width = self.n_positions * self.n_classes
        if width <= budget:
            return max(1, min(self.n_rows, budget // max(width, 1))), self.n_positions, \
                self.n_classes
        if self.n_classes <= budget:
            return 1, budget // self.n_classes, self.n_classes
        return 1, 1, max(self.chunk_bytes // (self.split_copies * item), 1)

    # the divisor and the chain rule --------------------------------------------------------
    @cached_property
    def divisor(self) -> float:
        """PyTorch's divisor for "mean", of the whole batch [D20: free of h, W, b]."""
        if self.labels is None:
            return float(self.n_rows * self.n_positions)
        flat = self.labels.reshape(-1)
        counted = np.ones(flat.shape, bool) if self.counted is None else self.counted
        return mean_divisor(flat.size, flat, counted, self.opts.weight)

    def chain_weights(self, grad_output: object) -> Any:
        """s per position: grad_output (divided by the divisor for "mean"; 0 for a divisor
        of 0), a scalar or, for reduction="none", one per position (N, D) of h's kind."""
        go = 1.0 if grad_output is None else grad_output
        if not hasattr(go, "ndim"):
            go = np.asarray(go)
        kind = self.products.numpy_dtype(go)
        if kind.kind not in "fiu" or kind == np.bool_:
            raise TypeError(f"grad_output must be a real number or array, got dtype {kind}")
        if go.ndim == 0:
            value = self.dtype.type(self.products.item(go))
            if self.reduction == "mean":
                divisor = self.divisor
                value = value / self.dtype.type(divisor) if divisor else self.dtype.type(0)
            return value
        if self.reduction != "none":
            raise ValueError(f"grad_output must be a scalar for reduction={self.reduction!r}, "
                             f"got shape {tuple(go.shape)}")
        if tuple(go.shape) != self.loss_shape:
            raise ValueError(f"grad_output has shape {tuple(go.shape)}, expected "
                             f"{self.loss_shape} or a scalar")
        scale = self.products.zeros(self.loss_shape, self.h)
        self.products.assign(scale, go)
        return self.products.reshape(scale, (self.n_rows, -1))

    # the chunk loop ------------------------------------------------------------------------
    def run(self, grad: bool, scale: object = None) -> tuple[Any, Any, Any, Any]:
        """loss per position (N, D), and with ``grad`` d_input (N, F), d_W2 and d_b2."""
        n, f = self.h.shape
        d, c = self.n_positions, self.n_classes
        pr = self.products
        loss = pr.zeros((n, d), self.h)
        d_input = d_w2 = d_b2 = None
        if grad:
            d_input = pr.zeros((n, f), self.h)
            d_w2 = pr.zeros(tuple(self.w2.shape), self.h)
            d_b2 = None if self.b2 is None else pr.zeros(tuple(self.b2.shape), self.h)
        rows, positions, classes = self.chunking()
        if classes < c:
            self._run_split(classes, loss, scale, d_input, d_w2, d_b2)
            return loss, d_input, d_w2, d_b2
        buf = pr.empty((rows * positions * c,), self.h)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            for p0 in range(0, d, positions):
                p1 = min(d, p0 + positions)
                cols = slice(p0 * c, p1 * c)
                h, w = self.h[r0:r1], self.w2[cols]
                z = pr.reshape(buf[:(r1 - r0) * (p1 - p0) * c], (r1 - r0, (p1 - p0) * c))
                pr.matmul(h, pr.transpose(w), out=z)  # z = h W^T + b [D20]
                if self.b2 is not None:
                    pr.add(z, self.b2[cols])
                logits = pr.reshape(z, (-1, c))
                target = self._target(r0, r1, p0, p1)
                if not grad:
                    pr.assign(loss[r0:r1, p0:p1], self._ce(logits, target))
                    continue
                go = (scale if getattr(scale, "ndim", 0) == 0
                      else pr.kernel(pr.reshape(scale[r0:r1, p0:p1], (-1,))))
                part = self._ce_grad(logits, target, go)  # G written over the logits
                pr.assign(loss[r0:r1, p0:p1], part)
                g = z  # G, (rows, positions x classes)
                # d h = G W [D20], summed over the position chunks
                pr.matmul(g, w, out=d_input[r0:r1], accumulate=p1 - p0 != d)
                pr.add_gt_h(g, h, d_w2[cols])  # d W += G^T h [D20]
                if d_b2 is not None:
                    pr.add_column_sums(g, d_b2[cols])  # d b += sum G [D20]
        return loss, d_input, d_w2, d_b2

    def _target(self, r0: int, r1: int, p0: int, p1: int) -> Any:
        if self.labels is not None:
            return self.labels[r0:r1, p0:p1].reshape(-1)
        chunk = self.probs[r0:r1, p0:p1]
        return self.products.kernel(self.products.reshape(chunk, (-1, self.n_classes)))

    def _options(self) -> dict:
        o = self.opts
        return {"weight": o.weight, "ignore_index": o.ignore_index,
                "label_smoothing": o.label_smoothing, "z_loss": o.z_loss, "softcap": o.softcap}

    def _ce(self, logits: Any, target: Any) -> object:
        return cross_entropy(self.products.kernel(logits), target, reduction="none",
                             **self._options())

    def _ce_grad(self, logits: Any, target: Any, go: object) -> object:
        """The chunk's loss per position; G written over its logits (D13's fused kernel)."""
        view = self.products.kernel(logits)
        return cross_entropy_grad(view, target, reduction="none", grad_output=go, out=view,
                                  **self._options())[0]

    def _run_split(self, block: int, loss: Any, scale: object, d_input: Any, d_w2: Any,
                   d_b2: Any) -> None:
        """One position at a time, its classes in blocks of ``block``. Every option is D13's
        definition (10) at the weighted, smoothed target y' (``_block_target``), so each
        block runs the probability-target kernels (D19, D13) on its logits plus one more
        logit: the LSE of the rest of the row, the other blocks' LSEs merged by D11's rule, so
        that the block's softmax is the row's. That logit's target is 0 for the loss (the
        block's terms of LSE sum(y') - x.y'; the z-loss counted in the first block) and the
        rest's mass sum y' for the gradient ((sum(y') + 2 z LSE) p - y', the row's [D13]).
        A soft-cap is applied to each block first and its chain rule (D14) to the block's G."""
        c = self.n_classes
        pr = self.products
        grad = d_input is not None
        cap = self.opts.softcap
        split = self.split_buffers(block)
        starts = range(0, c, block)
        for r in range(self.n_rows):
            h = self.h[r]
            for p in range(self.n_positions):
                if self.counted is not None and not self.counted[r * self.n_positions + p]:
                    continue  # an ignored position: no loss, no gradient
                base = p * c
                lse = np.empty(len(starts), self.dtype)
                mass = np.empty(len(starts), np.float64)
                for q, s in enumerate(starts):
                    z = pr.kernel(self._block_logits(h, base, s, block, split))
                    lse[q] = pr.item(logsumexp(z))
                    mass[q] = pr.sum64(self._block_target(r, p, s, block, split))
                go = scale if getattr(scale, "ndim", 0) == 0 else pr.item(scale[r, p])
                total = 0.0
                for q, s in enumerate(starts):
                    y = self._block_target(r, p, s, block, split)
                    if not (grad or q == 0 or pr.any(y)):
                        continue  # no target in this block: its terms are 0
                    z = self._block_logits(h, base, s, block, split)
                    row, target = split.row[:, :z.shape[0] + 1], split.y[:, :z.shape[0] + 1]
                    pr.set_item(row, (0, z.shape[0]), float(logsumexp(np.delete(lse, q)))
                                if len(starts) > 1 else -math.inf)
                    pr.set_item(target, (0, z.shape[0]), 0.0)
                    view = pr.kernel(row)
                    z_loss = self.opts.z_loss if q == 0 else 0.0
                    total += pr.item(cross_entropy(view, pr.kernel(target), reduction="none",
                                                   z_loss=z_loss))
                    if not grad:
                        continue
                    pr.set_item(target, (0, z.shape[0]), float(np.delete(mass, q).sum()))
                    cross_entropy_grad(view, pr.kernel(target), reduction="none",
                                       z_loss=self.opts.z_loss,
                                       grad_output=np.asarray([go], self.dtype), out=view)
                    g = row[0, :z.shape[0]]  # G of the block, written over its logits
                    if cap is not None:
                        gk = pr.kernel(g)
                        backend_for(gk).launch("softcap_grad", self.dtype,
                                               t_in=pr.kernel(split.raw[:g.shape[0]]),
                                               dy_in=gk, cap=cap, out=gk)
                    e = s + g.shape[0]
                    pr.matmul(g, self.w2[base + s:base + e], out=d_input[r], accumulate=True)
                    pr.add_outer(g, h, d_w2[base + s:base + e])
                    if d_b2 is not None:
                        pr.add(d_b2[base + s:base + e], g)
                pr.set_item(loss, (r, p), total)

    def split_buffers(self, block: int) -> SplitBuffers:
        """A class block's raw logits, its row (the logits, soft-capped, and one more) and
        its targets."""
        pr = self.products
        return SplitBuffers(pr.empty((block,), self.h), pr.empty((1, block + 1), self.h),
                            pr.empty((1, block + 1), self.h))

    def _block_target(self, r: int, p: int, s: int, block: int, split: SplitBuffers) -> Any:
        """y'_k for the classes k of the block at s, written into ``split.y``: D13's weighted,
        smoothed target, w_k ((1 - eps) [k = c] + eps / n) for label c (``label_target``),
        w_k ((1 - eps) y_k + eps / n) for probabilities y (``prob_target``)."""
        e = min(self.n_classes, s + block)
        y = split.y[0, :e - s]
        source = label = None
        if self.labels is not None:
            c = int(self.labels[r, p])
            label = c - s if s <= c < e else None
        else:
            source = self.probs[r, p, s:e]
        weights = None if self.class_weights is None else self.class_weights[s:e]
        self.products.smoothed_target(y, source, label, self.opts.label_smoothing,
                                      self.n_classes, weights)
        return y

    def _block_logits(self, h: Any, base: int, s: int, block: int, split: SplitBuffers) -> Any:
        """The block's logits z = W h + b, soft-capped (cap tanh(z / cap), D14; z kept in
        ``split.raw``), into the first entries of ``split.row``, which it returns."""
        e = min(self.n_classes, s + block)
        row = split.row[0, :e - s]
        z = row if self.opts.softcap is None else split.raw[:e - s]
        self.products.matmul(self.w2[base + s:base + e], h, out=z)
        if self.b2 is not None:
            self.products.add(z, self.b2[base + s:base + e])
        if self.opts.softcap is not None:
            zk, rk = self.products.kernel(z), self.products.kernel(row)
            backend_for(zk).launch("softcap", self.dtype, t_in=zk, cap=self.opts.softcap,
                                   out=rk)
        return row

    # results -------------------------------------------------------------------------------
    def loss(self) -> object:
        """The reduced loss."""
        return self.reduce(self.run(grad=False)[0])

    def gradients(self, grad_output: object = None) -> tuple[object, ...]:
        """(loss, d_input, d_linear_weight[, d_linear_bias]) in the caller's shapes."""
        loss, d_input, d_w2, d_b2 = self.run(grad=True, scale=self.chain_weights(grad_output))
        result = (self.reduce(loss), self.products.reshape(d_input, self.input_shape),
                  self.restore_weight(d_w2))
        return result if d_b2 is None else (*result, self.restore_bias(d_b2))

    def reduce(self, loss: Any) -> object:
        """Per-position losses -> the reduction, as ``cross_entropy`` reduces them."""
        if self.reduction == "none":
            return self.products.reshape(loss, self.loss_shape)
        divisor = self.divisor if self.reduction == "mean" else 1.0
        flat = self.products.kernel(self.products.reshape(loss, (-1,)))
        return reduced(backend_for(flat), flat, self.reduction, self.dtype, divisor)

    def restore_weight(self, d_w2: Any) -> Any:
        """d_W2 (D C, F) back to linear_weight's shape (C, d1, ..., dK, F)."""
        k = len(self.positions)
        moved = self.products.reshape(d_w2, (*self.positions, self.n_classes,
                                             self.h.shape[1]))
        return self.products.contiguous(self.products.moveaxis(moved, k, 0)) if k else moved

    def restore_bias(self, d_b2: Any) -> Any:
        k = len(self.positions)
        moved = self.products.reshape(d_b2, (*self.positions, self.n_classes))
        return self.products.contiguous(self.products.moveaxis(moved, k, 0)) if k else moved
