"""NamespaceLifecycle: the system namespaces cannot be deleted."""

from __future__ import annotations

from kubetrio.client import Client
from tests.apiserver.test_kubectl import Kubectl


async def test_the_system_namespaces_cannot_be_deleted(kubectl: tuple[Kubectl, Client]) -> None:
    """NamespaceLifecycle: kubectl is refused with upstream's message; others go."""
    k, client = kubectl
    out = await k.run("delete", "namespace", "kube-public", check=False)
    assert 'namespaces "kube-public" is forbidden: this namespace may not be deleted' in out
    assert (await client.get("v1", "namespaces", "kube-public"))["metadata"].get(
        "deletionTimestamp"
    ) is None
    await k.run("create", "namespace", "scratch")
    assert 'namespace "scratch" deleted' in await k.run(
        "delete", "namespace", "scratch", "--wait=false"
    )
