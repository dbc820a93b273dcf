"""One cross-entropy call on the CPU, with PyTorch's options [D13]: class weights,
ignore_index, label smoothing, and softce's z-loss, logit soft-capping [D14], per-row LSE and
empty-batch mean.

Positions become rows (class axis last); each call runs one generated kernel: D9/D8's plain
kernels when no option is in effect, else D13's. "mean" divides as PyTorch does: by the sum
of weight[target] over counted positions for labels, by the number of positions for
probabilities.
"""

from __future__ import annotations

import importlib
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import buffers
from ._arrays import DTYPE_SUFFIX, Rows, as_float_array, check_axis, host_values, to_rows

REDUCTIONS = ("none", "mean", "sum")


def kernel(name: str, dtype: np.dtype) -> Any:
    """The generated CPU kernel ``name`` for float dtype ``dtype``."""
    module = importlib.import_module(f"softce.generated.cpu.{name}")
    return getattr(module, f"{name}_{DTYPE_SUFFIX[np.dtype(dtype)]}")


def check_reduction(reduction: object, allowed: tuple[str, ...] = REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")


def real(value: object, name: str) -> float:
    """A finite real number (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not np.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_weight(weight: object, n_classes: int, dtype: np.dtype,
                 name: str = "weight") -> np.ndarray | None:
    """Per-class weights: a 1-D real array of length C, finite and >= 0."""
    if weight is None:
        return None
    arr = host_values(weight)  # a CUDA array's values are checked on the host
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    if arr.shape != (n_classes,):
        raise ValueError(f"{name} must have shape ({n_classes},), one weight per class; got "
                         f"{arr.shape}")
    if not np.all(np.isfinite(arr)) or (arr < 0).any():
        raise ValueError(f"{name} must hold finite weights >= 0")
    return np.ascontiguousarray(arr, dtype)


@dataclass(frozen=True)
class CEOptions:
    """A cross-entropy call's options, checked."""

    weight: np.ndarray | None
    ignore_index: int
    label_smoothing: float
    z_loss: float
    softcap: float | None
    return_lse: bool
    empty_mean: float | None


def check_options(n_classes: int, dtype: np.dtype, weight: object, ignore_index: object,
                  label_smoothing: object, z_loss: object, softcap: object,
                  return_lse: object, empty_mean: object) -> CEOptions:
    """Every option checked against PyTorch's domain (and softce's, for its extras)."""
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index,
                                                                     numbers.Integral):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
    eps = real(label_smoothing, "label_smoothing")
    if not 0 <= eps <= 1:
        raise ValueError(f"label_smoothing must be in [0, 1], got {eps}")
    z = real(z_loss, "z_loss")
    if z < 0:
        raise ValueError(f"z_loss must be >= 0, got {z}")
    cap = None if softcap is None else real(softcap, "softcap")
    if cap is not None and cap <= 0:
        raise ValueError(f"softcap must be a positive number or None, got {cap}")
    if not isinstance(return_lse, (bool, np.bool_)):
        raise TypeError(f"return_lse must be a bool, got {type(return_lse).__name__}")
    if empty_mean is not None and (isinstance(empty_mean, (bool, np.bool_))
                                   or not isinstance(empty_mean, numbers.Real)):
        raise TypeError(f"empty_mean must be a real number or None, got "
                        f"{type(empty_mean).__name__}")
    return CEOptions(check_weight(weight, n_classes, dtype), int(ignore_index), eps, z, cap,
                     bool(return_lse), None if empty_mean is None else float(empty_mean))


