"""Fixtures for runtime tests: a local registry with a busybox image, a runc runtime."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from kubetrio import plugins
from kubetrio.images import ImageStore, RegistryClient, RegistryConfig, build_image, local_registry
from kubetrio.providers import NetworkPlugin
from kubetrio.runtime import RuncRuntime, cgroup_exists

TEST_BLOCK = "10.244.251.0/26"  # reserved for the runtime tests


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    with local_registry(tmp_path / "registry") as address:
        yield address


@pytest.fixture
def calico() -> NetworkPlugin:
    manager = plugins.load(only=["cni_calico"])
    manager.configure(config={"network": {"block": TEST_BLOCK}})
    [network] = [r.provider for r in manager.network_plugins() if r.provider.name == "calico"]
    return network


def leftovers(prefix: str, root: Path, cgroup_parent: str) -> list[str]:
    """Every host resource a test could have leaked."""
    found = (
        [n for n in os.listdir("/var/run/netns") if n.startswith(prefix)]
        if os.path.isdir("/var/run/netns")
        else []
    )
    with open("/proc/self/mountinfo") as f:
        found += [line.split()[4] for line in f if str(root) in line.split()[4]]
    if cgroup_exists(cgroup_parent):
        found.append(cgroup_parent)
    runc = subprocess.run(
        ["runc", "--root", str(root / "runc"), "list", "-q"], capture_output=True, text=True
    )
    found += runc.stdout.split()
    return found


@pytest.fixture
async def runtime(
    tmp_path: Path, registry: str, calico: NetworkPlugin
) -> AsyncIterator[RuncRuntime]:
    tag = uuid.uuid4().hex[:6]
    prefix = f"kt{tag}-"
    cgroup_parent = f"/kubetrio-test-{tag}"
    config = RegistryConfig.from_dict(
        {"mirrors": {"docker.io": {"endpoint": [f"http://{registry}"]}}}
    )
    async with RegistryClient(config) as client:
        await build_image("busybox:latest", None, client=client)
        images = ImageStore(tmp_path / "images", client)
        made = RuncRuntime(
            root_dir=tmp_path / "node",
            images=images,
            network=calico,
            cgroup_parent=cgroup_parent,
            netns_prefix=prefix,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(made.run)
            try:
                yield made
            finally:
                with trio.CancelScope(shield=True):
                    await made.cleanup()
                nursery.cancel_scope.cancel()
    assert leftovers(prefix, tmp_path, cgroup_parent) == []
