"""Benchmark softce's CUDA kernels against PyTorch CUDA in one run (needs a CUDA GPU).

The shapes of the CPU benchmark: 65536x10, 8192x1000, 4096x32000, 1024x128256, in float32 and
bfloat16 (``--dtypes``). softce is called as a PyTorch user calls it: ``softce.torch``'s
functions on CUDA tensors (no copy; bfloat16 read as 16 bits), the training step as
``softce.torch.cross_entropy(logits, labels).backward()``. Each call is warmed up, then timed
``--repeats`` times with CUDA events on the current stream; the median is reported. GB/s
counts the logits read once and every output written once (labels read once), as the CPU
benchmark does, and is compared with a device-to-device copy of the logits measured in the
same run (read + write = 2 x its size).

References: PyTorch ``F.softmax``, ``F.log_softmax``, ``torch.logsumexp``,
``F.cross_entropy`` forward and forward + backward; on the two large shapes also
``torch.compile``'s kernels of softmax, log_softmax and the cross-entropy forward + backward
(``--no-compile`` leaves them out). The JSON file is rewritten after each shape, so a run cut
short keeps what it measured. With no GPU the script says so and exits 0.
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


DTYPES = ("float32", "bfloat16")
#: Shapes whose references include torch.compile's kernels (compiling costs seconds each).
COMPILED_FROM = 4096 * 32000


def bytes_moved(function: str, rows: int, classes: int, itemsize: int = 4) -> int:
    logits, per_row, labels = rows * classes * itemsize, rows * 4, rows * 8
    return {
        "softmax": 2 * logits,
        "log_softmax": 2 * logits,
        "logsumexp": logits + per_row,
        "cross_entropy": logits + labels + per_row,
        "training step": 2 * logits + labels + per_row,
    }[function]


def bench_shape(rows: int, classes: int, dtype: str, repeats: int, compile: bool
                ) -> dict[str, object]:
    import torch
    import torch.nn.functional as F

    import softce.torch as st

    torch.manual_seed(0)
    x = (torch.randn(rows, classes, device="cuda") * 4).to(getattr(torch, dtype))
    labels = torch.randint(0, classes, (rows,), device="cuda")
    leaf = x.clone().requires_grad_(True)

    def step(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            leaf.grad = None
            loss(leaf, labels).backward()
        return run

    cases = {
        "softmax": (lambda: st.softmax(x, -1), lambda: F.softmax(x, dim=-1),
                    lambda z: F.softmax(z, dim=-1)),
        "log_softmax": (lambda: st.log_softmax(x, -1), lambda: F.log_softmax(x, dim=-1),
                        lambda z: F.log_softmax(z, dim=-1)),
        "logsumexp": (lambda: st.logsumexp(x, -1), lambda: torch.logsumexp(x, dim=-1), None),
        "cross_entropy": (lambda: st.cross_entropy(x, labels),
                          lambda: F.cross_entropy(x, labels), None),
        "training step": (step(st.cross_entropy), step(F.cross_entropy), F.cross_entropy),
    }
    out: dict[str, object] = {"shape": f"{rows}x{classes}", "dtype": dtype, "functions": {}}
    for name, (ours, ref, compilable) in cases.items():
        ms, ref_ms = time_ms(ours, repeats), time_ms(ref, repeats)
        row = {"softce ms": ms, "PyTorch ms": ref_ms, "compiled ms": float("nan"),
               "GB/s": bytes_moved(name, rows, classes, x.element_size()) / (ms * 1e-3) / 1e9}
        if compile and compilable is not None and rows * classes >= COMPILED_FROM:
            fn = torch.compile(compilable, dynamic=False)
            compiled = step(fn) if name == "training step" else (lambda fn=fn: fn(x))
            row["compiled ms"] = time_ms(compiled, repeats, warmup=3)
        out["functions"][name] = row
    dst = torch.empty_like(x)
    copy_ms = time_ms(lambda: dst.copy_(x), repeats)
    out["copy GB/s"] = 2 * x.numel() * x.element_size() / (copy_ms * 1e-3) / 1e9
    return out


def markdown(results: list[dict[str, object]], device: str) -> str:
    lines = [f"GPU: {device}. Median of CUDA-event timings; GB/s as in the CPU benchmark; "
             "'of copy' = GB/s over a device-to-device copy's GB/s in the same run; "
             "x = the reference's ms over softce's (above 1: softce is faster).", ""]
    lines.append("| shape | dtype | function | softce ms | PyTorch ms | x PyTorch "
                 "| torch.compile ms | x compiled | GB/s | of copy |")
    lines.append("| --- | --- | --- | --: | --: | --: | --: | --: | --: | --: |")
    for res in results:
        copy = res["copy GB/s"]
        for name, v in res["functions"].items():
            ms, compiled = v["softce ms"], v.get("compiled ms", float("nan"))
            has = compiled == compiled  # not NaN
            lines.append(
                f"| {res['shape']} | {res.get('dtype', 'float32')} | {name} | {ms:.3f} | "
                f"{v['PyTorch ms']:.3f} | {v['PyTorch ms'] / ms:.2f} | "
                f"{f'{compiled:.3f}' if has else ''} | {f'{compiled / ms:.2f}' if has else ''} "
                f"| {v['GB/s']:.0f} | {v['GB/s'] / copy:.2f} |")
        lines.append(f"| {res['shape']} | {res.get('dtype', 'float32')} | device copy | | | | "
                     f"| | {copy:.0f} | 1.00 |")
    return "\n".join(lines)


def plot(results: list[dict[str, object]], device: str, path: str) -> None:
    """PyTorch ms / softce ms per function, shape and dtype (above 1: softce is faster)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = sorted({res.get("dtype", "float32") for res in results}, key=DTYPES.index)
    fig, axes = plt.subplots(1, len(dtypes), figsize=(9 * len(dtypes), 4), squeeze=False)
    for ax, dtype in zip(axes[0], dtypes):
        runs = [res for res in results if res.get("dtype", "float32") == dtype]
        names = list(runs[0]["functions"])
        width = 0.8 / len(runs)
        for i, res in enumerate(runs):
            ratios = [res["functions"][n]["PyTorch ms"] / res["functions"][n]["softce ms"]
                      for n in names]
            ax.bar([k + i * width for k in range(len(names))], ratios, width,
                   label=res["shape"])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))], names)
        ax.set_ylabel("PyTorch ms / softce ms")
        ax.set_title(f"softce against PyTorch CUDA, {dtype}, {device}")
        ax.legend(title="rows x classes", fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave torch.compile's references out")
    parser.add_argument("--json", help="also write the results to this file (after each shape)")
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
        results = []
        for dtype in args.dtypes:
            for rows, classes in SHAPES:
                results.append(bench_shape(rows, classes, dtype, args.repeats, args.compile))
                if args.json:
                    with open(args.json, "w") as fh:
                        json.dump({"device": device, "results": results}, fh, indent=2)
    print(markdown(results, device))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": device, "results": results}, fh, indent=2)
    if args.plot:
        plot(results, device, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