def labels_and_mask(target: np.ndarray, n_classes: int, ignore_index: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int32/int64 rows with ignored positions set to class 0 (their mask is 0),
    and the mask counted = [target != ignore_index]; other labels outside [0, C) refused."""
    if n_classes == 0 and target.size:
        raise ValueError("target holds labels but the logits have no classes along axis")
    counted = target != ignore_index
    bad = counted & ((target < 0) | (target >= n_classes))
    if bad.any():
        pos = tuple(int(q) for q in np.argwhere(bad)[0])
        raise ValueError(f"target has label {target[pos]} at position {pos}, outside the "
                         f"classes [0, {n_classes})")
    dtype = target.dtype if target.dtype in (np.int32, np.int64) else np.int64
    labels = np.ascontiguousarray(np.where(counted, target, 0).reshape(-1), dtype)
    return labels, counted.reshape(-1)


def mean_divisor(n_rows: int, labels: np.ndarray | None, counted: np.ndarray | None,
                 weight: np.ndarray | None) -> float:
    """PyTorch's divisor for "mean": the number of positions for probability targets; for
    labels, the sum of weight[label] over counted positions (their count without weights)."""
    if labels is None:
        return float(n_rows)
    if weight is None:
        return float(np.count_nonzero(counted))
    return float(weight.astype(np.float64)[labels[counted]].sum())


@dataclass
class CECall:
    """Checked inputs of one cross-entropy call, as rows."""

    arr: np.ndarray
    target: np.ndarray  # as the caller gave it (out= must not overlap it)
    rows: Rows
    x: np.ndarray  # the logit rows the kernel reads (soft-capped when asked)
    labels: np.ndarray | None
    counted: np.ndarray | None
    probs: np.ndarray | None
    opts: CEOptions
    reduction: str

    @property
    def dtype(self) -> np.dtype:
        return self.arr.dtype

    @property
    def n_rows(self) -> int:
        return self.rows.data.shape[0]

    @property
    def plain(self) -> bool:
        """Whether D9/D8's plain kernels compute this call: no option in effect."""
        o = self.opts
        return (o.weight is None and (self.counted is None or bool(self.counted.all()))
                and o.label_smoothing == 0 and o.z_loss == 0 and o.softcap is None
                and not o.return_lse)

    def denominator(self) -> float:
        """PyTorch's divisor for "mean"."""
        return mean_divisor(self.n_rows, self.labels, self.counted, self.opts.weight)

    def reduce(self, loss: np.ndarray) -> np.ndarray:
        """loss per row -> the reduction, in the logits' dtype."""
        if self.reduction == "none":
            return self.rows.restore_batch(loss)
        total = loss.sum(dtype=loss.dtype)
        if self.reduction == "sum":
            return total
        divisor = self.denominator()
        if divisor == 0:
            empty = self.opts.empty_mean
            return self.dtype.type(np.nan if empty is None else empty)
        return total / self.dtype.type(divisor)

    def run_options(self, loss: np.ndarray, w: np.ndarray | None = None,
                    grad: np.ndarray | None = None) -> np.ndarray:
        """D13's kernel for this call: fills loss (and grad rows with chain-rule weights w);
        returns the per-row LSE. Ignored positions get loss 0 and gradient 0 exactly."""
        n = self.rows.data.shape[1]
        o = self.opts
        cw = o.weight if o.weight is not None else np.ones(n, self.dtype)
        target = "label" if self.labels is not None else "prob"
        variant = "smoothed" if o.label_smoothing else "weighted"
        params = [self.dtype.type(o.z_loss)]
        if o.label_smoothing:
            params.insert(0, self.dtype.type(o.label_smoothing))
        if self.labels is not None:
            inputs = [self.x, cw, self.labels, self.counted.astype(self.dtype)]
        else:
            inputs = [self.x, self.probs, cw]
        lse = buffers.empty(self.n_rows, self.dtype)
        if grad is None:
            kernel(f"cross_entropy_{target}_{variant}", self.dtype)(*inputs, *params, loss, lse)
        else:
            # with a soft-cap, d loss / d s goes over the capped copy s (in place), then the
            # chain rule through D14 writes grad (which may be the logits themselves)
            dest = grad if o.softcap is None else self.x
            kernel(f"cross_entropy_grad_{target}_{variant}", self.dtype)(
                *inputs, w, *params, dest, loss, lse)
            if o.softcap is not None:
                kernel("softcap_grad", self.dtype)(
                    self.rows.data.reshape(-1), dest.reshape(-1), self.dtype.type(o.softcap),
                    grad.reshape(-1))
        if self.counted is not None and not self.counted.all():
            ignored = ~self.counted
            loss[ignored] = 0  # ignored positions add nothing, whatever their logits
            if grad is not None:
                grad[ignored] = 0
        return lse


def ce_call(logits: object, target: object, axis: int, reduction: str, weight: object,
            ignore_index: object, label_smoothing: object, z_loss: object, softcap: object,
            return_lse: object, empty_mean: object, name: str = "logits") -> CECall:
    """Check every argument of a cross-entropy call and lay its inputs out as rows."""
    arr = as_float_array(logits, name)
    ax = check_axis(axis, arr.ndim)
    check_reduction(reduction)
    rows = to_rows(arr, ax)
    n = arr.shape[ax]
    opts = check_options(n, arr.dtype, weight, ignore_index, label_smoothing, z_loss, softcap,
                         return_lse, empty_mean)
    tgt = np.asarray(target)
    labels = counted = probs = None
    if tgt.dtype.kind in "iu":
        if tgt.shape != rows.batch_shape:
            raise ValueError(f"target holds class labels and must have the shape of {name} "
                             f"without axis {ax}, {rows.batch_shape}; got {tgt.shape}")
        labels, counted = labels_and_mask(tgt, n, opts.ignore_index)
    elif tgt.dtype.kind == "f":
        if tgt.shape != arr.shape:
            raise ValueError(f"target holds probabilities and must have the shape of {name} "
                             f"{arr.shape}; got {tgt.shape}")
        probs = to_rows(tgt.astype(arr.dtype, copy=False), ax).data
    else:
        raise TypeError(f"target must hold integer class labels or float probabilities, got "
                        f"dtype {tgt.dtype}")
    x = rows.data
    if opts.softcap is not None:
        x = buffers.empty_like(rows.data)
        kernel("softcap", arr.dtype)(rows.data.reshape(-1), arr.dtype.type(opts.softcap),
                                     x.reshape(-1))
    return CECall(arr, tgt, rows, x, labels, counted, probs, opts, reduction)
