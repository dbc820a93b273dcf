"""The cells of the result tables, shared by the Markdown report, the console and the plot."""

from __future__ import annotations

from benchmarks.timing import Row


def format_ms(t: float | None) -> str:
    """Seconds as milliseconds with 3-4 significant digits; "–" for none."""
    if t is None:
        return "–"
    ms = t * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def format_speedup(r: float | None) -> str:
    """A time ratio as ``2.35x`` (``12.3x`` from 10 up); "–" for none."""
    return "–" if r is None else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def table_columns(refs: list[str]) -> list[str]:
    """The header of a shape's result table."""
    cols = ["function", "softce ms", "min-max", "GB/s", "of copy"]
    for ref in refs:
        cols += [f"{ref} ms", f"vs {ref}"]
    return cols


def table_cells(row: Row, refs: list[str], copy_gbps: float | None) -> list[str]:
    """One function's line of a shape's result table."""
    gbps = row.gbps()
    frac = f"{gbps / copy_gbps:.0%}" if gbps and copy_gbps else "–"
    own = row.timings["softce"]
    spread = f"{format_ms(min(own.samples))}-{format_ms(max(own.samples))}"
    cells = [row.function, format_ms(own.median), spread, f"{gbps:.1f}", frac]
    for ref in refs:
        t = row.timings.get(ref)
        cells += [format_ms(t.median if t else None), format_speedup(row.ratio(ref))]
    return cells
