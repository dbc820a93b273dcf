"""softce's CPU kernels compiled for each instruction set, against floors of the same run.

    python -m benchmarks.isa [--shape 4096x32000] [--rounds 30] [--isa native,haswell]

Numba compiles for the host's CPU unless NUMBA_CPU_NAME and NUMBA_CPU_FEATURES name another
(with the name alone it would still add the host's features). Each instruction set is one
worker process with those set: ``haswell`` is AVX2 + FMA and no AVX-512, what most laptops and
desktops run, and it runs on an AVX-512 host too; ``native`` is the host's own. A worker
serves timed calls of the bar's four functions (fresh outputs, as a user calls them) and of two
floors compiled for the same instruction set: a copy of the logits into a warm buffer (read +
write) and a read of them (a sum per row), both ``prange`` over the rows on every thread. The
rounds take the workers in a random order, so a slow stretch of the machine meets both alike.
Reported per instruction set and function: the median and its 10th-90th percentile range, the
ratio of the median to its floor's median (the copy for functions that write a logits-sized
output, the read for logsumexp), and the widest vector register in the compiled copy (softce's
kernels come from Numba's cache, whose code cannot be inspected; they share its target). A third
floor is the arithmetic: logsumexp's generated kernel on a 1 MiB block of the rows, which stays
in the caches, called until it has taken as many elements as the logits hold.
Results go to ``benchmarks/isa.json``, ``benchmarks/isa.png`` and BENCHMARKS.md's section
"Instruction sets".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

from benchmarks.worker import Worker, percentile

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Instruction sets: AVX2 and the host's"

#: LLVM's features of a Haswell core: AVX2 and FMA, no AVX-512.
HASWELL_FEATURES = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fsgsbase,+fxsr,"
                    "+lzcnt,+mmx,+movbe,+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,"
                    "+sse4.2,+ssse3,+x87,+xsave,+xsaveopt")
ISAS = {"native": {}, "haswell": {"NUMBA_CPU_NAME": "haswell",
                                  "NUMBA_CPU_FEATURES": HASWELL_FEATURES}}
#: Each function and the floor its time is divided by.
FLOOR_OF = {"softmax": "copy", "log_softmax": "copy", "cross_entropy_grad": "copy",
            "logsumexp": "read"}
BAR_RATIO = 1.6
#: The floors measured in each worker: memory (a copy, a read) and the arithmetic of
#: logsumexp's kernel on as many elements held in the caches.
FLOORS = ("copy", "read", "logsumexp_in_cache")

WORKER = """
import json, re, sys, time
import numba, numpy as np
import softce
rows, n = int(sys.argv[1]), int(sys.argv[2])

@numba.njit(parallel=True, cache=False)
def copy(src, dst):
    for r in numba.prange(src.shape[0]):
        for k in range(src.shape[1]):
            dst[r, k] = src[r, k]

@numba.njit(parallel=True, cache=False, fastmath=True)
def read(src, out):
    for r in numba.prange(src.shape[0]):
        s = np.float32(0)
        for k in range(src.shape[1]):
            s += src[r, k]
        out[r] = s

from softce.generated.cpu.logsumexp import logsumexp_f32

