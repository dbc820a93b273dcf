"""A kernel's parameters in call order: the one table both emitters print their ``def`` lines
and signatures from, and that every generated module carries as ``PARAMETERS``.

A parameter is (name, role, dtype). The role says the array's shape and what it holds; the
dtype is "float" (the kernel's float32 or float64) or "label" (int32 or int64 class labels).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import ElementwiseKernel, RowKernel
from .printer import DTYPES

#: The Numba type of each role, with {float} and {label} the element types.
ROLE_TYPES = {
    "rows": "{float}[:, ::1]",
    "class_vector": "{float}[::1]",
    "row_labels": "{label}[::1]",
    "row_values": "{float}[::1]",
    "param": "{float}",
    "out_rows": "{float}[:, ::1]",
    "out_pairs": "{float}[:, :, ::1]",
    "out_row": "{float}[::1]",
    "flat": "{float}[::1]",
    "out_flat": "{float}[::1]",
}

#: The integer types a kernel with a "label" parameter is compiled for.
LABEL_TYPES = ("int32", "int64")

#: The comment printed above ``PARAMETERS`` in every generated module.
TABLE_COMMENT = (
    '#: Parameters in call order: (name, role, dtype). Roles: "rows" (rows, n) input rows;',
    '#: "class_vector" (n,) shared by every row; "row_labels" (rows,) class labels; '
    '"row_values"',
    '#: (rows,) one value per row; "param" a scalar; "out_rows" (rows, n); '
    '"out_pairs" (rows, n, n);',
    '#: "out_row" (rows,); elementwise kernels: "flat" (size,) inputs, "param", '
    '"out_flat" (size,).',
    '#: dtype: "float" is the kernel\'s float dtype (float32 or float64), '
    '"label" is int32 or int64.',
)


@dataclass(frozen=True)
class Parameter:
    """One argument of a kernel: its name, its role (a key of ``ROLE_TYPES``), its dtype."""

    name: str
    role: str
    dtype: str


def parameters(kernel: RowKernel | ElementwiseKernel) -> tuple[Parameter, ...]:
    """The kernel's parameters in call order: inputs, scalars, then outputs."""
    if isinstance(kernel, ElementwiseKernel):
        return (*(Parameter(f"{a}_in", "flat", "float") for a in kernel.args),
                *(Parameter(str(p), "param", "float") for p in kernel.params),
                Parameter("out", "out_flat", "float"))
    return (*(Parameter(str(r), "rows", "float") for r in kernel.rows),
            *(Parameter(str(v), "class_vector", "float") for v in kernel.class_rows),
            *(Parameter(name, "row_labels", "label") if sym.is_integer
              else Parameter(name, "row_values", "float") for name, sym in kernel.row_scalars),
            *(Parameter(str(p), "param", "float") for p in kernel.params),
            *(Parameter(name, "out_rows", "float") for name, _ in kernel.outputs),
            *(Parameter(name, "out_pairs", "float") for name, _ in kernel.pair_outputs),
            *(Parameter(name, "out_row", "float") for name, _ in kernel.row_outputs))


def names(kernel: RowKernel | ElementwiseKernel) -> str:
    """The parameter list of the kernel's ``def`` line."""
    return ", ".join(p.name for p in parameters(kernel))


def signatures(kernel: RowKernel | ElementwiseKernel, dtype: str) -> list[str]:
    """Numba signatures of the kernel at ``dtype``: C-contiguous arrays, one signature per
    label type when a parameter holds labels."""
    params = parameters(kernel)
    labels = LABEL_TYPES if any(p.dtype == "label" for p in params) else (None,)
    types = [[ROLE_TYPES[p.role].format(float=DTYPES[dtype], label=label) for p in params]
             for label in labels]
    return [f"void({', '.join(args)})" for args in types]


def table(kernel: RowKernel | ElementwiseKernel) -> list[str]:
    """Source lines of the ``PARAMETERS`` table, with its comment."""
    rows = [f'    ("{p.name}", "{p.role}", "{p.dtype}"),' for p in parameters(kernel)]
    return [*TABLE_COMMENT, "PARAMETERS = (", *rows, ")"]
