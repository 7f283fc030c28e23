"""PodSecurity admission: namespace labels choose the level; enforce refuses with
upstream's message, warn makes kubectl print a warning; workloads only warn."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from kubetrio_auth.admission import podsecurity

from kubetrio.client import Client
from tests.apiserver.test_kubectl import Kubectl

PRIVILEGED_POD = """\
apiVersion: v1
kind: Pod
metadata: {name: root, namespace: %s}
spec:
  containers:
  - name: c
    image: busybox:1.36
    securityContext: {privileged: true}
"""

PLAIN_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %s}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: busybox:1.36}]
"""


async def labelled_namespace(kubectl: Kubectl, client: Client, name: str, *labels: str) -> None:
    await kubectl.run("create", "namespace", name)
    await kubectl.run("label", "namespace", name, *labels)
    # The admission plugin reads namespaces from the server's informer cache.
    with trio.fail_after(10):
        while True:
            ns = await client.get("v1", "namespaces", name)
            if all(label.split("=")[0] in ns["metadata"].get("labels", {}) for label in labels):
                break
            await trio.sleep(0.05)
        await trio.sleep(0.2)


async def test_enforce_restricted_refuses_a_privileged_pod_with_upstreams_message(
    kubectl: tuple[Kubectl, Client],
) -> None:
    k, client = kubectl
    await labelled_namespace(k, client, "locked", "pod-security.kubernetes.io/enforce=restricted")
    out = await k.run("apply", "-f", "-", stdin=(PRIVILEGED_POD % "locked").encode(), check=False)
    assert (
        'pods "root" is forbidden: violates PodSecurity "restricted:latest": '
        'privileged (container "c" must not set securityContext.privileged=true), '
        'allowPrivilegeEscalation != false (container "c" must set '
        "securityContext.allowPrivilegeEscalation=false), unrestricted capabilities "
        '(container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot '
        '!= true (pod or container "c" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type '
        'to "RuntimeDefault" or "Localhost")'
    ) in out
    assert "NotFound" in await k.run("get", "pod", "root", "-n", "locked", check=False)
    # An unlabelled namespace is privileged: the same pod is admitted.
    out = await k.run("apply", "-f", "-", stdin=(PRIVILEGED_POD % "default").encode())
    assert "pod/root created" in out and "Warning" not in out


async def test_warn_mode_prints_a_warning_and_admits(kubectl: tuple[Kubectl, Client]) -> None:
    k, client = kubectl
    await labelled_namespace(
        k,
        client,
        "watched",
        "pod-security.kubernetes.io/warn=baseline",
        "pod-security.kubernetes.io/warn-version=v1.30",
        "pod-security.kubernetes.io/audit=restricted",
    )
    out = await k.run("apply", "-f", "-", stdin=(PRIVILEGED_POD % "watched").encode())
    assert (
        'Warning: would violate PodSecurity "baseline:v1.30": privileged '
        '(container "c" must not set securityContext.privileged=true)'
    ) in out
    assert "pod/root created" in out
    # A workload's template is checked for warnings only.
    await k.run(
        "label", "namespace", "watched", "--overwrite", "pod-security.kubernetes.io/warn=restricted"
    )
    await trio.sleep(0.3)
    out = await k.run("apply", "-f", "-", stdin=(PLAIN_DEPLOYMENT % "watched").encode())
    assert 'Warning: would violate PodSecurity "restricted:v1.30": allowPrivilegeEscalation' in out
    assert "deployment.apps/web created" in out


def test_a_compliant_restricted_pod_passes_and_baseline_reasons_are_worded_as_upstream() -> None:
    restricted = podsecurity.LevelVersion("restricted")
    good = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }
        ],
        "volumes": [{"name": "v", "emptyDir": {}}],
    }
    assert podsecurity.evaluate(restricted, {}, good) == ""
    bad = {
        "hostNetwork": True,
        "hostPID": True,
        "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
        "containers": [
            {
                "name": "a",
                "ports": [{"containerPort": 80, "hostPort": 8080}],
                "securityContext": {"capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}},
            },
            {"name": "b", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
        ],
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
    }
    assert podsecurity.evaluate(podsecurity.LevelVersion("baseline"), {}, bad) == (
        'non-default capabilities (container "a" must not include "SYS_ADMIN" in '
        "securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), "
        'hostPath volumes (volume "h"), hostPort (container "a" uses hostPort 8080), '
        'seccompProfile (container "b" must not set securityContext.seccompProfile.type to '
        '"Unconfined"), forbidden sysctls (kernel.msgmax)'
    )
    # Restricted replaces the hostPath check by its volume types check.
    assert 'restricted volume types (volume "h" uses restricted volume type "hostPath")' in (
        podsecurity.evaluate(restricted, {}, bad)
    )


def test_namespace_labels_make_the_policy_as_upstream() -> None:
    policy = podsecurity.policy_of({"pod-security.kubernetes.io/enforce": "baseline"})
    assert str(policy.enforce) == "baseline:latest"
    assert str(policy.warn) == "baseline:latest"  # warn follows a stricter enforce level
    bad = podsecurity.policy_of(
        {"pod-security.kubernetes.io/enforce": "strict", "pod-security.kubernetes.io/warn": "x"}
    )
    assert bad.enforce.level == "restricted" and bad.warn.level == "privileged"
    assert len(bad.errors) == 2
    assert podsecurity.policy_of({}).fully_privileged


pytestmark = pytest.mark.skipif(
    not os.path.exists(Kubectl(33, Path("/"), Path("/")).binary), reason="no kubectl 1.33"
)