rng = np.random.default_rng(0)
x = rng.standard_normal((rows, n), dtype=np.float32)
labels = rng.integers(0, n, rows)
dst, sums = np.empty_like(x), np.empty(rows, np.float32)
# the logsumexp kernel's arithmetic alone: as many elements as x, from a 1 MiB block that
# stays in the cores' caches (half of it per core), the kernel called on it again and again
block = np.ascontiguousarray(x[:max(1, (1 << 18) // n)])
block_lse = np.empty(block.shape[0], np.float32)

def logsumexp_in_cache():
    for _ in range(max(1, x.size // block.size)):
        logsumexp_f32(block, block_lse)

calls = {"softmax": lambda: softce.softmax(x), "log_softmax": lambda: softce.log_softmax(x),
         "logsumexp": lambda: softce.logsumexp(x),
         "cross_entropy_grad": lambda: softce.cross_entropy_grad(x, labels),
         "copy": lambda: copy(x, dst), "read": lambda: read(x, sums),
         "logsumexp_in_cache": logsumexp_in_cache}
for f in calls.values():
    f()
asm = copy.inspect_asm(copy.signatures[0])
widest = next((r for r in ("zmm", "ymm", "xmm") if re.search(r"%" + r + r"\\d", asm)), "none")
print(json.dumps({"cpu": numba.config.CPU_NAME or "host", "widest_register": widest,
                  "threads": numba.get_num_threads()}), flush=True)
for line in sys.stdin:
    f = calls[line.strip()]
    start = time.perf_counter()
    f()
    print(json.dumps(time.perf_counter() - start), flush=True)
"""


def measure(isas: list[str], rows: int, n: int, rounds: int) -> dict[str, object]:
    """{isa: {"info": worker info, "times": {call: [seconds]}}} from interleaved rounds."""
    calls = [*FLOOR_OF, *FLOORS]
    workers = {isa: Worker(WORKER, [str(rows), str(n)], env={**os.environ, **ISAS[isa]},
                          cwd=ROOT) for isa in isas}
    times = {isa: {c: [] for c in calls} for isa in isas}
    rng = random.Random(0)
    try:
        for _ in range(rounds):
            for call in calls:
                for isa in rng.sample(isas, len(isas)):
                    times[isa][call].append(workers[isa].time(call))
    finally:
        for w in workers.values():
            w.close()
    return {isa: {"info": workers[isa].info, "times": times[isa]} for isa in isas}


def summarise(measured: dict[str, object]) -> dict[str, dict[str, dict[str, float]]]:
    """Per isa and call: median and p10/p90 in ms, and for functions the ratio to the floor."""
    out = {}
    for isa, got in measured.items():
        rows = {}
        for call, t in got["times"].items():
            ms = [v * 1e3 for v in t]
            rows[call] = {"median_ms": statistics.median(ms), "p10_ms": percentile(ms, 0.1),
                          "p90_ms": percentile(ms, 0.9)}
        for function, floor in FLOOR_OF.items():
            rows[function]["floor"] = floor
            rows[function]["ratio"] = rows[function]["median_ms"] / rows[floor]["median_ms"]
        out[isa] = rows
    return out


def markdown(data: dict[str, object]) -> str:
    """BENCHMARKS.md's section for ``data`` (the JSON)."""
    isas = list(data["summary"])
    head = "| function | " + " | ".join(
        f"{isa} ({data['workers'][isa]['widest_register']}) ms, p10-p90 | ratio to floor"
        for isa in isas) + " |"
    lines = [SECTION, "",
             f"`python -m benchmarks.isa`, {data['shape']} float32, {data['rounds']} "
             f"interleaved rounds, {data['workers'][isas[0]]['threads']} threads, "
             f"{data['date']}, load average {data['load_average'][0]} before and "
             f"{data['load_average'][1]} after (2 is the 2 cores busy). Each instruction "
             "set is a worker process whose Numba compiles for it (`NUMBA_CPU_NAME`/"
             "`NUMBA_CPU_FEATURES`; haswell = AVX2 + FMA); the "
             "register in brackets is the widest the compiled copy uses. Floors of the same "
             "worker: a copy of the logits into a warm buffer, a read of them (a sum per row); "
             f"the bar is {BAR_RATIO}x its floor. logsumexp_in_cache is the logsumexp kernel's "
             "arithmetic alone: the generated kernel called on a 1 MiB block of the rows (in "
             "the cores' caches) until it has taken as many elements as the logits hold.",
             "", head,
             "|---|" + "--:|--:|" * len(isas)]
    for call in [*FLOOR_OF, *FLOORS]:
        cells = []
        for isa in isas:
            r = data["summary"][isa][call]
            cells.append(f"{r['median_ms']:.1f} ({r['p10_ms']:.1f}-{r['p90_ms']:.1f})")
            cells.append(f"{r['ratio']:.2f}x {r['floor']}" if "ratio" in r else "")
        lines.append(f"| {call} | " + " | ".join(cells) + " |")
    lines += ["", "![ratio to the floor per instruction set](benchmarks/isa.png)", ""]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """``section`` in place of the file's section of the same heading, or at its end."""
    text = path.read_text() if path.exists() else ""
    if SECTION in text:
        start = text.index(SECTION)
        end = text.find("\n## ", start + len(SECTION))
        rest = "" if end < 0 else "\n" + text[end + 1:]  # a blank line before the next
        text = text[:start] + section + rest
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def plot(data: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    isas, functions = list(data["summary"]), list(FLOOR_OF)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(isas)
    for j, isa in enumerate(isas):
        ratios = [data["summary"][isa][f]["ratio"] for f in functions]
        ax.bar([i + j * width for i in range(len(functions))], ratios, width,
               label=f"{isa} ({data['workers'][isa]['widest_register']})")
    ax.axhline(BAR_RATIO, color="k", ls="--", lw=1, label=f"bar {BAR_RATIO}x")
    ax.set_xticks([i + width * (len(isas) - 1) / 2 for i in range(len(functions))], functions)
    ax.set_ylabel("median / floor's median")
    ax.set_title(f"{data['shape']} float32: time over the same run's floor")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.isa",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="4096x32000", help="ROWSxCLASSES")
    parser.add_argument("--rounds", type=int, default=30, help="calls per function and ISA")
    parser.add_argument("--isa", default=",".join(ISAS), help=f"a subset of {','.join(ISAS)}")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "isa.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "isa.png")
    parser.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    isas = [s.strip() for s in args.isa.split(",")]
    unknown = sorted(set(isas) - set(ISAS))
    if unknown:
        parser.error(f"unknown --isa {unknown}; choose from {sorted(ISAS)}")
    rows, n = (int(v) for v in args.shape.lower().split("x"))
    load_before = os.getloadavg()[0]
    measured = measure(isas, rows, n, args.rounds)
    data = {"shape": args.shape, "rounds": args.rounds,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "workers": {isa: m["info"] for isa, m in measured.items()},
            "summary": summarise(measured),
            "times_s": {isa: m["times"] for isa, m in measured.items()}}
    args.json.write_text(json.dumps(data, indent=1) + "\n")
    plot(data, args.plot)
    section = markdown(data)
    write_section(args.markdown, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
