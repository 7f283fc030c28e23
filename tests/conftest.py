"""How `make test` runs the suite as three pytest processes side by side.

Tests that start a node share host-wide things — network namespaces, nftables tables,
runc containers, mounts, a few fixed ports — so they are marked ``node`` and run in one
process, one after another. Only folders known to need none of that run in another
process beside them; a new folder is a node test until it is added to ``SHARED``. The
node tests of ``APART`` folders keep everything host-wide of their own, so they are
marked ``apart`` too and run in a third process, one after another, beside the other
node tests. Tests that install into the virtualenv are marked ``serial`` and run alone
afterwards.
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

APART = {"datapath", "multinode", "networking", "proxy", "servicelb"}
"""Node folders whose tests touch nothing another node test touches, so they may run
beside them (one at a time among themselves): every namespace, link and nft table is in
namespaces of their own with a random tag; their underlays are their own subnets
(172.31.21x.0/24 for ``kubetrio up --nodes``, bridges named by a hash of the cluster's
name); pods wired in the host's namespace (networking's policy lab) take addresses from
10.244.254.0/24 — no node of another folder has a block there — and filter them in a
policy table of their own; no fixed port is bound in the host's namespace. The other
node tests run nodes in the host's namespace (its ``ip kubetrio`` and ``kubetrio-policy``
tables, ports 53/80/443, pod blocks of 10.244.0.0/16), which these never touch."""

SERIAL = {"test_third_party_plugin.py"}
"""Files that pip-install into the running virtualenv, which every other test reads."""


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``apart`` marker (``node`` and ``serial`` are in pyproject.toml)."""
    config.addinivalue_line(
        "markers", "apart: a node test that may run beside other node tests (tests/conftest.py)"
    )


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark a node test ``node`` (and ``apart`` when it may run beside the others), or a
    venv-changing one ``serial``."""
    relative = item.path.relative_to(TESTS).as_posix()
    top = relative.split("/", 1)[0]
    if relative in SERIAL:
        item.add_marker(pytest.mark.serial)
    elif top not in SHARED or relative in NODE_FILES:
        item.add_marker(pytest.mark.node)
        if top in APART:
            item.add_marker(pytest.mark.apart)
