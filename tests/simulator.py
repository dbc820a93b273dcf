"""The CUDA simulator for the test files whose ``cuda`` tests run in it.

NUMBA_ENABLE_CUDASIM must be set before numba is imported, so such a file has one test that
runs the file again in a fresh pytest process with it set, where conftest.py selects the
``cuda`` tests only; on a GPU (``SOFTCE_TEST_GPU=1``) they run in the suite's own process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def run_file(path: str) -> None:
    """Run the test file at ``path`` in the simulator; assert that it passed."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-W", "ignore::RuntimeWarning", path],
                         env=env, capture_output=True, text=True, timeout=1200)
    tail = (run.stdout[-6000:] + run.stderr[-2000:]).strip()
    print(tail.splitlines()[-1] if tail else "")
    assert run.returncode == 0, tail
    assert " passed" in tail.splitlines()[-1] and " failed" not in tail.splitlines()[-1], tail


@contextlib.contextmanager
def tiny_grids() -> Iterator[None]:
    """Tiny grids in the simulator (a GPU keeps its default launch), RuntimeWarnings ignored;
    the launch configuration a test sets is undone after it."""
    from softce import cuda as sc

    old = sc.configure()
    if SIMULATED:
        sc.configure(threads_per_row=None, block_threads=64, max_blocks=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
    sc.configure(**old.__dict__)
