"""``softce bench``'s options and ``main``: run every case, then write the report, the plot
and the JSON."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

import benchmarks
from benchmarks.bar import BAR_SHAPE, bar_results
from benchmarks.cases import (
    DEFAULT_REF_REPEATS,
    DEFAULT_REPEATS,
    DEFAULT_SHAPES,
    QUICK_REPEATS,
    QUICK_SHAPES,
    parse_shapes,
)
from benchmarks.console import print_console
from benchmarks.implementations import REFERENCES, available_references
from benchmarks.load import LOAD_WARN, CpuMonitor, wait_for_idle
from benchmarks.machine import code_state, machine_info
from benchmarks.plot import write_plot
from benchmarks.report import write_json, write_markdown
from benchmarks.startup import measure_startup
from benchmarks.timing import COPY_BYTES, Row, bench_preallocated, bench_shape, measure_copy


def build_parser() -> argparse.ArgumentParser:
    """The options of ``softce bench`` (and ``python -m benchmarks``)."""
    parser = argparse.ArgumentParser(
        prog="softce bench", description=benchmarks.__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"small shapes ({QUICK_SHAPES}), {QUICK_REPEATS} repeats, "
                             "a 64 MiB copy: a smoke run")
    parser.add_argument("--shapes", type=parse_shapes, default=None,
                        help="comma-separated ROWSxCLASSES[:float32|float64] "
                             f"(default {DEFAULT_SHAPES})")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed softce calls per case (default {DEFAULT_REPEATS})")
    parser.add_argument("--ref-repeats", type=int, default=None,
                        help="timed reference calls per case (default "
                             f"{DEFAULT_REF_REPEATS}, never more than --repeats)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="time each case in this many blocks per implementation, softce "
                             "and the references taking turns, so all of them meet the same "
                             "stretches of machine speed (default and at most --repeats: "
                             "one softce call per round)")
    parser.add_argument("--references", default=",".join(REFERENCES),
                        help="comma-separated subset of NumPy,SciPy,PyTorch (default: all "
                             "that are installed)")
    parser.add_argument("--output", type=Path, default=None,
                        help="the Markdown report (default BENCHMARKS.md; with --quick, "
                             "none unless given)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="the PNG plot (default benchmarks/bench.png; with --quick, none "
                             "unless given)")
    parser.add_argument("--json", type=Path, default=None,
                        help="every sample as JSON (default benchmarks/results.json; with "
                             "--quick, none unless given)")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each shape, wait up to SECONDS for other processes to "
                             "leave the CPU idle (default 0: do not wait)")
    parser.add_argument("--retries", type=int, default=2,
                        help="with --wait-idle, run a shape again (at most this many times) "
                             "when other processes disturbed it (default 2)")
    parser.add_argument("--no-startup", action="store_true",
                        help="skip the cold-cache and warm-import subprocess timings")
    parser.add_argument("--startup-repeats", type=int, default=3,
                        help="warm-startup processes to take the median of (default 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark with the options in ``argv`` (default ``sys.argv[1:]``); the exit
    status."""
    args = build_parser().parse_args(argv)
    shapes = args.shapes or parse_shapes(QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    ref_repeats = min(args.ref_repeats or (QUICK_REPEATS if args.quick else DEFAULT_REF_REPEATS),
                      repeats)
    rounds = repeats if args.rounds is None else min(args.rounds, repeats)
    if repeats < 1 or ref_repeats < 1 or rounds < 1:
        print("softce bench: --repeats, --ref-repeats and --rounds must be at least 1",
              file=sys.stderr)
        return 2
    wanted = [r.strip() for r in args.references.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in REFERENCES]
    if unknown:
        print(f"softce bench: unknown references {unknown}; choose from {REFERENCES}",
              file=sys.stderr)
        return 2
    # A smoke run writes files only where asked, so it never overwrites the real report.
    output = args.output or (None if args.quick else Path("BENCHMARKS.md"))
    plot = args.plot or (None if args.quick else Path("benchmarks/bench.png"))
    json_path = args.json or (None if args.quick else Path("benchmarks/results.json"))
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=150)

    refs, skipped = available_references(wanted)
    for ref in REFERENCES:
        if ref not in wanted:
            skipped[ref] = "not requested (--references)"
    if "PyTorch" in refs:
        import torch

        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                              else os.cpu_count() or 1)
    for ref, why in skipped.items():
        console.print(f"[yellow]{ref} reference skipped: {why}[/]")
    if os.environ.get("OPENBLAS_CORETYPE"):
        console.print(f"note: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} in this "
                      "process (the references call no BLAS routine)")

    started = time.perf_counter()
    code = code_state()
    monitor = CpuMonitor()
    log = console.log
    copy_bytes = COPY_BYTES // 8 if args.quick else COPY_BYTES
    log(f"copy bandwidth, {copy_bytes >> 20} MiB")
    copy = measure_copy(copy_bytes, max(repeats, 5))
    copy_gbps = next(iter(copy.values()))["GB/s"]

    rows: list[Row] = []
    preallocated = None
    load: dict[str, object] = {}
    for shape in shapes:
        for attempt in range(1 + (args.retries if args.wait_idle else 0)):
            if args.wait_idle:
                wait_for_idle(args.wait_idle, log)
            shape_monitor = CpuMonitor()
            shape_rows = bench_shape(shape, refs, repeats, ref_repeats, log, rounds)
            shape_pre = (bench_preallocated(shape, refs, repeats, log)
                         if shape.key == BAR_SHAPE else None)
            load[shape.label] = shape_monitor.report()
            gc.collect()
            disturbed = bool(load[shape.label]) and load[shape.label]["others"] > LOAD_WARN
            if disturbed:
                console.print(f"[red]other processes used {load[shape.label]['others']:.0%} "
                              f"of the CPU while {shape.label} ran (attempt {attempt + 1}): "
                              "its timings are disturbed[/]")
            else:
                break
        rows += shape_rows
        preallocated = shape_pre if shape_pre is not None else preallocated

    startup = None
    if not args.no_startup:
        log("startup: cold (empty Numba cache) and warm subprocesses")
        if args.wait_idle:
            wait_for_idle(args.wait_idle, log)
        startup_monitor = CpuMonitor()
        startup = dict(measure_startup(max(args.startup_repeats, 1)))
        startup["load"] = startup_monitor.report()

    data: dict[str, object] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["softce bench", *(sys.argv[1:] if argv is None else argv)]),
        "references": refs,
        "skipped": skipped,
        "repeats": repeats,
        "ref_repeats": ref_repeats,
        "rounds": rounds,
        "machine": machine_info(refs),
        "code": code,
        "code_changed": code_state()["sources_sha256"] != code["sources_sha256"],
        "copy": copy,
        "copy_mib": copy_bytes >> 20,
        "copy_gbps": copy_gbps,
        "bar": bar_results(rows),
        "preallocated": preallocated,
        "startup": startup,
        "load": load,
        "load_total": monitor.report(),
    }
    data["elapsed_s"] = time.perf_counter() - started
    plotted = plot is not None and write_plot(plot, rows, refs)
    if plot is not None and not plotted:
        console.print("[yellow]plot skipped: matplotlib is not installed[/]")
    if output is not None:
        write_markdown(output, data, rows, plot if plotted else None)
    if json_path is not None:
        write_json(json_path, data, rows)
    print_console(console, data, rows)
    written = [str(p) for p in (output, plot if plotted else None, json_path) if p]
    console.print(f"done in {data['elapsed_s']:.0f} s"
                  + (f"; wrote {', '.join(written)}" if written else ""))
    return 0
