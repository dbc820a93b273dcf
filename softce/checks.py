"""Argument checks that do not depend on where the arrays live.

Every check raises a ValueError or TypeError naming the argument, before any kernel runs.
Array-valued arguments reach these checks as NumPy arrays (a backend copies a device array's
few values to the host first: class weights, the labels of an options call).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .half import BFLOAT16, is_bfloat16, storage

#: The dtypes the kernels compute in; 16-bit input (float16, bfloat16) is computed in float32.
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
REDUCTIONS = ("none", "mean", "sum")


def float_dtype(dtype: object, name: str = "x") -> np.dtype:
    """The dtype a kernel computes input of ``dtype`` in: float32/float64 as is, float16 and
    bfloat16 (``softce.half.BFLOAT16``) in float32."""
    dt = np.dtype(dtype)
    if dt == np.float16 or is_bfloat16(dt):
        return np.dtype(np.float32)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {dt}")
    return dt


def result_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype of a result of the input's shape (softmax, a gradient): float32 for float16
    input (as documented since float16 was upcast), bfloat16 for bfloat16, else the input's."""
    if storage(dtype) == "bf16":
        return BFLOAT16
    return float_dtype(dtype)


def out_dtypes(dtype: np.dtype) -> tuple[np.dtype, ...]:
    """The dtypes an ``out=`` of the input's shape may have: the result's, and for 16-bit
    input its own 16-bit dtype."""
    res = result_dtype(dtype)
    return (res,) if storage(dtype) is None or res == dtype else (res, np.dtype(dtype))


def _axis_int(axis: object, name: str, kinds: str = "an int") -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be {kinds}, got {type(axis).__name__}")
    return int(axis)


def check_axis(axis: object, ndim: int, name: str = "axis") -> int:
    """Normalise one class axis of an array with at least one dimension."""
    ax = _axis_int(axis, name)
    if ndim == 0:
        raise ValueError(f"{name}={axis} needs an array with at least one dimension, got a 0-d "
                         "array")
    if not -ndim <= ax < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array of {ndim} dimensions")
    return ax % ndim


def check_axes(axis: object, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """The class axes as sorted non-negative axes: an int, a tuple of distinct ints, or None
    (every axis), as NumPy and SciPy take them. A 0-d array is one element along axis 0 (or
    -1, as in PyTorch): its class axes are () and each row holds one number."""
    if axis is None:
        return tuple(range(ndim))
    several = isinstance(axis, tuple)
    if not several:
        axis = (_axis_int(axis, name, "an int, a tuple of ints or None"),)
    span = max(ndim, 1)  # a 0-d array takes axis 0 / -1
    axes = []
    for a in axis:
        ax = _axis_int(a, name, "an int, a tuple of ints or None")
        if not -span <= ax < span:
            raise ValueError(f"{name}={axis if several else ax} is out of range for an array "
                             f"of {ndim} dimensions")
        axes.append(ax % span)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name}={axis} repeats an axis")
    return tuple(sorted(axes)) if ndim else ()


def kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with each reduced axis kept as length 1 (NumPy's keepdims)."""
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def check_reduction(reduction: object, allowed: tuple[str, ...] = REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def real(value: object, name: str) -> float:
    """A finite real number (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not np.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_entropy_base(base: object) -> float | None:
    """The logarithm's base b of an entropy: None (nats), or finite, > 0 and not 1."""
    if base is None:
        return None
    if (isinstance(base, (bool, np.bool_)) or not isinstance(base, numbers.Real)
            or not np.isfinite(base) or base <= 0 or base == 1):
        raise ValueError(f"base must be a positive finite number other than 1, got {base!r}")
    return float(base)


def check_real_array(arr: np.ndarray, name: str, kind: str = "array") -> np.ndarray:
    """arr holds real numbers (integers or floats, not bools)."""
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must be a real {kind}, got dtype {arr.dtype}")
    return arr


def check_weight_layout(dtype: np.dtype, shape: tuple[int, ...], n_classes: int,
                        name: str = "weight") -> None:
    """Per-class weights' type and shape: real numbers, (C,)."""
    if dtype.kind not in "fiu" or dtype == np.bool_:
        raise TypeError(f"{name} must be a real array, got dtype {dtype}")
    if tuple(shape) != (n_classes,):
        raise ValueError(f"{name} must have shape ({n_classes},), one weight per class; got "
                         f"{tuple(shape)}")


def check_weight(weight: np.ndarray | None, n_classes: int, dtype: np.dtype,
                 name: str = "weight") -> np.ndarray | None:
    """Per-class weights: a 1-D real array of length C of finite values, of any sign (as in
    PyTorch)."""
    if weight is None:
        return None
    check_weight_layout(weight.dtype, weight.shape, n_classes, name)
    if not np.all(np.isfinite(weight)):
        raise ValueError(f"{name} must hold finite weights")
    return np.ascontiguousarray(weight, dtype)


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

    @property
    def default(self) -> bool:
        """Whether these are PyTorch's defaults (D9/D8's plain kernels compute the call
        when, besides, no label equals ignore_index)."""
        return (self.weight is None and self.ignore_index == -100 and not self.label_smoothing
                and not self.z_loss and self.softcap is None and not self.return_lse
                and self.empty_mean is None)


def check_options(n_classes: int, dtype: np.dtype, weight: np.ndarray | None,
                  ignore_index: object, label_smoothing: object, z_loss: object,
                  softcap: object, return_lse: object, empty_mean: object) -> CEOptions:
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
    lse = check_bool(return_lse, "return_lse")
    if empty_mean is not None and (isinstance(empty_mean, (bool, np.bool_))
                                   or not isinstance(empty_mean, numbers.Real)):
        raise TypeError(f"empty_mean must be a real number or None, got "
                        f"{type(empty_mean).__name__}")
    return CEOptions(check_weight(weight, n_classes, dtype), int(ignore_index), eps, z, cap,
                     lse, None if empty_mean is None else float(empty_mean))


#: PyTorch's defaults: what a plain call becomes when its labels hold ignore_index.
DEFAULT_OPTIONS = CEOptions(None, -100, 0.0, 0.0, None, False, None)


def check_target_kind(dtype: np.dtype) -> str:
    """"labels" for an integer target, "probs" for a float one (bfloat16 included)."""
    if is_bfloat16(dtype):
        return "probs"
    if dtype.kind in "iu":
        return "labels"
    if dtype.kind == "f":
        return "probs"
    raise TypeError(f"target must hold integer class labels or float probabilities, got dtype "
                    f"{dtype}")


def check_target_shape(kind: str, shape: tuple[int, ...], logits_shape: tuple[int, ...],
                       batch_shape: tuple[int, ...], axis: int, name: str) -> None:
    """Labels take the logits' shape without ``axis``, probabilities the logits' shape."""
    if kind == "labels" and shape != batch_shape:
        raise ValueError(f"target holds class labels and must have the shape of {name} "
                         f"without axis {axis}, {batch_shape}; got {shape}")
    if kind == "probs" and shape != logits_shape:
        raise ValueError(f"target holds probabilities and must have the shape of {name} "
                         f"{logits_shape}; got {shape}")


def label_dtype(dtype: np.dtype) -> np.dtype:
    """The kernels take int32 or int64 labels; other integer types become int64."""
    return dtype if dtype in (np.int32, np.int64) else np.dtype(np.int64)


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
    labels = np.ascontiguousarray(np.where(counted, target, 0).reshape(-1),
                                  label_dtype(target.dtype))
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


def check_grad_output_shape(ndim: int, shape: tuple[int, ...], reduction: str) -> None:
    """A reduced loss takes a scalar upstream gradient."""
    if reduction != "none" and ndim != 0:
        raise ValueError(f"grad_output must be a scalar for reduction={reduction!r}, got shape "
                         f"{shape}")
