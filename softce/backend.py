"""Backends: where a call's arrays live, and how its kernels are launched there.

The front end (``softce.functions``, ``softce.losses``, ``softce.pointwise``) does everything
that does not depend on the device: argument checks, the layout of the class axis as rows, the
choice of kernel from the options, PyTorch's reductions and divisors, chain rules. A backend
only converts and allocates arrays, lays them out, and launches generated kernels by keyword
(``softce.signature``). Adding a backend is one module that subclasses ``Backend`` and one
``register`` call; the front end picks it from the type of a call's first array argument.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Array = Any


class Layout(Protocol):
    """An array laid out for a kernel: ``data`` is (rows, n) with the class axes last (row
    layouts) or 1-D (flat layouts); ``shape`` is the caller's shape."""

    data: Array
    shape: tuple[int, ...]

    @property
    def batch_shape(self) -> tuple[int, ...]: ...

    def restore(self, result: Array) -> Array:
        """A result laid out as ``data`` back in the caller's shape (and axis order)."""

    def restore_batch(self, result: Array) -> Array:
        """A per-row result back in the batch shape (the caller's shape without the class
        axes)."""


@dataclass(frozen=True)
class Flat:
    """An array laid out in C order as 1-D ``data``; ``reshape`` gives a result laid out so
    the caller's shape."""

    data: Array
    shape: tuple[int, ...]
    reshape: Callable[[Array, tuple[int, ...]], Array]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.shape

    def restore(self, result: Array) -> Array:
        return self.reshape(result, self.shape)

    restore_batch = restore


