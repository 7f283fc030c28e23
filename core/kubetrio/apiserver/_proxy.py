"""The ``pods/proxy`` and ``services/proxy`` subresources: HTTP to a pod through the API.

``kubectl proxy`` users open ``/api/v1/namespaces/ns/services/web:http/proxy/path`` (or
``pods/name:8080/proxy/...``) to reach an application without exposing it; ``kubectl
get --raw`` and dashboards do the same. As kube-apiserver, the name may carry a scheme
and a port (``[https:]name[:port]``, the port a number or a port name), a Service is
reached through one of its ready endpoints, and the answer comes back as the pod sent it.
Requests are forwarded whole (no upgrades or streaming); the API server must be able to
route to pod addresses, which it can on the node network.
"""

from __future__ import annotations

import random

import httpx

from kubetrio.handler import Request, Response
from kubetrio.kubeobject import KubeObject

from ._status import ApiError

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "host",
    "content-length",
}


def split_name(name: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` → (scheme, name, port)."""
    parts = name.split(":")
    if len(parts) == 3:
        return parts[0] or "http", parts[1], parts[2]
    if len(parts) == 2:
        return "http", parts[0], parts[1]
    return "http", name, ""


def _unavailable(message: str) -> ApiError:
    return ApiError(503, message, reason="ServiceUnavailable")


def pod_target(pod: KubeObject, port: str) -> tuple[str, int]:
    """(address, port) of a pod for a port number, a container port name or nothing."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        raise _unavailable(f'pod "{pod["metadata"]["name"]}" has no IP address yet')
    if not port:
        return str(ip), 80
    if port.isdigit():
        return str(ip), int(port)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == port:
                return str(ip), int(declared["containerPort"])
    raise _unavailable(f'no such port "{port}" on pod "{pod["metadata"]["name"]}"')


def service_target(service: KubeObject, endpoints: KubeObject | None, port: str) -> tuple[str, int]:
    """(address, port) of a ready endpoint of a Service for one of its ports."""
    name = service["metadata"]["name"]
    ports = (service.get("spec") or {}).get("ports") or []
    chosen = None
    for candidate in ports:
        if port in (candidate.get("name"), str(candidate.get("port"))) or (
            not port and len(ports) == 1
        ):
            chosen = candidate
            break
    if chosen is None:
        raise _unavailable(f'no such port "{port}" on service "{name}"')
    port_name = chosen.get("name", "")
    for subset in (endpoints or {}).get("subsets") or []:
        numbers = [p["port"] for p in subset.get("ports") or [] if p.get("name", "") == port_name]
        addresses = subset.get("addresses") or []
        if numbers and addresses:
            return str(random.choice(addresses)["ip"]), int(numbers[0])
    raise _unavailable(f'no endpoints available for service "{name}"')


async def forward(request: Request, scheme: str, host: str, port: int, path: str) -> Response:
    """Send the request to ``scheme://host:port/path`` and answer what comes back."""
    headers = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP}
    url = f"{scheme}://{host}:{port}/{path}"
    try:
        async with httpx.AsyncClient(timeout=30, verify=False) as client:
            answer = await client.request(
                request.method,
                url,
                params=[(k, v) for k, values in request.query.items() for v in values],
                headers=headers,
                content=request.body or None,
            )
    except httpx.HTTPError as exc:
        raise _unavailable(f"error trying to reach service: {exc}") from exc
    kept = [(k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP]
    content_type = answer.headers.get("content-type")
    kept = [(k, v) for k, v in kept if k.lower() not in ("content-type", "content-encoding")]
    return Response(
        status=answer.status_code, body=answer.content, content_type=content_type, headers=kept
    )
