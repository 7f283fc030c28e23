"""From Ingresses, Services, EndpointSlices and Secrets to one nginx configuration.

Two pure steps, so both are tested without nginx:

* :func:`plan` resolves what the API objects say into a :class:`Plan`: virtual hosts,
  their locations (each to an upstream of ready pod addresses, or to a 503), TLS
  certificates, and the problems worth an Event on the Ingress (a missing Service, a
  port the Service lacks, no ready endpoints, a Secret that is not a usable TLS pair);
* :func:`render` prints the plan as ``nginx.conf`` text.

The printer is a few string templates of our own rather than a template engine: the
configuration has five kinds of block, and every value that reaches it passes through
:func:`quoted` or a strict pattern first — a host name, path, address or file name
holding a quote, ``;``, a brace, ``$``, a backslash, white space or a control character
is refused (:class:`Unsafe`), so nothing an Ingress, a Service or an annotation says can
add an nginx directive. Annotations are not read at all.

Matching follows the Ingress API (``networking.k8s.io/v1``):

* hosts: exact names before ``*.`` wildcards, and a wildcard covers exactly one label
  (rendered as a regex ``server_name``, since nginx's own ``*.`` covers any depth);
* paths: ``Exact`` is ``location = "/p"``; ``Prefix`` (and ``ImplementationSpecific``,
  which we treat as ``Prefix``) matches element-wise — ``/foo`` matches ``/foo`` and
  ``/foo/bar`` but not ``/foobar`` — rendered as ``location = "/foo"`` plus
  ``location ^~ "/foo/"``; nginx then prefers exact matches and the longest prefix, which is
  the precedence the API asks for. Of two Ingresses claiming the same host and path, the
  older wins (ingress-nginx's rule);
* ``spec.defaultBackend`` serves what no rule matches: requests for the Ingress's hosts
  outside its paths, and requests for hosts no Ingress names (the oldest Ingress's);
* TLS: a ``kubernetes.io/tls`` Secret per ``spec.tls`` entry, chosen by SNI; plain HTTP for
  those hosts is redirected to HTTPS with 308, as ingress-nginx does by default.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from kubetrio.api.ingress import INGRESS_CONTROLLER, LEGACY_CLASS_ANNOTATION

KubeObject = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TLS_SECRET_TYPE = "kubernetes.io/tls"

_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
# RFC 3986 path characters, less what nginx's parser gives a meaning ($ ; { } ' " \ #).
_PATH = re.compile(r"^/[A-Za-z0-9\-._~!&()*+,=:@/%]*$")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
_FILE = re.compile(r"^/[A-Za-z0-9._/-]+$")


class Unsafe(ValueError):
    """A value that cannot be put into nginx's configuration as it is."""


def quoted(value: str, pattern: re.Pattern[str] = _FILE) -> str:
    """``value`` in double quotes, after checking it against ``pattern`` (a whitelist
    of characters none of which ends a quoted nginx string or starts a variable; matched
    whole — ``$`` alone would let a trailing newline through)."""
    if not pattern.fullmatch(value):
        raise Unsafe(f"{value!r} cannot be written into nginx's configuration")
    return f'"{value}"'


@dataclasses.dataclass(frozen=True)
class Upstream:
    """A Service port's ready endpoints: ``address:port`` strings, sorted."""

    name: str
    servers: tuple[str, ...]


@dataclasses.dataclass
class Location:
    """One ``location``: ``=`` (exact) or ``^~`` (prefix); to an upstream, or 503."""

    match: str
    path: str
    upstream: str | None


@dataclasses.dataclass
class Certificate:
    """A TLS Secret's certificate chain and key as one PEM, named by its digest."""

    name: str
    pem: bytes


@dataclasses.dataclass
class Server:
    """A virtual host (``""``: every host no other server names)."""

    host: str
    locations: dict[tuple[str, str], Location] = dataclasses.field(default_factory=dict)
    exact_from_rule: set[str] = dataclasses.field(default_factory=set)
    certificate: str | None = None


@dataclasses.dataclass
class Problem:
    """Something wrong with an Ingress, told by an Event on it."""

    ingress: KubeObject
    reason: str
    message: str


@dataclasses.dataclass
class Plan:
    """What nginx should serve."""

    servers: dict[str, Server]
    upstreams: dict[str, Upstream]
    certificates: dict[str, Certificate]
    problems: list[Problem]
    ingresses: list[KubeObject]
    """The Ingresses served (ours), oldest first."""

    def certificate_files(self) -> dict[str, bytes]:
        """File name → contents of every certificate the configuration names."""
        return {f"{c.name}.pem": c.pem for c in self.certificates.values()}


def our_classes(classes: Iterable[KubeObject]) -> set[str]:
    """Names of the IngressClasses whose controller is ours."""
    return {
        str(c["metadata"]["name"])
        for c in classes
        if (c.get("spec") or {}).get("controller") == INGRESS_CONTROLLER
    }


