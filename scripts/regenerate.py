"""Regenerate generated/ from the derivations (``--check``: exit 1 if it is stale or edited).

The derivations are read from the derivation cache where it holds them (``softce.derive.cache``);
``--no-cache`` derives them all again.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from softce.codegen.writer import stale, write
from softce.derive import cache

GENERATED = Path(__file__).resolve().parents[1] / "generated"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 naming each file that differs")
    parser.add_argument("--out", type=Path, default=GENERATED, help="the generated/ directory")
    parser.add_argument("--no-cache", action="store_true",
                        help="derive everything again instead of reading the derivation cache "
                             "(and store nothing in it)")
    args = parser.parse_args(argv)
    with cache.disabled() if args.no_cache else contextlib.nullcontext():
        if args.check:
            bad = stale(args.out)
            for rel in bad:
                print(f"stale or edited: {args.out / rel}", file=sys.stderr)
            if not bad:
                print(f"{args.out} is up to date")
            return 1 if bad else 0
        for rel in write(args.out):
            print(f"wrote {args.out / rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
