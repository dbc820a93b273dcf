"""Benchmark softce's CUDA kernels against PyTorch CUDA in one run (needs a CUDA GPU).

The shapes of the CPU benchmark (float32 logits): 65536x10, 8192x1000, 4096x32000, 1024x128256.
Inputs are PyTorch CUDA tensors, passed to softce as they are (``__cuda_array_interface__``,
no copy). Each call is warmed up, then timed ``--repeats`` times with CUDA events on the
default stream; the median is reported. GB/s counts the logits read once and every output
written once (labels read once), as the CPU benchmark does, and is compared with a
device-to-device copy of the logits measured in the same run (read + write = 2 x its size).

References: PyTorch ``F.cross_entropy`` forward, forward + backward, ``F.log_softmax``,
``torch.logsumexp`` and ``F.softmax``. With no GPU the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable

SHAPES = ((65536, 10), (8192, 1000), (4096, 32000), (1024, 128256))


def gpu_available() -> str | None:
    """None when a CUDA GPU is usable by both numba and PyTorch, else the reason."""
    try:
        from numba import config, cuda
    except ImportError as exc:
        return f"numba-cuda is not installed ({exc})"
    if config.ENABLE_CUDASIM:
        return "NUMBA_ENABLE_CUDASIM=1: the simulator is not a GPU"
    if not cuda.is_available():
        return "numba.cuda finds no CUDA GPU (or no driver)"
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "PyTorch was built without CUDA or sees no GPU"
    return None


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median milliseconds of fn() measured with CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def bytes_moved(function: str, rows: int, classes: int, itemsize: int = 4) -> int:
    logits, per_row, labels = rows * classes * itemsize, rows * itemsize, rows * 8
    return {
        "softmax": 2 * logits,
        "log_softmax": 2 * logits,
        "logsumexp": logits + per_row,
        "cross_entropy": logits + labels + per_row,
        "cross_entropy_grad": 2 * logits + labels + per_row,
    }[function]


def bench_shape(rows: int, classes: int, repeats: int) -> dict[str, object]:
    import torch
    import torch.nn.functional as F

    import softce

    torch.manual_seed(0)
    x = torch.randn(rows, classes, device="cuda", dtype=torch.float32) * 4
    labels = torch.randint(0, classes, (rows,), device="cuda")
    scratch = x.clone()
    grad_leaf = x.clone().requires_grad_(True)

    def torch_fwd_bwd():
        grad_leaf.grad = None
        F.cross_entropy(grad_leaf, labels).backward()

    cases = {
        "softmax": (lambda: softce.softmax(x), lambda: F.softmax(x, dim=-1)),
        "log_softmax": (lambda: softce.log_softmax(x), lambda: F.log_softmax(x, dim=-1)),
        "logsumexp": (lambda: softce.logsumexp(x), lambda: torch.logsumexp(x, dim=-1)),
        "cross_entropy": (lambda: softce.cross_entropy(x, labels),
                          lambda: F.cross_entropy(x, labels)),
        "cross_entropy_grad": (lambda: softce.cross_entropy_grad(x, labels), torch_fwd_bwd),
    }
    out: dict[str, object] = {"shape": f"{rows}x{classes}", "functions": {}}
    for name, (ours, ref) in cases.items():
        ms, ref_ms = time_ms(ours, repeats), time_ms(ref, repeats)
        gbps = bytes_moved(name, rows, classes) / (ms * 1e-3) / 1e9
        out["functions"][name] = {"softce ms": ms, "PyTorch ms": ref_ms, "GB/s": gbps}
    in_place = time_ms(lambda: softce.cross_entropy_grad(scratch, labels, out=scratch), repeats)
    out["functions"]["cross_entropy_grad (out=logits)"] = {
        "softce ms": in_place, "PyTorch ms": float("nan"),
        "GB/s": bytes_moved("cross_entropy_grad", rows, classes) / (in_place * 1e-3) / 1e9}
    dst = torch.empty_like(x)
    copy_ms = time_ms(lambda: dst.copy_(x), repeats)
    out["copy GB/s"] = 2 * x.numel() * x.element_size() / (copy_ms * 1e-3) / 1e9
    return out


def markdown(results: list[dict[str, object]], device: str) -> str:
    lines = [f"GPU: {device}. Median of CUDA-event timings; GB/s as in the CPU benchmark; "
             "'of copy' = GB/s over a device-to-device copy's GB/s in the same run.", ""]
    lines.append("| shape | function | softce ms | PyTorch ms | PyTorch / softce | GB/s "
                 "| of copy |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for res in results:
        copy = res["copy GB/s"]
        for name, v in res["functions"].items():
            ratio = v["PyTorch ms"] / v["softce ms"]
            lines.append(f"| {res['shape']} | {name} | {v['softce ms']:.3f} | "
                         f"{v['PyTorch ms']:.3f} | {ratio:.2f} | {v['GB/s']:.0f} | "
                         f"{v['GB/s'] / copy:.2f} |")
        lines.append(f"| {res['shape']} | device copy | | | | {copy:.0f} | 1.00 |")
    return "\n".join(lines)


def plot(results: list[dict[str, object]], device: str, path: str) -> None:
    """PyTorch ms / softce ms per function and shape (above 1: softce is faster)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results[0]["functions"] if "out=" not in n]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(results)
    for i, res in enumerate(results):
        ratios = [res["functions"][n]["PyTorch ms"] / res["functions"][n]["softce ms"]
                  for n in names]
        ax.bar([k + i * width for k in range(len(names))], ratios, width, label=res["shape"])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))], names)
    ax.set_ylabel("PyTorch ms / softce ms")
    ax.set_title(f"softce CUDA kernels against PyTorch CUDA, float32, {device}")
    ax.legend(title="rows x classes", fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--plot", help="also draw the ratios to PyTorch into this PNG")
    parser.add_argument("--from-json", help="print and plot a saved run instead of running")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as fh:
            saved = json.load(fh)
        device, results = saved["device"], saved["results"]
    else:
        reason = gpu_available()
        if reason is not None:
            print(f"bench_gpu: no GPU benchmark run: {reason}.")
            return 0
        import torch

        device = torch.cuda.get_device_name()
        results = [bench_shape(rows, classes, args.repeats) for rows, classes in SHAPES]
    print(markdown(results, device))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": device, "results": results}, fh, indent=2)
    if args.plot:
        plot(results, device, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
