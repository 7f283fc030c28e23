"""Publishing the cluster DNS server as the ``kube-dns`` Service of ``kube-system``.

Pods find DNS at a fixed ClusterIP (``10.96.0.10``, written into their resolv.conf by
the node agent); the service proxy sends that address on to wherever the server
listens. The Service has no selector, so its EndpointSlice is ours to keep: it names
the server's address and port for UDP and TCP.
"""

from __future__ import annotations

from typing import Any

from kubetrio.client import Client, ClientError

DNS_SERVICE_IP = "10.96.0.10"
NAMESPACE = "kube-system"
NAME = "kube-dns"


async def publish_dns_service(
    client: Client, *, address: str, port: int, cluster_ip: str = DNS_SERVICE_IP
) -> None:
    """Create (or update) the ``kube-dns`` Service and its EndpointSlice."""
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
        },
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": port},
            ],
        },
    }
    try:
        await client.get("v1", "services", NAME, namespace=NAMESPACE)
    except ClientError as exc:
        if not exc.not_found:
            raise
        await client.create("v1", "services", service, namespace=NAMESPACE)
    else:  # kept from an earlier run of the cluster: the DNS port may have changed
        await client.patch(
            "v1",
            "services",
            NAME,
            {"spec": {"ports": service["spec"]["ports"]}},
            namespace=NAMESPACE,
        )
    slice_: dict[str, Any] = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": NAME,
                "endpointslice.kubernetes.io/managed-by": "cluster-dns.kubetrio.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [
            {"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"},
        ],
    }
    try:
        await client.create("discovery.k8s.io/v1", "endpointslices", slice_, namespace=NAMESPACE)
    except ClientError as exc:
        if not exc.conflict:
            raise
        await client.patch(
            "discovery.k8s.io/v1",
            "endpointslices",
            NAME,
            {"endpoints": slice_["endpoints"], "ports": slice_["ports"]},
            namespace=NAMESPACE,
        )
