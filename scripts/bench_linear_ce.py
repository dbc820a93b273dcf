"""softce.linear_cross_entropy_grad against PyTorch: forward + backward of cross-entropy after
a linear layer, float32, 2 threads.

Implementations, each returning the loss and the gradients of input, weight and bias:

- ``softce``: ``softce.linear_cross_entropy_grad`` (chunks of 64 MiB of logits);
- ``softce_torch``: ``softce.torch.linear_cross_entropy`` and ``backward()`` (the same chunk
  loop on tensors; the backward computes each chunk's logits again);
- ``torch``: the materialised path, ``F.linear`` + ``F.cross_entropy``, ``backward()``;
- ``torch_lce``: ``F.linear_cross_entropy`` with its defaults (options=None);
- ``torch_lce_chunked``: ``F.linear_cross_entropy`` with ``LinearCrossEntropyOptions()``.

Time: in one process, every implementation warmed once, then ``--repeat`` rounds in which each
runs once, in an order rotated every round (interleaved: a slow stretch of the machine hits
them alike); the median and range of the rounds are reported. Memory: each implementation in
a fresh subprocess, warmed on 8 rows, its peak RSS reset (/proc/self/clear_refs); the growth
of the peak (VmHWM) over the RSS before one full call, which includes the call's outputs.

    python scripts/bench_linear_ce.py [--cases 256x32000,1024x32000,...] [--repeat 7]
        [--output benchmarks/linear_ce.json] [--plot benchmarks/linear_ce.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

THREADS = "2"
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = THREADS

import numpy as np  # noqa: E402 - after the thread counts

ROWS = 4096
CASES = ((256, 32000), (1024, 32000), (256, 128256), (1024, 128256))
IMPLEMENTATIONS = ("softce", "softce_torch", "torch", "torch_lce", "torch_lce_chunked")
MIB = 1 << 20


def inputs(rows: int, hidden: int, classes: int, seed: int = 0):
    """float32 h (rows, hidden), W (classes, hidden) and b scaled to logits of about N(0, 1),
    int64 labels."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((rows, hidden), dtype=np.float32)
    w = rng.standard_normal((classes, hidden), dtype=np.float32) / np.float32(np.sqrt(hidden))
    b = rng.standard_normal(classes, dtype=np.float32)
    t = rng.integers(0, classes, rows)
    return h, w, b, t


def step(name: str, h: np.ndarray, w: np.ndarray, b: np.ndarray, t: np.ndarray):
    """A function running one forward + backward of implementation ``name``."""
    if name == "softce":
        import softce

        return lambda: softce.linear_cross_entropy_grad(h, w, t, linear_bias=b)
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(THREADS))
    th, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (h, w, b))
    tt = torch.from_numpy(t)
    options = torch.nn.LinearCrossEntropyOptions() if name == "torch_lce_chunked" else None

    def run():
        for p in (th, tw, tb):
            p.grad = None
        if name == "torch":
            loss = F.cross_entropy(F.linear(th, tw, tb), tt)
        elif name == "softce_torch":
            import softce.torch as st

            loss = st.linear_cross_entropy(th, tw, tt, linear_bias=tb)
        else:
            loss = F.linear_cross_entropy(th, tw, tt, linear_bias=tb, options=options)
        loss.backward()
        return loss.detach(), th.grad, tw.grad, tb.grad

    return run


def check_agreement(rows: int, hidden: int, classes: int) -> dict[str, float]:
    """The largest relative difference of each implementation's loss and gradients from
    PyTorch's materialised path, on this case's shape with 256 rows."""
    h, w, b, t = inputs(min(rows, 256), hidden, classes, seed=1)
    ref = [np.asarray(a) for a in step("torch", h, w, b, t)()]
    out = {}
    for name in IMPLEMENTATIONS:
        got = [np.asarray(a) for a in step(name, h, w, b, t)()]
        out[name] = max(float(np.max(np.abs(g - r)) / max(float(np.max(np.abs(r))), 1e-30))
                        for g, r in zip(got, ref))
    return out


