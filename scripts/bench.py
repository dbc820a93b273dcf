"""Benchmark softce against NumPy, SciPy and PyTorch; see ``softce.bench`` (``--help``)."""

from __future__ import annotations

import sys

from softce.bench import main

if __name__ == "__main__":
    sys.exit(main())
