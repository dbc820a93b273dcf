"""A kernel's parameters in call order: the one table both emitters print their ``def`` lines
and signatures from, and that every generated module carries as ``PARAMETERS``.

A parameter is (name, role, dtype). The role says the array's shape and what it holds; the
dtype is "float" (the kernel's float32 or float64) or "label" (int32 or int64 class labels).
"""

from __future__ import annotations

from dataclasses import dataclass

from softce.half import OUTPUTS

from .ir import ElementwiseKernel, RowKernel
from .printer import DTYPES, HALF_DTYPES

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

#: The elementwise kernels with 16-bit variants, and the arrays of theirs that hold 16-bit bit
#: patterns: a soft-cap reads 16-bit logits t into a float32 capped copy, and its chain rule
#: writes the gradient of those logits, in 16 bits, from t and the float32 dy.
HALF_ELEMENTWISE = {"softcap": ("t_in",), "softcap_grad": ("t_in", "out")}

#: The kernels of a training step and of the softmax family's rows and their backward,
#: printed with 16-bit variants too (``<name>_bf16``, ``<name>_f16``): their "rows" and
#: "out_rows" parameters (an elementwise kernel's ``HALF_ELEMENTWISE`` arrays) hold 16-bit
#: bit patterns (uint16), every other "float" parameter is float32, the dtype they compute
#: in (``softce.half``).
HALF_KERNELS = frozenset({
    "softmax", "log_softmax", "logsumexp", "softmax_vjp", "log_softmax_vjp", "logsumexp_grad",
    *(f"cross_entropy{grad}_{target}{variant}" for grad in ("", "_grad")
      for target in ("label", "prob") for variant in ("", "_weighted", "_smoothed")),
    *HALF_ELEMENTWISE,
})

#: The element types of a 16-bit variant's 16-bit outputs: 16-bit bit patterns, and for float16
#: also float32 (the NumPy API returns float32 for float16 input unless out= is float16).
HALF_OUTPUTS = OUTPUTS

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
    '"label" is int32 or int64;',
    '#: a 16-bit variant (_bf16, _f16) takes the HALF_ARRAYS as uint16 bit patterns '
    '(its outputs',
    '#: among them also as float32 for _f16) and every other "float" as float32.',
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
    label type when a parameter holds labels (and, for a 16-bit variant, per element type of
    its outputs of rows: ``HALF_OUTPUTS``)."""
    params = parameters(kernel)
    labels = LABEL_TYPES if any(p.dtype == "label" for p in params) else (None,)
    if dtype not in HALF_DTYPES:
        types = [[ROLE_TYPES[p.role].format(float=DTYPES[dtype], label=label) for p in params]
                 for label in labels]
        return [f"void({', '.join(args)})" for args in types]
    held = half_arrays(kernel)
    outputs = (HALF_OUTPUTS[dtype] if any(p.name in held and p.role.startswith("out")
                                          for p in params) else ("uint16",))

    def element(p: Parameter, out: str) -> str:
        if p.name not in held:
            return "float32"
        return out if p.role.startswith("out") else "uint16"

    types = [[ROLE_TYPES[p.role].format(float=element(p, out), label=label) for p in params]
             for label in labels for out in outputs]
    return [f"void({', '.join(args)})" for args in types]


def half_arrays(kernel: RowKernel | ElementwiseKernel) -> frozenset[str]:
    """The parameters a 16-bit variant of the kernel holds in 16 bits: a row kernel's rows
    and outputs of rows, an elementwise kernel's ``HALF_ELEMENTWISE`` arrays."""
    if isinstance(kernel, ElementwiseKernel):
        return frozenset(HALF_ELEMENTWISE.get(kernel.name, ()))
    return frozenset(p.name for p in parameters(kernel) if p.role in ("rows", "out_rows"))


def table(kernel: RowKernel | ElementwiseKernel) -> list[str]:
    """Source lines of the ``PARAMETERS`` table, with its comment, and for a kernel with
    16-bit variants the ``HALF_ARRAYS`` they hold in 16 bits."""
    rows = [f'    ("{p.name}", "{p.role}", "{p.dtype}"),' for p in parameters(kernel)]
    lines = [*TABLE_COMMENT, "PARAMETERS = (", *rows, ")"]
    if kernel.name in HALF_KERNELS:
        held = ", ".join(f'"{p.name}"' for p in parameters(kernel)
                         if p.name in half_arrays(kernel))
        lines += ["", "#: The arrays a 16-bit variant (_bf16, _f16) holds as 16-bit bit patterns "
                  "(uint16).", f"HALF_ARRAYS = ({held},)"]
    return lines
