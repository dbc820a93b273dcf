"""Host overhead of a call on CUDA arrays: softce's front end and CUDA backend with every
kernel launch stubbed out, so that what is timed is the Python a call runs before and around
its launches (checks, layout, kernel choice, allocations, reductions' bookkeeping).

It runs on any machine: the arrays are the CUDA simulator's (``NUMBA_ENABLE_CUDASIM=1``, set
here before Numba is imported) and the simulator's kernel call does nothing. Allocation and
copies are the simulator's (NumPy's) too, so a GPU adds its own costs to these figures (a
``cuMemAlloc`` per output where the caller's framework does not allocate, and the launches
themselves). The issue's target is at most 25 µs per plain call.

    python -m benchmarks.dispatch [--calls 2000] [--json FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import time
from collections.abc import Callable

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402
from numba.cuda.simulator.kernel import FakeCUDAKernel  # noqa: E402

import softce  # noqa: E402
from softce.cuda import deferred_label_checks  # noqa: E402

ROWS, CLASSES = 64, 1000
BATCH = 100  # calls per timed batch


def cases() -> dict[str, Callable[[], object]]:
    """The calls timed, on device arrays of 64 x 1000 float32 logits and int64 labels."""
    rng = np.random.default_rng(0)
    x = cuda.to_device(rng.standard_normal((ROWS, CLASSES)).astype(np.float32))
    labels = cuda.to_device(rng.integers(0, CLASSES, ROWS))
    out = cuda.device_array((ROWS, CLASSES), np.float32)

    def deferred(call: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with deferred_label_checks(lambda flag: None):
                return call()
        return run

    return {
        "softmax": lambda: softce.softmax(x),
        "softmax, out=": lambda: softce.softmax(x, out=out),
        "log_softmax": lambda: softce.log_softmax(x),
        "logsumexp": lambda: softce.logsumexp(x),
        "cross_entropy (labels read back)": lambda: softce.cross_entropy(x, labels),
        "cross_entropy (deferred labels)": deferred(lambda: softce.cross_entropy(x, labels)),
        "cross_entropy_grad, out= (labels read back)":
            lambda: softce.cross_entropy_grad(x, labels, out=out),
        "cross_entropy_grad, out= (deferred labels)":
            deferred(lambda: softce.cross_entropy_grad(x, labels, out=out)),
        "cross_entropy, label_smoothing (deferred)":
            deferred(lambda: softce.cross_entropy(x, labels, label_smoothing=0.1)),
    }


def time_call(call: Callable[[], object], calls: int) -> list[float]:
    """µs per call of each batch of ``BATCH`` calls."""
    for _ in range(20):
        call()
    per_call = []
    for _ in range(max(1, calls // BATCH)):
        t0 = time.perf_counter_ns()
        for _ in range(BATCH):
            call()
        per_call.append((time.perf_counter_ns() - t0) / BATCH / 1e3)
    return per_call


def profile(call: Callable[[], object], calls: int = 500, top: int = 12) -> str:
    """The functions a call spends its host time in (cumulative), from cProfile."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        call()
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--profile", action="store_true",
                        help="also print where the deferred cross_entropy_grad spends its time")
    args = parser.parse_args(argv)
    launched = []
    FakeCUDAKernel.__call__ = lambda self, *a: launched.append(None)  # the stubbed launch
    results = {}
    print(f"| call ({ROWS}x{CLASSES} float32, launches stubbed) | µs per call, median "
          "(p10-p90 of batches) | launches |")
    print("|---|--:|--:|")
    for name, call in cases().items():
        launched.clear()
        call()
        n_launches = len(launched)
        batches = time_call(call, args.calls)
        q = statistics.quantiles(batches, n=10) if len(batches) > 1 else batches * 9
        results[name] = {"median_us": statistics.median(batches), "p10_us": q[0],
                         "p90_us": q[-1], "launches": n_launches}
        print(f"| {name} | {statistics.median(batches):.1f} ({q[0]:.1f}-{q[-1]:.1f}) | "
              f"{n_launches} |")
    if args.profile:
        print(profile(cases()["cross_entropy_grad, out= (deferred labels)"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": ROWS, "classes": CLASSES, "calls": args.calls,
                       "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
