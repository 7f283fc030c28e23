"""Subresources served by node agents: ``pods/log`` from the agent that runs the pod, and
``nodes/proxy`` (``/api/v1/nodes/<node>/proxy/<path>``: ``<path>`` on the node's agent,
such as ``metrics``).

The API server finds the agent through the Node object — ``status.addresses``
(InternalIP, else Hostname) and ``status.daemonEndpoints.kubeletEndpoint.Port`` — and
streams the agent's answer back to the client unchanged. With a TLS context for agents
(its client certificate, the CA of agents' serving certificates) it speaks HTTPS and
verifies the agent's certificate for that address; else plain HTTP with a token.
"""

from __future__ import annotations

import ssl

import httpx
import trio

from kubetrio.kubeobject import KubeObject

from ._status import ApiError, bad_request

LOG_OPTIONS = (
    "follow",
    "previous",
    "tailLines",
    "sinceSeconds",
    "timestamps",
    "limitBytes",
    "sinceTime",
)
LOG_FLAGS = ("follow", "previous", "timestamps")
"""The boolean ones among :data:`LOG_OPTIONS`."""


def pick_container(pod: KubeObject, requested: str) -> str:
    """The container a log request means, as kube-apiserver picks it."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    containers: list[str] = [str(c["name"]) for c in spec.get("containers") or []]
    init: list[str] = [str(c["name"]) for c in spec.get("initContainers") or []]
    ephemeral: list[str] = [str(c["name"]) for c in spec.get("ephemeralContainers") or []]
    if requested:
        if requested not in containers + init + ephemeral:
            raise bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    default = (pod["metadata"].get("annotations") or {}).get(
        "kubectl.kubernetes.io/default-container"
    )
    if default in containers:
        return str(default)
    if len(containers) == 1:
        return containers[0]
    raise bad_request(
        f"a container name must be specified for pod {name}, choose one of: "
        f"[{' '.join(containers)}]"
        + (f" or one of the init containers: [{' '.join(init)}]" if init else "")
        + (f" or one of the ephemeral containers: [{' '.join(ephemeral)}]" if ephemeral else "")
    )


def agent_endpoint(node: KubeObject) -> str:
    """``host:port`` of the agent of a node; 503 when the node advertises none."""
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addresses.get("InternalIP") or addresses.get("Hostname")
    if not port or not host:
        raise ApiError(
            503,
            f'node "{node["metadata"]["name"]}" does not advertise a node agent endpoint',
            reason="ServiceUnavailable",
        )
    return f"{host}:{port}"


def agent_url(tls: ssl.SSLContext | None, endpoint: str, path: str) -> str:
    """The URL of ``path`` on the agent at ``endpoint``: https when ``tls`` is given."""
    return f"{'https' if tls is not None else 'http'}://{endpoint}{path}"


async def fetch_log(
    *, url: str, params: dict[str, str], token: str, tls: ssl.SSLContext | None = None
) -> tuple[int, str, bytes]:
    """The whole log (not following): (status, content type, body)."""
    return await fetch(url=url, params=params, token=token, tls=tls)


async def fetch(
    *,
    url: str,
    params: dict[str, str] | tuple[tuple[str, str], ...],
    token: str,
    tls: ssl.SSLContext | None = None,
    method: str = "GET",
    body: bytes = b"",
) -> tuple[int, str, bytes]:
    """One request to a node agent, answered whole: (status, content type, body)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(timeout=60, verify=tls or True) as client:
            response = await client.request(
                method,
                url,
                params=params,
                headers=headers,
                content=body or None,
            )
    except httpx.HTTPError as exc:
        raise ApiError(
            502, f"the node agent could not be reached: {_why(exc)}", reason="ServiceUnavailable"
        ) from exc
    return (
        response.status_code,
        response.headers.get("content-type", "text/plain"),
        response.content,
    )


async def stream_log(
    send: trio.MemorySendChannel[bytes],
    *,
    url: str,
    params: dict[str, str],
    token: str,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Copy the agent's followed log into ``send`` until either side ends."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    timeout = httpx.Timeout(30.0, read=None)  # a followed log may be quiet for long
    try:
        async with (
            httpx.AsyncClient(timeout=timeout, verify=tls or True) as client,
            client.stream("GET", url, params=params, headers=headers) as response,
        ):
            if response.status_code >= 400:
                await send.send(await response.aread())
                return
            async for chunk in response.aiter_raw():
                await send.send(chunk)
    except httpx.HTTPError as exc:
        await send.send(f"error: the node agent could not be reached: {_why(exc)}\n".encode())


def _why(exc: BaseException) -> str:
    """What went wrong, from the first exception of the chain that says (httpx's
    ``ConnectError`` around a failed certificate check says nothing itself)."""
    seen: BaseException | None = exc
    while seen is not None:
        if str(seen):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__
