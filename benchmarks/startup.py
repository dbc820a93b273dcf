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


FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "cross_entropy", "cross_entropy_probs",
             "cross_entropy_grad")


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def measure_first_calls(repeats: int, functions: tuple[str, ...] = FUNCTIONS
                        ) -> dict[str, object]:
    """Each function's first call in a fresh interpreter of its own with an empty Numba
    cache (``repeats`` processes each, a new empty cache every time), and the warm whole
    process (``WARM_IMPORT``) with a cache that holds softmax."""
    first: dict[str, list[float]] = {name: [] for name in functions}
    imports: list[float] = []
    for _ in range(repeats):
        for name in functions:
            with tempfile.TemporaryDirectory(prefix="softce-bench-cache-") as cache:
                _, stdout = _run_python([str(PROBE), name], dict(os.environ,
                                                                   NUMBA_CACHE_DIR=cache))
                run = json.loads(stdout)
                first[name].append(run["first_call_s"][name])
                imports.append(run["import_softce_s"])
    with tempfile.TemporaryDirectory(prefix="softce-bench-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        _run_python(["-c", WARM_IMPORT], env)
        warm = [_run_python(["-c", WARM_IMPORT], env)[0] for _ in range(repeats)]
        bare = [_run_python(["-c", "import numpy"], env)[0] for _ in range(repeats)]
    return {"first_call_s": {k: _spread(v) for k, v in first.items()},
            "import_softce_s": _spread(imports), "warm_process_s": _spread(warm),
            "numpy_process_s": _spread(bare), "repeats": repeats}


def _timed(command: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def measure_first_command(softce_command: str = "softce") -> dict[str, float]:
    """The README's first command after its install, with an empty derivation cache and an
    empty Numba cache: ``softce generate --verify``, then ``softce audit``; then, in a new
    empty Numba cache, ``softce warmup``."""
    with tempfile.TemporaryDirectory(prefix="softce-bench-first-") as root:
        env = dict(os.environ, SOFTCE_CACHE_DIR=f"{root}/softce",
                   NUMBA_CACHE_DIR=f"{root}/numba")
        env.pop("SOFTCE_DERIVATION_CACHE", None)
        generate = _timed([softce_command, "generate", "--verify"], env)
        audit = _timed([softce_command, "audit"], env)
        env["NUMBA_CACHE_DIR"] = f"{root}/numba-warmup"
        warmup = _timed([softce_command, "warmup", "--quiet"], env)
    return {"generate_verify_s": generate, "audit_s": audit, "warmup_s": warmup}


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.startup [--repeats N] [--first-command]``: prints JSON."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--first-command", action="store_true",
                        help="also time the README's first command (minutes)")
    parser.add_argument("--softce", default=str(Path(sys.executable).with_name("softce")),
                        help="the softce command (default: beside this Python)")
    args = parser.parse_args(argv)
    result: dict[str, object] = {"first_calls": measure_first_calls(args.repeats)}
    if args.first_command:
        result["first_command"] = measure_first_command(args.softce)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
