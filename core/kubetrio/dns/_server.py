"""The cluster DNS server: trio UDP and TCP sockets in front of :class:`ClusterZone`.

Informers on Services, EndpointSlices and Pods keep the zone's caches current. A query
whose question is inside the zone is answered from them (authoritative); anything else
is forwarded to the configured upstream over UDP (falling back to TCP when the upstream
truncates), or refused when there is no upstream (an offline cluster says so clearly
instead of letting clients time out). Replies too large for the client's UDP buffer are
truncated (TC) so the client retries over TCP, where the full answer goes.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import trio

from kubetrio.client import Client, FunctionHandler, Informer, KubeObject, object_key
from kubetrio.netns import in_netns

from ._records import ClusterZone, respond

log = logging.getLogger("kubetrio.dns")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
UPSTREAM_TIMEOUT = 2.0
MAX_TCP_CLIENTS = 256
_EPHEMERAL_ATTEMPTS = 8


def resolv_conf(
    namespace: str, nameservers: list[str] | str, *, domain: str = "cluster.local", ndots: int = 5
) -> str:
    """A pod's ``/etc/resolv.conf`` (``dnsPolicy: ClusterFirst``).

    :param namespace: the pod's namespace (first search domain).
    :param nameservers: the cluster DNS address(es), normally the ``kube-dns`` ClusterIP.
    """
    servers = [nameservers] if isinstance(nameservers, str) else nameservers
    lines = [f"search {namespace}.svc.{domain} svc.{domain} {domain}"]
    lines += [f"nameserver {server}" for server in servers]
    lines.append(f"options ndots:{ndots}")
    return "\n".join(lines) + "\n"


class ClusterDNS:
    """Serves the cluster zone on UDP and TCP.

    Start it with ``await nursery.start(dns.run)``; ``started`` reports the bound
    ``(host, port)`` (useful with port 0).

    :param client: the cluster client.
    :param listen: address and port to bind (UDP and TCP; port 0 picks a free one, the
        same for both).
    :param upstream: ``(host, port)`` for names outside the zone; None answers REFUSED.
    :param domain: the cluster domain.
    :param ttl: TTL of the zone's answers.
    :param netns: network namespace to bind the sockets in (name or path; None = own).
    :param watch_pods: also watch Pods, for hostnames of StatefulSet pods that the
        EndpointSlices do not carry.
    """

    def __init__(
        self,
        client: Client,
        *,
        listen: tuple[str, int] = ("127.0.0.1", 53),
        upstream: tuple[str, int] | None = None,
        domain: str = "cluster.local",
        ttl: int = 5,
        netns: str | None = None,
        watch_pods: bool = True,
    ) -> None:
        self.client = client
        self.listen = listen
        self.upstream = upstream
        self.netns = netns
        self.zone = ClusterZone(domain=domain, ttl=ttl)
        self.address: tuple[str, int] | None = None
        """Where it listens, once started."""
        self.services = Informer(client, "v1", "services")
        self.slices = Informer(client, "discovery.k8s.io/v1", "endpointslices")
        self.pods = Informer(client, "v1", "pods") if watch_pods else None
        self._slice_owner: dict[str, str] = {}
        self.services.add_handler(FunctionHandler(self._service_changed))
        self.slices.add_handler(FunctionHandler(self._slice_changed))
        if self.pods is not None:
            self.pods.add_handler(FunctionHandler(self._pod_changed))

    # --- caches --------------------------------------------------------------------------

    def _service_changed(self, service: KubeObject) -> None:
        key = object_key(service)
        namespace, _, name = key.partition("/")
        self.zone.set_service(key, self.services.get(name, namespace))

    def _slice_changed(self, slice_: KubeObject) -> None:
        key = object_key(slice_)
        current = self.slices.cache.get(key)
        previous = self._slice_owner.pop(key, None)
        if previous is not None:
            self.zone.set_slice(previous, key, None)
        labels = slice_["metadata"].get("labels") or {}
        name = labels.get(SERVICE_NAME_LABEL)
        if current is not None and name:
            owner = f"{slice_['metadata'].get('namespace', '')}/{name}"
            self._slice_owner[key] = owner
            self.zone.set_slice(owner, key, current)

    def _pod_changed(self, pod: KubeObject) -> None:
        assert self.pods is not None
        key = object_key(pod)
        self.zone.set_pod(key, self.pods.cache.get(key))

    # --- serving -------------------------------------------------------------------------

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        def make() -> tuple[socket.socket, socket.socket]:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                udp.bind(self.listen)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((self.listen[0], udp.getsockname()[1]))
                tcp.listen(128)
            except BaseException:
                udp.close()
                tcp.close()
                raise
            return udp, tcp

        def make_pair() -> tuple[socket.socket, socket.socket]:
            # With port 0 the kernel picks a free UDP port, but the same TCP port may be
            # taken by someone else: pick again rather than fail.
            for _ in range(_EPHEMERAL_ATTEMPTS - 1):
                try:
                    return make()
                except OSError as err:
                    if self.listen[1] != 0 or err.errno != errno.EADDRINUSE:
                        raise
            return make()

        return in_netns(self.netns, make_pair)

    async def run(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; ``started((host, port))`` once caches are filled and
        the sockets are bound."""
        udp_sock, tcp_sock = await trio.to_thread.run_sync(self._bind)
        udp = trio.socket.from_stdlib_socket(udp_sock)
        tcp = trio.socket.from_stdlib_socket(tcp_sock)
        with udp, tcp:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.services.run)
                await nursery.start(self.slices.run)
                if self.pods is not None:
                    await nursery.start(self.pods.run)
                nursery.start_soon(self._serve_udp, udp, nursery)
                listener = trio.SocketListener(tcp)
                nursery.start_soon(trio.serve_listeners, self._serve_tcp_stream, [listener])
                host, port = udp_sock.getsockname()[:2]
                self.address = (str(host), int(port))
                task_status.started(self.address)

    async def _serve_udp(self, sock: trio.socket.SocketType, nursery: trio.Nursery) -> None:
        while True:
            data, peer = await sock.recvfrom(65535)
            nursery.start_soon(self._answer_udp, sock, data, peer)

    async def _safe_handle(self, data: bytes, *, max_size: int | None, tcp: bool) -> bytes | None:
        try:
            return await self.handle(data, max_size=max_size, tcp=tcp)
        except Exception:  # one bad query or object must not take the server down
            log.exception("query failed")
            return None

    async def _answer_udp(
        self, sock: trio.socket.SocketType, data: bytes, peer: tuple[object, ...]
    ) -> None:
        reply = await self._safe_handle(data, max_size=None, tcp=False)
        if reply is not None:
            try:
                await sock.sendto(reply, peer)
            except OSError as exc:
                log.debug("reply to %s failed: %s", peer, exc)

    async def _serve_tcp_stream(self, stream: trio.SocketStream) -> None:
        buffer = b""
        try:
            async with stream:
                while True:
                    with trio.move_on_after(10):  # idle clients go
                        chunk = await stream.receive_some(65535)
                    if not chunk:
                        return
                    buffer += chunk
                    while len(buffer) >= 2:
                        (length,) = struct.unpack("!H", buffer[:2])
                        if len(buffer) < 2 + length:
                            break
                        message, buffer = buffer[2 : 2 + length], buffer[2 + length :]
                        reply = await self._safe_handle(message, max_size=65535, tcp=True)
                        if reply is not None:
                            await stream.send_all(struct.pack("!H", len(reply)) + reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def handle(self, data: bytes, *, max_size: int | None, tcp: bool = False) -> bytes | None:
        """The wire reply to one wire query (None: not even a header to reply to)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            if len(data) < 12:
                return None
            # Echo the id with FORMERR so the client stops waiting.
            return data[:2] + b"\x81\x01" + b"\x00" * 8
        if query.flags & dns.flags.QR or len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        if self.zone.in_zone(question.name):
            try:
                response = respond(self.zone, query)
            except Exception:  # a bad object in a cache must not take the server down
                log.exception("answering %s failed", question.name)
                response = dns.message.make_response(query)
                response.set_rcode(dns.rcode.SERVFAIL)
        elif self.upstream is None:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.REFUSED)
        else:
            forwarded = await self._forward(data, tcp=tcp)
            if forwarded is not None:
                return forwarded
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
        limit = max_size or (query.payload if query.edns >= 0 else 512)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.additional.clear()
            response.authority.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _socket(self, kind: int) -> trio.socket.SocketType:
        """A socket in the DNS server's namespace (upstreams are reached from there too)."""
        return trio.socket.from_stdlib_socket(
            in_netns(self.netns, lambda: socket.socket(socket.AF_INET, kind))
        )

    async def _forward(self, data: bytes, *, tcp: bool) -> bytes | None:
        assert self.upstream is not None
        upstream = self.upstream
        with trio.move_on_after(UPSTREAM_TIMEOUT):
            if not tcp:
                with await trio.to_thread.run_sync(self._socket, socket.SOCK_DGRAM) as sock:
                    await sock.connect(upstream)
                    await sock.send(data)
                    while True:
                        reply = await sock.recv(65535)
                        if reply[:2] == data[:2]:
                            break
                if not (len(reply) > 3 and reply[2] & 0x02):  # not truncated: done
                    return reply
            sock = await trio.to_thread.run_sync(self._socket, socket.SOCK_STREAM)
            await sock.connect(upstream)
            async with trio.SocketStream(sock) as stream:
                await stream.send_all(struct.pack("!H", len(data)) + data)
                received = b""
                while len(received) < 2 or len(received) < 2 + struct.unpack("!H", received[:2])[0]:
                    chunk = await stream.receive_some(65535)
                    if not chunk:
                        return None
                    received += chunk
                length = struct.unpack("!H", received[:2])[0]
                return received[2 : 2 + length]
        log.warning("upstream %s:%s did not answer", *upstream)
        return None
