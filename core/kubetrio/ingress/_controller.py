"""The node's ingress controller: the cluster's Ingresses of our class served by nginx.

Every node agent runs one. It watches Ingresses, IngressClasses, Services,
EndpointSlices and ``kubernetes.io/tls`` Secrets; on any change (coalesced over
:attr:`IngressController.settle` seconds) it plans and renders the whole configuration
(:mod:`._render`), writes the certificates it names, and hands the text to nginx
(:mod:`._nginx`), which checks it before it replaces the live one. Then:

* each served Ingress's ``status.loadBalancer.ingress`` lists the addresses it is
  reachable at: the LoadBalancer addresses of the ``kube-system/kubetrio-ingress`` Service
  when one has them, else this node's InternalIP, kept beside the other nodes' (addresses
  of Nodes that no longer exist are dropped);
* what the plan found wrong (a missing Service, no ready endpoints, a missing TLS Secret,
  a refused value) becomes a Warning Event on the Ingress, once per new problem.

Once nginx serves, the controller annotates its own Node with its ports
(:data:`HTTP_PORT_ANNOTATION`, :data:`HTTPS_PORT_ANNOTATION`) and removes them when it
stops: the controller manager builds the endpoints of the ``kube-system/kubetrio-ingress``
LoadBalancer Service from them (:mod:`kubetrio.servicelb`), so a node writes nothing but
its own Node, which the Node authorizer and NodeRestriction already allow.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import trio

from kubetrio.client import (
    Client,
    ClientError,
    EventRecorder,
    FunctionHandler,
    Informer,
    KubeObject,
)

from ._nginx import Nginx, NginxError
from ._render import Layout, Plan, Unsafe, plan, render

log = logging.getLogger("kubetrio.ingress")

COMPONENT = "kubetrio-ingress"
"""The Events' ``source.component``."""
LB_SERVICE = ("kube-system", "kubetrio-ingress")
"""A LoadBalancer Service whose addresses, when it has some, are the Ingresses' address."""
HTTP_PORT_ANNOTATION = "ingress.kubetrio.io/http-port"
"""On a Node: the port its nginx serves Ingresses on over HTTP (set while it serves)."""
HTTPS_PORT_ANNOTATION = "ingress.kubetrio.io/https-port"
"""On a Node: the port its nginx serves Ingresses on over HTTPS."""


