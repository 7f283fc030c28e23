"""Readings of Services that the allocator and the announcer share."""

from __future__ import annotations

from kubetrio.client import KubeObject

LB_CLASS = "kubetrio.io/servicelb"
"""The ``spec.loadBalancerClass`` this implementation answers to (unset counts too)."""
IP_MODE = "VIP"
"""``status.loadBalancer.ingress[].ipMode``: the address is delivered to the nodes as-is."""


def is_ours(service: KubeObject) -> bool:
    """A ``type: LoadBalancer`` Service whose class is unset or :data:`LB_CLASS`."""
    spec = service.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (
        None,
        "",
        LB_CLASS,
    )


def ingress_ips(service: KubeObject) -> list[str]:
    """The addresses in ``status.loadBalancer.ingress`` (hostnames left out)."""
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(entry["ip"]) for entry in ingress if entry.get("ip")]
