"""``python -m benchmarks [options]`` from the repository root: the same as ``softce bench``."""

import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
