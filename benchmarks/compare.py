"""softce at two commits, interleaved: did a change make the functions slower?

    python -m benchmarks.compare BASE [HEAD] [--shape 4096x32000] [--dtype float32] [--rounds 40]

Each commit is checked out into a temporary git worktree (HEAD: the working tree as it is) and
served by a worker process that imports softce from there, makes the same inputs (same seed)
and times one call of a function on request; the rounds alternate the two workers in a random
order, so a slow stretch of the machine meets both alike. Reported per function: the median
and the 10th-90th percentile range of each side, and the ratio of the medians (HEAD / BASE).
The workers run one at a time; generated/ of each commit is that commit's own.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.worker import Worker, percentile

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "cross_entropy_grad")

WORKER = """
import importlib.util, json, sys, time
tree = sys.argv[1]
sys.path.insert(0, tree)
spec = importlib.util.spec_from_file_location(
    "softce.generated", f"{tree}/generated/__init__.py",
    submodule_search_locations=[f"{tree}/generated"])
import softce
generated = importlib.util.module_from_spec(spec)
sys.modules["softce.generated"] = generated
spec.loader.exec_module(generated)
import numpy as np
rows, n, dtype = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(0)
x = rng.standard_normal((rows, n), dtype=dtype)
labels = rng.integers(0, n, rows)
calls = {"softmax": lambda: softce.softmax(x), "log_softmax": lambda: softce.log_softmax(x),
         "logsumexp": lambda: softce.logsumexp(x),
         "cross_entropy_grad": lambda: softce.cross_entropy_grad(x, labels)}
for f in calls.values():
    f()
print(json.dumps({"softce": softce.__file__}), flush=True)
for line in sys.stdin:
    f = calls[line.strip()]
    start = time.perf_counter()
    f()
    print(json.dumps(time.perf_counter() - start), flush=True)
"""


@contextlib.contextmanager
def checkout(rev: str | None) -> Iterator[Path]:
    """The source tree of ``rev`` (a temporary worktree), or the working tree for None."""
    if rev is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="softce-compare-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree),
                        rev], check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tree)], check=True)


def compare(base: str, head: str | None, rows: int, n: int, rounds: int,
            dtype: str = "float32") -> dict[str, dict[str, list[float]]]:
    """{function: {"base": times, "head": times}} from interleaved rounds."""
    with checkout(base) as base_tree, checkout(head) as head_tree:
        workers = {side: Worker(WORKER, [str(tree), str(rows), str(n), dtype])
                   for side, tree in (("base", base_tree), ("head", head_tree))}
        assert workers["base"].info["softce"] != workers["head"].info["softce"]
        times: dict[str, dict[str, list[float]]] = {f: {"base": [], "head": []}
                                                    for f in FUNCTIONS}
        rng = random.Random(0)
        try:
            for _ in range(rounds):
                for function in FUNCTIONS:
                    for side in rng.sample(sorted(workers), 2):
                        times[function][side].append(workers[side].time(function))
        finally:
            for w in workers.values():
                w.close()
    return times


def report(times: dict[str, dict[str, list[float]]], base: str, head: str) -> str:
    lines = [f"| function | {base} ms (p10-p90) | {head} ms (p10-p90) | {head} / {base} |",
             "|---|--:|--:|--:|"]
    for function, sides in times.items():
        cells = []
        for side in ("base", "head"):
            t = [v * 1e3 for v in sides[side]]
            cells.append(f"{statistics.median(t):.1f} ({percentile(t, 0.1):.1f}-"
                         f"{percentile(t, 0.9):.1f})")
        ratio = statistics.median(sides["head"]) / statistics.median(sides["base"])
        lines.append(f"| {function} | {cells[0]} | {cells[1]} | {ratio:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the commit to compare against")
    parser.add_argument("head", nargs="?", help="the other commit (default: the working tree)")
    parser.add_argument("--shape", default="4096x32000", help="ROWSxCLASSES")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--rounds", type=int, default=40, help="calls per function and side")
    args = parser.parse_args(argv)
    rows, n = (int(v) for v in args.shape.lower().split("x"))
    start = time.time()
    times = compare(args.base, args.head, rows, n, args.rounds, args.dtype)
    print(f"{args.shape} {args.dtype}, {args.rounds} interleaved rounds, "
          f"{time.time() - start:.0f} s")
    print(report(times, args.base, args.head or "working tree"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
