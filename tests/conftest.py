"""How `make test` runs the suite as two pytest processes side by side.

Tests that start a node share host-wide things — network namespaces, nftables tables,
runc containers, mounts, a few fixed ports — so they are marked ``node`` and run in one
process, one after another. Only folders known to need none of that run in the other
process beside them; a new folder is a node test until it is added to ``SHARED``. Tests
that install into the virtualenv are marked ``serial`` and run alone afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

TESTS = Path(__file__).parent

# Two processes share two cores with real nodes: how long a generated example takes says
# nothing about the code under test, so no time-based health check or deadline.
settings.register_profile("kubetrio", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("kubetrio")

SHARED = {
    "admission",
    "api",
    "apiserver",
    "auth",
    "benchmarks",
    "chaos",
    "ha",
    "client",
    "controllers",
    "fuzz",
    "history",
    "images",
    "pki",
    "plugins",
    "protobuf",
    "scheduler",
    "store",
    "test_hookspecs.py",
    "test_plugins.py",
    "test_readme_plugin_example.py",
}
"""Folders and files under tests/ whose tests need no node and can run beside anything."""

NODE_FILES = {
    "chaos/test_agent_kill.py",
    "plugins/test_calico_network.py",
    "protobuf/test_kubectl_e2e.py",
    "scheduler/test_integration.py",
}
"""Files in shared folders that start a node anyway."""

SERIAL = {"test_third_party_plugin.py"}
"""Files that pip-install into the running virtualenv, which every other test reads."""


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark a node test ``node``, or a venv-changing one ``serial``."""
    relative = item.path.relative_to(TESTS).as_posix()
    top = relative.split("/", 1)[0]
    if relative in SERIAL:
        item.add_marker(pytest.mark.serial)
    elif top not in SHARED or relative in NODE_FILES:
        item.add_marker(pytest.mark.node)
