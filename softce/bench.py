"""Benchmark softce against NumPy, SciPy and PyTorch (CPU) in one run.

Every call is made as a user makes it: NumPy arrays in, fresh outputs allocated by the call.
Each (shape, function, implementation) is warmed up once, then timed ``--repeats`` times
(``--ref-repeats`` for the references) in ``--rounds`` blocks, each after one untimed call:
softce and the references take turns, by default one softce call per round with the
references' calls spread evenly among the rounds, so a stretch of slow machine meets them all
alike. The median is reported. The machine's copy bandwidth is measured in the same run, and two
subprocesses time the cold first call (an empty Numba cache) and the warm import.

Bytes moved (for GB/s): logits read once + every output written once + labels or target
probabilities read once. softmax/log_softmax: 2 x logits; logsumexp: logits + one value per
row; cross_entropy: logits + labels (or target) + one loss per row; cross_entropy_grad:
2 x logits + labels + one loss per row. A copy counts read + write (2 x its size).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

FUNCTIONS = ("softmax", "log_softmax", "logsumexp", "cross_entropy", "cross_entropy_grad")
PROB_CE = "cross_entropy_probs"  # cross_entropy against a probability target (small shapes)
PROB_CE_MAX_ELEMENTS = 1 << 23  # 8192 x 1000 and smaller get the probability-target row
REFERENCES = ("NumPy", "SciPy", "PyTorch")
IMPLS = ("softce",) + REFERENCES

DEFAULT_SHAPES = "65536x10,8192x1000,4096x32000,1024x128256,8192x1000:float64"
QUICK_SHAPES = "512x10,256x1000,64x32000,256x1000:float64"
DEFAULT_REPEATS = 15  # softce calls are cheap; more of them steady the median
DEFAULT_REF_REPEATS = 7
QUICK_REPEATS = 3
COPY_BYTES = 512 << 20
SETTLE_S = 0.02  # pause before each block of timed calls
LOAD_WARN = 0.05  # warn when other processes use more of the CPU than this

# The bar: (rows, classes, dtype) -> [(function, reference, minimum speedup)].
BAR_SHAPE = (4096, 32000, "float32")
BAR = ([("cross_entropy_grad", "PyTorch", 10.0)]
       + [(f, "PyTorch", 3.0) for f in ("softmax", "log_softmax", "logsumexp")]
       + [(f, "SciPy", 3.0) for f in FUNCTIONS])

REFERENCE_CALLS = {
    "NumPy": {
        "softmax": "m = x.max(1, keepdims); e = exp(x - m) (in place); e /= e.sum(1)",
        "log_softmax": "s = x - m; s -= log(exp(s).sum(1))",
        "logsumexp": "m + log(exp(x - m).sum(1))",
        "cross_entropy": "mean(logsumexp(x) - x[r, labels])",
        PROB_CE: "mean(logsumexp(x) * p.sum(1) - (x * p).sum(1))",
        "cross_entropy_grad": "e = exp(x - m); loss from log(e.sum) + m - x[r, labels]; "
                              "e *= 1 / (n * e.sum(1)); e[r, labels] -= 1 / n",
    },
    "SciPy": {
        "softmax": "scipy.special.softmax(x, axis=1)",
        "log_softmax": "scipy.special.log_softmax(x, axis=1)",
        "logsumexp": "scipy.special.logsumexp(x, axis=1)",
        "cross_entropy": "-log_softmax(x, axis=1)[r, labels].mean()",
        PROB_CE: "-(log_softmax(x, axis=1) * p).sum(1).mean()",
        "cross_entropy_grad": "l = log_softmax(x, axis=1); loss = -l[r, labels].mean(); "
                              "g = exp(l) (in place); g[r, labels] -= 1; g /= n",
    },
    "PyTorch": {
        "softmax": "torch.softmax(torch.from_numpy(x), 1)",
        "log_softmax": "torch.log_softmax(torch.from_numpy(x), 1)",
        "logsumexp": "torch.logsumexp(torch.from_numpy(x), 1)",
        "cross_entropy": "F.cross_entropy(torch.from_numpy(x), torch.from_numpy(labels))",
        PROB_CE: "F.cross_entropy(torch.from_numpy(x), torch.from_numpy(p))",
        "cross_entropy_grad": "t = torch.from_numpy(x).requires_grad_(True); "
                              "loss = F.cross_entropy(t, labels_t); loss.backward(); t.grad",
    },
}


# shapes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    rows: int
    classes: int
    dtype: str = "float32"

    @property
    def label(self) -> str:
        return f"{self.rows}x{self.classes} {self.dtype}"

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.rows, self.classes, self.dtype)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def logits_bytes(self) -> int:
        return self.rows * self.classes * self.itemsize

    def functions(self) -> tuple[str, ...]:
        small = self.rows * self.classes <= PROB_CE_MAX_ELEMENTS
        return FUNCTIONS + ((PROB_CE,) if small else ())

    def bytes_moved(self, function: str) -> int:
        """Logits read once + outputs written once + labels / target read once."""
        logits, per_row, labels = self.logits_bytes, self.rows * self.itemsize, self.rows * 8
        return {
            "softmax": 2 * logits,
            "log_softmax": 2 * logits,
            "logsumexp": logits + per_row,
            "cross_entropy": logits + labels + per_row,
            PROB_CE: 2 * logits + per_row,
            "cross_entropy_grad": 2 * logits + labels + per_row,
        }[function]


_DTYPES = {"float32": "float32", "f32": "float32", "float64": "float64", "f64": "float64"}


def parse_shapes(text: str) -> list[Shape]:
    """``ROWSxCLASSES[:float32|float64]``, comma-separated."""
    shapes = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        dims, _, dtype = item.partition(":")
        try:
            rows, classes = (int(v) for v in dims.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"shape {item!r} is not ROWSxCLASSES[:float32|float64]") from None
        if rows < 1 or classes < 1:
            raise argparse.ArgumentTypeError(f"shape {item!r} must have positive sizes")
        if (dtype or "float32") not in _DTYPES:
            raise argparse.ArgumentTypeError(f"shape {item!r}: dtype must be float32 or float64")
        shapes.append(Shape(rows, classes, _DTYPES[dtype or "float32"]))
    if not shapes:
        raise argparse.ArgumentTypeError("no shapes given")
    return shapes


# implementations -------------------------------------------------------------------------

@dataclass
class Inputs:
    x: np.ndarray
    labels: np.ndarray
    probs: np.ndarray | None

    @property
    def rows(self) -> np.ndarray:
        return np.arange(self.x.shape[0])


def make_inputs(shape: Shape, seed: int = 0) -> Inputs:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((shape.rows, shape.classes), dtype=np.float32)
    x *= 3
    x = x.astype(shape.dtype, copy=False)
    labels = rng.integers(0, shape.classes, shape.rows, dtype=np.int64)
    probs = None
    if PROB_CE in shape.functions():
        probs = rng.random((shape.rows, shape.classes)).astype(shape.dtype)
        probs /= probs.sum(axis=1, keepdims=True)
    return Inputs(x, labels, probs)


def softce_calls(inp: Inputs) -> dict[str, Callable[[], object]]:
    import softce

    x, labels, probs = inp.x, inp.labels, inp.probs
    return {
        "softmax": lambda: softce.softmax(x),
        "log_softmax": lambda: softce.log_softmax(x),
        "logsumexp": lambda: softce.logsumexp(x),
        "cross_entropy": lambda: softce.cross_entropy(x, labels),
        PROB_CE: lambda: softce.cross_entropy(x, probs),
        "cross_entropy_grad": lambda: softce.cross_entropy_grad(x, labels),
    }


def _np_lse_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, exp(x - m)) with m the row max, shape (rows, 1)."""
    m = x.max(axis=1, keepdims=True)
    e = x - m
    np.exp(e, out=e)
    return m, e