def time_case(rows: int, hidden: int, classes: int, repeat: int) -> dict[str, dict]:
    h, w, b, t = inputs(rows, hidden, classes)
    runs = {name: step(name, h, w, b, t) for name in IMPLEMENTATIONS}
    for run in runs.values():
        run()  # warm: kernels compiled or loaded, buffers in place
    times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for round_ in range(repeat):
        turn = round_ % len(IMPLEMENTATIONS)
        order = IMPLEMENTATIONS[turn:] + IMPLEMENTATIONS[:turn]
        for name in order:
            start = time.perf_counter()
            result = runs[name]()
            times[name].append(time.perf_counter() - start)
            del result
    return {name: {"median_s": float(np.median(v)), "min_s": min(v), "max_s": max(v),
                   "runs_s": v} for name, v in times.items()}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(name: str, rows: int, hidden: int, classes: int) -> None:
    """(In a subprocess.) Print the peak RSS growth of one full call, in bytes."""
    small = inputs(8, hidden, classes, seed=2)
    step(name, *small)()  # compiled and loaded at a small size
    h, w, b, t = inputs(rows, hidden, classes)
    run = step(name, h, w, b, t)
    del small
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    result = run()
    peak = _status("VmHWM")
    del result
    print(json.dumps({"growth": peak - before, "rss_before": before}))


def memory_case(rows: int, hidden: int, classes: int) -> dict[str, dict]:
    out = {}
    for name in IMPLEMENTATIONS:
        proc = subprocess.run([sys.executable, __file__, "--probe", name, str(rows),
                               str(hidden), str(classes)], capture_output=True, text=True,
                              check=True)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def output_bytes(rows: int, hidden: int, classes: int) -> int:
    """The gradients every implementation returns: d_input, d_weight, d_bias (float32)."""
    return 4 * (rows * hidden + classes * hidden + classes)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, hidden in zip(axes, sorted({c["hidden"] for c in results["cases"]})):
        cases = sorted((c for c in results["cases"] if c["hidden"] == hidden and "memory" in c),
                       key=lambda c: c["classes"])
        if not cases:
            continue
        vs = [c["classes"] for c in cases]
        for name, style in zip(IMPLEMENTATIONS, ("o-", "d--", "s-", "x:", "^-")):
            ax.plot(vs, [c["memory"][name]["growth"] / MIB for c in cases], style, label=name)
        ax.plot(vs, [output_bytes(results["rows"], hidden, v) / MIB for v in vs], "k:",
                label="the outputs (dh, dW, db)")
        ax.plot(vs, [c["logits_bytes"] / MIB for c in cases], "k--", label="logits (N x V)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("classes V")
        ax.set_title(f"N = {results['rows']}, hidden = {hidden}, float32")
    axes[0].set_ylabel("peak RSS growth of one forward + backward, MiB")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(f"{h}x{v}" for h, v in CASES),
                        help="hidden x classes, comma-separated")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--repeat", default="7",
                        help="rounds per case: one number, or one per case (comma-separated)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/linear_ce.json"))
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/linear_ce.png"))
    parser.add_argument("--replot", action="store_true",
                        help="only draw the plot from the results in --output")
    parser.add_argument("--probe", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replot:
        plot(json.loads(args.output.read_text()), args.plot)
        return 0
    if args.probe:
        name, *sizes = args.probe
        memory_probe(name, *map(int, sizes))
        return 0

    import torch

    cases = [tuple(map(int, c.split("x"))) for c in args.cases.split(",")]
    repeats = [int(r) for r in args.repeat.split(",")]
    repeats = repeats * len(cases) if len(repeats) == 1 else repeats
    results = {"rows": args.rows, "dtype": "float32", "threads": int(THREADS),
               "torch": torch.__version__, "numpy": np.__version__,
               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
               "cases": []}
    for (hidden, classes), repeat in zip(cases, repeats):
        case = {"rows": args.rows, "hidden": hidden, "classes": classes,
                "logits_bytes": args.rows * classes * 4,
                "agreement": check_agreement(args.rows, hidden, classes)}
        case["memory"] = memory_case(args.rows, hidden, classes)
        case["time"] = time_case(args.rows, hidden, classes, repeat)
        results["cases"].append(case)
        report(case)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.plot)
    return 0


def report(case: dict) -> None:
    print(f"\nN x hidden x V = {case['rows']} x {case['hidden']} x {case['classes']} "
          f"(logits {case['logits_bytes'] / MIB:.0f} MiB)")
    for name in IMPLEMENTATIONS:
        t, m = case["time"][name], case["memory"][name]
        print(f"  {name:<18} {t['median_s'] * 1e3:8.0f} ms ({t['min_s'] * 1e3:.0f}-"
              f"{t['max_s'] * 1e3:.0f})  peak +{m['growth'] / MIB:7.0f} MiB  "
              f"(outputs {output_bytes(case['rows'], case['hidden'], case['classes']) / MIB:.0f})  "
              f"max rel. diff {case['agreement'][name]:.1e}")


if __name__ == "__main__":
    sys.exit(main())
