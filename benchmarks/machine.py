"""The machine the benchmark ran on and the code it measured."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # the checkout: softce/, generated/, benchmarks/


def machine_info(refs: list[str]) -> dict[str, object]:
    """CPU, memory, OS, library versions, thread counts and the settings that move timings."""
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
    softce modules), to tell if it changed during the run."""
    digest = hashlib.sha256()
    files = sorted((ROOT / "generated" / "cpu").glob("*.py")) + sorted(
        (ROOT / "softce").glob("*.py"))
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    state = {"sources_sha256": digest.hexdigest()[:16], "git_commit": "unknown"}
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False, cwd=ROOT)
        state["git_commit"] = head.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "generated/cpu",
                                "softce"],
                               capture_output=True, text=True, check=False, cwd=ROOT)
        if dirty.stdout.strip():
            state["git_commit"] += " + uncommitted changes to generated/cpu or softce"
    except OSError:
        pass
    return state