def _np_logsumexp(x: np.ndarray) -> np.ndarray:
    m, e = _np_lse_parts(x)
    s = e.sum(axis=1)
    del e
    return np.log(s) + m[:, 0]


def numpy_calls(inp: Inputs) -> dict[str, Callable[[], object]]:
    x, labels, probs, r = inp.x, inp.labels, inp.probs, inp.rows
    n = x.shape[0]

    def softmax():
        _, e = _np_lse_parts(x)
        e /= e.sum(axis=1, keepdims=True)
        return e

    def log_softmax():
        m = x.max(axis=1, keepdims=True)
        s = x - m
        lse = np.log(np.exp(s).sum(axis=1, keepdims=True))
        s -= lse
        return s

    def cross_entropy():
        return np.mean(_np_logsumexp(x) - x[r, labels])

    def cross_entropy_probs():
        return np.mean(_np_logsumexp(x) * probs.sum(axis=1) - (x * probs).sum(axis=1))

    def cross_entropy_grad():
        m, e = _np_lse_parts(x)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) + m[:, 0] - x[r, labels])
        e *= 1 / (s * n)
        e[r, labels] -= x.dtype.type(1 / n)
        return loss, e

    return {"softmax": softmax, "log_softmax": log_softmax,
            "logsumexp": lambda: _np_logsumexp(x), "cross_entropy": cross_entropy,
            PROB_CE: cross_entropy_probs, "cross_entropy_grad": cross_entropy_grad}


def scipy_calls(inp: Inputs) -> dict[str, Callable[[], object]]:
    from scipy import special

    x, labels, probs, r = inp.x, inp.labels, inp.probs, inp.rows
    n = x.shape[0]

    def cross_entropy_grad():
        lsm = special.log_softmax(x, axis=1)
        loss = -lsm[r, labels].mean()
        g = np.exp(lsm, out=lsm)
        g[r, labels] -= 1
        g /= n
        return loss, g

    return {
        "softmax": lambda: special.softmax(x, axis=1),
        "log_softmax": lambda: special.log_softmax(x, axis=1),
        "logsumexp": lambda: special.logsumexp(x, axis=1),
        "cross_entropy": lambda: -special.log_softmax(x, axis=1)[r, labels].mean(),
        PROB_CE: lambda: -(special.log_softmax(x, axis=1) * probs).sum(axis=1).mean(),
        "cross_entropy_grad": cross_entropy_grad,
    }


def torch_calls(inp: Inputs) -> dict[str, Callable[[], object]]:
    import torch
    import torch.nn.functional as F

    x, labels, probs = inp.x, inp.labels, inp.probs

    def cross_entropy_grad():
        t = torch.from_numpy(x).requires_grad_(True)  # a fresh leaf: a fresh .grad each call
        loss = F.cross_entropy(t, torch.from_numpy(labels))
        loss.backward()
        return loss.detach(), t.grad

    return {
        "softmax": lambda: torch.softmax(torch.from_numpy(x), 1),
        "log_softmax": lambda: torch.log_softmax(torch.from_numpy(x), 1),
        "logsumexp": lambda: torch.logsumexp(torch.from_numpy(x), 1),
        "cross_entropy": lambda: F.cross_entropy(torch.from_numpy(x), torch.from_numpy(labels)),
        PROB_CE: lambda: F.cross_entropy(torch.from_numpy(x), torch.from_numpy(probs)),
        "cross_entropy_grad": cross_entropy_grad,
    }


CALLS = {"softce": softce_calls, "NumPy": numpy_calls, "SciPy": scipy_calls,
         "PyTorch": torch_calls}


