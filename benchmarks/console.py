"""The run's summary on the terminal (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from benchmarks.bar import BAR_SHAPE
from benchmarks.cases import Shape
from benchmarks.cells import format_speedup, table_cells, table_columns
from benchmarks.load import LOAD_WARN
from benchmarks.timing import Row, check_tolerance


def print_console(console: Console, data: dict[str, object], rows: list[Row]) -> None:
    """Copy bandwidth, one table per shape, the bar, the other load, startup, skipped
    references and any reference whose result differs from softce's."""
    refs = data["references"]
    copy_tab = Table(title="Copy bandwidth (read + write)")
    for col in ("copy", "ms", "GB/s"):
        copy_tab.add_column(col, justify="left" if col == "copy" else "right")
    for k, v in data["copy"].items():
        copy_tab.add_row(k, f"{v['ms']:.1f}", f"{v['GB/s']:.1f}")
    console.print(copy_tab)
    by_shape: dict[Shape, list[Row]] = {}
    for row in rows:
        by_shape.setdefault(row.shape, []).append(row)
    for shape, srows in by_shape.items():
        tab = Table(title=f"{shape.label} ({shape.logits_bytes / 2**20:.1f} MiB)")
        for i, col in enumerate(table_columns(refs)):
            tab.add_column(col, justify="left" if i == 0 else "right")
        for r in srows:
            tab.add_row(*table_cells(r, refs, data["copy_gbps"]))
        console.print(tab)
    if data["bar"]:
        tab = Table(title=f"Bar: {BAR_SHAPE[0]}x{BAR_SHAPE[1]} {BAR_SHAPE[2]}")
        for col in ("function", "vs", "speedup", "bar", "result"):
            tab.add_column(col)
        for b in data["bar"]:
            tab.add_row(b["function"], b["reference"], format_speedup(b["ratio"]),
                        f"{b['need']:.0f}x",
                        "[green]met[/]" if b["met"] else
                        f"[red]missed[/] (softce {b['softce_ms']:.1f} ms, needs <= "
                        f"{b['target_ms']:.1f} ms)")
        console.print(tab)
    total = data.get("load_total")
    if total:
        style = "red" if total["others"] > LOAD_WARN else "default"
        console.print(f"[{style}]other processes used {total['others']:.1%} of the CPU during "
                      f"the run (steal {total['steal']:.1%})[/]")
    startup = data.get("startup")
    if startup:
        cold, warm = startup["cold"], startup["warm"]
        console.print("Cold first call (empty Numba cache), ms: " + ", ".join(
            f"{k} {v * 1e3:.0f}" for k, v in cold["first_call_s"].items()))
        console.print(f"Warm: import softce {warm['import_softce_s'] * 1e3:.0f} ms, first "
                      f"softmax {warm['first_call_s']['softmax'] * 1e3:.1f} ms, whole "
                      f"`import softce; softce.softmax(...)` process "
                      f"{warm['softmax_process_wall_s'] * 1e3:.0f} ms (`import numpy` alone "
                      f"{warm['numpy_process_wall_s'] * 1e3:.0f} ms)")
    for ref, why in data["skipped"].items():
        console.print(f"[yellow]{ref} skipped: {why}[/]")
    for r in rows:
        for impl, t in r.timings.items():
            if t.error is not None and t.error > check_tolerance(r.shape.dtype):
                console.print(f"[red]{r.shape.label} {r.function}: {impl}'s result differs "
                              f"from softce's by {t.error:.1e} (max |a - b| / max |b|)[/]")
