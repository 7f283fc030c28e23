"""Priority: PriorityClasses give pods their priority, as kube-apiserver's Priority
admission plugin and PriorityClass validation do, seen through kubectl 1.27 and 1.33."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from kubetrio.client import Client, ClientError
from tests.apiserver.test_kubectl import Kubectl

CLASS = """\
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {{name: {name}}}
value: {value}
globalDefault: {default}
preemptionPolicy: {policy}
"""


def _class(
    name: str, value: int, *, default: bool = False, policy: str = "PreemptLowerPriority"
) -> bytes:
    return CLASS.format(
        name=name, value=value, default=str(default).lower(), policy=policy
    ).encode()


async def _pod(client: Client, name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }
    return await client.create("v1", "pods", body, namespace="default")


async def _until_cached(client: Client, name: str) -> None:
    """The admission plugin reads classes from a cache: wait until a probe pod sees it."""
    for attempt in range(100):
        try:
            await _pod(client, f"probe-{attempt}", priorityClassName=name)
        except ClientError as exc:
            assert "no PriorityClass with name" in exc.message, exc.message
            await trio.sleep(0.05)
            continue
        return
    raise AssertionError(f"PriorityClass {name} never reached the admission cache")


@pytest.mark.parametrize("minor", [27, 33])
async def test_system_classes_and_pod_priority(
    kubectl: tuple[Kubectl, Client], minor: int, tmp_path: Path
) -> None:
    k33, client = kubectl
    k = Kubectl(minor, Path(k33.env["KUBECONFIG"]), tmp_path)
    listed = await k.run("get", "priorityclasses")
    assert listed.split("\n")[0].split() == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE"] or (
        listed.split("\n")[0].split()[:3] == ["NAME", "VALUE", "GLOBAL-DEFAULT"]
    )
    rows = {line.split()[0]: line.split()[1] for line in listed.strip().split("\n")[1:]}
    assert rows["system-node-critical"] == "2000001000"
    assert rows["system-cluster-critical"] == "2000000000"

    await k.run("create", "priorityclass", "high", "--value=1000", "--description=important")
    await _until_cached(client, "high")
    pod = await _pod(client, "important", priorityClassName="high")
    assert pod["spec"]["priority"] == 1000
    assert pod["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
    plain = await _pod(client, "plain")
    assert plain["spec"]["priority"] == 0 and "priorityClassName" not in plain["spec"]

    out = await k.run(
        "run",
        "lost",
        "--image=busybox",
        "--overrides",
        '{"spec": {"priorityClassName": "nope"}}',
        check=False,
    )
    assert 'pods "lost" is forbidden: no PriorityClass with name nope was found' in out
    with pytest.raises(ClientError) as mismatch:
        await _pod(client, "cheat", priorityClassName="high", priority=5)
    assert mismatch.value.code == 403
    assert mismatch.value.message == (
        'pods "cheat" is forbidden: the integer value of priority (5) must not be provided '
        "in pod spec; priority admission controller computed 1000 from the given "
        "PriorityClass name"
    )


async def test_class_rules(kubectl: tuple[Kubectl, Client]) -> None:
    k, client = kubectl
    too_high = await k.run("apply", "-f", "-", stdin=_class("huge", 2_000_000_000), check=False)
    assert "value: Forbidden: maximum allowed value of a user defined priority is 1000000000" in (
        too_high
    )
    reserved = await k.run("apply", "-f", "-", stdin=_class("system-mine", 10), check=False)
    assert (
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved "
        "for system use only. error: system-mine is not a known system priority class"
    ) in reserved
    await k.run("apply", "-f", "-", stdin=_class("low", 100))
    changed = await k.run("apply", "-f", "-", stdin=_class("low", 101), check=False)
    assert "value: Forbidden: may not be changed in an update." in changed

    await k.run("apply", "-f", "-", stdin=_class("fallback", 10, default=True, policy="Never"))
    for _ in range(100):
        pod = await _pod(client, f"defaulted-{_}")
        if pod["spec"].get("priorityClassName"):
            break
        await trio.sleep(0.05)
    assert pod["spec"]["priorityClassName"] == "fallback"
    assert (pod["spec"]["priority"], pod["spec"]["preemptionPolicy"]) == (10, "Never")
    second = await k.run("apply", "-f", "-", stdin=_class("another", 20, default=True), check=False)
    assert "PriorityClass fallback is already marked as default. Only one default can exist" in (
        second
    )