def available_references(wanted: list[str]) -> tuple[list[str], dict[str, str]]:
    """The references that can run, and why each other one is skipped."""
    have, skipped = [], {}
    for ref in wanted:
        module = {"NumPy": "numpy", "SciPy": "scipy.special", "PyTorch": "torch"}[ref]
        try:
            __import__(module)
        except ImportError as exc:
            skipped[ref] = f"not installed ({exc})"
        else:
            have.append(ref)
    return have, skipped


# measuring -------------------------------------------------------------------------------

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
    samples: list[float]
    error: float | None = None  # max relative difference from softce's result

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Row:
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


def check_tolerance(dtype: str) -> float:
    return 1e-4 if dtype == "float32" else 1e-9


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


#: bench_preallocated's key for softce's fresh-output calls with the output cache off.
NO_CACHE = "softce, output cache off"


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


_STARTUP_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import softce
t2 = time.perf_counter()
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 1000)).astype(np.float32)
labels = rng.integers(0, 1000, 64)
p = np.full_like(x, 1e-3)
calls = [
    ("softmax", lambda: softce.softmax(x)),
    ("log_softmax", lambda: softce.log_softmax(x)),
    ("logsumexp", lambda: softce.logsumexp(x)),
    ("cross_entropy", lambda: softce.cross_entropy(x, labels)),
    ("cross_entropy_probs", lambda: softce.cross_entropy(x, p)),
    ("cross_entropy_grad", lambda: softce.cross_entropy_grad(x, labels)),
]
first, second = {}, {}
for name, call in calls[: int(sys.argv[1])]:
    t = time.perf_counter(); call(); first[name] = time.perf_counter() - t
    t = time.perf_counter(); call(); second[name] = time.perf_counter() - t
print(json.dumps({"import_numpy_s": t1 - t0, "import_softce_s": t2 - t1,
                  "first_call_s": first, "second_call_s": second}))
"""

_WARM_IMPORT = ("import numpy as np, softce; "
                "softce.softmax(np.ones((64, 1000), np.float32))")


def _run_python(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess {args[:2]} failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def measure_startup(repeats: int, n_functions: int = 6) -> dict[str, object]:
    """Cold first calls (an empty NUMBA_CACHE_DIR) and warm import + first call, each in a
    fresh interpreter."""
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="softce-bench-cache-") as cache:
        cold_env = dict(env, NUMBA_CACHE_DIR=cache)
        wall, stdout = _run_python(["-c", _STARTUP_SCRIPT, str(n_functions)], cold_env)
        cold = json.loads(stdout)
        cold["process_wall_s"] = wall
        # The same script again with the cache it just wrote: warm.
        warm_runs = []
        for _ in range(repeats):
            wall, stdout = _run_python(["-c", _STARTUP_SCRIPT, str(n_functions)], cold_env)
            run = json.loads(stdout)
            run["process_wall_s"] = wall
            warm_runs.append(run)
        walls = [_run_python(["-c", _WARM_IMPORT], cold_env)[0] for _ in range(repeats)]
        bare = [_run_python(["-c", "import numpy"], cold_env)[0] for _ in range(repeats)]
    med = statistics.median
    warm = {
        "import_softce_s": med(r["import_softce_s"] for r in warm_runs),
        "first_call_s": {k: med(r["first_call_s"][k] for r in warm_runs)
                         for k in warm_runs[0]["first_call_s"]},
        "second_call_s": {k: med(r["second_call_s"][k] for r in warm_runs)
                          for k in warm_runs[0]["second_call_s"]},
        "process_wall_s": med(r["process_wall_s"] for r in warm_runs),
        "softmax_process_wall_s": med(walls),
        "numpy_process_wall_s": med(bare),
    }
    return {"cold": cold, "warm": warm, "repeats": repeats,
            "warm_command": f"python -c {_WARM_IMPORT!r}"}


class CpuMonitor:
    """CPU time used on the machine by other processes (and stolen by the hypervisor) while
    the benchmark runs: other load on 2 cores shows up directly in the timings."""

    VMSTAT = ("compact_stall", "thp_fault_fallback")  # huge-page faults that stalled / fell back

    def __init__(self) -> None:
        self.start = self._sample()
        self.vm_start = self._vmstat()

    @classmethod
    def _vmstat(cls) -> dict[str, int]:
        try:
            with open("/proc/vmstat") as fh:
                pairs = (line.split() for line in fh)
                return {k: int(v) for k, v in pairs if k in cls.VMSTAT}
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _sample() -> tuple[float, float, float, float] | None:
        try:
            with open("/proc/stat") as fh:
                vals = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = (vals[0] + vals[1] + vals[2] + vals[5] + vals[6]) / tick
        steal = (vals[7] if len(vals) > 7 else 0) / tick
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return time.perf_counter(), busy, steal, own

    def report(self) -> dict[str, float] | None:
        """Fractions of the machine's total CPU time (all cores) since the start."""
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall, busy, steal, own = (b - a for a, b in zip(self.start, end))
        total = wall * (os.cpu_count() or 1)
        vm_end = self._vmstat()
        vm = {k: vm_end[k] - self.vm_start[k] for k in vm_end if k in self.vm_start}
        return {"others": max(busy - own, 0.0) / total, "steal": steal / total,
                "own": own / total, **vm}


def wait_for_idle(limit_s: float, log: Callable[[str], None], window_s: float = 2.0) -> None:
    """Return once other processes used under LOAD_WARN of the CPU over ``window_s``, or after
    ``limit_s`` seconds."""
    t0 = time.perf_counter()
    said = False
    while True:
        monitor = CpuMonitor()
        time.sleep(window_s)
        report = monitor.report()
        if report is None or report["others"] < LOAD_WARN:
            return
        if time.perf_counter() - t0 > limit_s:
            log(f"the CPU is still {report['others']:.0%} busy after {limit_s:.0f} s; going on")
            return
        if not said:
            log(f"other processes use {report['others']:.0%} of the CPU; waiting")
            said = True


