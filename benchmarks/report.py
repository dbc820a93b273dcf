"""The run written down: BENCHMARKS.md, one function per section, and every sample as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks.bar import BAR_SHAPE
from benchmarks.cases import FUNCTIONS, PROB_CE, Shape
from benchmarks.cells import format_ms, format_speedup, table_cells, table_columns
from benchmarks.implementations import IMPLS, REFERENCE_CALLS
from benchmarks.load import LOAD_WARN
from benchmarks.timing import NO_CACHE, Row, check_tolerance

#: The ``## `` sections the benchmark writes; it keeps every other one when it rewrites.
GENERATED_SECTIONS = ("## Machine", "## Copy bandwidth", "## The bar", "## Results",
                      "## Preallocated outputs", "## Startup", "## What the references run",
                      "## Plot")

Lines = list[str]


def _md_table(header: list[str], body: list[list[str]], numeric: bool = True) -> str:
    """A Markdown table; the first column left-aligned, the others right-aligned when
    ``numeric``."""
    align = ["---" if i == 0 or not numeric else "--:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def header_section(data: dict[str, object]) -> Lines:
    """The title, what ran when, how it was timed, the machine's other load, skipped
    references."""
    out = ["# Benchmarks", "",
           "<!-- Written by `softce bench`; it keeps any `## ` section it does not write "
           "itself when it rewrites this file. -->", "",
           f"Measured by `scripts/bench.py` (`softce bench`) on {data['date']} at commit "
           f"`{data['code']['git_commit']}`: `{data['command']}`."]
    if data.get("code_changed"):
        out += ["", "**The kernels or softce's modules changed on disk during this run "
                "(another commit landed): the timings may mix two versions. Run it again.**"]
    out += ["", "Every call is made as a user makes it: NumPy arrays in, fresh outputs allocated "
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
            "one after another."]
    total = data.get("load_total")
    if total:
        busy = [k for k, v in data["load"].items() if v and v["others"] > LOAD_WARN]
        out += ["", f"Other processes used {total['others']:.1%} of the machine's CPU time "
                f"during the run (hypervisor steal {total['steal']:.1%})"
                + (f"; **over {LOAD_WARN:.0%} while {', '.join(busy)} ran, so those "
                   "timings are disturbed**." if busy else ".")]
    if data["skipped"]:
        out.append("")
        out += [f"**{ref} skipped**: {why}." for ref, why in data["skipped"].items()]
    return out


def machine_section(info: dict[str, object]) -> Lines:
    """## Machine: CPU, OS, versions, threads, OpenBLAS, thread pools, huge pages."""
    out = ["## Machine", "",
           f"- CPU: {info['cpu_model']} (family {info.get('CPU family', '?')}, model "
           f"{info.get('Model', '?')}), {info['cores_available']} cores available "
           f"({info.get('Thread(s) per core', '?')} thread per core), "
           f"{info.get('memory_gib', '?')} GiB memory; SIMD: {info['simd']}",
           f"- OS: {info['os']}; Python {info['python']}",
           "- Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())]
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
    return out


def copy_section(data: dict[str, object]) -> Lines:
    """## Copy bandwidth: the copies measured in the same run."""
    mib = data["copy_mib"]
    return ["## Copy bandwidth (same run)", "",
            f"A {mib} MiB float32 array copied; GB/s counts read + write "
            f"(2 x {mib} MiB per copy). A fresh destination pays its page "
            "faults, as a fresh output does.", "",
            _md_table(["copy", "ms", "GB/s"], [[k, f"{v['ms']:.1f}", f"{v['GB/s']:.1f}"]
                                               for k, v in data["copy"].items()])]


def bar_section(data: dict[str, object], rows: list[Row]) -> Lines:
    """## The bar: each speedup against its bar, and this run's reference figures beside
    those of the machine the bar was set on (nothing when the bar shape did not run)."""
    bars = data["bar"]
    if not bars:
        return []
    body = [[b["function"], b["reference"], f"{b['softce_ms']:.1f}",
             f"{b['reference_ms']:.1f}", format_speedup(b["ratio"]), f"{b['need']:.0f}x",
             "met" if b["met"] else f"**missed** (needs <= {b['target_ms']:.1f} ms)"]
            for b in bars]
    found = {(r.function, i): t.median * 1e3 for r in rows if r.shape.key == BAR_SHAPE
             for i, t in r.timings.items()}
    two_thread_copy = next(iter(data["copy"].values()))["ms"]
    measured = [f"a {data['copy_mib']} MiB 2-thread copy {two_thread_copy:.0f} ms"]
    if ("cross_entropy_grad", "PyTorch") in found:
        measured += [f"PyTorch CE forward+backward "
                     f"{found[('cross_entropy_grad', 'PyTorch')]:.0f} ms",
                     f"PyTorch log_softmax {found[('log_softmax', 'PyTorch')]:.0f} ms"]
    return [f"## The bar: {BAR_SHAPE[0]}x{BAR_SHAPE[1]} {BAR_SHAPE[2]}", "",
            _md_table(["function", "vs", "softce ms", "reference ms", "speedup", "bar",
                       "result"], body), "",
            "The figures given for the machine the bar was set on: a 500 MiB copy with "
            "two threads ~30-40 ms, PyTorch CE forward+backward ~1.3-1.5 s, PyTorch "
            "log_softmax ~0.33 s. Measured here in this run: " + ", ".join(measured) + "."]


def results_section(data: dict[str, object], rows: list[Row]) -> Lines:
    """## Results: one table per shape, with the other load while it ran and any reference
    whose result differs from softce's."""
    refs: list[str] = data["references"]
    out = ["## Results"]
    by_shape: dict[Shape, list[Row]] = {}
    for row in rows:
        by_shape.setdefault(row.shape, []).append(row)
    for shape, srows in by_shape.items():
        size = shape.logits_bytes / 2**20
        busy = (data.get("load") or {}).get(shape.label)
        other = f"; other processes {busy['others']:.1%} of the CPU" if busy else ""
        if busy and "compact_stall" in busy:
            other += f"; {busy['compact_stall']} huge-page compaction stalls"
        out += ["", f"### {shape.label} (logits {size:.1f} MiB{other})", "",
                _md_table(table_columns(refs),
                          [table_cells(r, refs, data["copy_gbps"]) for r in srows])]
        bad = [f"{r.function} vs {ref}: {t.error:.1e}" for r in srows
               for ref, t in r.timings.items()
               if t.error is not None and t.error > check_tolerance(shape.dtype)]
        if bad:
            out += ["", "Results differing from softce's (max |a - b| / max |b|): "
                    + "; ".join(bad)]
    return out


def _fresh_of(rows: list[Row], function: str) -> float | None:
    """softce's median fresh-output time for ``function`` at the bar shape."""
    for r in rows:
        if r.shape.key == BAR_SHAPE and r.function == function:
            return r.timings["softce"].median
    return None


def preallocated_section(data: dict[str, object], rows: list[Row]) -> Lines:
    """## Preallocated outputs: ``out=`` calls beside the fresh-output ones, with and without
    softce's output cache (nothing when the bar shape did not run)."""
    pre = data.get("preallocated")
    if not pre:
        return []
    impls = [i for i in IMPLS if any(i in v for v in pre.values())]
    body = [[f] + [format_ms(v.get(i)) for i in impls]
            + [format_ms(_fresh_of(rows, f)), format_ms(v.get(NO_CACHE))]
            for f, v in pre.items()]
    return [f"## Preallocated outputs, {BAR_SHAPE[0]}x{BAR_SHAPE[1]} {BAR_SHAPE[2]}", "",
            "The same calls writing into an existing, already touched array "
            "(`out=`; for cross_entropy_grad `out=` the gradient buffer): the cost of the "
            "kernels without the page faults of a fresh output. Not part of the bar. "
            "Beside them, softce's fresh-output calls as in the bar (large outputs reuse "
            "the buffers of dead ones: `softce.buffers`) and with that cache off "
            "(`softce.buffers.configure(0)`: every output a new `np.empty` whose pages "
            "fault on the first write).", "",
            _md_table(["function"] + [f"{i} ms (out=)" for i in impls]
                      + ["softce ms (fresh)", "softce ms (fresh, cache off)"], body)]


def startup_section(startup: dict[str, object] | None) -> Lines:
    """## Startup: cold and warm first calls, import and whole-process times (nothing when
    the startup was not measured)."""
    if not startup:
        return []
    cold, warm = startup["cold"], startup["warm"]
    body = [[k, f"{cold['first_call_s'][k] * 1e3:.0f}",
             f"{warm['first_call_s'][k] * 1e3:.1f}",
             f"{warm['second_call_s'][k] * 1e3:.3f}"]
            for k in cold["first_call_s"]]
    body.append(["`import softce`", f"{cold['import_softce_s'] * 1e3:.0f}",
                 f"{warm['import_softce_s'] * 1e3:.1f}", ""])
    body.append(["whole process", f"{cold['process_wall_s'] * 1e3:.0f}",
                 f"{warm['process_wall_s'] * 1e3:.0f}", ""])
    return ["## Startup", "",
            "Each in a fresh `python` process on a 64x1000 float32 input. Cold: "
            "`NUMBA_CACHE_DIR` set to an empty directory, so each function's first call "
            "compiles its kernel (the first one also starts LLVM). Warm: the same with "
            f"the cache that run wrote, median of {startup['repeats']} processes."
            + (f" Other processes used {startup['load']['others']:.1%} of the CPU "
               "meanwhile." if startup.get("load") else ""), "",
            _md_table(["first call", "cold ms", "warm ms", "second call ms"], body), "",
            f"Warm import: `{startup['warm_command']}` takes "
            f"{warm['softmax_process_wall_s'] * 1e3:.0f} ms as a whole process (median "
            f"of {startup['repeats']}; `python -c 'import numpy'` takes "
            f"{warm['numpy_process_wall_s'] * 1e3:.0f} ms)."]


def references_section(refs: list[str]) -> Lines:
    """## What the references run: each reference's code for each function."""
    body = [[f] + [f"`{REFERENCE_CALLS[ref][f]}`" for ref in refs]
            for f in (*FUNCTIONS, PROB_CE)]
    return ["## What the references run", "",
            "`r = np.arange(rows)`, `labels` int64 class labels, `p` a probability target "
            "(`cross_entropy_probs`, only for shapes up to 8.4 M elements); every "
            "cross-entropy is the mean over rows. softce: `softce.<function>(x, ...)` "
            "with the defaults (`cross_entropy_grad` returns (loss, dlogits)). PyTorch: "
            "`torch.from_numpy` is zero-copy and counted in the call; for the gradient a "
            "fresh leaf with `requires_grad_(True)` per call, so each call allocates a "
            "fresh `.grad` as softce allocates a fresh dlogits. Returned results are freed "
            "outside the timed region.", "",
            _md_table(["function", *refs], body, numeric=False)]


def plot_section(path: Path, plot_path: Path | None) -> Lines:
    """## Plot: the PNG, linked relative to the report (nothing without a plot)."""
    if plot_path is None:
        return []
    rel = os.path.relpath(plot_path, path.resolve().parent)
    return ["## Plot", "", f"![time per call]({Path(rel).as_posix()})"]


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


def write_markdown(path: Path, data: dict[str, object], rows: list[Row],
                   plot_path: Path | None) -> None:
    """Write the report to ``path``: the benchmark's sections, then the hand-written ``## ``
    sections ``path`` already held."""
    sections = [header_section(data), machine_section(data["machine"]), copy_section(data),
                bar_section(data, rows), results_section(data, rows),
                preallocated_section(data, rows), startup_section(data.get("startup")),
                references_section(data["references"]), plot_section(path, plot_path)]
    text = "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = kept_sections(path)
    path.write_text(text + ("\n" + kept if kept else ""))


def write_json(path: Path, data: dict[str, object], rows: list[Row]) -> None:
    """``data`` and every sample of every case, as JSON."""
    results = [
        {"rows": r.shape.rows, "classes": r.shape.classes, "dtype": r.shape.dtype,
         "function": r.function, "bytes_moved": r.shape.bytes_moved(r.function),
         "timings": {k: {"median_s": t.median, "samples_s": t.samples,
                         "max_rel_error_vs_softce": t.error}
                     for k, t in r.timings.items()}}
        for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**data, "results": results}, indent=1, default=str) + "\n")
