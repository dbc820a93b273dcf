"""Shared pytest configuration.

Tests marked ``cuda`` run only in the process that test_cuda_sim.py starts with
NUMBA_ENABLE_CUDASIM=1 (it must be set before numba is imported); everywhere else they are
deselected, not skipped, and in that process every other test is deselected.

On a machine with a CUDA GPU, ``SOFTCE_TEST_GPU=1`` runs the same ``cuda`` tests on the device
instead, with the tests marked ``gpu`` (sizes the simulator cannot afford) and every other
selected test; ``scripts/gpu_check.sh`` runs them so.

Hypothesis profiles: "ci" (the default) runs few examples per property so the suite stays
fast; ``--slow`` selects "slow", at least 10,000 examples per property.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ON_GPU = os.environ.get("SOFTCE_TEST_GPU") == "1" and not SIMULATED

settings.register_profile(
    "ci", max_examples=60, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "slow", max_examples=10_000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="run the hypothesis properties with the 'slow' profile "
                          "(>= 10,000 examples each)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--slow"):
        settings.load_profile("slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def wanted(item: pytest.Item) -> bool:
        if item.get_closest_marker("gpu") is not None:
            return ON_GPU
        return ON_GPU or (item.get_closest_marker("cuda") is not None) == SIMULATED

    keep = [item for item in items if wanted(item)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
