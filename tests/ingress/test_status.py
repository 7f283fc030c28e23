"""Which addresses an Ingress's ``status.loadBalancer.ingress`` gets, from the caches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetrio.client import Client
from kubetrio.handler import Request, Response
from kubetrio.ingress import HTTP_PORT_ANNOTATION, HTTPS_PORT_ANNOTATION, IngressController

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


class _Nodes:
    """Answers PATCHes of Nodes: the first ``failures`` with a 500, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, request: Request) -> Response:
        assert request.method == "PATCH", request.method
        self.patches.append((request.path, json.loads(request.body)))
        if len(self.patches) <= self.failures:
            status = {"kind": "Status", "code": 500, "reason": "InternalError", "message": "no"}
            return Response(status=500, body=json.dumps(status).encode())
        return Response(body=json.dumps({"metadata": {"name": "n1"}}).encode())


async def test_the_node_advertises_its_ports_until_it_stops(tmp_path: Path) -> None:
    """The ingress ports go on the node's own Node (retried after a failure) and come off."""
    nodes = _Nodes(failures=1)
    controller = IngressController(
        Client.in_process(nodes), "n1", tmp_path, http_port=8080, https_port=8443
    )
    await controller._advertise(serving=True)
    assert not controller.advertised  # the 500: the loop tries again at the next change
    await controller._advertise(serving=True)
    assert controller.advertised
    await controller._advertise(serving=False)
    assert not controller.advertised
    serving = {HTTP_PORT_ANNOTATION: "8080", HTTPS_PORT_ANNOTATION: "8443"}
    stopped = {HTTP_PORT_ANNOTATION: None, HTTPS_PORT_ANNOTATION: None}
    assert nodes.patches == [
        ("/api/v1/nodes/n1", {"metadata": {"annotations": serving}}),
        ("/api/v1/nodes/n1", {"metadata": {"annotations": serving}}),
        ("/api/v1/nodes/n1", {"metadata": {"annotations": stopped}}),
    ]