class IngressController:
    """Serves the cluster's Ingresses on this node through nginx (module doc).

    Start it with ``await nursery.start(controller.run)``: it returns once nginx serves
    the first configuration, and stops nginx (by its PID) when cancelled.

    :param client: the cluster client.
    :param node_name: this node.
    :param state_dir: nginx's folder (configuration, certificates, pid file, logs).
    :param http_port: the node's HTTP port for Ingresses (80 as upstream).
    :param https_port: the node's HTTPS port (443).
    :param address: the address written into Ingresses' status (default: the Node's
        InternalIP).
    """

    settle = 0.05
    """Seconds to wait after a change for more (one render for a burst)."""

    def __init__(
        self,
        client: Client,
        node_name: str,
        state_dir: Path,
        *,
        http_port: int = 80,
        https_port: int = 443,
        address: str | None = None,
        nginx_binary: str | None = None,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.address = address
        self.nginx = Nginx(state_dir, **({"binary": nginx_binary} if nginx_binary else {}))
        self.layout = Layout(str(self.nginx.state_dir), http_port, https_port)
        self.ingresses = Informer(client, "networking.k8s.io/v1", "ingresses")
        self.classes = Informer(client, "networking.k8s.io/v1", "ingressclasses")
        self.services = Informer(client, "v1", "services")
        self.slices = Informer(client, "discovery.k8s.io/v1", "endpointslices")
        self.secrets = Informer(client, "v1", "secrets", field_selector="type=kubernetes.io/tls")
        self.nodes = Informer(client, "v1", "nodes")
        self.events = EventRecorder(client, COMPONENT, host=node_name)
        self.last_plan: Plan | None = None
        self.syncs = 0
        """Configurations nginx accepted (tests wait on it)."""
        self.secrets_readable = True
        """False when this node's identity may not list Secrets (no TLS then)."""
        self.advertised = False
        """Whether this node's Node carries our ports (:data:`HTTP_PORT_ANNOTATION`)."""
        self._advertise_failed = False
        self._applied = ""
        self._reported: set[tuple[str, str, str]] = set()
        self._synced_ingresses: set[tuple[str, str]] = set()
        self._changed = trio.Event()
        for informer in self._informers():
            informer.add_handler(FunctionHandler(lambda _: self._changed.set()))

    def _informers(self) -> list[Informer]:
        return [self.ingresses, self.classes, self.services, self.slices, self.secrets, self.nodes]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled (see the class doc)."""
        self.nginx.prepare()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.events.run)
                self.secrets_readable = await self._may_list_secrets()
                for informer in self._informers():
                    if informer is not self.secrets or self.secrets_readable:
                        await nursery.start(informer.run)
                await self.sync()
                if self.nginx.pid is None:
                    raise NginxError(f"nginx did not start: {self.nginx.error_tail()}")
                await self._advertise(serving=True)
                task_status.started()
                while True:
                    await self._changed.wait()
                    await trio.sleep(self.settle)
                    self._changed = trio.Event()
                    try:
                        await self.sync()
                        if not self.advertised:  # failed at start: again at each change
                            await self._advertise(serving=True)
                    except (NginxError, ClientError, OSError) as exc:
                        # nginx failing to restart, the API unreachable: the next change
                        # tries again; the node agent goes on.
                        log.error("ingress sync failed on %s: %s", self.node_name, exc)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    if self.advertised:
                        # Off the LoadBalancer first. Short: when the API server went
                        # first, nobody would read it anyway.
                        with trio.move_on_after(2):
                            await self._advertise(serving=False)
                finally:
                    await self.nginx.stop()

    async def _advertise(self, *, serving: bool) -> None:
        """Put this node's ingress ports on its Node (``serving``), or take them off."""
        ports = (self.layout.http_port, self.layout.https_port)
        annotations = {
            HTTP_PORT_ANNOTATION: str(ports[0]) if serving else None,
            HTTPS_PORT_ANNOTATION: str(ports[1]) if serving else None,
        }
        try:
            await self.client.patch(
                "v1", "nodes", self.node_name, {"metadata": {"annotations": annotations}}
            )
        except (ClientError, OSError, httpx.HTTPError) as exc:
            # Ingresses are still served on the node's own address; only the
            # LoadBalancer Service does not lead here (yet). Said once, not per retry.
            level = logging.DEBUG if self._advertise_failed else logging.WARNING
            log.log(level, "%s: ingress ports not written on its Node: %s", self.node_name, exc)
            self._advertise_failed = True
            return
        self.advertised = serving

    async def sync(self) -> None:
        """Render, check and load the configuration; then statuses and Events."""
        current = plan(
            self.ingresses.list(),
            self.classes.list(),
            self.services.list(),
            self.slices.list(),
            self.secrets.list() if self.secrets_readable else None,
        )
        try:
            text = render(current, self.layout)
        except (Unsafe, ValueError) as exc:  # the plan refuses these first; belt and braces
            log.error("ingress configuration not rendered: %s", exc)
            return
        # Most changes (a Node's heartbeat, a Service of no Ingress) render the same text:
        # no check, no reload.
        if text != self._applied or self.nginx.pid is None:
            files = current.certificate_files()
            self._write_certificates(files)
            if await self.nginx.apply(text):
                self._applied = text
                self.syncs += 1
                self._remove_old_certificates(set(files))
        self.last_plan = current
        self._report(current)
        await self._write_statuses(current)

    def _write_certificates(self, files: dict[str, bytes]) -> None:
        certs = self.nginx.state_dir / "certs"
        for name, pem in files.items():
            path = certs / name
            if path.exists():
                continue
            # Mode 0600 from the start: the key is never readable by others, not even briefly.
            fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
            os.replace(path.with_suffix(".tmp"), path)

    def _remove_old_certificates(self, keep: set[str]) -> None:
        for path in (self.nginx.state_dir / "certs").iterdir():
            if path.name not in keep:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _report(self, current: Plan) -> None:
        """Events: a Normal ``Sync`` for each Ingress version served for the first time, a
        Warning for each problem not reported before (while it lasts)."""
        for ingress in current.ingresses:
            version = (
                str(ingress["metadata"].get("uid")),
                str(ingress["metadata"].get("generation")),
            )
            if version not in self._synced_ingresses:
                self._synced_ingresses.add(version)
                self.events.normal(ingress, "Sync", f"Scheduled for sync on node {self.node_name}")
        problems = set()
        for problem in current.problems:
            key = (str(problem.ingress["metadata"].get("uid")), problem.reason, problem.message)
            problems.add(key)
            if key not in self._reported:
                self.events.warning(problem.ingress, problem.reason, problem.message)
        self._reported = problems

    async def _may_list_secrets(self) -> bool:
        """Whether this identity may list TLS Secrets (a node may not, unless granted)."""
        try:
            await self.client.list(
                "v1", "secrets", field_selector=self.secrets.field_selector, limit=1
            )
        except ClientError as exc:
            if exc.code != 403:
                return True  # another failure: the informer retries
            log.warning("%s may not list Secrets: Ingresses' TLS is not served", self.node_name)
            return False
        return True

    def _node_address(self) -> str | None:
        if self.address:
            return self.address
        node = self.nodes.get(self.node_name) or {}
        for address in (node.get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                return str(address.get("address"))
        return None

    def _wanted_status(self, ingress: KubeObject) -> list[dict[str, Any]]:
        service = self.services.get(LB_SERVICE[1], LB_SERVICE[0])
        lb = ((service or {}).get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        if lb:
            return [{"ip": i["ip"]} for i in lb if i.get("ip")]
        mine = self._node_address()
        node_ips = {
            str(a.get("address"))
            for n in self.nodes.list()
            for a in (n.get("status") or {}).get("addresses") or []
            if a.get("type") == "InternalIP"
        }
        current = (ingress.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        ips = {str(i.get("ip")) for i in current if i.get("ip") in node_ips}
        if mine:
            ips.add(mine)
        return [{"ip": ip} for ip in sorted(ips)]

    async def _write_statuses(self, current: Plan) -> None:
        for ingress in current.ingresses:
            wanted = self._wanted_status(ingress)
            if ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") == wanted:
                continue
            body = dict(ingress)
            body["status"] = {"loadBalancer": {"ingress": wanted}}
            metadata = ingress["metadata"]
            try:
                await self.client.update(
                    "networking.k8s.io/v1",
                    "ingresses",
                    body,
                    namespace=str(metadata.get("namespace") or ""),
                    subresource="status",
                )
            except ClientError as exc:
                # A conflict means another node wrote first; its change wakes us again.
                if not (exc.conflict or exc.not_found):
                    log.warning("status of ingress %s not written: %s", metadata["name"], exc)
