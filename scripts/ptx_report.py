"""Compile every generated CUDA kernel to PTX (sm_80, sm_90) and report ptxas resources.

No GPU needed: NVVM comes from ``numba-cuda[cu13]``, ptxas from ``nvidia-cuda-nvcc``. Prints a
Markdown table (registers / static shared memory / spill bytes per compute capability) and
exits 1 if any kernel spills, a float32 kernel contains a float64 instruction, or a kernel
needs more registers than a block of ``MAX_THREADS`` threads can have.
``--reduce shared`` checks the shared-memory reduction path instead of the shuffle path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduce", choices=("shuffle", "shared"), default="shuffle",
                        help="the cross-thread reduction path to compile (a GPU takes shuffle)")
    parser.add_argument("--cc", action="append", default=None, metavar="MAJOR.MINOR",
                        help="compute capability (repeatable; default 8.0 and 9.0)")
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        print("unset NUMBA_ENABLE_CUDASIM: the simulator cannot compile PTX", file=sys.stderr)
        return 2
    os.environ["SOFTCE_CUDA_REDUCE"] = args.reduce  # read when the kernels are imported

    from softce.cuda.ptx import CCS, report_all, table

    ccs = tuple(tuple(int(v) for v in cc.split(".")) for cc in args.cc) if args.cc else CCS
    start = time.perf_counter()
    results = report_all(ccs)
    print(table(results))
    print(f"\n{len(results)} kernel compilations ({args.reduce} reduction) in "
          f"{time.perf_counter() - start:.1f} s")
    from softce.cuda.runtime import MAX_THREADS

    too_many = {id(r) for r in results if r.registers * MAX_THREADS > 64 * 1024}
    bad = [r for r in results if r.spills or r.f64_in_f32 or id(r) in too_many]
    for r in bad:
        what = ("spills" if r.spills else "float64 in a float32 kernel" if r.f64_in_f32
                else f"{r.registers} registers: {MAX_THREADS} threads do not fit 64 K")
        print(f"FAIL {r.kernel} {r.signature} sm_{r.cc[0]}{r.cc[1]}: {what}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
