"""The ``softce`` command line: one function per subcommand, registered in SUBCOMMANDS.

A subcommand is ``add(subparsers)``, which adds its parser and sets ``run`` to a function of
the parsed arguments returning the exit status. Heavy imports stay inside the run functions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Subcommand = Callable[[argparse._SubParsersAction], None]


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


def _run_audit(args: argparse.Namespace) -> int:
    from softce import audit

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
        "audit", help="check every derivation D1-D12 and report the note's errata",
        description="Run the derivations D1-D12, compare them with the note's closed forms "
                    "and check the note's errata. Exit status 1 if any verdict is not "
                    "'proved'.")
    parser.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    parser.add_argument("--output", type=Path, help="write the report to this file")
    parser.set_defaults(run=_run_audit)


SUBCOMMANDS: tuple[Subcommand, ...] = (add_audit,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softce", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