def is_ours(ingress: KubeObject, classes: set[str]) -> bool:
    """An Ingress of one of ``classes``, by ``spec.ingressClassName`` or the old annotation."""
    name = (ingress.get("spec") or {}).get("ingressClassName")
    if name is None:
        name = ((ingress.get("metadata") or {}).get("annotations") or {}).get(
            LEGACY_CLASS_ANNOTATION
        )
    return name in classes


def _age(obj: KubeObject) -> tuple[str, str, str]:
    metadata = obj.get("metadata") or {}
    return (
        str(metadata.get("creationTimestamp") or ""),
        str(metadata.get("namespace") or ""),
        str(metadata.get("name") or ""),
    )


def _ingress_name(ingress: KubeObject) -> str:
    return f"{ingress['metadata'].get('namespace', '')}/{ingress['metadata']['name']}"


class _Resolver:
    """Backends and Secrets of one namespace's objects, remembered per plan."""

    def __init__(
        self,
        services: Mapping[str, KubeObject],
        slices: Mapping[str, list[KubeObject]],
        secrets: Mapping[str, KubeObject] | None,
    ) -> None:
        self.services = services
        self.slices = slices
        self.secrets = secrets
        self.upstreams: dict[str, Upstream] = {}
        self.certificates: dict[str, Certificate] = {}
        self.problems: list[Problem] = []

    def backend(self, ingress: KubeObject, backend: KubeObject) -> str | None:
        """The upstream for an Ingress backend; None (a 503) with a Problem when it has no
        ready endpoint."""
        namespace = str(ingress["metadata"].get("namespace") or "")
        service_ref = backend.get("service")
        if not isinstance(service_ref, dict):
            resource = backend.get("resource") or {}
            self.problems.append(
                Problem(
                    ingress,
                    "UnsupportedBackend",
                    f"resource backend {resource.get('kind', '')}/{resource.get('name', '')} "
                    "is not supported; answering 503",
                )
            )
            return None
        name = str(service_ref.get("name") or "")
        port_ref = service_ref.get("port") or {}
        wanted = port_ref.get("name") or port_ref.get("number")
        service = self.services.get(f"{namespace}/{name}")
        if service is None:
            self.problems.append(
                Problem(
                    ingress,
                    "ServiceNotFound",
                    f'service "{namespace}/{name}" not found; answering 503',
                )
            )
            return None
        port = next(
            (
                p
                for p in (service.get("spec") or {}).get("ports") or []
                if (p.get("name") == wanted if isinstance(wanted, str) else p.get("port") == wanted)
            ),
            None,
        )
        if port is None:
            self.problems.append(
                Problem(
                    ingress,
                    "PortNotFound",
                    f'service "{namespace}/{name}" has no port {wanted}; answering 503',
                )
            )
            return None
        port_name = str(port.get("name") or "")
        upstream_name = f"{namespace}.{name}.{port_name or port.get('port')}"
        if upstream_name in self.upstreams:
            return upstream_name
        servers = set()
        for slice_ in self.slices.get(f"{namespace}/{name}", []):
            target = next(
                (
                    p.get("port")
                    for p in slice_.get("ports") or []
                    if str(p.get("name") or "") == port_name
                ),
                None,
            )
            if not isinstance(target, int):
                continue
            for endpoint in slice_.get("endpoints") or []:
                conditions = endpoint.get("conditions") or {}
                if conditions.get("ready") is False or conditions.get("terminating"):
                    continue
                for address in endpoint.get("addresses") or []:
                    servers.add(_host_port(str(address), target))
        servers.discard("")
        if not servers:
            self.problems.append(
                Problem(
                    ingress,
                    "NoEndpoints",
                    f'service "{namespace}/{name}" has no ready endpoints; answering 503',
                )
            )
            return None
        self.upstreams[upstream_name] = Upstream(upstream_name, tuple(sorted(servers)))
        return upstream_name

    def certificate(self, ingress: KubeObject, secret_name: str) -> str | None:
        """The certificate's name for a TLS Secret of the Ingress's namespace (None, with
        a Problem, when missing or not a TLS pair)."""
        namespace = str(ingress["metadata"].get("namespace") or "")
        if self.secrets is None:
            self.problems.append(
                Problem(
                    ingress,
                    "SecretNotReadable",
                    f'secret "{namespace}/{secret_name}": this node may not list Secrets '
                    "(bind the ClusterRole kubetrio:ingress-nginx-secrets to system:nodes)",
                )
            )
            return None
        secret = self.secrets.get(f"{namespace}/{secret_name}")
        if secret is None:
            self.problems.append(
                Problem(ingress, "SecretNotFound", f'secret "{namespace}/{secret_name}" not found')
            )
            return None
        try:
            pem = _tls_pair(secret)
        except ValueError as exc:
            self.problems.append(
                Problem(ingress, "InvalidSecret", f'secret "{namespace}/{secret_name}": {exc}')
            )
            return None
        name = hashlib.sha256(pem).hexdigest()[:32]
        self.certificates[name] = Certificate(name, pem)
        return name


