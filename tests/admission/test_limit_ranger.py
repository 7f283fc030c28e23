"""LimitRanger: a namespace's LimitRange defaults new pods' resources (and says so in an
annotation) and refuses containers outside its bounds, with upstream's messages."""

from __future__ import annotations

import pytest

from kubetrio.client import Client, ClientError
from tests.apiserver.test_kubectl import Kubectl

LIMIT_RANGE = """\
apiVersion: v1
kind: LimitRange
metadata: {name: bounds, namespace: default}
spec:
  limits:
  - type: Container
    default: {cpu: 500m}
    defaultRequest: {cpu: 100m, memory: 64Mi}
    max: {cpu: "1"}
    maxLimitRequestRatio: {cpu: "5"}
"""


async def test_defaults_are_applied_and_bounds_enforced(kubectl: tuple[Kubectl, Client]) -> None:
    k, client = kubectl
    await k.run("apply", "-f", "-", stdin=LIMIT_RANGE.encode())
    await client.get("v1", "limitranges", "bounds", namespace="default")
    pod = None
    for _ in range(50):  # the admission plugin reads LimitRanges from a cache
        await k.run("run", "plain", "--image=busybox:1.36")
        pod = await client.get("v1", "pods", "plain", namespace="default")
        if pod["metadata"].get("annotations"):
            break
        await client.delete("v1", "pods", "plain", namespace="default")
    assert pod is not None
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m"},
        "requests": {"cpu": "100m", "memory": "64Mi"},
    }
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container plain; "
        "cpu limit for container plain"
    )
    out = await k.run(
        "run",
        "greedy",
        "--image=busybox:1.36",
        "--overrides",
        '{"spec": {"containers": [{"name": "greedy", "image": "busybox:1.36",'
        ' "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "2"}}}]}}',
        check=False,
    )
    assert 'pods "greedy" is forbidden: maximum cpu usage per Container is 1, but limit is 2' in out
    lopsided = {
        "metadata": {"name": "lopsided"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1.36",
                    "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "100m"}},
                }
            ]
        },
    }
    with pytest.raises(ClientError) as refused:
        await client.create("v1", "pods", lopsided, namespace="default")
    assert refused.value.code == 403
    assert refused.value.message == (
        'pods "lopsided" is forbidden: cpu max limit to request ratio per Container is 5, '
        "but provided ratio is 10.000000"
    )
