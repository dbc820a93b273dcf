"""Threads, processes and the on-disk cache.

Threading layer: Numba's default here, ``omp`` (GNU OpenMP), is thread-safe and the fastest,
and softce keeps it. It is not fork-safe: a child forked after the parent ran a parallel
kernel is terminated by Numba ("fork() called from a process already using GNU OpenMP") when
it calls one. Worker processes therefore use the 'spawn' or 'forkserver' start methods (or
fork before the parent's first call); a program that must fork after calling softce sets
``NUMBA_THREADING_LAYER=workqueue`` (fork-safe, not thread-safe) or ``tbb`` (both, with
libtbb on LD_LIBRARY_PATH). Each behaviour is tested in a fresh interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import softce

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, env: dict[str, str] | None = None, timeout: float = 180):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def _calls(x, labels, p):
    return [
        softce.softmax(x), softce.log_softmax(x, axis=0), softce.logsumexp(x),
        softce.cross_entropy(x, labels, reduction="none"),
        *softce.cross_entropy_grad(x, labels), softce.entropy(p, base=2.0),
        softce.softmax_vjp(p, x), softce.sigmoid(x),
    ]


def test_eight_threads_give_the_serial_results() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((257, 300)).astype(np.float32)
    labels = rng.integers(0, 300, 257)
    p = softce.softmax(x)
    serial = _calls(x, labels, p)
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        try:
            barrier.wait()
            results[k] = [_calls(x, labels, p) for _ in range(5)]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    x_before = x.copy()
    for runs in results.values():
        for got in runs:
            for a, b in zip(got, serial):
                np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, x_before)


POOL = """
    import multiprocessing as mp, sys
    import numpy as np, softce, numba
    x = np.random.default_rng(0).standard_normal((64, 100))
    def work(k):
        return float(softce.cross_entropy(x, np.full(64, k % 100)))
    if __name__ == "__main__":
        {before}
        with mp.get_context("{method}").Pool(2) as pool:
            got = pool.map(work, range(4), chunksize=1)
        assert got == [work(k) for k in range(4)], got
        print("ok", numba.threading_layer() if {before_ran} else "-")
"""


def _pool(method: str, call_first: bool, env=None):
    code = POOL.format(method=method, before="work(0)" if call_first else "pass",
                       before_ran=call_first)
    path = Path(ROOT / "build" / f"_pool_{method}_{int(call_first)}.py")
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(code))
    try:
        return subprocess.run([sys.executable, str(path)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env={**os.environ, **(env or {})})
    finally:
        path.unlink()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_and_forkserver_workers(method) -> None:
    run = _pool(method, call_first=True)
    assert run.returncode == 0 and "ok omp" in run.stdout, run.stderr[-2000:]


def test_fork_before_the_first_call_works() -> None:
    run = _pool("fork", call_first=False)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-2000:]


def test_fork_after_a_call_works_under_workqueue() -> None:
    run = _pool("fork", call_first=True, env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert run.returncode == 0 and "ok workqueue" in run.stdout, run.stderr[-2000:]


def test_fork_after_a_call_under_omp_is_refused_by_numba() -> None:
    """The documented limitation: the forked child is terminated, not given wrong answers."""
    run = _python("""
        import os, numpy as np, softce, numba
        x = np.ones((4, 8))
        softce.softmax(x)
        assert numba.threading_layer() == "omp"
        pid = os.fork()
        if pid == 0:
            softce.softmax(x)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "child 0" not in run.stdout
    assert "fork() called from a process already using GNU OpenMP" in run.stderr


CALL = """
    import warnings, numpy as np
    warnings.simplefilter("always")
    import softce
    x = np.array([[1.0, 2.0, 3.0]], {dtype})
    print(repr(softce.softmax(x).tolist()), float(softce.cross_entropy(x, np.array([2]))))
"""


def _call(env, dtype="np.float64"):
    return _python(CALL.format(dtype=dtype), env=env)


def test_an_unwritable_cache_directory(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run = _call({"NUMBA_CACHE_DIR": str(blocker / "cache")})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("[[0.0900305731703804")


def _fill(cache: Path) -> None:
    run = _call({"NUMBA_CACHE_DIR": str(cache)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert list(cache.rglob("*.nbi")) and list(cache.rglob("*.nbc"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty-data"])
def test_a_corrupted_cache_is_a_miss(tmp_path, damage) -> None:
    cache = tmp_path / "cache"
    _fill(cache)
    expected = _call({"NUMBA_CACHE_DIR": str(cache)}).stdout
    rng = np.random.default_rng(1)
    for f in cache.rglob("*"):
        if not f.is_file():
            continue
        if damage == "garbage":
            f.write_bytes(rng.bytes(200))
        elif damage == "truncated":
            f.write_bytes(f.read_bytes()[:7])
        elif f.suffix == ".nbc":
            f.write_bytes(b"")
    run = _call({"NUMBA_CACHE_DIR": str(cache)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout == expected
    # the next run finds a repaired (or again missing) cache, never an error
    again = _call({"NUMBA_CACHE_DIR": str(cache)})
    assert again.returncode == 0 and again.stdout == expected, again.stderr[-2000:]
