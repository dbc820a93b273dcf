"""softce.dask on a LocalCluster versus the in-memory API on the same machine.

Throughput: a (rows, classes) float32 array of logits (N(0, 9)), held in memory for the
in-memory API and generated and persisted on the cluster's workers for softce.dask (so
neither side pays to generate or move the input); each operation's outputs stay where they
were made (``persist`` on the cluster, a NumPy array in memory), and the best of
``--repeat`` runs is reported as GB/s of logits read. Chunkings: whole rows per chunk (the
blocks run the in-memory kernels) and the class axis split in 4 and 16 (D11 states merged
across chunks).

Overhead per chunk: an array small enough that the arithmetic is negligible, computed with
1 chunk and with many; (t_many - t_one) / (chunks - 1) is the cost Dask adds per chunk, on the
threaded scheduler and on the cluster.

    python scripts/bench_dask.py [--rows 4096] [--classes 32000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def best_of(fn, repeat: int, cleanup=None) -> float:
    """The fastest of ``repeat`` timed calls after a warm-up; cleanup() runs untimed after each."""
    times = []
    for attempt in range(repeat + 1):
        start = time.perf_counter()
        fn()
        if attempt:  # the first call warms: kernels loaded, pools allocated
            times.append(time.perf_counter() - start)
        if cleanup is not None:
            cleanup()
    return min(times)


def n_tasks(client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=32000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import dask
    import dask.array as da
    import distributed

    import softce
    import softce.dask as sd

    rows, classes = args.rows, args.classes
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((rows, classes), dtype=np.float32) * 3)
    labels = rng.integers(0, classes, rows)
    gbytes = x.nbytes / 1e9

    memory_ops = {
        "logsumexp": lambda: softce.logsumexp(x),
        "softmax": lambda: softce.softmax(x),
        "cross_entropy (labels)": lambda: softce.cross_entropy(x, labels),
        "cross_entropy_grad (labels)": lambda: softce.cross_entropy_grad(x, labels),
    }
    mem = {name: best_of(fn, args.repeat) for name, fn in memory_ops.items()}

    cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None,
                                       silence_logs=40)
    client = distributed.Client(cluster)
    row_chunk = max(1, rows // (4 * args.workers))
    chunkings = {
        "whole rows": (row_chunk, classes),
        "classes / 4": (row_chunk, -(-classes // 4)),
        "classes / 16": (row_chunk, -(-classes // 16)),
    }
    cl: dict[str, dict[str, float]] = {}
    for label, chunks in chunkings.items():
        drng = da.random.default_rng(0)  # made on the workers: no 500 MB graph to ship
        X = client.persist(drng.standard_normal((rows, classes), dtype=np.float32,
                                                chunks=chunks) * np.float32(3))
        L = client.persist(drng.integers(0, classes, rows, chunks=chunks[0]))
        distributed.wait([X, L])
        ops = {
            "logsumexp": lambda X=X: [sd.logsumexp(X)],
            "softmax": lambda X=X: [sd.softmax(X)],
            "cross_entropy (labels)": lambda X=X, L=L: [sd.cross_entropy(X, L)],
            "cross_entropy_grad (labels)": lambda X=X, L=L: list(sd.cross_entropy_grad(X, L)),
        }

        held: list = []
        baseline = n_tasks(client)

        def run(make, X=X, L=L, held=held):
            held.extend(client.persist(make()))
            distributed.wait(held)

        def release(held=held, baseline=baseline):
            # drop the last references and wait until the scheduler has forgotten the outputs,
            # so the next run computes them again rather than finding them
            held.clear()
            while n_tasks(client) > baseline:
                time.sleep(0.01)

        cl[label] = {name: best_of(lambda make=make: run(make), args.repeat, release)
                     for name, make in ops.items()}
        cl[label]["_chunks"] = float(np.prod(X.numblocks))
        client.cancel([X, L])

    # overhead per chunk: the same small array as 1 chunk and as many
    small = rng.standard_normal((2048, 2048), dtype=np.float32)
    small_labels = rng.integers(0, 2048, 2048)
    overhead = {}
    for sched in ("threads", "cluster"):
        times = {}
        for n_side in (1, 16):
            side = 2048 // n_side
            S = da.from_array(small, chunks=side)
            T = da.from_array(small_labels, chunks=side)
            if sched == "cluster":
                S, T = client.persist([S, T])
                distributed.wait([S, T])

                def go(S=S, T=T):
                    return client.compute(sd.cross_entropy(S, T), sync=True)
            else:
                def go(S=S, T=T):
                    return dask.compute(sd.cross_entropy(S, T), scheduler="threads")
            times[n_side * n_side] = best_of(go, args.repeat)
        n = max(times)
        overhead[sched] = (times[1], times[n], n, (times[n] - times[1]) / (n - 1))
    client.close()
    cluster.close()

    cpu = platform.processor() or platform.machine()
    print(f"# softce.dask benchmark: ({rows}, {classes}) float32 = {gbytes * 1e3:.0f} MB, "
          f"{args.workers} worker processes x 1 thread, {os.cpu_count()} CPUs ({cpu}), "
          f"best of {args.repeat}")
    header = ["operation", "in-memory"] + list(chunkings)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in memory_ops:
        cells = [name, f"{mem[name] * 1e3:.0f} ms ({gbytes / mem[name]:.1f} GB/s)"]
        for label in chunkings:
            t = cl[label][name]
            cells.append(f"{t * 1e3:.0f} ms ({gbytes / t:.1f} GB/s, {t / mem[name]:.1f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| chunks | 1 | " + " | ".join(f"{cl[label]['_chunks']:.0f}"
                                                  for label in chunkings) + " |")
    print("\n".join(lines))
    print()
    print("| scheduler | 1 chunk | many chunks | chunks | overhead per chunk |")
    print("|---|---|---|---|---|")
    for sched, (t1, tn, n, per) in overhead.items():
        print(f"| {sched} | {t1 * 1e3:.1f} ms | {tn * 1e3:.1f} ms | {n} | {per * 1e3:.2f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
