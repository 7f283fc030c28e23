"""The agent's own HTTP endpoint (kubelet's port 10250 role): container logs, health.

The API server answers ``pods/log`` by asking the agent of the pod's node, found
through the Node's ``status.addresses`` (InternalIP) and
``status.daemonEndpoints.kubeletEndpoint.Port``:

``GET /containerLogs/<namespace>/<pod>/<container>?<options>``
    options as ``pods/log``: ``follow``, ``previous``, ``tailLines``, ``sinceSeconds``,
    ``sinceTime``, ``timestamps``, ``limitBytes``. The log comes as ``text/plain``, chunked (a chunk
    per batch of lines when following); 404 for unknown pods or containers, 400 for
    a missing container name or a missing previous run.
``POST /exec/…``, ``POST /attach/…``, ``POST /portForward/…``
    upgrades for ``pods/exec``, ``pods/attach`` and ``pods/portforward`` (see
    :mod:`kubetrio.streams._agentwire`).
``GET /stats/summary``
    the kubelet Summary API document (the node, pods and their volumes' usage; CPU and
    memory of the node, pods and containers).
``GET /metrics``
    the agent's Prometheus metrics (``_prom``: pod start latency, runtime operations).
``GET /metrics/resource``
    kubelet's resource metrics (CPU and memory working set of the node, pods and
    containers) in the Prometheus text format, what metrics-server scrapes.
``GET /healthz``
    ``ok``.

With ``tls`` (what ``kubetrio server``, ``up`` and ``agent --tls-cert-file`` use) the
endpoint is HTTPS only, as kubelet's: the agent's serving certificate, and callers
authenticated by a client certificate of the client CA (a certificate of another CA
fails the handshake, none is a ``401``) and authorized by a SubjectAccessReview of
``nodes/proxy`` on this node (``get`` for GET, ``create`` for POST), as kubelet's
webhook authorization asks (a ``403`` otherwise; answers that allow are kept 5 minutes).
Without ``tls`` it is plain HTTP and requests must carry ``Authorization: Bearer
<token>`` when the agent has a token; bind it to a private address then.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import trio

from kubetrio import prom
from kubetrio.client import ClientError
from kubetrio.pki import TLSConfig

from ._exec import serve_attach, serve_exec
from ._portforward import serve_port_forward
from ._resources import CONTENT_TYPE as RESOURCE_METRICS_TYPE

if TYPE_CHECKING:
    from ._agent import NodeAgent

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
"""A caller that has not finished the TLS handshake by then is dropped."""
ALLOWED_TTL = 300.0
"""How long a SubjectAccessReview that allowed is trusted (kubelet's webhook cache)."""
VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def certificate_user(certificate: dict[str, Any]) -> tuple[str, list[str]]:
    """The user (CN) and groups (O) of a verified client certificate
    (``getpeercert()`` form), as the API server's x509 authenticator reads them."""
    name, groups = "", []
    for rdn in certificate.get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    return name, groups


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or ["false"])[-1].lower() in ("true", "1")


