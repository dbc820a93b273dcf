"""One training step's cross-entropy through autograd: softce.torch against PyTorch.

The step is ``loss = ce(logits, labels); loss.backward()`` on leaf logits of (rows, classes)
that require grad (N(0, 9) values, uniform labels), for softce.torch.cross_entropy (and with
``inplace_backward=True``), F.cross_entropy and torch.compile(F.cross_entropy) (inductor),
in float32 and bfloat16. Time: every implementation warmed up once, then timed in
``--repeats`` interleaved rounds (each round runs each once, in a rotating order), median and
range. Memory: each implementation in a fresh subprocess, after a warm-up step: the peak RSS
of two steps above the RSS before them (/proc/self/clear_refs resets the peak; the output
buffers softce keeps for reuse are freed first, so the one the steps reuse counts), as a
multiple of the logits' size.

    python scripts/bench_torch.py [--rows 4096] [--classes 32000] [--repeats 7]
        [--threads 2] [--output benchmarks/torch_step.json] [--plot benchmarks/torch_step.png]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = ("softce", "softce inplace_backward", "F.cross_entropy",
                   "torch.compile(F.cross_entropy)")
DTYPES = ("float32", "bfloat16")


def loss_function(name: str):
    import torch
    import torch.nn.functional as F

    import softce.torch as st

    if name == "softce":
        return st.cross_entropy
    if name == "softce inplace_backward":
        return lambda x, t: st.cross_entropy(x, t, inplace_backward=True)
    if name == "F.cross_entropy":
        return F.cross_entropy
    if name == "torch.compile(F.cross_entropy)":
        return torch.compile(F.cross_entropy)
    raise ValueError(f"unknown implementation {name!r}")


def make_inputs(rows: int, classes: int, dtype: str, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(rows, classes, generator=gen) * 3).to(getattr(torch, dtype))
    labels = torch.randint(0, classes, (rows,), generator=gen)
    return logits.requires_grad_(), labels


def step(loss_fn, logits, labels) -> None:
    logits.grad = None
    loss_fn(logits, labels).backward()


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_extra(name: str, rows: int, classes: int, dtype: str) -> dict:
    """In this process: the peak RSS of two steps above the RSS before them (logits and
    labels allocated, the implementation warmed up, the output buffers softce keeps for reuse
    freed, so the one the steps reuse counts)."""
    from softce import buffers

    loss_fn = loss_function(name)
    logits, labels = make_inputs(rows, classes, dtype)
    step(loss_fn, logits, labels)
    logits.grad = None
    buffers.configure(buffers.configure(0))
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status("VmRSS:")
    for _ in range(2):
        step(loss_fn, logits, labels)
        logits.grad = None
    extra = _status("VmHWM:") - base
    size = logits.numel() * logits.element_size()
    return {"extra_bytes": extra, "logits_bytes": size, "extra_over_logits": extra / size}


def time_steps(rows: int, classes: int, dtype: str, repeats: int) -> dict:
    """Interleaved rounds: {implementation: {median_ms, min_ms, max_ms, times_ms}}."""
    import torch

    logits, labels = make_inputs(rows, classes, dtype)
    base = logits.detach().clone()  # inplace_backward overwrites the logits: restored untimed
    fns = {name: loss_function(name) for name in IMPLEMENTATIONS}
    compile_s = {}
    for name, fn in fns.items():  # warm-up: kernels loaded, torch.compile compiled
        start = time.perf_counter()
        step(fn, logits, labels)
        compile_s[name] = time.perf_counter() - start
        with torch.no_grad():
            logits.copy_(base)
    times = {name: [] for name in fns}
    order = list(fns)
    for r in range(repeats):
        for name in order[r % len(order):] + order[:r % len(order)]:
            gc.collect()
            start = time.perf_counter()
            step(fns[name], logits, labels)
            times[name].append((time.perf_counter() - start) * 1e3)
            logits.grad = None
            with torch.no_grad():
                logits.copy_(base)
    return {name: {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts),
                   "times_ms": [round(t, 2) for t in ts], "first_call_s": compile_s[name]}
            for name, ts in times.items()}


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(IMPLEMENTATIONS)
    for i, name in enumerate(IMPLEMENTATIONS):
        xs = [d + (i - (len(IMPLEMENTATIONS) - 1) / 2) * width for d in range(len(DTYPES))]
        t = [results["dtypes"][d]["time"][name] for d in DTYPES]
        med = [v["median_ms"] for v in t]
        err = [[m - v["min_ms"] for m, v in zip(med, t)],
               [v["max_ms"] - m for m, v in zip(med, t)]]
        axes[0].bar(xs, med, width, yerr=err, capsize=3, label=name)
        mem = [results["dtypes"][d]["memory"][name]["extra_over_logits"] for d in DTYPES]
        axes[1].bar(xs, mem, width, label=name)
    shape = f"{results['rows']}x{results['classes']}"
    axes[0].set(title=f"forward + backward, {shape} (median, min-max)", ylabel="ms",
                yscale="log", xticks=range(len(DTYPES)), xticklabels=DTYPES)
    axes[1].set(title="peak RSS of a step beyond the logits (two steps measured)",
                ylabel="x the logits' size", xticks=range(len(DTYPES)), xticklabels=DTYPES)
    axes[1].axhline(1.25, color="gray", linestyle="--", linewidth=1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "torch_step.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "torch_step.png")
    parser.add_argument("--memory", metavar="IMPLEMENTATION",
                        help="measure one implementation's peak memory in this process "
                             "(prints JSON; run by the benchmark in a subprocess each)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    args = parser.parse_args(argv)
    os.environ["NUMBA_NUM_THREADS"] = str(args.threads)

    import torch

    torch.set_num_threads(args.threads)
    if args.memory:
        print(json.dumps(peak_extra(args.memory, args.rows, args.classes, args.dtype)))
        return 0

    import numba

    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "rows": args.rows, "classes": args.classes, "repeats": args.repeats,
               "threads": args.threads, "torch": torch.__version__,
               "numba": numba.__version__, "load_average_before": load_average(),
               "dtypes": {}}
    env = {**os.environ, "NUMBA_NUM_THREADS": str(args.threads)}
    for dtype in DTYPES:
        timed = time_steps(args.rows, args.classes, dtype, args.repeats)
        memory = {}
        for name in IMPLEMENTATIONS:
            run = subprocess.run(
                [sys.executable, __file__, "--memory", name, "--dtype", dtype, "--rows",
                 str(args.rows), "--classes", str(args.classes), "--threads",
                 str(args.threads)], capture_output=True, text=True, env=env, check=True)
            memory[name] = json.loads(run.stdout.strip().splitlines()[-1])
        ref = timed["F.cross_entropy"]["median_ms"]
        results["dtypes"][dtype] = {"time": timed, "memory": memory,
                                    "speedup_vs_F": {n: ref / t["median_ms"]
                                                     for n, t in timed.items()}}
        for name in IMPLEMENTATIONS:
            t, m = timed[name], memory[name]
            print(f"{dtype:9s} {name:32s} {t['median_ms']:9.1f} ms "
                  f"({t['min_ms']:.1f}-{t['max_ms']:.1f})  x{ref / t['median_ms']:5.2f}  "
                  f"peak +{m['extra_over_logits']:.2f} x logits", flush=True)
    results["load_average_after"] = load_average()
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
