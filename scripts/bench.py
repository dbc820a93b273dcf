"""Benchmark softce against NumPy, SciPy and PyTorch; the ``benchmarks`` package at the
repository root (``--help`` for the options)."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.cli import main

    sys.exit(main())