# machine ---------------------------------------------------------------------------------

def machine_info(refs: list[str]) -> dict[str, object]:
    import numba

    import softce

    info: dict[str, object] = {}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        lscpu = ""
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    info["cpu_model"] = fields.get("Model name", platform.processor() or "unknown")
    for key in ("CPU family", "Model", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache"):
        if key in fields:
            info[key] = fields[key]
    flags = fields.get("Flags", "").split()
    info["simd"] = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16")
                            if f in flags) or "unknown"
    info["cores_available"] = len(os.sched_getaffinity(0)) if hasattr(
        os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
        info["memory_gib"] = round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    info["os"] = platform.platform()
    info["python"] = platform.python_version()
    versions = {"softce": softce.__version__, "numpy": np.__version__,
                "numba": numba.__version__}
    try:
        import llvmlite

        versions["llvmlite"] = llvmlite.__version__
    except ImportError:
        pass
    for mod in ("scipy", "torch", "matplotlib"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = "not installed"
    info["versions"] = versions
    info["numba_threads"] = numba.get_num_threads()
    try:
        info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:
        info["numba_threading_layer"] = "not initialised"
    if "PyTorch" in refs:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    info["openblas_env"] = {k: os.environ.get(k, "unset")
                            for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

        info["numpy_simd_dispatch"] = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: p.get(k) for k in ("internal_api", "num_threads", "architecture", "prefix")}
            for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    thp = {}
    for name in ("enabled", "defrag"):
        try:
            text = Path(f"/sys/kernel/mm/transparent_hugepage/{name}").read_text()
            thp[name] = text.split("[")[1].split("]")[0]
        except (OSError, IndexError):
            pass
    if thp:
        info["transparent_hugepages"] = thp
    return info


def code_state() -> dict[str, str]:
    """The commit and a hash of the code the timed calls run (the generated kernels and the
    softce modules, this benchmark excepted), to tell if it changed during the run."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    files = sorted((root / "generated" / "cpu").glob("*.py")) + sorted(
        f for f in (root / "softce").glob("*.py") if f.name != "bench.py")
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    state = {"sources_sha256": digest.hexdigest()[:16], "git_commit": "unknown"}
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False, cwd=root)
        state["git_commit"] = head.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "generated/cpu",
                                "softce", ":(exclude)softce/bench.py"],
                               capture_output=True, text=True, check=False, cwd=root)
        if dirty.stdout.strip():
            state["git_commit"] += " + uncommitted changes to generated/cpu or softce"
    except OSError:
        pass
    return state


# report ----------------------------------------------------------------------------------

def _ms(t: float | None) -> str:
    if t is None:
        return "–"
    ms = t * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def _x(r: float | None) -> str:
    return "–" if r is None else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def bar_results(rows: list[Row]) -> list[dict[str, object]]:
    found = {(r.shape.key, r.function): r for r in rows}
    out = []
    for function, ref, need in BAR:
        row = found.get((BAR_SHAPE, function))
        if row is None or ref not in row.timings:
            continue
        ratio = row.ratio(ref)
        softce_s = row.timings["softce"].median
        out.append({"function": function, "reference": ref, "need": need, "ratio": ratio,
                    "softce_ms": softce_s * 1e3, "reference_ms": row.timings[ref].median * 1e3,
                    "target_ms": row.timings[ref].median / need * 1e3,
                    "met": ratio >= need})
    return out


def table_columns(refs: list[str]) -> list[str]:
    cols = ["function", "softce ms", "min-max", "GB/s", "of copy"]
    for ref in refs:
        cols += [f"{ref} ms", f"vs {ref}"]
    return cols


def table_cells(row: Row, refs: list[str], copy_gbps: float | None) -> list[str]:
    gbps = row.gbps()
    frac = f"{gbps / copy_gbps:.0%}" if gbps and copy_gbps else "–"
    own = row.timings["softce"]
    spread = f"{_ms(min(own.samples))}-{_ms(max(own.samples))}"
    cells = [row.function, _ms(own.median), spread, f"{gbps:.1f}", frac]
    for ref in refs:
        t = row.timings.get(ref)
        cells += [_ms(t.median if t else None), _x(row.ratio(ref))]
    return cells


def _md_table(header: list[str], body: list[list[str]], numeric: bool = True) -> str:
    """A Markdown table; the first column left-aligned, the others right-aligned when
    ``numeric``."""
    align = ["---" if i == 0 or not numeric else "--:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def write_markdown(path: Path, data: dict[str, object], rows: list[Row],
                   plot_path: Path | None) -> None:
    refs: list[str] = data["references"]
    info = data["machine"]
    copy = data["copy"]
    copy_gbps = data["copy_gbps"]
    startup = data.get("startup")
    out = ["# Benchmarks", "",
           "<!-- Written by `softce bench`; it keeps any `## ` section it does not write "
           "itself when it rewrites this file. -->", ""]
    out.append(f"Measured by `scripts/bench.py` (`softce bench`) on {data['date']} at commit "
               f"`{data['code']['git_commit']}`: `{data['command']}`.")
    if data.get("code_changed"):
        out += ["", "**The kernels or softce's modules changed on disk during this run "
                "(another commit landed): the timings may mix two versions. Run it again.**"]
    out.append("")
    out.append("Every call is made as a user makes it: NumPy arrays in, fresh outputs allocated "
               "by the call (page faults included). Each case is warmed up once, then timed "
               f"{data['repeats']} times for softce and {data['ref_repeats']} times for each "
               f"reference, in {data.get('rounds', 1)} rounds where softce and the references "
               "take turns, the references' calls spread evenly among the rounds (so a slow "
               "stretch of the machine meets them alike), each block after one untimed call of "
               "the same implementation; the tables show the median (`min-max`: softce's "
               "fastest and slowest call). `vs X` is X's time / softce's time "
               "(above 1: softce is faster). GB/s counts the logits read once, every output "
               "written once and the labels or target read once (softmax and log_softmax: "
               "2 x logits; logsumexp and cross_entropy: logits + one value per row; "
               "cross_entropy_grad: 2 x logits + labels + loss); `of copy` compares it with "
               "the 2-thread Numba copy below. All implementations ran in the same process, "
               "one after another.")
    total = data.get("load_total")
    if total:
        busy = [k for k, v in data["load"].items() if v and v["others"] > LOAD_WARN]
        out += ["", f"Other processes used {total['others']:.1%} of the machine's CPU time "
                f"during the run (hypervisor steal {total['steal']:.1%})"
                + (f"; **over {LOAD_WARN:.0%} while {', '.join(busy)} ran, so those "
                   "timings are disturbed**." if busy else ".")]
    if data["skipped"]:
        out.append("")
        for ref, why in data["skipped"].items():
            out.append(f"**{ref} skipped**: {why}.")
    out += ["", "## Machine", ""]
    out.append(f"- CPU: {info['cpu_model']} (family {info.get('CPU family', '?')}, model "
               f"{info.get('Model', '?')}), {info['cores_available']} cores available "
               f"({info.get('Thread(s) per core', '?')} thread per core), "
               f"{info.get('memory_gib', '?')} GiB memory; SIMD: {info['simd']}")
    out.append(f"- OS: {info['os']}; Python {info['python']}")
    out.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    threads = f"- Threads: Numba {info['numba_threads']} ({info['numba_threading_layer']} layer)"
    if "torch_threads" in info:
        threads += f", PyTorch {info['torch_threads']} (`torch.set_num_threads`)"
    out.append(threads + "; NumPy and SciPy ufuncs are single-threaded")
    out.append("- OpenBLAS environment in the benchmark's process: " + ", ".join(
        f"{k}={v}" for k, v in info["openblas_env"].items()) + " (none of the NumPy/SciPy "
        "references calls BLAS; NumPy's own SIMD loops run: "
        + ", ".join(info.get("numpy_simd_dispatch", [])[-4:]) + ")")
    if isinstance(info.get("threadpools"), list):
        out.append("- threadpoolctl: " + "; ".join(
            f"{p['internal_api']} {p['num_threads']} threads"
            + (f" ({p['architecture']})" if p.get("architecture") else "")
            for p in info["threadpools"]))
    if info.get("transparent_hugepages"):
        thp = info["transparent_hugepages"]
        out.append(f"- Transparent huge pages: enabled={thp.get('enabled', '?')}, "
                   f"defrag={thp.get('defrag', '?')} (NumPy asks for huge pages on large "
                   "arrays, so a fresh output costs few page faults, but a fault may stall "
                   "on compaction when memory is fragmented: the per-shape headings count "
                   "those stalls)")
    out += ["", "## Copy bandwidth (same run)", "",
            f"A {data['copy_mib']} MiB float32 array copied; GB/s counts read + write "
            f"(2 x {data['copy_mib']} MiB per copy). A fresh destination pays its page "
            "faults, as a fresh output does.", ""]
    out.append(_md_table(["copy", "ms", "GB/s"],
                         [[k, f"{v['ms']:.1f}", f"{v['GB/s']:.1f}"] for k, v in copy.items()]))
    bars = data["bar"]
    if bars:
        out += ["", f"## The bar: {BAR_SHAPE[0]}x{BAR_SHAPE[1]} {BAR_SHAPE[2]}", ""]
        body = [[b["function"], b["reference"], f"{b['softce_ms']:.1f}",
                 f"{b['reference_ms']:.1f}", _x(b["ratio"]), f"{b['need']:.0f}x",
                 "met" if b["met"] else f"**missed** (needs <= {b['target_ms']:.1f} ms)"]
                for b in bars]
        out.append(_md_table(["function", "vs", "softce ms", "reference ms", "speedup",
                              "bar", "result"], body))
        found = {(r.function, i): t.median * 1e3 for r in rows if r.shape.key == BAR_SHAPE
                 for i, t in r.timings.items()}
        two_thread_copy = next(iter(copy.values()))["ms"]
        measured = [f"a {data['copy_mib']} MiB 2-thread copy {two_thread_copy:.0f} ms"]
        if ("cross_entropy_grad", "PyTorch") in found:
            measured += [f"PyTorch CE forward+backward "
                         f"{found[('cross_entropy_grad', 'PyTorch')]:.0f} ms",
                         f"PyTorch log_softmax {found[('log_softmax', 'PyTorch')]:.0f} ms"]
        out += ["", "The figures given for the machine the bar was set on: a 500 MiB copy with "
                "two threads ~30-40 ms, PyTorch CE forward+backward ~1.3-1.5 s, PyTorch "
                "log_softmax ~0.33 s. Measured here in this run: " + ", ".join(measured) + "."]
    out += ["", "## Results", ""]
    by_shape: dict[Shape, list[Row]] = {}
    for row in rows:
        by_shape.setdefault(row.shape, []).append(row)
    for shape, srows in by_shape.items():
        size = shape.logits_bytes / 2**20
        busy = (data.get("load") or {}).get(shape.label)
        other = f"; other processes {busy['others']:.1%} of the CPU" if busy else ""
        if busy and "compact_stall" in busy:
            other += f"; {busy['compact_stall']} huge-page compaction stalls"
        out += [f"### {shape.label} (logits {size:.1f} MiB{other})", ""]
        out.append(_md_table(table_columns(refs),
                             [table_cells(r, refs, copy_gbps) for r in srows]))
        bad = [f"{r.function} vs {ref}: {t.error:.1e}" for r in srows
               for ref, t in r.timings.items()
               if t.error is not None and t.error > check_tolerance(shape.dtype)]
        if bad:
            out += ["", "Results differing from softce's (max |a - b| / max |b|): "
                    + "; ".join(bad)]
        out.append("")
    pre = data.get("preallocated")
    if pre:
        out += [f"## Preallocated outputs, {BAR_SHAPE[0]}x{BAR_SHAPE[1]} {BAR_SHAPE[2]}", "",
                "The same calls writing into an existing, already touched array "
                "(`out=`; for cross_entropy_grad `out=` the gradient buffer): the cost of the "
                "kernels without the page faults of a fresh output. Not part of the bar. "
                "Beside them, softce's fresh-output calls as in the bar (large outputs reuse "
                "the buffers of dead ones: `softce.buffers`) and with that cache off "
                "(`softce.buffers.configure(0)`: every output a new `np.empty` whose pages "
                "fault on the first write).", ""]
        impls = [i for i in IMPLS if any(i in v for v in pre.values())]
        body = [[f] + [_ms(v.get(i)) for i in impls] + [_ms(fresh_of(rows, f)),
                                                         _ms(v.get(NO_CACHE))]
                for f, v in pre.items()]
        out.append(_md_table(["function"] + [f"{i} ms (out=)" for i in impls]
                             + ["softce ms (fresh)", "softce ms (fresh, cache off)"], body))
        out.append("")
    if startup:
        cold, warm = startup["cold"], startup["warm"]
        out += ["## Startup", "",
                "Each in a fresh `python` process on a 64x1000 float32 input. Cold: "
                "`NUMBA_CACHE_DIR` set to an empty directory, so each function's first call "
                "compiles its kernel (the first one also starts LLVM). Warm: the same with "
                f"the cache that run wrote, median of {startup['repeats']} processes."
                + (f" Other processes used {startup['load']['others']:.1%} of the CPU "
                   "meanwhile." if startup.get("load") else ""), ""]
        body = [[k, f"{cold['first_call_s'][k] * 1e3:.0f}",
                 f"{warm['first_call_s'][k] * 1e3:.1f}",
                 f"{warm['second_call_s'][k] * 1e3:.3f}"]
                for k in cold["first_call_s"]]
        body.append(["`import softce`", f"{cold['import_softce_s'] * 1e3:.0f}",
                     f"{warm['import_softce_s'] * 1e3:.1f}", ""])
        body.append(["whole process", f"{cold['process_wall_s'] * 1e3:.0f}",
                     f"{warm['process_wall_s'] * 1e3:.0f}", ""])
        out.append(_md_table(["first call", "cold ms", "warm ms", "second call ms"], body))
        out += ["", f"Warm import: `{startup['warm_command']}` takes "
                f"{warm['softmax_process_wall_s'] * 1e3:.0f} ms as a whole process (median "
                f"of {startup['repeats']}; `python -c 'import numpy'` takes "
                f"{warm['numpy_process_wall_s'] * 1e3:.0f} ms).", ""]
    out += ["## What the references run", "",
            "`r = np.arange(rows)`, `labels` int64 class labels, `p` a probability target "
            "(`cross_entropy_probs`, only for shapes up to 8.4 M elements); every "
            "cross-entropy is the mean over rows. softce: `softce.<function>(x, ...)` "
            "with the defaults (`cross_entropy_grad` returns (loss, dlogits)). PyTorch: "
            "`torch.from_numpy` is zero-copy and counted in the call; for the gradient a "
            "fresh leaf with `requires_grad_(True)` per call, so each call allocates a "
            "fresh `.grad` as softce allocates a fresh dlogits. Returned results are freed "
            "outside the timed region.", ""]
    body = [[f] + [f"`{REFERENCE_CALLS[ref][f]}`" for ref in refs]
            for f in (*FUNCTIONS, PROB_CE)]
    out.append(_md_table(["function", *refs], body, numeric=False))
    if plot_path is not None:
        rel = os.path.relpath(plot_path, path.resolve().parent)
        out += ["", "## Plot", "", f"![time per call]({Path(rel).as_posix()})"]
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = kept_sections(path)
    path.write_text("\n".join(out) + "\n" + ("\n" + kept if kept else ""))


GENERATED_SECTIONS = ("## Machine", "## Copy bandwidth", "## The bar", "## Results",
                      "## Preallocated outputs", "## Startup", "## What the references run",
                      "## Plot")


def kept_sections(path: Path) -> str:
    """The ``## `` sections of an existing report that the benchmark does not write (sections
    others added by hand), to carry over when it rewrites the file."""
    if not path.exists():
        return ""
    sections: list[list[str]] = []
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    kept = ["\n".join(sec).rstrip() for sec in sections
            if not sec[0].startswith(GENERATED_SECTIONS)]
    return "\n\n".join(kept) + "\n" if kept else ""


def fresh_of(rows: list[Row], function: str) -> float | None:
    for r in rows:
        if r.shape.key == BAR_SHAPE and r.function == function:
            return r.timings["softce"].median
    return None


def write_plot(path: Path, rows: list[Row], refs: list[str]) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    by_shape: dict[Shape, list[Row]] = {}
    for row in rows:
        by_shape.setdefault(row.shape, []).append(row)
    n = len(by_shape)
    ncols = 2 if n > 1 else 1
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, 3.8 * nrows), squeeze=False)
    impls = ["softce", *refs]
    colors = {"softce": "#1f77b4", "NumPy": "#8c8c8c", "SciPy": "#2ca02c",
              "PyTorch": "#d62728"}
    width = 0.8 / len(impls)
    for ax, (shape, srows) in zip(axes.flat, by_shape.items()):
        xs = np.arange(len(srows))
        for k, impl in enumerate(impls):
            ms = [r.timings[impl].median * 1e3 if impl in r.timings else np.nan for r in srows]
            pos = xs + (k - (len(impls) - 1) / 2) * width
            ax.bar(pos, ms, width, label=impl, color=colors.get(impl))
            if impl == "softce":
                continue
            for p, v, r in zip(pos, ms, srows):  # the speedup of softce over this bar
                ratio = r.ratio(impl)
                if ratio is not None and np.isfinite(v):
                    ax.annotate(_x(ratio), (p, v), textcoords="offset points", xytext=(0, 2),
                                ha="center", va="bottom", rotation=90, fontsize=6)
        ax.set_yscale("log")
        ax.margins(y=0.25)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xticks(xs)
        ax.set_xticklabels([r.function.replace("cross_entropy", "CE") for r in srows],
                           rotation=20, fontsize=8)
        ax.set_ylabel("ms per call (log)")
        ax.set_title(shape.label, fontsize=10)
        ax.grid(axis="y", which="both", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(impls), fontsize=9,
               bbox_to_anchor=(0.5, 0.975), frameon=False)
    fig.suptitle("Median time per call, fresh outputs (lower is better); "
                 "labels: reference time / softce time", y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def print_console(console, data: dict[str, object], rows: list[Row]) -> None:
    from rich.table import Table

    refs = data["references"]
    copy_tab = Table(title="Copy bandwidth (read + write)")
    for col in ("copy", "ms", "GB/s"):
        copy_tab.add_column(col, justify="left" if col == "copy" else "right")
    for k, v in data["copy"].items():
        copy_tab.add_row(k, f"{v['ms']:.1f}", f"{v['GB/s']:.1f}")
    console.print(copy_tab)
    by_shape: dict[Shape, list[Row]] = {}
    for row in rows:
        by_shape.setdefault(row.shape, []).append(row)
    for shape, srows in by_shape.items():
        tab = Table(title=f"{shape.label} ({shape.logits_bytes / 2**20:.1f} MiB)")
        for i, col in enumerate(table_columns(refs)):
            tab.add_column(col, justify="left" if i == 0 else "right")
        for r in srows:
            tab.add_row(*table_cells(r, refs, data["copy_gbps"]))
        console.print(tab)
    if data["bar"]:
        tab = Table(title=f"Bar: {BAR_SHAPE[0]}x{BAR_SHAPE[1]} {BAR_SHAPE[2]}")
        for col in ("function", "vs", "speedup", "bar", "result"):
            tab.add_column(col)
        for b in data["bar"]:
            tab.add_row(b["function"], b["reference"], _x(b["ratio"]), f"{b['need']:.0f}x",
                        "[green]met[/]" if b["met"] else
                        f"[red]missed[/] (softce {b['softce_ms']:.1f} ms, needs <= "
                        f"{b['target_ms']:.1f} ms)")
        console.print(tab)
    total = data.get("load_total")
    if total:
        style = "red" if total["others"] > LOAD_WARN else "default"
        console.print(f"[{style}]other processes used {total['others']:.1%} of the CPU during "
                      f"the run (steal {total['steal']:.1%})[/]")
    startup = data.get("startup")
    if startup:
        cold, warm = startup["cold"], startup["warm"]
        console.print("Cold first call (empty Numba cache), ms: " + ", ".join(
            f"{k} {v * 1e3:.0f}" for k, v in cold["first_call_s"].items()))
        console.print(f"Warm: import softce {warm['import_softce_s'] * 1e3:.0f} ms, first "
                      f"softmax {warm['first_call_s']['softmax'] * 1e3:.1f} ms, whole "
                      f"`import softce; softce.softmax(...)` process "
                      f"{warm['softmax_process_wall_s'] * 1e3:.0f} ms (`import numpy` alone "
                      f"{warm['numpy_process_wall_s'] * 1e3:.0f} ms)")
    for ref, why in data["skipped"].items():
        console.print(f"[yellow]{ref} skipped: {why}[/]")
    for r in rows:
        for impl, t in r.timings.items():
            if t.error is not None and t.error > check_tolerance(r.shape.dtype):
                console.print(f"[red]{r.shape.label} {r.function}: {impl}'s result differs "
                              f"from softce's by {t.error:.1e} (max |a - b| / max |b|)[/]")


# main ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softce bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"small shapes ({QUICK_SHAPES}), {QUICK_REPEATS} repeats, "
                             "a 64 MiB copy: a smoke run")
    parser.add_argument("--shapes", type=parse_shapes, default=None,
                        help="comma-separated ROWSxCLASSES[:float32|float64] "
                             f"(default {DEFAULT_SHAPES})")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed softce calls per case (default {DEFAULT_REPEATS})")
    parser.add_argument("--ref-repeats", type=int, default=None,
                        help="timed reference calls per case (default "
                             f"{DEFAULT_REF_REPEATS}, never more than --repeats)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="time each case in this many blocks per implementation, softce "
                             "and the references taking turns, so all of them meet the same "
                             "stretches of machine speed (default and at most --repeats: "
                             "one softce call per round)")
    parser.add_argument("--references", default=",".join(REFERENCES),
                        help="comma-separated subset of NumPy,SciPy,PyTorch (default: all "
                             "that are installed)")
    parser.add_argument("--output", type=Path, default=None,
                        help="the Markdown report (default BENCHMARKS.md; with --quick, "
                             "none unless given)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="the PNG plot (default benchmarks/bench.png; with --quick, none "
                             "unless given)")
    parser.add_argument("--json", type=Path, default=None,
                        help="every sample as JSON (default benchmarks/results.json; with "
                             "--quick, none unless given)")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                        help="before each shape, wait up to SECONDS for other processes to "
                             "leave the CPU idle (default 0: do not wait)")
    parser.add_argument("--retries", type=int, default=2,
                        help="with --wait-idle, run a shape again (at most this many times) "
                             "when other processes disturbed it (default 2)")
    parser.add_argument("--no-startup", action="store_true",
                        help="skip the cold-cache and warm-import subprocess timings")
    parser.add_argument("--startup-repeats", type=int, default=3,
                        help="warm-startup processes to take the median of (default 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = build_parser().parse_args(argv)
    shapes = args.shapes or parse_shapes(QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    ref_repeats = min(args.ref_repeats or (QUICK_REPEATS if args.quick else DEFAULT_REF_REPEATS),
                      repeats)
    rounds = repeats if args.rounds is None else min(args.rounds, repeats)
    if repeats < 1 or ref_repeats < 1 or rounds < 1:
        print("softce bench: --repeats, --ref-repeats and --rounds must be at least 1",
              file=sys.stderr)
        return 2
    wanted = [r.strip() for r in args.references.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in REFERENCES]
    if unknown:
        print(f"softce bench: unknown references {unknown}; choose from {REFERENCES}",
              file=sys.stderr)
        return 2
    # A smoke run writes files only where asked, so it never overwrites the real report.
    output = args.output or (None if args.quick else Path("BENCHMARKS.md"))
    plot = args.plot or (None if args.quick else Path("benchmarks/bench.png"))
    json_path = args.json or (None if args.quick else Path("benchmarks/results.json"))
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=150)

    refs, skipped = available_references(wanted)
    for ref in REFERENCES:
        if ref not in wanted:
            skipped[ref] = "not requested (--references)"
    if "PyTorch" in refs:
        import torch

        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                              else os.cpu_count() or 1)
    for ref, why in skipped.items():
        console.print(f"[yellow]{ref} reference skipped: {why}[/]")
    if os.environ.get("OPENBLAS_CORETYPE"):
        console.print(f"note: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} in this "
                      "process (the references call no BLAS routine)")

    started = time.perf_counter()
    code = code_state()
    monitor = CpuMonitor()
    log = console.log
    copy_bytes = COPY_BYTES // 8 if args.quick else COPY_BYTES
    log(f"copy bandwidth, {copy_bytes >> 20} MiB")
    copy = measure_copy(copy_bytes, max(repeats, 5))
    copy_gbps = next(iter(copy.values()))["GB/s"]

    rows: list[Row] = []
    preallocated = None
    load: dict[str, object] = {}
    for shape in shapes:
        for attempt in range(1 + (args.retries if args.wait_idle else 0)):
            if args.wait_idle:
                wait_for_idle(args.wait_idle, log)
            shape_monitor = CpuMonitor()
            shape_rows = bench_shape(shape, refs, repeats, ref_repeats, log, rounds)
            shape_pre = (bench_preallocated(shape, refs, repeats, log)
                         if shape.key == BAR_SHAPE else None)
            load[shape.label] = shape_monitor.report()
            gc.collect()
            disturbed = bool(load[shape.label]) and load[shape.label]["others"] > LOAD_WARN
            if disturbed:
                console.print(f"[red]other processes used {load[shape.label]['others']:.0%} "
                              f"of the CPU while {shape.label} ran (attempt {attempt + 1}): "
                              "its timings are disturbed[/]")
            else:
                break
        rows += shape_rows
        preallocated = shape_pre if shape_pre is not None else preallocated

    startup = None
    if not args.no_startup:
        log("startup: cold (empty Numba cache) and warm subprocesses")
        if args.wait_idle:
            wait_for_idle(args.wait_idle, log)
        startup_monitor = CpuMonitor()
        startup = dict(measure_startup(max(args.startup_repeats, 1)))
        startup["load"] = startup_monitor.report()

    data: dict[str, object] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["softce bench", *(sys.argv[1:] if argv is None else argv)]),
        "references": refs,
        "skipped": skipped,
        "repeats": repeats,
        "ref_repeats": ref_repeats,
        "rounds": rounds,
        "machine": machine_info(refs),
        "code": code,
        "code_changed": code_state()["sources_sha256"] != code["sources_sha256"],
        "copy": copy,
        "copy_mib": copy_bytes >> 20,
        "copy_gbps": copy_gbps,
        "bar": bar_results(rows),
        "preallocated": preallocated,
        "startup": startup,
        "load": load,
        "load_total": monitor.report(),
    }
    data["elapsed_s"] = time.perf_counter() - started
    plotted = plot is not None and write_plot(plot, rows, refs)
    if plot is not None and not plotted:
        console.print("[yellow]plot skipped: matplotlib is not installed[/]")
    if output is not None:
        write_markdown(output, data, rows, plot if plotted else None)
    if json_path is not None:
        data["results"] = [
            {"rows": r.shape.rows, "classes": r.shape.classes, "dtype": r.shape.dtype,
             "function": r.function, "bytes_moved": r.shape.bytes_moved(r.function),
             "timings": {k: {"median_s": t.median, "samples_s": t.samples,
                             "max_rel_error_vs_softce": t.error}
                         for k, t in r.timings.items()}}
            for r in rows]
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    print_console(console, data, rows)
    written = [str(p) for p in (output, plot if plotted else None, json_path) if p]
    console.print(f"done in {data['elapsed_s']:.0f} s"
                  + (f"; wrote {', '.join(written)}" if written else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
