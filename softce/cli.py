"""The ``softce`` command line: one function per subcommand, registered in SUBCOMMANDS.

A subcommand is ``add(subparsers)``, which adds its parser and sets ``run`` to a function of
the parsed arguments returning the exit status. Heavy imports stay inside the run functions.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Subcommand = Callable[[argparse._SubParsersAction], None]


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


def _derivation_cache(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The derivation cache off for ``--no-cache``, else as it is."""
    from softce.derive import cache

    return cache.disabled() if args.no_cache else contextlib.nullcontext()


def _add_no_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-cache", action="store_true",
                        help="derive everything again instead of reading the derivation cache "
                             "(and store nothing in it)")


def _run_audit(args: argparse.Namespace) -> int:
    from softce import audit

    with _derivation_cache(args):
        entries = audit.audit()
    if args.format == "table" and args.output is None:
        from rich.console import Console

        audit.render_table(entries, Console())
    else:
        render = {"table": audit.to_table_text, "markdown": audit.to_markdown,
                  "json": audit.to_json}[args.format]
        _write(render(entries), args.output)
    return 0 if all(e.verdict == "proved" for e in entries) else 1


def add_audit(subparsers: argparse._SubParsersAction) -> None:
    """softce audit: the derivations' verdicts and the note's errata."""
    parser = subparsers.add_parser(
        "audit", help="check every derivation and report the note's errata",
        description="Run every derivation (or read it from the derivation cache), compare "
                    "them with the note's closed forms and check the note's errata. Exit "
                    "status 1 if any verdict is not 'proved'.")
    parser.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    parser.add_argument("--output", type=Path, help="write the report to this file")
    _add_no_cache(parser)
    parser.set_defaults(run=_run_audit)


def _run_generate(args: argparse.Namespace) -> int:
    import softce.generated
    from softce.codegen.writer import stale, write

    out = args.out or Path(softce.generated.__file__).parent
    with _derivation_cache(args):
        with _compiling_meanwhile(args) as compiling:
            if args.check:
                bad = stale(out)
                for rel in bad:
                    print(f"stale or edited: {out / rel}", file=sys.stderr)
                print(f"{out}: {len(bad)} stale file(s)" if bad else f"{out} is up to date")
                if bad:
                    return 1
            else:
                changed = write(out)
                print(f"{out}: {len(changed)} file(s) rewritten, the rest unchanged")
            if compiling:
                # the compilation takes longer than the derivations the kernels are printed
                # from: derive the others meanwhile, into the cache `softce audit` reads
                from softce.derive import run_all

                run_all()
        return _verify(args.workers) if args.verify else 0


def _compiling_meanwhile(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """For --verify into the installed generated/: the kernels compiled into Numba's cache in
    the background, on the cores but one, while this process derives (what verification then
    runs is read from the cache). Yields the background's futures; nothing (None) for one
    worker."""
    from softce import warmup

    workers = args.workers or warmup.cores()
    if not args.verify or args.out is not None or workers < 2:
        return contextlib.nullcontext()
    return warmup.background(workers - 1, labels=("int64",))


def _verify(workers: int | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    from softce.verify import verify_all

    verdicts = verify_all(workers=workers)
    table = Table(title="generated CPU kernels against their derived formulas (SymPy, 30 digits)")
    for column in ("kernel", "dtype", "rows", "max rel. error", "verdict"):
        table.add_column(column)
    for v in verdicts:
        table.add_row(v.kernel, v.dtype, str(v.cases), f"{v.max_error:.2e}",
                      "ok" if v.ok else "[red]FAILED[/red]")
    Console().print(table)
    return 0 if all(v.ok for v in verdicts) else 1


def add_generate(subparsers: argparse._SubParsersAction) -> None:
    """softce generate: print the kernels from the derivations into generated/."""
    parser = subparsers.add_parser(
        "generate", help="regenerate generated/ from the derivations",
        description="Print every kernel from the derived expressions into generated/ "
                    "(deterministic: unchanged files keep their bytes and Numba cache).")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 naming each stale or edited file")
    parser.add_argument("--verify", action="store_true",
                        help="then run every CPU kernel against its derived formulas")
    parser.add_argument("--out", type=Path, help="the generated/ directory to write")
    _add_workers(parser, "--verify's processes, each compiling and checking a share of the "
                         "kernels")
    _add_no_cache(parser)
    parser.set_defaults(run=_run_generate)


def _add_workers(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--workers", type=int, metavar="N",
                        help=f"{what} (default: one per core; 1: in this process)")


def _run_warmup(args: argparse.Namespace) -> int:
    import time

    from softce import warmup

    labels = warmup.LABELS if args.labels == "all" else (args.labels,)
    start = time.perf_counter()
    total = 0

    def done(result: warmup.Compiled) -> None:
        nonlocal total
        total += result.signatures
        if not args.quiet:
            print(f"{result.module:<36} {result.signatures} signature(s) "
                  f"{result.seconds:6.2f} s", flush=True)

    compiled = warmup.warmup(args.workers, labels, done=done)
    print(f"{len(compiled)} kernel modules, {total} signatures compiled or read from "
          f"Numba's cache in {time.perf_counter() - start:.1f} s")
    return 0


def add_warmup(subparsers: argparse._SubParsersAction) -> None:
    """softce warmup: every generated CPU kernel compiled into Numba's on-disk cache."""
    parser = subparsers.add_parser(
        "warmup", help="compile every CPU kernel into Numba's cache, in parallel",
        description="Compile every generated CPU kernel's signatures (both dtypes, each label "
                    "type) into Numba's on-disk cache over a pool of processes, so that no "
                    "later first call compiles. Kernels otherwise compile on first use, one "
                    "signature at a time.")
    _add_workers(parser, "processes")
    parser.add_argument("--labels", choices=("all", "int32", "int64"), default="all",
                        help="the label types to compile the label kernels for")
    parser.add_argument("--quiet", action="store_true", help="print the total only")
    parser.set_defaults(run=_run_warmup)


def add_bench(subparsers: argparse._SubParsersAction) -> None:
    """softce bench: the CPU benchmark; its options are those of the ``benchmarks`` package
    beside ``softce/`` in a source checkout (``main`` hands everything after ``bench`` to
    _run_bench)."""
    subparsers.add_parser("bench", help="benchmark against NumPy, SciPy and PyTorch "
                                        "(softce bench --help for its options)")


def _run_bench(argv: list[str]) -> int:
    """benchmarks.cli.main(argv), from the checkout softce runs from (the benchmark is not
    installed with softce); exit status 2 with a message when there is none."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "cli.py").is_file():
        print(f"softce bench: no benchmarks/ beside {root / 'softce'}: the benchmark runs "
              "from a source checkout of softce (install it with `pip install -e .` there, "
              "or run `python -m benchmarks` in it)", file=sys.stderr)
        return 2
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.cli import main as bench_main

    return bench_main(argv)


SUBCOMMANDS: tuple[Subcommand, ...] = (add_audit, add_generate, add_warmup, add_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softce", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _run_bench(argv[1:])
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
