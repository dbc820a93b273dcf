"""Startup cost, each measured in a fresh interpreter: the cold first calls (an empty Numba
cache) and the warm import + first call."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = Path(__file__).with_name("startup_probe.py")
WARM_IMPORT = ("import numpy as np, softce; "
               "softce.softmax(np.ones((64, 1000), np.float32))")


def _run_python(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess {args[:2]} failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def measure_startup(repeats: int, n_functions: int = 6) -> dict[str, object]:
    """Cold first calls (an empty NUMBA_CACHE_DIR) and warm import + first call, each in a
    fresh interpreter."""
    env = dict(os.environ)
    probe = [str(PROBE), str(n_functions)]
    with tempfile.TemporaryDirectory(prefix="softce-bench-cache-") as cache:
        cold_env = dict(env, NUMBA_CACHE_DIR=cache)
        wall, stdout = _run_python(probe, cold_env)
        cold = json.loads(stdout)
        cold["process_wall_s"] = wall
        # The same probe again with the cache it just wrote: warm.
        warm_runs = []
        for _ in range(repeats):
            wall, stdout = _run_python(probe, cold_env)
            run = json.loads(stdout)
            run["process_wall_s"] = wall
            warm_runs.append(run)
        walls = [_run_python(["-c", WARM_IMPORT], cold_env)[0] for _ in range(repeats)]
        bare = [_run_python(["-c", "import numpy"], cold_env)[0] for _ in range(repeats)]
    med = statistics.median
    warm = {
        "import_softce_s": med(r["import_softce_s"] for r in warm_runs),
        "first_call_s": {k: med(r["first_call_s"][k] for r in warm_runs)
                         for k in warm_runs[0]["first_call_s"]},
        "second_call_s": {k: med(r["second_call_s"][k] for r in warm_runs)
                          for k in warm_runs[0]["second_call_s"]},
        "process_wall_s": med(r["process_wall_s"] for r in warm_runs),
        "softmax_process_wall_s": med(walls),
        "numpy_process_wall_s": med(bare),
    }
    return {"cold": cold, "warm": warm, "repeats": repeats,
            "warm_command": f"python -c {WARM_IMPORT!r}"}
