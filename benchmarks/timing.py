"""Measuring: timed calls, softce and the references taking turns in interleaved rounds,
their medians, and the floors beside them (copy bandwidth, preallocated outputs)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from benchmarks.cases import Shape, make_inputs
from benchmarks.implementations import CALLS, softce_calls

COPY_BYTES = 512 << 20
SETTLE_S = 0.02  # pause before each block of timed calls

#: bench_preallocated's key for softce's fresh-output calls with the output cache off.
NO_CACHE = "softce, output cache off"


def _as_arrays(result: object) -> list[np.ndarray]:
    items = result if isinstance(result, tuple) else (result,)
    out = []
    for item in items:
        if hasattr(item, "detach"):  # a torch tensor
            item = item.detach().numpy()
        out.append(np.asarray(item, dtype=np.float64 if np.ndim(item) == 0 else None))
    return out


def max_rel_error(result: object, expected: object) -> float:
    """max |a - b| / max |b| over each output (loss, then gradient for the CE gradient)."""
    worst = 0.0
    for a, b in zip(_as_arrays(result), _as_arrays(expected)):
        if a.shape != b.shape:
            return float("inf")
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if b.size else 0.
        worst = max(worst, err / scale if scale else err)
    return worst


def check_tolerance(dtype: str) -> float:
    """The largest max_rel_error from softce's result that a reference may show in ``dtype``."""
    return 1e-4 if dtype == "float32" else 1e-9


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 0) -> list[float]:
    """Seconds per call, after ``warmup`` untimed calls; the returned result is freed outside
    the timed region."""
    samples = []
    gc.collect()
    time.sleep(SETTLE_S)  # let the previous implementation's OpenMP threads stop spinning
    for _ in range(warmup):
        fn()  # its result is freed at once
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = fn()
            t1 = time.perf_counter()
            del res
            samples.append(t1 - t0)
    finally:
        if enabled:
            gc.enable()
    return samples


@dataclass
class Timing:
    """One implementation's samples for one case."""

    samples: list[float]
    error: float | None = None  # max relative difference from softce's result

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Row:
    """One (shape, function) case: every implementation's timing."""

    shape: Shape
    function: str
    timings: dict[str, Timing] = field(default_factory=dict)

    def ratio(self, ref: str) -> float | None:
        if "softce" not in self.timings or ref not in self.timings:
            return None
        return self.timings[ref].median / self.timings["softce"].median

    def gbps(self, impl: str = "softce") -> float | None:
        if impl not in self.timings:
            return None
        return self.shape.bytes_moved(self.function) / self.timings[impl].median / 1e9


def split_repeats(repeats: int, rounds: int) -> list[int]:
    """``repeats`` calls spread evenly over ``rounds`` blocks: block i holds
    floor((i + 1) r / R) - floor(i r / R) calls, so fewer calls than rounds land in rounds
    spread over the whole run (some blocks then hold none)."""
    return [(i + 1) * repeats // rounds - i * repeats // rounds for i in range(rounds)]


def bench_shape(shape: Shape, refs: list[str], repeats: int, ref_repeats: int,
                log: Callable[[str], None], rounds: int | None = None) -> list[Row]:
    """Time every function of ``shape``: softce and each reference in turn, ``rounds``
    times (default and at most ``repeats``: one softce call per round), so that each
    implementation's calls spread over the same stretch of time and a slow stretch of the
    machine meets them alike. Each block starts with an untimed call: the first call after
    another library's pays for the memory that library freed (fresh pages), whichever
    implementation it is."""
    rounds = min(rounds or repeats, repeats)
    inp = make_inputs(shape)
    calls = {impl: CALLS[impl](inp) for impl in ("softce", *refs)}
    blocks = {impl: split_repeats(ref_repeats if impl in refs else repeats, rounds)
              for impl in calls}
    rows = []
    for function in shape.functions():
        row = Row(shape, function)
        expected = calls["softce"][function]()  # warm-up (and compile) call
        row.timings["softce"] = Timing([])
        for ref in refs:
            result = calls[ref][function]()  # warm-up
            row.timings[ref] = Timing([], max_rel_error(result, expected))
            del result
        del expected
        for block in range(rounds):
            for impl, timing in row.timings.items():
                if blocks[impl][block]:
                    timing.samples += time_calls(calls[impl][function], blocks[impl][block],
                                                 warmup=1)
        parts = [f"{impl} {t.median * 1e3:.2f} ms" for impl, t in row.timings.items()]
        log(f"{shape.label:>22} {function:<20} " + ", ".join(parts))
        rows.append(row)
    return rows


def bench_preallocated(shape: Shape, refs: list[str], repeats: int,
                       log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """softce (and PyTorch) writing into preallocated outputs: the kernels without the page
    faults of a fresh output; and softce's fresh outputs with the output cache off (each
    output a new np.empty, every page faulted). Medians in seconds, {function: {impl: s}}."""
    import softce
    from softce import buffers

    inp = make_inputs(shape)
    x, labels = inp.x, inp.labels
    buf = np.ones_like(x)  # touched: no page faults in the timed calls
    out: dict[str, dict[str, float]] = {}
    calls = {
        "softmax": {"softce": lambda: softce.softmax(x, out=buf)},
        "log_softmax": {"softce": lambda: softce.log_softmax(x, out=buf)},
        "cross_entropy_grad": {
            "softce": lambda: softce.cross_entropy_grad(x, labels, out=buf)},
    }
    if "PyTorch" in refs:
        import torch

        tbuf = torch.from_numpy(buf)
        calls["softmax"]["PyTorch"] = lambda: torch.softmax(torch.from_numpy(x), 1, out=tbuf)
        calls["log_softmax"]["PyTorch"] = (
            lambda: torch.log_softmax(torch.from_numpy(x), 1, out=tbuf))
    fresh = softce_calls(inp)  # the bar's calls, timed again with the output cache off
    for function, impls in calls.items():
        out[function] = {}
        for impl, fn in impls.items():
            fn()
            out[function][impl] = statistics.median(time_calls(fn, repeats))
        limit = buffers.configure(0)  # fresh outputs from np.empty: every page faulted
        try:
            out[function][NO_CACHE] = statistics.median(time_calls(fresh[function], repeats))
        finally:
            buffers.configure(limit)
        log(f"{shape.label:>22} {function:<20} preallocated: " + ", ".join(
            f"{k} {v * 1e3:.2f} ms" for k, v in out[function].items()))
    return out


def _numba_copy():
    import numba

    @numba.njit(parallel=True, cache=False)
    def copy(src, dst):
        for i in numba.prange(src.size):
            dst[i] = src[i]

    return copy


def measure_copy(nbytes: int, repeats: int) -> dict[str, dict[str, float]]:
    """Copy bandwidth (read + write = 2 x nbytes per copy), median of ``repeats``."""
    import numba

    copy = _numba_copy()
    src = np.ones(nbytes // 4, np.float32)
    dst = np.zeros_like(src)
    copy(src, dst)
    cases = {
        f"Numba prange copy, {numba.get_num_threads()} threads, preallocated destination":
            lambda: copy(src, dst),
        "np.copyto (1 thread), preallocated destination": lambda: np.copyto(dst, src),
        f"Numba prange copy, {numba.get_num_threads()} threads, fresh np.empty destination":
            lambda: copy(src, np.empty_like(src)),
        "src.copy() (1 thread), fresh destination": lambda: src.copy(),
    }
    out = {}
    for name, fn in cases.items():
        fn()
        t = statistics.median(time_calls(fn, repeats))
        out[name] = {"ms": t * 1e3, "GB/s": 2 * nbytes / t / 1e9}
    return out
