"""A whole node end to end: scheduler, controllers, runc pods, the nftables proxy, cluster DNS.

Real parts throughout: a local docker-registry holding a busybox image, pods under runc
in their own network namespaces (calico plugin), a Service reached through the node's
nftables table, and a pod resolving the Service's short name through ``kube-dns``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from kubetrio.client import Client
from kubetrio.cluster import open_local_node

pytestmark = [
    pytest.mark.root,
    pytest.mark.runc,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("runc") or not shutil.which("docker-registry"),
        reason="needs root, runc and docker-registry",
    ),
]

WEB = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "web",
                        "image": "busybox",
                        "command": [
                            "sh",
                            "-c",
                            "echo hello-$HOSTNAME > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
                        ],
                    }
                ],
            },
        },
    },
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
}
LOOKUP: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "lookup"},
    "spec": {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "lookup", "image": "busybox", "command": ["nslookup", "web"]}],
    },
}


async def _wait(client: Client, api_version: str, resource: str, name: str, done) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    while True:
        obj = await client.get(api_version, resource, name, namespace="default")
        if done(obj):
            return obj
        await trio.sleep(0.2)


def _our_netns() -> set[str]:
    out = subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("kubetrio-")}


async def test_service_and_dns_on_a_real_node(tmp_path: Path) -> None:
    before = _our_netns()
    with trio.fail_after(150):
        async with open_local_node(
            tmp_path, node_name="e2e-node", block="10.244.253.0/26"
        ) as cluster:
            client = cluster.client
            await client.create("apps/v1", "deployments", WEB, namespace="default")
            service = await client.create("v1", "services", SERVICE, namespace="default")
            cluster_ip = service["spec"]["clusterIP"]
            await _wait(
                client,
                "apps/v1",
                "deployments",
                "web",
                lambda d: (d.get("status") or {}).get("availableReplicas") == 2,
            )
            # From the node, through the nftables table, to both pods.
            answers = set()
            async with httpx.AsyncClient(timeout=3) as http:
                for _ in range(40):
                    try:
                        answers.add((await http.get(f"http://{cluster_ip}/")).text.strip())
                    except httpx.HTTPError:
                        await trio.sleep(0.2)
                    if len(answers) == 2:
                        break
            pods = await client.list("v1", "pods", namespace="default")
            names = {p["metadata"]["name"] for p in pods["items"]}
            assert answers == {f"hello-{n}" for n in names}
            # From a pod, by the Service's short name, through kube-dns.
            lookup = LOOKUP | {
                "spec": LOOKUP["spec"]
                | {
                    "containers": [
                        {
                            "name": "lookup",
                            "image": "busybox",
                            "command": [
                                "sh",
                                "-c",
                                f"nslookup web | tee /dev/stderr | grep -qF {cluster_ip}",
                            ],
                        }
                    ]
                }
            }
            await client.create("v1", "pods", lookup, namespace="default")
            done = await _wait(
                client,
                "v1",
                "pods",
                "lookup",
                lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
            )
            async with httpx.AsyncClient(base_url=cluster.url) as http:
                log = (await http.get("/api/v1/namespaces/default/pods/lookup/log")).text
            assert done["status"]["phase"] == "Succeeded", log
            assert cluster_ip in log
    assert _our_netns() <= before
