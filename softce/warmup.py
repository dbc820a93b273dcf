"""Filling Numba's on-disk cache with the generated CPU kernels, in parallel processes.

A kernel compiles the declared signature a call needs on that call (``softce.lazy``): seconds
with an empty cache, milliseconds once the cache holds it. ``warmup()`` compiles every kernel's
signatures ahead of use, one kernel module per task, over a pool of processes (one per core by
default), each writing into the same cache (Numba's cache files are written atomically). The
processes are spawned, not forked: a forked child of a process that already ran a parallel
kernel is killed by GNU OpenMP.

``softce warmup`` runs it; ``softce generate --verify`` verifies over the same kind of pool,
and compiles the kernels in the background (``background``) while it derives: compiling
needs only the generated files, which a fresh checkout already holds.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

#: The label types a kernel with labels is compiled for, as its declared signatures name them.
LABELS = ("int32", "int64")
DTYPES = ("f32", "f64")


@dataclass(frozen=True)
class Compiled:
    """One kernel module warmed: its signatures compiled (or already cached), in seconds."""

    module: str
    signatures: int
    seconds: float


def modules() -> list[str]:
    """Every generated CPU kernel module, the longest first (a kernel's compile time grows
    with its source, so a pool's last task is a short one)."""
    from softce.generated import cpu

    names = sorted(set(cpu.KERNELS.values()))
    folder = Path(cpu.__file__).parent
    return sorted(names, key=lambda name: -(folder / f"{name}.py").stat().st_size)


def _labels_of(signature: Sequence[object]) -> set[str]:
    return {str(t.dtype) for t in signature if getattr(t, "dtype", None) is not None
            and str(t.dtype).startswith("int")}


def compile_module(module: str, labels: Sequence[str] = LABELS,
                   dtypes: Sequence[str] = DTYPES) -> Compiled:
    """Compile (or load from the cache) the declared signatures of ``module``'s kernels at
    ``dtypes`` whose labels are of ``labels`` (all, for a kernel without labels)."""
    start = time.perf_counter()
    kernels = importlib.import_module(f"softce.generated.cpu.{module}")
    count = 0
    for dtype in dtypes:
        kernel = getattr(kernels, f"{module}_{dtype}")
        for signature in getattr(kernel, "declared_signatures", ()):
            if _labels_of(signature) <= set(labels):
                kernel.compile(signature)
                count += 1
    return Compiled(module, count, time.perf_counter() - start)


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def workers_for(tasks: int, workers: int | None = None) -> int:
    """The pool's size: ``workers``, else one per core, never more than the tasks."""
    return max(1, min(workers or cores(), tasks))


def pool(workers: int) -> Executor:
    """A pool of ``workers`` spawned processes."""
    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"))


def warmup(workers: int | None = None, labels: Sequence[str] = LABELS,
           names: Iterable[str] | None = None,
           done: Callable[[Compiled], None] | None = None) -> list[Compiled]:
    """Compile every kernel module (or ``names``) into Numba's cache over ``workers``
    processes (1: in this process); ``done`` is called as each module finishes."""
    names = list(modules() if names is None else names)
    workers = workers_for(len(names), workers)
    results: list[Compiled] = []
    if workers == 1:
        for name in names:
            results.append(compile_module(name, labels))
            if done:
                done(results[-1])
        return results
    with pool(workers) as executor:
        for result in executor.map(compile_module, names, [tuple(labels)] * len(names)):
            results.append(result)
            if done:
                done(result)
    return results


@contextlib.contextmanager
def background(workers: int, labels: Sequence[str] = LABELS,
               names: Iterable[str] | None = None) -> Iterator[list]:
    """Within the block, ``workers`` processes compile the kernel modules (or ``names``) into
    Numba's cache; leaving it cancels the modules not started (the ones started finish on
    their own) without waiting. Yields the futures. A module that fails to compile there (a
    file being rewritten meanwhile) is compiled again where it is used."""
    names = list(modules() if names is None else names)
    executor = pool(workers_for(len(names), workers))
    try:
        yield [executor.submit(compile_module, name, tuple(labels)) for name in names]
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