def _int(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values or not values[-1]:
        return None
    return int(values[-1])


class KubeletServer:
    """Serves :meth:`NodeAgent.read_logs` over HTTP; ``run`` follows the start protocol."""

    def __init__(
        self,
        agent: NodeAgent,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "",
        tls: TLSConfig | None = None,
    ) -> None:
        self.agent = agent
        self.host = host
        self.port = port
        self.token = token
        self.context = tls.server_context() if tls is not None else None
        self.allowed: dict[tuple[str, tuple[str, ...], str], float] = {}
        """(user, groups, verb) → until when a SubjectAccessReview's yes holds."""

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen; ``started`` with the bound port."""
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, socket_stream: trio.SocketStream) -> None:
        stream: trio.abc.Stream = socket_stream
        peer: dict[str, Any] | None = None
        if self.context is not None:
            tls = trio.SSLStream(
                socket_stream, self.context, server_side=True, https_compatible=True
            )
            with trio.move_on_after(HANDSHAKE_TIMEOUT):
                try:
                    await tls.do_handshake()
                    peer = tls.getpeercert() or None
                    stream = tls
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    # Plain HTTP, or a certificate the client CA did not sign.
                    log.debug("kubelet TLS handshake failed: %s", exc.__cause__ or exc)
            if stream is not tls:
                await socket_stream.aclose()
                return
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = bytes(await stream.receive_some(65536))
                        conn.receive_data(data)
                        if not data:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        await self._handle(conn, stream, event, peer)
                        return  # one request per connection keeps this small
                    if isinstance(event, h11.ConnectionClosed):
                        return
            except Exception as exc:
                # One broken exchange must never take the listener — and with it the node
                # agent and a single-node server's whole process — down. Errors of a
                # streaming session arrive grouped by its nurseries: a client that went
                # away is routine, anything else is logged with its traceback.
                if _client_went_away(exc):
                    log.debug("kubelet connection: %s", exc)
                else:
                    log.exception("kubelet connection failed")

    async def _send(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        status: int,
        body: bytes,
        content_type: str = "text/plain",
    ) -> None:
        headers = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
        await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))

    async def _handle(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        request: h11.Request,
        peer: dict[str, Any] | None,
    ) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        if self.context is not None:
            if peer is None:
                await self._send(conn, stream, 401, b"Unauthorized\n")
                return
            user, groups = certificate_user(peer)
            verb = VERBS.get(request.method.decode(), request.method.decode().lower())
            if not await self._authorized(user, groups, verb):
                message = f"Forbidden (user={user}, verb={verb}, resource=nodes, subresource=proxy)"
                await self._send(conn, stream, 403, message.encode() + b"\n")
                return
        elif self.token:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                await self._send(conn, stream, 401, b"Unauthorized\n")
                return
        url = urlsplit(request.target.decode())
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = parse_qs(url.query)
        if parts == ["healthz"]:
            await self._send(conn, stream, 200, b"ok")
            return
        if parts == ["metrics"] and request.method == b"GET":
            metrics = self.agent.metrics.exposition(self.agent.runtime)
            await self._send(conn, stream, 200, metrics, prom.CONTENT_TYPE)
            return
        if parts == ["stats", "summary"] and request.method == b"GET":
            summary = json.dumps(await self.agent.stats_summary()).encode()
            await self._send(conn, stream, 200, summary, "application/json")
            return
        if parts == ["metrics", "resource"] and request.method == b"GET":
            body = await self.agent.resource_metrics()
            await self._send(conn, stream, 200, body, RESOURCE_METRICS_TYPE)
            return
        if request.method == b"POST" and parts[0] == "exec" and len(parts) in (3, 4):
            initial, _ = conn.trailing_data
            container = parts[3] if len(parts) == 4 else ""
            await serve_exec(self.agent, stream, initial, parts[1], parts[2], container, query)
            return
        if request.method == b"POST" and parts[0] == "attach" and len(parts) == 4:
            initial, _ = conn.trailing_data
            await serve_attach(self.agent, stream, initial, parts[1], parts[2], parts[3], query)
            return
        if request.method == b"POST" and parts[0] == "portForward" and len(parts) == 3:
            initial, _ = conn.trailing_data
            await serve_port_forward(self.agent, stream, initial, parts[1], parts[2], query)
            return
        if len(parts) not in (3, 4) or parts[0] != "containerLogs" or request.method != b"GET":
            await self._send(conn, stream, 404, b"404 page not found\n")
            return
        namespace, pod = parts[1], parts[2]
        container = parts[3] if len(parts) == 4 else ""
        try:
            chunks = self.agent.read_logs(
                namespace,
                pod,
                container,
                follow=_flag(query, "follow"),
                previous=_flag(query, "previous"),
                tail_lines=_int(query, "tailLines"),
                since_seconds=_int(query, "sinceSeconds"),
                since_time=(query.get("sinceTime") or [""])[-1],
                timestamps=_flag(query, "timestamps"),
                limit_bytes=_int(query, "limitBytes"),
            )
            first = await _first(chunks)
        except LookupError as exc:
            await self._send(conn, stream, 404, f"{exc.args[0]}\n".encode())
            return
        except ValueError as exc:
            await self._send(conn, stream, 400, f"{exc}\n".encode())
            return
        response = h11.Response(
            status_code=200,
            headers=[
                ("content-type", "text/plain"),
                ("transfer-encoding", "chunked"),
                ("connection", "close"),
            ],
        )
        await stream.send_all(conn.send(response))
        if first:
            await stream.send_all(conn.send(h11.Data(data=first)))
        async for chunk in chunks:
            await stream.send_all(conn.send(h11.Data(data=chunk)))
        await stream.send_all(conn.send(h11.EndOfMessage()))

    async def _authorized(self, user: str, groups: list[str], verb: str) -> bool:
        """Whether the API server says ``user`` may ``verb`` ``nodes/proxy`` of this node
        (a SubjectAccessReview, as kubelet's webhook authorizer asks)."""
        key = (user, tuple(groups), verb)
        if self.allowed.get(key, 0.0) > trio.current_time():
            return True
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": groups,
                "resourceAttributes": {
                    "verb": verb,
                    "resource": "nodes",
                    "subresource": "proxy",
                    "name": self.agent.node_name,
                },
            },
        }
        try:
            answer = await self.agent.client.create(
                "authorization.k8s.io/v1", "subjectaccessreviews", review
            )
        except ClientError as exc:
            log.warning("SubjectAccessReview for %s failed: %s", user, exc)
            return False
        if not (answer.get("status") or {}).get("allowed"):
            return False
        self.allowed[key] = trio.current_time() + ALLOWED_TTL
        return True


async def _first(chunks: AsyncIterator[bytes]) -> bytes:
    """Run the generator to its first chunk, so lookup errors surface before the 200."""
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return b""


_ROUTINE = (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def _client_went_away(exc: BaseException) -> bool:
    """Whether ``exc`` (or every exception of a group) says the peer left or broke the
    protocol, rather than a fault of ours."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_client_went_away(inner) for inner in exc.exceptions)
    return isinstance(exc, _ROUTINE)
