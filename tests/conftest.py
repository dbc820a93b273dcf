"""Shared pytest configuration.

Tests marked ``cuda_simulator`` run only in the process that test_cuda_sim.py starts with
NUMBA_ENABLE_CUDASIM=1 (it must be set before numba is imported); everywhere else they are
deselected, not skipped, and in that process every other test is deselected.
"""

import os

import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep = [item for item in items
            if (item.get_closest_marker("cuda_simulator") is not None) == SIMULATED]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
