"""The benchmark (the ``benchmarks`` package beside ``softce/``) runs end to end on tiny shapes
and writes its report (nothing is timed here)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import cases, cli, implementations, report, startup, timing


def test_parse_shapes():
    assert cases.parse_shapes("4096x32000, 8192x1000:float64") == [
        cases.Shape(4096, 32000, "float32"), cases.Shape(8192, 1000, "float64")]
    for bad in ("4096", "0x10", "10x10:int8", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            cases.parse_shapes(bad)


FAKE_STARTUP = {  # the subprocesses are exercised by test_startup_subprocesses
    "cold": {"import_softce_s": 0.01, "process_wall_s": 3.0,
             "first_call_s": {"softmax": 2.0}, "second_call_s": {"softmax": 1e-4}},
    "warm": {"import_softce_s": 0.01, "process_wall_s": 0.5, "softmax_process_wall_s": 0.5,
             "numpy_process_wall_s": 0.1, "first_call_s": {"softmax": 0.3},
             "second_call_s": {"softmax": 1e-4}},
    "repeats": 1, "warm_command": "python -c '...'",
}


def test_quick_run_writes_report_and_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "measure_startup", lambda *args, **kwargs: FAKE_STARTUP)
    markdown, plot, results = tmp_path / "BENCH.md", tmp_path / "bench.png", tmp_path / "r.json"
    markdown.write_text("# Benchmarks\n\n## Results\n\nSTALE-RESULTS\n\n## Dask\n\n"
                        "HAND-WRITTEN\n\n### a subsection\n\nkept too\n")
    rc = cli.main(["--quick", "--shapes", "64x10,16x300", "--repeats", "1",
                   "--output", str(markdown), "--plot", str(plot), "--json", str(results)])
    assert rc == 0
    text = markdown.read_text()
    # Sections the benchmark does not write survive; its own are replaced.
    assert "STALE-RESULTS" not in text
    assert text.count("## Dask") == 1 and "HAND-WRITTEN" in text and "kept too" in text
    assert text.index("## Results") < text.index("## Dask")
    for name in cases.FUNCTIONS + (cases.PROB_CE,):
        assert f"| {name} |" in text
    for section in ("## Machine", "## Copy bandwidth", "## Results", "## Startup",
                    "64x10 float32", "16x300 float32", "NumPy ms", "SciPy ms"):
        assert section in text
    data = json.loads(results.read_text())
    functions = {r["function"] for r in data["results"]}
    assert functions == set(cases.FUNCTIONS + (cases.PROB_CE,))
    for r in data["results"]:
        assert r["timings"]["softce"]["median_s"] > 0
        for impl, t in r["timings"].items():  # every reference agrees with softce
            if impl != "softce":
                assert t["max_rel_error_vs_softce"] < 1e-4, (r["function"], impl)
    if importlib.util.find_spec("matplotlib") is not None:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "![time per call](bench.png)" in text
    else:
        assert not plot.exists()


ROOT = Path(__file__).resolve().parents[1]


def test_committed_report_is_reproduced_from_its_json(tmp_path):
    """BENCHMARKS.md and benchmarks/results.json, written together by the last full run: the
    report rendered again from the JSON's samples is the committed file, byte for byte, and so
    is the JSON (the format stays what the run wrote)."""
    committed_json = (ROOT / "benchmarks" / "results.json").read_text()
    data = json.loads(committed_json)
    rows = [timing.Row(cases.Shape(r["rows"], r["classes"], r["dtype"]), r["function"],
                       {impl: timing.Timing(t["samples_s"], t["max_rel_error_vs_softce"])
                        for impl, t in r["timings"].items()})
            for r in data.pop("results")]
    committed_md = (ROOT / "BENCHMARKS.md").read_text()
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(committed_md)  # its hand-written sections are kept
    report.write_markdown(md, data, rows, tmp_path / "benchmarks" / "bench.png")
    assert md.read_text() == committed_md
    out = tmp_path / "results.json"
    report.write_json(out, data, rows)
    assert out.read_text() == committed_json


def test_startup_subprocesses():
    """One function, cold (an empty NUMBA_CACHE_DIR) then warm, each in a fresh process."""
    measured = startup.measure_startup(repeats=1, n_functions=1)
    cold, warm = measured["cold"], measured["warm"]
    assert set(cold["first_call_s"]) == set(warm["first_call_s"]) == {"softmax"}
    assert cold["process_wall_s"] > 0 and warm["softmax_process_wall_s"] > 0


def test_missing_reference_is_skipped(tmp_path, monkeypatch):
    real_import = __import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", no_torch)
    refs, skipped = implementations.available_references(["NumPy", "PyTorch"])
    assert refs == ["NumPy"] and "PyTorch" in skipped


def test_split_repeats():
    assert timing.split_repeats(15, 3) == [5, 5, 5]
    assert timing.split_repeats(7, 3) == [2, 2, 3]
    assert timing.split_repeats(2, 3) == [0, 1, 1]
    assert timing.split_repeats(4, 1) == [4]
    spread = timing.split_repeats(7, 15)
    assert sum(spread) == 7 and set(spread) == {0, 1}
    calls = [i for i, n in enumerate(spread) if n]
    assert max(b - a for a, b in zip(calls, calls[1:])) <= 3  # spread over the whole run
    assert calls[0] <= 2 and calls[-1] == 14


def _record_turns(monkeypatch) -> list[tuple[str, int]]:
    """Make bench_shape's calls fake softce calls named after their implementation and
    record each timed block as (implementation, calls)."""
    order = []

    def fake_time_calls(fn, repeats, warmup=0):
        assert warmup == 1
        order.append((fn.__name__, repeats))
        return [1e-3] * repeats

    def calls(impl):
        def make(inp):
            out = {}
            for f in cases.FUNCTIONS + (cases.PROB_CE,):
                def call(f=f):
                    return implementations.softce_calls(inp)[f]()
                call.__name__ = impl
                out[f] = call
            return out
        return make

    monkeypatch.setattr(timing, "time_calls", fake_time_calls)
    monkeypatch.setattr(timing, "CALLS", {"softce": calls("softce"), "NumPy": calls("NumPy")})
    return order


def test_rounds_take_turns(monkeypatch):
    """Each implementation gets its repeats in `rounds` blocks, softce and the references
    alternating block by block."""
    order = _record_turns(monkeypatch)
    rows = timing.bench_shape(cases.Shape(8, 30), ["NumPy"], 5, 3, lambda msg: None, rounds=3)
    for row in rows:
        assert len(row.timings["softce"].samples) == 5
        assert len(row.timings["NumPy"].samples) == 3
    per_function = order[:6]
    assert per_function == [("softce", 1), ("NumPy", 1), ("softce", 2), ("NumPy", 1),
                            ("softce", 2), ("NumPy", 1)]


def test_default_rounds_are_one_softce_call_each(monkeypatch):
    """By default each round holds one softce call; the references' fewer calls fall in
    rounds spread over the whole case, never two NumPy blocks in a row."""
    order = _record_turns(monkeypatch)
    rows = timing.bench_shape(cases.Shape(8, 30), ["NumPy"], 9, 4, lambda msg: None)
    assert all(len(row.timings["softce"].samples) == 9 for row in rows)
    assert all(len(row.timings["NumPy"].samples) == 4 for row in rows)
    first = order[:13]
    assert all(n == 1 for _, n in first)
    assert [impl for impl, _ in first].count("softce") == 9
    assert all(a != b or a == "softce" for (a, _), (b, _) in zip(first, first[1:]))
    assert first[-1] == ("NumPy", 1)  # the references' calls reach the last round


def test_isa_workers_compile_for_their_instruction_set(tmp_path):
    """benchmarks.isa end to end on a tiny shape: the haswell worker's code uses no AVX-512
    register (so its times are AVX2 code), each function has its ratio to the floor of its
    own worker, and the BENCHMARKS.md section replaces itself and keeps the others."""
    from benchmarks import isa

    markdown = tmp_path / "B.md"
    markdown.write_text(f"# B\n\n{isa.SECTION}\n\nSTALE\n\n## Kept\n\nhand-written\n")
    args = ["--shape", "16x300", "--rounds", "2", "--json", str(tmp_path / "i.json"),
            "--plot", str(tmp_path / "i.png"), "--markdown", str(markdown)]
    assert isa.main(args) == 0
    data = json.loads((tmp_path / "i.json").read_text())
    assert data["workers"]["haswell"]["widest_register"] == "ymm"
    assert data["workers"]["haswell"]["cpu"] == "haswell"
    for summary in data["summary"].values():
        assert set(isa.FLOORS) <= set(summary) and summary["logsumexp_in_cache"]["median_ms"] > 0
        for function, floor in isa.FLOOR_OF.items():
            got = summary[function]
            assert got["ratio"] == pytest.approx(got["median_ms"] / summary[floor]["median_ms"])
    text = markdown.read_text()
    assert "STALE" not in text and text.count(isa.SECTION) == 1
    assert text.index(isa.SECTION) < text.index("## Kept") and "hand-written" in text
    assert (tmp_path / "i.png").stat().st_size > 0


def test_dispatch_benchmark_counts_each_calls_launches(tmp_path):
    """benchmarks.dispatch end to end (a subprocess: it runs in the CUDA simulator with every
    launch stubbed): each call's launches are counted (one per softmax family call; the
    label check or mask, the kernel and the mean's reductions for the losses), its host time
    is positive."""
    out = tmp_path / "dispatch.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.dispatch", "--calls", "100",
                          "--json", str(out)], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).parents[1])
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert all(r["median_us"] > 0 for r in results.values())
    assert results["softmax"]["launches"] == results["logsumexp"]["launches"] == 1
    deferred = results["cross_entropy_grad, out= (deferred labels)"]["launches"]
    assert deferred > results["cross_entropy_grad, out= (labels read back)"]["launches"] >= 2


def _bench_gpu():
    spec = importlib.util.spec_from_file_location(
        "bench_gpu", Path(__file__).resolve().parents[1] / "scripts" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_reports_both_dtypes_and_the_compiled_references(tmp_path, capsys):
    """bench_gpu.py without a GPU says so and exits 0; from a saved run (float32 and bfloat16,
    torch.compile's references on the large shape only) it prints every ratio and plots one
    panel per dtype."""
    bench = _bench_gpu()
    assert bench.main([]) == 0
    assert "no GPU benchmark run" in capsys.readouterr().out

    def result(dtype: str, shape: str, compiled: float) -> dict:
        functions = {name: {"softce ms": 1.0, "PyTorch ms": 2.0, "compiled ms": compiled,
                            "GB/s": 3000.0}
                     for name in ("softmax", "log_softmax", "logsumexp", "cross_entropy",
                                  "training step")}
        return {"shape": shape, "dtype": dtype, "functions": functions, "copy GB/s": 4000.0}

    saved = tmp_path / "gpu.json"
    saved.write_text(json.dumps({"device": "a GPU", "results": [
        result(dt, shape, c) for dt in ("float32", "bfloat16")
        for shape, c in (("8192x1000", float("nan")), ("4096x32000", 0.5))]}))
    plot = tmp_path / "gpu.png"
    assert bench.main(["--from-json", str(saved), "--plot", str(plot)]) == 0
    table = capsys.readouterr().out
    assert "| 4096x32000 | bfloat16 | training step | 1.000 | 2.000 | 2.00 | 0.500 | 0.50 | "\
        "3000 | 0.75 |" in table
    assert "| 8192x1000 | float32 | softmax | 1.000 | 2.000 | 2.00 |  |  | 3000 | 0.75 |" in table
    assert plot.stat().st_size > 10_000
    assert bench.bytes_moved("training step", 2, 3, 2) == 2 * 12 + 16 + 8
