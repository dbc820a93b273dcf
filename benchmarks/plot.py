"""The PNG plot: median time per call, one panel per shape, softce's speedups on the bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.cases import Shape
from benchmarks.cells import format_speedup
from benchmarks.timing import Row


def write_plot(path: Path, rows: list[Row], refs: list[str]) -> bool:
    """Draw ``rows`` into ``path``; False (and nothing written) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    by_shape: dict[Shape, list[Row]] = {}
    for row in rows:
        by_shape.setdefault(row.shape, []).append(row)
    n = len(by_shape)
    ncols = 2 if n > 1 else 1
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, 3.8 * nrows), squeeze=False)
    impls = ["softce", *refs]
    colors = {"softce": "#1f77b4", "NumPy": "#8c8c8c", "SciPy": "#2ca02c",
              "PyTorch": "#d62728"}
    width = 0.8 / len(impls)
    for ax, (shape, srows) in zip(axes.flat, by_shape.items()):
        xs = np.arange(len(srows))
        for k, impl in enumerate(impls):
            ms = [r.timings[impl].median * 1e3 if impl in r.timings else np.nan for r in srows]
            pos = xs + (k - (len(impls) - 1) / 2) * width
            ax.bar(pos, ms, width, label=impl, color=colors.get(impl))
            if impl == "softce":
                continue
            for p, v, r in zip(pos, ms, srows):  # the speedup of softce over this bar
                ratio = r.ratio(impl)
                if ratio is not None and np.isfinite(v):
                    ax.annotate(format_speedup(ratio), (p, v), textcoords="offset points",
                                xytext=(0, 2), ha="center", va="bottom", rotation=90,
                                fontsize=6)
        ax.set_yscale("log")
        ax.margins(y=0.25)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xticks(xs)
        ax.set_xticklabels([r.function.replace("cross_entropy", "CE") for r in srows],
                           rotation=20, fontsize=8)
        ax.set_ylabel("ms per call (log)")
        ax.set_title(shape.label, fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(impls), fontsize=9,
               bbox_to_anchor=(0.5, 0.975), frameon=False)
    fig.suptitle("Median time per call, fresh outputs (lower is better); "
                 "labels: reference time / softce time", y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