class Backend(ABC):
    """The device-dependent half of a call."""

    name: str

    #: Whether the backend runs the 16-bit kernel variants (``softce.half``): a caller that
    #: asks (``float_array(..., half=True)``) then gets 16-bit arrays as they are.
    half_kernels: bool = False

    # arrays ----------------------------------------------------------------------------
    @abstractmethod
    def float_array(self, value: object, name: str, half: bool = False) -> Array:
        """value as this backend's float32/float64 array (16-bit floats widened to float32 by
        a copy), or with ``half`` on a backend with ``half_kernels`` a float16/bfloat16 array
        as it is; a TypeError naming ``name`` for anything else."""

    @abstractmethod
    def operand(self, value: object) -> Array:
        """value (this backend's array, or host data) as this backend's array, unchecked."""

    @abstractmethod
    def describe(self, value: object) -> tuple[np.dtype, tuple[int, ...]]:
        """(dtype, shape) of an argument, without moving it."""

    @abstractmethod
    def to_host(self, value: object) -> np.ndarray:
        """value as a NumPy array (a device array is copied to the host)."""

    @abstractmethod
    def from_host(self, arr: np.ndarray) -> Array:
        """A host array as this backend's (C-contiguous, writeable) array."""

    @abstractmethod
    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """A new C-contiguous array."""

    @abstractmethod
    def cast(self, arr: Array, dtype: np.dtype) -> Array:
        """arr itself when of ``dtype``, else a copy of it in ``dtype`` (same shape)."""

    @abstractmethod
    def reshape(self, arr: Array, shape: tuple[int, ...]) -> Array:
        """A C-contiguous array viewed with a new shape."""

    # layouts ---------------------------------------------------------------------------
    @abstractmethod
    def to_rows(self, arr: Array, axes: tuple[int, ...]) -> Layout:
        """arr with the class ``axes`` (sorted) moved last and flattened to one axis of length
        n, the other axes flattened to rows (a view when the memory allows, else one copy);
        no axes (a 0-d array): n = 1."""

    @abstractmethod
    def to_flat(self, arr: Array) -> Layout:
        """arr in C order as a 1-D array (a view when C-contiguous, else one copy)."""

    @abstractmethod
    def flatten(self, arr: Array) -> Array:
        """A C-contiguous array viewed as 1-D."""

    # outputs ---------------------------------------------------------------------------
    @abstractmethod
    def check_out(self, out: object, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """A caller's ``out``: this backend's array of exactly ``shape`` and ``dtype``,
        writeable; errors name ``out``."""

    @abstractmethod
    def check_no_partial_overlap(self, out: Array, *inputs: tuple[str, Array]) -> None:
        """out may be exactly one of the inputs (in place) but not partly overlap one."""

    @abstractmethod
    def direct_view(self, out: Array | None, layout: Layout) -> Array | None:
        """out itself laid out as ``layout.data`` when the kernel can write it directly."""

    @abstractmethod
    def finish(self, layout: Layout, dest: Array, direct: Array | None, out: object,
               checked_out: Array | None) -> Array:
        """The call's result from ``dest`` (laid out as ``layout.data``): the caller's
        ``out`` (written directly, or copied into), or dest in the caller's shape."""

    # kernels and reductions ------------------------------------------------------------
    @abstractmethod
    def launch(self, kernel: str, dtype: np.dtype, **args: object) -> None:
        """Run the generated kernel ``kernel`` for ``dtype`` with arguments by name."""

    @abstractmethod
    def labels_in_range(self, labels: Array, n: int) -> bool:
        """Whether every label (int32/int64, 1-D) lies in [0, n)."""

    @abstractmethod
    def zero_uncounted(self, counted: Array, loss: Array, grad: Array | None = None) -> None:
        """loss[r] = 0 and grad[r, :] = 0 wherever counted[r] == 0."""

    @abstractmethod
    def total(self, values: Array, divisor: float) -> Array:
        """sum(values) / divisor, in values' dtype (values not empty)."""

    @abstractmethod
    def scalar(self, value: float, dtype: np.dtype) -> Array:
        """A 0-d result holding value."""

    # labels masked on the device (backends that can defer the check of labels) ------------
    def device_mask(self) -> bool:
        """Whether a call masks its labels on the device (``mask_labels``), leaving the check
        for bad labels to a handler instead of reading it at once."""
        return False

    def mask_labels(self, labels: Array, ignore_index: int, class_weights: Array,
                    dtype: np.dtype) -> tuple[Array, Array, Array]:
        """(labels with ignored and bad positions set to 0, counted values of ``dtype`` (1
        counted, 0 not), the sum of class_weights[label] over counted positions (a
        one-element array: the mean's divisor)), computed where the labels are (n classes,
        those of class_weights); a bad label, or a class weight that is not finite, is
        reported to the context's handler."""
        raise NotImplementedError(f"the {self.name} backend masks labels on the host")

    def divide(self, values: Array, divisor: Array, empty: float) -> None:
        """values /= divisor[0] in place, or values = empty where divisor[0] is 0."""
        raise NotImplementedError(f"the {self.name} backend divides by host numbers")

    def divided(self, value: float, divisor: Array, size: int, dtype: np.dtype) -> Array:
        """``size`` elements of ``dtype``, each value / divisor[0] (0 where it is 0)."""
        raise NotImplementedError(f"the {self.name} backend divides by host numbers")

    def total_over(self, values: Array, divisor: Array, empty: float) -> Array:
        """sum(values) / divisor[0], in values' dtype, or empty where divisor[0] is 0."""
        raise NotImplementedError(f"the {self.name} backend divides by host numbers")


#: (name, detects) in the order they are tried; the CPU backend takes the rest.
_routes: list[tuple[str, Callable[[object], bool]]] = []
#: name -> the backend, or the module whose ``BACKEND`` it is (imported on first use).
_backends: dict[str, Backend | str] = {"cpu": "softce.cpu"}


def register(name: str, detects: Callable[[object], bool], backend: Backend | str) -> None:
    """Route arrays for which ``detects(array)`` holds to ``backend``: an instance, or the
    name of a module holding it as ``BACKEND``, imported on first use (so importing softce
    imports no backend's dependencies)."""
    unregister(name)
    _routes.append((name, detects))
    _backends[name] = backend


def unregister(name: str) -> None:
    """Stop routing arrays to the backend ``name`` (the CPU backend stays)."""
    _routes[:] = [route for route in _routes if route[0] != name]
    if name != "cpu":
        _backends.pop(name, None)


def backend(name: str) -> Backend:
    """The backend registered as ``name``."""
    found = _backends[name]
    if isinstance(found, str):
        found = _backends[name] = importlib.import_module(found).BACKEND
    return found


def backend_for(value: object) -> Backend:
    """The backend of a call whose first array argument is ``value``."""
    for name, detects in _routes:
        if detects(value):
            return backend(name)
    return backend("cpu")


def on_cuda(value: object) -> bool:
    """Whether value lives on a GPU: it exposes ``__cuda_array_interface__`` (numba, CuPy,
    PyTorch CUDA tensors) or is a numba (or simulator) device array."""
    return bool(getattr(type(value), "__cuda_ndarray__", False)) or hasattr(
        value, "__cuda_array_interface__")


register("cuda", on_cuda, "softce.cuda.backend")
