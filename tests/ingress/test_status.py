"""Which addresses an Ingress's ``status.loadBalancer.ingress`` gets, from the caches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetrio.client import Client
from kubetrio.handler import Request, Response
from kubetrio.ingress import IngressController

from .objects import ingress


def _node(name: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


class _Unused:
    async def handle(self, request: Request) -> Response:
        raise AssertionError("no request expected")


def _controller(tmp_path: Path) -> IngressController:
    # Never called: the caches are filled by hand.
    controller = IngressController(Client.in_process(_Unused()), "n1", tmp_path)
    for name, ip in (("n1", "10.0.0.1"), ("n2", "10.0.0.2")):
        controller.nodes.cache[name] = _node(name, ip)
    return controller


def test_each_node_adds_its_address_and_drops_gone_nodes(tmp_path: Path) -> None:
    controller = _controller(tmp_path)
    seen = ingress("i")
    seen["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.9"}]}}
    # n2's address stays, 10.0.0.9 is no Node's any more, n1 adds its own.
    assert controller._wanted_status(seen) == [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]


def test_a_load_balancer_address_wins(tmp_path: Path) -> None:
    controller = _controller(tmp_path)
    controller.services.cache["kube-system/kubetrio-ingress"] = {
        "metadata": {"name": "kubetrio-ingress", "namespace": "kube-system"},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.240"}]}},
    }
    assert controller._wanted_status(ingress("i")) == [{"ip": "192.168.1.240"}]