def _host_port(address: str, port: int) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""  # only addresses: a name would make nginx resolve at start
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _tls_pair(secret: KubeObject) -> bytes:
    """The PEM certificate chain and key of a ``kubernetes.io/tls`` Secret, checked to
    be what they claim (so nginx never reads anything else from the file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if secret.get("type") != TLS_SECRET_TYPE:
        raise ValueError(f"type is {secret.get('type')!r}, not {TLS_SECRET_TYPE}")
    data = secret.get("data") or {}
    try:
        crt = base64.b64decode(data.get("tls.crt") or "", validate=True)
        key = base64.b64decode(data.get("tls.key") or "", validate=True)
    except ValueError as exc:
        raise ValueError("tls.crt or tls.key is not base64") from exc
    try:
        certificates = x509.load_pem_x509_certificates(crt)
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("tls.crt or tls.key is not a PEM certificate or key") from exc
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    # Re-encoded, not copied: only PEM blocks we produced reach nginx.
    return chain + private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _index(objects: Iterable[KubeObject]) -> dict[str, KubeObject]:
    return {f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": o for o in objects}


def plan(
    ingresses: Iterable[KubeObject],
    classes: Iterable[KubeObject],
    services: Iterable[KubeObject],
    slices: Iterable[KubeObject],
    secrets: Iterable[KubeObject] | None,
) -> Plan:
    """What nginx should serve for the Ingresses of our classes (module doc); ``secrets``
    None when they may not be read (TLS entries are then reported, not served)."""
    ours = our_classes(classes)
    served = sorted((i for i in ingresses if is_ours(i, ours)), key=_age)
    by_service: dict[str, list[KubeObject]] = {}
    for slice_ in slices:
        metadata = slice_.get("metadata") or {}
        service = (metadata.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if service:
            by_service.setdefault(f"{metadata.get('namespace', '')}/{service}", []).append(slice_)
    resolver = _Resolver(_index(services), by_service, None if secrets is None else _index(secrets))
    servers: dict[str, Server] = {"": Server("")}
    default_taken = False
    for ingress in served:
        spec = ingress.get("spec") or {}
        default = spec.get("defaultBackend")
        default_upstream: str | None = None
        if isinstance(default, dict):
            default_upstream = resolver.backend(ingress, default)
        for rule in spec.get("rules") or []:
            host = str(rule.get("host") or "")
            if not _valid(resolver, ingress, host, _HOST, "host") and host:
                continue
            server = servers.setdefault(host, Server(host))
            for path in (rule.get("http") or {}).get("paths") or []:
                value = str(path.get("path") or "/")
                if not _valid(resolver, ingress, value, _PATH, "path"):
                    continue
                upstream = resolver.backend(ingress, path.get("backend") or {})
                _add_path(server, value, str(path.get("pathType") or "Prefix"), upstream)
            if isinstance(default, dict):
                _add_fallback(server, default_upstream)
        if isinstance(default, dict) and not default_taken:
            _add_fallback(servers[""], default_upstream)
            default_taken = True
        for tls in spec.get("tls") or []:
            secret_name = tls.get("secretName")
            if not secret_name:
                continue  # no Secret: nothing to terminate with
            certificate = resolver.certificate(ingress, str(secret_name))
            if certificate is None:
                continue
            for host in tls.get("hosts") or [""]:
                host = str(host)
                if host and not _valid(resolver, ingress, host, _HOST, "TLS host"):
                    continue
                server = servers.setdefault(host, Server(host))
                if server.certificate is None:
                    server.certificate = certificate
    return Plan(servers, resolver.upstreams, resolver.certificates, resolver.problems, served)


def _valid(
    resolver: _Resolver, ingress: KubeObject, value: str, pattern: re.Pattern[str], what: str
) -> bool:
    if pattern.fullmatch(value):
        return True
    if value:
        resolver.problems.append(
            Problem(ingress, "InvalidValue", f"{what} {value!r} refused: not rendered into nginx")
        )
    return False


def _add_path(server: Server, path: str, path_type: str, upstream: str | None) -> None:
    """Add a rule's path; an older Ingress's identical path is kept."""
    if path_type == "Exact":
        key = ("=", path)
        if key not in server.locations or path not in server.exact_from_rule:
            # An Exact rule beats the exact half of an element-wise Prefix.
            server.locations[key] = Location("=", path, upstream)
            server.exact_from_rule.add(path)
        return
    # Prefix / ImplementationSpecific: element-wise, a trailing slash ignored.
    bare = path.rstrip("/") or "/"
    if bare == "/":
        server.locations.setdefault(("^~", "/"), Location("^~", "/", upstream))
        return
    server.locations.setdefault(("=", bare), Location("=", bare, upstream))
    server.locations.setdefault(("^~", bare + "/"), Location("^~", bare + "/", upstream))


def _add_fallback(server: Server, upstream: str | None) -> None:
    """``defaultBackend`` for what the server's paths leave unmatched."""
    server.locations.setdefault(("^~", "/"), Location("^~", "/", upstream))


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where nginx listens and keeps its files (absolute paths, ours)."""

    state_dir: str
    http_port: int
    https_port: int
    worker_processes: int = 1


def render(plan: Plan, layout: Layout) -> str:
    """The whole ``nginx.conf`` for ``plan``."""
    state = layout.state_dir
    out = [
        "# Generated by the kubetrio node agent's ingress controller; rewritten on change.",
        f"worker_processes {int(layout.worker_processes)};",
        "daemon off;",
        f"pid {quoted(state + '/nginx.pid')};",
        f"error_log {quoted(state + '/error.log')} warn;",
        "events { worker_connections 4096; }",
        "http {",
        "    access_log off;",
        "    server_tokens off;",
        "    server_names_hash_bucket_size 128;",
        "    server_names_hash_max_size 4096;",
        *(
            f"    {kind}_temp_path {quoted(f'{state}/tmp/{kind}')};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    proxy_set_header X-Forwarded-Host $host;",
        "    proxy_connect_timeout 5s;",
        "    proxy_next_upstream error timeout;",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
    ]
    for upstream in sorted(plan.upstreams.values(), key=lambda u: u.name):
        out.append(f"    upstream {_token(upstream.name)} {{")
        out += [f"        server {_server_address(s)};" for s in upstream.servers]
        out += ["        keepalive 32;", "    }"]
    catch_all = plan.servers[""]
    out += _server_block(catch_all, layout, plan, default=True)
    for host in sorted(h for h in plan.servers if h):
        out += _server_block(plan.servers[host], layout, plan, default=False)
    out.append("}")
    return "\n".join(out) + "\n"


def _token(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise Unsafe(f"{name!r} cannot be an nginx upstream name")
    return name


def _server_address(server: str) -> str:
    host, _, port = server.rpartition(":")
    ipaddress.ip_address(host.strip("[]"))  # ValueError: never anything but an address
    return f"{host}:{int(port)}"


def _server_name(host: str) -> str:
    if not host:
        return "_"
    if host.startswith("*."):
        # One label only, as the Ingress API says (nginx's *. would match any depth).
        return quoted(
            "~^[^.]+" + re.escape(host[1:]) + "$", re.compile(r"^~\^\[\^\.\]\+[a-z0-9\\.-]+\$$")
        )
    return quoted(host, _HOST)


def _server_block(server: Server, layout: Layout, plan: Plan, *, default: bool) -> list[str]:
    flag = " default_server" if default else ""
    name = _server_name(server.host)
    locations = _locations(server)
    certificate = plan.certificates.get(server.certificate or "")
    if certificate is None:
        if not default:
            return ["    server {", f"        listen {layout.http_port}{flag};",
                    f"        server_name {name};", *locations, "    }"]  # fmt: skip
        # Requests by IP or unknown names over HTTPS: no certificate to show.
        return [
            "    server {",
            f"        listen {layout.http_port}{flag};",
            f"        listen {layout.https_port} ssl{flag};",
            f"        server_name {name};",
            "        ssl_reject_handshake on;",
            *locations,
            "    }",
        ]
    pem = quoted(f"{layout.state_dir}/certs/{certificate.name}.pem")
    https = [
        "    server {",
        f"        listen {layout.https_port} ssl{flag};",
        f"        server_name {name};",
        f"        ssl_certificate {pem};",
        f"        ssl_certificate_key {pem};",
        *locations,
        "    }",
    ]
    port = "" if layout.https_port == 443 else f":{layout.https_port}"
    redirect = [
        "    server {",
        f"        listen {layout.http_port}{flag};",
        f"        server_name {name};",
        f"        location / {{ return 308 https://$host{port}$request_uri; }}",
        "    }",
    ]
    return redirect + https


def _locations(server: Server) -> list[str]:
    out = []
    for (match, path), location in sorted(server.locations.items()):
        target = (
            f"proxy_pass http://{_token(location.upstream)};"
            if location.upstream is not None
            else "return 503;"
        )
        out.append(f"        location {match} {quoted(path, _PATH)} {{ {target} }}")
    if ("^~", "/") not in server.locations:
        # No rule and no default backend: nothing to serve, as ingress-nginx's 404.
        out.append("        location / { return 404; }")
    return out
