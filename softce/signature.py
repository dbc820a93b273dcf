"""Calling a generated kernel by keyword, against the parameter table printed beside it.

Every generated module holds ``PARAMETERS``: (name, role, dtype) per parameter, in call order.
``bind`` checks a call's keyword arguments against that table — every parameter given once,
each array of its role's shape (rows x n, n, rows, rows x n x n, or one flat size) and dtype —
and returns them in call order. A wrong argument is a TypeError or ValueError naming the
kernel and the parameter, never a Numba typing error or an out-of-bounds read.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from .half import OUTPUTS, storage

#: Each role's shape, in the dimensions R (rows), n (classes) and S (a flat size).
SHAPES: dict[str, tuple[str, ...]] = {
    "rows": ("R", "n"),
    "class_vector": ("n",),
    "row_labels": ("R",),
    "row_values": ("R",),
    "out_rows": ("R", "n"),
    "out_pairs": ("R", "n", "n"),
    "out_row": ("R",),
    "flat": ("S",),
    "out_flat": ("S",),
}
LABEL_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
DTYPE_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


@dataclass(frozen=True)
class Parameter:
    """One kernel parameter: its name, role (a key of SHAPES, or "param" for a scalar) and
    dtype ("float": the kernel's float dtype; "label": int32 or int64)."""

    name: str
    role: str
    dtype: str


def parameters(module: ModuleType) -> tuple[Parameter, ...]:
    """The parameter table of a generated kernel module."""
    return tuple(Parameter(*entry) for entry in module.PARAMETERS)


def suffix(dtype: np.dtype) -> str:
    """The suffix of a kernel's variant for arrays of ``dtype``: f32, f64, bf16, f16."""
    return storage(dtype) or DTYPE_SUFFIX[np.dtype(dtype)]


def _half_dtype_ok(p: Parameter, half: str, got: np.dtype) -> bool:
    """Whether an array of ``got`` fits a 16-bit variant's 16-bit parameter ``p``."""
    return storage(got) == half or (p.role.startswith("out") and got == np.float32
                                    and "float32" in OUTPUTS[half])


def bind(kernel: str, table: tuple[Parameter, ...], dtype: np.dtype,
         args: dict[str, object], held: tuple[str, ...] = ()) -> list[object]:
    """The arguments of a call to ``kernel`` (a ``dtype`` variant) in call order, checked.

    A 16-bit variant (``dtype`` float16 or ``softce.half.BFLOAT16``) takes the arrays it
    holds in 16 bits (``held``: the module's ``HALF_ARRAYS``) as arrays of that dtype
    (passed as their uint16 bits; for float16 outputs also float32), every other float as
    float32."""
    half = storage(dtype)
    compute = np.dtype(np.float32) if half else np.dtype(dtype)
    if len(args) != len(table) or any(p.name not in args for p in table):
        names = [p.name for p in table]
        raise TypeError(f"kernel {kernel} takes ({', '.join(names)}); missing "
                        f"{[name for name in names if name not in args]}, unknown "
                        f"{[name for name in args if name not in names]}")
    sizes: dict[str, int] = {}
    ordered = []
    for p in table:
        value = args[p.name]
        if p.role == "param":
            ordered.append(compute.type(value))
            continue
        got = value.dtype
        if half and p.name in held:
            if not _half_dtype_ok(p, half, got):
                _wrong_dtype(kernel, p, got, dtype)
            value = value.view(np.uint16) if storage(got) else value
        elif (got not in LABEL_DTYPES) if p.dtype == "label" else (got != compute):
            _wrong_dtype(kernel, p, got, compute)
        shape = value.shape
        dims = SHAPES[p.role]
        if len(shape) != len(dims):
            raise ValueError(f"kernel {kernel}: {p.name} ({p.role}) must have {len(dims)} "
                             f"dimension(s), got shape {tuple(shape)}")
        for dim, size in zip(dims, shape):
            if sizes.setdefault(dim, size) != size:
                raise ValueError(f"kernel {kernel}: {p.name} ({p.role}) has shape "
                                 f"{tuple(shape)}, where {dim} = {sizes[dim]} from the "
                                 "arguments before it")
        ordered.append(value)
    return ordered


def _wrong_dtype(kernel: str, p: Parameter, got: np.dtype, dtype: np.dtype) -> None:
    allowed = LABEL_DTYPES if p.dtype == "label" else (dtype,)
    raise TypeError(f"kernel {kernel}: {p.name} ({p.role}) must have dtype "
                    f"{' or '.join(str(a) for a in allowed)}, got {got}")


class Library:
    """The generated kernels of one backend (the modules of ``softce.generated.<backend>``),
    each imported on first use."""

    def __init__(self, backend: str) -> None:
        self.package = f"softce.generated.{backend}"
        self.table = cache(self._table)
        self.half_arrays = cache(self._half_arrays)
        self._variant = cache(self._load_variant)

    def _table(self, name: str) -> tuple[Parameter, ...]:
        return parameters(importlib.import_module(f"{self.package}.{name}"))

    def _half_arrays(self, name: str) -> tuple[str, ...]:
        """The arrays the kernel's 16-bit variants hold in 16 bits (none without them)."""
        return getattr(importlib.import_module(f"{self.package}.{name}"), "HALF_ARRAYS", ())

    def kernel(self, name: str, dtype: np.dtype) -> Any:
        """The generated kernel ``name`` for float dtype ``dtype``."""
        return self._variant(name, suffix(dtype))

    def _load_variant(self, name: str, variant: str) -> Any:
        module = importlib.import_module(f"{self.package}.{name}")
        return getattr(module, f"{name}_{variant}")

    def call(self, name: str, dtype: np.dtype, args: dict[str, object]
             ) -> tuple[Any, list[object]]:
        """(kernel, its arguments in call order, checked) for a call by keyword."""
        return self.kernel(name, dtype), bind(name, self.table(name), dtype, args,
                                              self.half_arrays(name))
