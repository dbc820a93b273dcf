"""Other processes' CPU use while the benchmark runs: other load on 2 cores shows up directly
in the timings."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

LOAD_WARN = 0.05  # warn when other processes use more of the CPU than this


class CpuMonitor:
    """CPU time used on the machine by other processes (and stolen by the hypervisor) since
    it was made, with the huge-page faults that stalled or fell back."""

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
