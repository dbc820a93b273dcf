"""What is measured: the functions, the shapes and their inputs."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "cross_entropy", "cross_entropy_grad")
PROB_CE = "cross_entropy_probs"  # cross_entropy against a probability target (small shapes)
PROB_CE_MAX_ELEMENTS = 1 << 23  # 8192 x 1000 and smaller get the probability-target row

DEFAULT_SHAPES = "65536x10,8192x1000,4096x32000,1024x128256,8192x1000:float64"
QUICK_SHAPES = "512x10,256x1000,64x32000,256x1000:float64"
DEFAULT_REPEATS = 15  # softce calls are cheap; more of them steady the median
DEFAULT_REF_REPEATS = 7
QUICK_REPEATS = 3


@dataclass(frozen=True)
class Shape:
    """A logits array: ``rows`` x ``classes`` of ``dtype``."""

    rows: int
    classes: int
    dtype: str = "float32"

    @property
    def label(self) -> str:
        return f"{self.rows}x{self.classes} {self.dtype}"

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.rows, self.classes, self.dtype)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def logits_bytes(self) -> int:
        return self.rows * self.classes * self.itemsize

    def functions(self) -> tuple[str, ...]:
        small = self.rows * self.classes <= PROB_CE_MAX_ELEMENTS
        return FUNCTIONS + ((PROB_CE,) if small else ())

    def bytes_moved(self, function: str) -> int:
        """Logits read once + outputs written once + labels / target read once."""
        logits, per_row, labels = self.logits_bytes, self.rows * self.itemsize, self.rows * 8
        return {
            "softmax": 2 * logits,
            "log_softmax": 2 * logits,
            "logsumexp": logits + per_row,
            "cross_entropy": logits + labels + per_row,
            PROB_CE: 2 * logits + per_row,
            "cross_entropy_grad": 2 * logits + labels + per_row,
        }[function]


_DTYPES = {"float32": "float32", "f32": "float32", "float64": "float64", "f64": "float64"}


def parse_shapes(text: str) -> list[Shape]:
    """``ROWSxCLASSES[:float32|float64]``, comma-separated."""
    shapes = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        dims, _, dtype = item.partition(":")
        try:
            rows, classes = (int(v) for v in dims.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"shape {item!r} is not ROWSxCLASSES[:float32|float64]") from None
        if rows < 1 or classes < 1:
            raise argparse.ArgumentTypeError(f"shape {item!r} must have positive sizes")
        if (dtype or "float32") not in _DTYPES:
            raise argparse.ArgumentTypeError(f"shape {item!r}: dtype must be float32 or float64")
        shapes.append(Shape(rows, classes, _DTYPES[dtype or "float32"]))
    if not shapes:
        raise argparse.ArgumentTypeError("no shapes given")
    return shapes


@dataclass
class Inputs:
    """One shape's logits, class labels and (small shapes only) probability target."""

    x: np.ndarray
    labels: np.ndarray
    probs: np.ndarray | None

    @property
    def rows(self) -> np.ndarray:
        return np.arange(self.x.shape[0])


def make_inputs(shape: Shape, seed: int = 0) -> Inputs:
    """Logits ~ 3 N(0, 1), uniform labels and, where ``shape`` has the probability-target
    row, a random target whose rows sum to 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((shape.rows, shape.classes), dtype=np.float32)
    x *= 3
    x = x.astype(shape.dtype, copy=False)
    labels = rng.integers(0, shape.classes, shape.rows, dtype=np.int64)
    probs = None
    if PROB_CE in shape.functions():
        probs = rng.random((shape.rows, shape.classes)).astype(shape.dtype)
        probs /= probs.sum(axis=1, keepdims=True)
    return Inputs(x, labels, probs)
