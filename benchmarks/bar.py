"""The bar: the speedups over the references softce must reach at one shape, and whether this
run reached them."""

from __future__ import annotations

from benchmarks.cases import FUNCTIONS
from benchmarks.timing import Row

# The bar: (rows, classes, dtype) -> [(function, reference, minimum speedup)].
BAR_SHAPE = (4096, 32000, "float32")
BAR = ([("cross_entropy_grad", "PyTorch", 10.0)]
       + [(f, "PyTorch", 3.0) for f in ("softmax", "log_softmax", "logsumexp")]
       + [(f, "SciPy", 3.0) for f in FUNCTIONS])


def bar_results(rows: list[Row]) -> list[dict[str, object]]:
    """Each bar whose reference ran at BAR_SHAPE: the times, the speedup and if it was met."""
    found = {(r.shape.key, r.function): r for r in rows}
    out = []
    for function, ref, need in BAR:
        row = found.get((BAR_SHAPE, function))
        if row is None or ref not in row.timings:
            continue
        ratio = row.ratio(ref)
        softce_s = row.timings["softce"].median
        out.append({"function": function, "reference": ref, "need": need, "ratio": ratio,
                    "softce_ms": softce_s * 1e3, "reference_ms": row.timings[ref].median * 1e3,
                    "target_ms": row.timings[ref].median / need * 1e3,
                    "met": ratio >= need})
    return out
