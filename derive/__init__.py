"""Derivations of the softmax family from its definitions.

``run(id)`` gives a derivation (steps, checks, verdict), ``results(id)`` its named results
for the generator; each derivation runs once per process, and is kept on disk between
processes (``derive.cache``).
"""

from .registry import ALL, results, run, run_all

__all__ = ["ALL", "results", "run", "run_all"]
