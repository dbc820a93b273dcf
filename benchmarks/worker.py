"""A process that serves timed calls: the benchmarks that compare two builds of softce
(commits, instruction sets) run each in one, and take turns between them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


class Worker:
    """``python -c script *args``: the script prints one JSON line about itself, then for each
    name read from stdin times that call and prints the seconds as one JSON line."""

    def __init__(self, script: str, args: list[str], env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env, cwd=cwd)
        self.info = json.loads(self.proc.stdout.readline())

    def time(self, call: str) -> float:
        self.proc.stdin.write(call + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
