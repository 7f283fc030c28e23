"""``kubetrio up --servers N``: N API servers on an N-member etcd behind one API address.

Everything runs on this host's loopback, started and stopped by PID (``kubetrio down``):

* etcd member ``sN`` beside server ``sN`` (Debian's etcd 3.4), TLS on the client and peer
  ports with certificates of the cluster's etcd CA, client certificates required;
* ``kubetrio server --no-agent`` ``sN`` on its own port, reaching every member over TLS;
  leader-elected controllers and scheduler (Lease ``kube-controller-manager`` /
  ``kube-scheduler``) act on one server at a time;
* ``kubetrio balancer`` (:mod:`kubetrio.balancer`) on ``--port``: the one API address
  kubectl and the node agents use, passing connections through to ready servers;
* the node agents, joined through that address with a bootstrap token.

Layout of the cluster's folder (``home``)::

    ha.json           the plan: ports of the members, the servers and the API address
    etcd/sN/          member sN's data
    servers/sN/       server sN's data directory (its own serving certificate)
    servers.txt       the servers' host:port, one a line: what the balancers follow
    *.pid, *.log      etcd-sN, server-sN, balancer, agent-<node>

What must be identical on every server for a certificate, a token or a Secret one server
made to be good on the others (:data:`SHARED_FILES`: the CAs and their keys, the admin's
certificate and token, the service-account signing key, the encryption configuration) is
made in ``servers/s0`` and copied to the others before any starts; ``server --join``
fetches the same files from a running cluster (:mod:`._join_server`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import socket
import ssl
import sys
import time
from pathlib import Path

import httpx
import typer

from ._console import console, err_console
from ._local import _exit_with_log, _read_pid, _spawn, _stop
from ._security import ENCRYPTION_CONFIG_FILE

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
PLAN = "ha.json"
SERVERS_FILE = "servers.txt"
READY_TIMEOUT = 90.0
ETCD_QUOTA_BYTES = 256 * 1024 * 1024
"""Each member's backend quota: a local cluster's store is small; a bound keeps a runaway
writer from filling the disk (etcd raises NOSPACE, as on a real cluster)."""

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 7.0, 5.0, 1.0
"""The servers' leader election timing: failover of controllers and scheduler within ~8 s."""

SHARED_FILES = (
    "pki/ca.crt", "pki/ca.key", "pki/client-ca.crt", "pki/client-ca.key",
    "pki/admin.crt", "pki/admin.key",
    "pki/apiserver-kubelet-client.crt", "pki/apiserver-kubelet-client.key",
    "pki/etcd/ca.crt", "pki/etcd/ca.key", "pki/etcd/client.crt", "pki/etcd/client.key",
    "admin-token", "service-account.key", ENCRYPTION_CONFIG_FILE,
)  # fmt: skip
"""A server's files (relative to its data directory) every server of a cluster shares."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Plan:
    """Ports of an HA cluster, kept in ``ha.json`` so a restart (``up`` after ``down``)
    reuses them: etcd members remember their peers' URLs."""

    servers: list[str]
    client_ports: list[int]
    peer_ports: list[int]
    server_ports: list[int]
    api_port: int

    @classmethod
    def make(cls, count: int, api_port: int) -> Plan:
        return cls(
            servers=[f"s{i}" for i in range(count)],
            client_ports=[free_port() for _ in range(count)],
            peer_ports=[free_port() for _ in range(count)],
            server_ports=[free_port() for _ in range(count)],
            api_port=api_port,
        )

    @classmethod
    def load(cls, path: Path) -> Plan | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")

    @property
    def etcd_url(self) -> str:
        return "etcd://" + ",".join(f"127.0.0.1:{port}" for port in self.client_ports)

    @property
    def backends(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.server_ports]


def server_dir(home: Path, name: str) -> Path:
    """Server ``name``'s data directory."""
    return home / "servers" / name


def pki_dir(home: Path) -> Path:
    """The cluster PKI of a cluster ``up`` made: one server's, or the first HA server's."""
    single = home / "data" / "pki"
    return (
        single if single.exists() or not (home / PLAN).exists() else server_dir(home, "s0") / "pki"
    )


def prepare_shared(home: Path, plan: Plan) -> None:
    """Make the shared files in the first server's data directory and copy them to the
    others; issue each etcd member's certificate."""
    from kubetrio.apiserver import ServiceAccountTokens
    from kubetrio.store import write_default_encryption_config

    from ._serve import admin_token, cluster_pki, secure_data_dir

    first = server_dir(home, plan.servers[0])
    secure_data_dir(first)
    pki = cluster_pki(first, "127.0.0.1")
    for name in plan.servers:
        pki.etcd_member_certificate(name, ip_addresses=["127.0.0.1"])
    pki.etcd_client  # noqa: B018 - made now, before it is copied
    admin_token(first)
    if not (first / ENCRYPTION_CONFIG_FILE).exists():
        write_default_encryption_config(first / ENCRYPTION_CONFIG_FILE)
    ServiceAccountTokens(first / "service-account.key").ensure_key()
    for name in plan.servers[1:]:
        copy_shared(first, server_dir(home, name))


def copy_shared(source: Path, target: Path) -> None:
    """Copy :data:`SHARED_FILES` from one server's data directory into another's (0700
    folders, the files' modes kept: keys stay 0600)."""
    for relative in SHARED_FILES:
        path = target / relative
        for folder in reversed(path.relative_to(target).parents):
            (target / folder).mkdir(mode=0o700, exist_ok=True)
        shutil.copy2(source / relative, path)


def _etcd_command(home: Path, plan: Plan, index: int) -> list[str]:
    from kubetrio.pki import ClusterPKI

    pki = ClusterPKI(pki_dir(home))
    name = plan.servers[index]
    cert = pki.etcd_member_certificate(name, ip_addresses=["127.0.0.1"])
    ca = str(pki.etcd_ca.files.cert_file)
    client = f"https://127.0.0.1:{plan.client_ports[index]}"
    peer = f"https://127.0.0.1:{plan.peer_ports[index]}"
    initial = ",".join(
        f"{member}=https://127.0.0.1:{port}"
        for member, port in zip(plan.servers, plan.peer_ports, strict=True)
    )
    return [
        ETCD, "--name", name, "--data-dir", str(home / "etcd" / name),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", initial, "--initial-cluster-state", "new",
        "--initial-cluster-token", f"kubetrio-{home.name}",
        "--cert-file", str(cert.cert_file), "--key-file", str(cert.key_file),
        "--client-cert-auth", "--trusted-ca-file", ca,
        "--peer-cert-file", str(cert.cert_file), "--peer-key-file", str(cert.key_file),
        "--peer-client-cert-auth", "--peer-trusted-ca-file", ca,
        "--quota-backend-bytes", str(ETCD_QUOTA_BYTES),
        # Loopback: a short heartbeat detects a dead leader within a second (the
        # defaults, 100 ms and 1 s, are for networks between machines).
        "--heartbeat-interval", "100", "--election-timeout", "1000",
        "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m",
        "--snapshot-count", "10000", "--logger", "zap", "--log-level", "warn",
    ]  # fmt: skip


def etcd_tls(home: Path) -> ssl.SSLContext:
    """A client's TLS for the cluster's etcd members (the servers' client certificate)."""
    from kubetrio.pki import ClusterPKI, client_context

    pki = ClusterPKI(pki_dir(home))
    client = pki.etcd_client
    return client_context(pki.etcd_ca.files.cert_file, client.cert_file, client.key_file)


def start_etcd_member(home: Path, plan: Plan, index: int) -> None:
    """Start member ``index`` in the background (pid file ``etcd-<name>.pid``) unless it
    runs."""
    name = plan.servers[index]
    if _read_pid(home / f"etcd-{name}.pid") is not None:
        return
    (home / "etcd").mkdir(mode=0o700, exist_ok=True)
    _spawn(_etcd_command(home, plan, index), home / f"etcd-{name}.log", home / f"etcd-{name}.pid")


def wait_etcd(home: Path, plan: Plan, indexes: list[int] | None = None) -> None:
    """Wait until each member answers ``/health`` true (the cluster has a leader)."""
    tls = etcd_tls(home)
    deadline = time.monotonic() + READY_TIMEOUT
    for index in indexes if indexes is not None else range(len(plan.servers)):
        name = plan.servers[index]
        url = f"https://127.0.0.1:{plan.client_ports[index]}/health"
        while True:
            if _read_pid(home / f"etcd-{name}.pid") is None:
                _exit_with_log(f"etcd member {name} exited", home / f"etcd-{name}.log")
            try:
                if httpx.get(url, verify=tls, timeout=2).json().get("health") == "true":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                _exit_with_log(f"etcd member {name} not healthy", home / f"etcd-{name}.log")
            time.sleep(0.2)


def server_command(home: Path, plan: Plan, index: int, options: list[str]) -> list[str]:
    """``kubetrio server`` ``index`` of the plan: no node of its own, etcd over TLS."""
    from kubetrio.pki import ClusterPKI

    pki = ClusterPKI(pki_dir(home))
    data = server_dir(home, plan.servers[index])
    return [
        sys.executable, "-m", "kubetrio", "server", "--no-agent",
        "--data-dir", str(data), "--host", "127.0.0.1",
        "--port", str(plan.server_ports[index]), "--kubeconfig", str(data / "kubeconfig"),
        "--store", plan.etcd_url, "--etcd-cafile", str(pki.etcd_ca.files.cert_file),
        "--etcd-certfile", str(pki.etcd_client.cert_file),
        "--etcd-keyfile", str(pki.etcd_client.key_file),
        # A standby takes a dead leader's Leases within LEASE_DURATION s (upstream's 15 s
        # is for machines apart; here they share one host's clock and loopback).
        "--leader-elect-lease-duration", str(LEASE_DURATION),
        "--leader-elect-renew-deadline", str(RENEW_DEADLINE),
        "--leader-elect-retry-period", str(RETRY_PERIOD), *options,
    ]  # fmt: skip


def start_server(home: Path, plan: Plan, index: int, options: list[str]) -> None:
    """Start server ``index`` in the background (pid file ``server-<name>.pid``) unless
    it runs."""
    name = plan.servers[index]
    if _read_pid(home / f"server-{name}.pid") is not None:
        return
    _spawn(
        server_command(home, plan, index, options),
        home / f"server-{name}.log",
        home / f"server-{name}.pid",
    )


def admin_tls(home: Path) -> ssl.SSLContext:
    """The admin's TLS for the cluster's API (its CA, the admin client certificate)."""
    from kubetrio.pki import ClusterPKI, client_context

    pki = ClusterPKI(pki_dir(home))
    return client_context(pki.ca.files.cert_file, pki.admin.cert_file, pki.admin.key_file)


def wait_ready(home: Path, url: str, pid_file: Path, log: Path, what: str) -> None:
    """Wait until ``url``'s /readyz answers ok; fail with ``log``'s end if the process
    of ``pid_file`` exits or it takes too long."""
    deadline = time.monotonic() + READY_TIMEOUT
    with console.status(f"starting {what} (log: {log})"):
        while time.monotonic() < deadline:
            if _read_pid(pid_file) is None:
                _exit_with_log(f"{what} exited", log)
            try:
                if httpx.get(f"{url}/readyz", timeout=2, verify=admin_tls(home)).text == "ok":
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.2)
    _exit_with_log(f"{what} not ready after {READY_TIMEOUT:.0f} s", log)


def write_backends(home: Path, plan: Plan) -> None:
    """The servers the balancers forward to, one ``host:port`` a line (written whole)."""
    tmp = home / (SERVERS_FILE + ".tmp")
    tmp.write_text("".join(f"{backend}\n" for backend in plan.backends))
    tmp.replace(home / SERVERS_FILE)


def balancer_command(home: Path, listen: str) -> list[str]:
    """``kubetrio balancer`` on ``listen``, following the cluster's servers file."""
    return [
        sys.executable, "-m", "kubetrio", "balancer", "--listen", listen,
        "--backends-file", str(home / SERVERS_FILE),
        "--certificate-authority", str(Path(pki_dir(home)) / "ca.crt"),
    ]  # fmt: skip


def up_servers(
    home: Path, name: str, count: int, port: int, kubeconfig: Path, options: list[str]
) -> str:
    """Start an HA control plane of ``count`` servers, or what of it is not running (a
    member or server that died starts again); return the API address's URL."""
    from kubetrio.apiserver import merge_kubeconfig
    from kubetrio.pki import ClusterPKI

    if not Path(ETCD).exists():
        err_console.print("[bold red]error:[/] --servers needs etcd (Debian's etcd-server)")
        raise typer.Exit(code=1)
    plan = Plan.load(home / PLAN)
    if plan is None or len(plan.servers) != count or plan.api_port != port:
        if plan is not None:  # another shape: start over (its etcd data is of other peers)
            shutil.rmtree(home / "etcd", ignore_errors=True)
        plan = Plan.make(count, port)
    plan.save(home / PLAN)
    prepare_shared(home, plan)
    for index in range(count):
        start_etcd_member(home, plan, index)
    with console.status(f"starting {count} etcd members"):
        wait_etcd(home, plan)
    # The first server alone creates the cluster's bootstrap objects (RBAC, flow schemas
    # ...); the others start on a store where they exist.
    for batch in ([0], list(range(1, count))):
        for index in batch:
            start_server(home, plan, index, options)
        for index in batch:
            server = plan.servers[index]
            wait_ready(
                home,
                f"https://127.0.0.1:{plan.server_ports[index]}",
                home / f"server-{server}.pid",
                home / f"server-{server}.log",
                f"server {server}",
            )
    write_backends(home, plan)
    url = f"https://127.0.0.1:{port}"
    if _read_pid(home / "balancer.pid") is None:
        listen = f"127.0.0.1:{port}"
        _spawn(balancer_command(home, listen), home / "balancer.log", home / "balancer.pid")
    wait_ready(home, url, home / "balancer.pid", home / "balancer.log", "the API balancer")
    publish_bootstrap(home, url, plan.etcd_url)
    pki = ClusterPKI(pki_dir(home))
    merge_kubeconfig(
        kubeconfig,
        name="kubetrio",
        server=url,
        certificate_authority=pki.ca.files.cert_file.read_bytes(),
        client_certificate=pki.admin.pem(),
    )
    for index, server in enumerate(plan.servers):
        console.print(
            f"  server {server}  127.0.0.1:{plan.server_ports[index]}  "
            f"etcd member https://127.0.0.1:{plan.client_ports[index]}"
        )
    console.print(
        f"  API address {url} (kubetrio balancer, pid {_read_pid(home / 'balancer.pid')})"
    )
    return url


def stop_ha(home: Path) -> None:
    """Stop the balancers, the servers and the etcd members (after the node agents)."""
    servers = sorted(home.glob("server-*.pid"))
    _stop(servers, "the API servers", sig=signal.SIGTERM, wait=30)
    _stop(sorted(home.glob("balancer*.pid")), "the API balancers")
    _stop(sorted(home.glob("etcd-*.pid")), "the etcd members")


def balancer(
    listen: str = typer.Option(
        "127.0.0.1:6443", help="host:port the API address listens on (port 0: a free one)."
    ),
    backend: list[str] = typer.Option(
        [], help="An API server's host:port (repeat the option for each)."
    ),
    backends_file: Path | None = typer.Option(
        None,
        help="A file of API servers' host:port, one a line, read again every second "
        "(servers added or removed are followed).",
    ),
    certificate_authority: Path = typer.Option(
        ...,
        exists=True,
        dir_okay=False,
        help="The cluster CA the servers' /readyz is verified with.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Serve one API address for several API servers: connections are passed through
    (TLS stays end to end) to a server whose /readyz answers ok, round robin."""
    import trio

    from kubetrio.balancer import TCPBalancer, parse_backend

    from ._console import setup_logging

    setup_logging(verbose)
    if not backend and backends_file is None:
        raise typer.BadParameter("give --backend or --backends-file", param_hint="--backend")
    try:
        host, port = parse_backend(listen)
        for text in backend:
            parse_backend(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def backends() -> list[str]:
        listed = list(backend)
        if backends_file is not None:
            listed += [
                line.strip() for line in backends_file.read_text().splitlines() if line.strip()
            ]
        return listed

    tls = ssl.create_default_context(cafile=str(certificate_authority))
    proxy = TCPBalancer(backends, tls=tls)

    async def run() -> None:
        import logging

        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(proxy.run, host, port)
                logging.getLogger("kubetrio.balancer").info(
                    "API address %s:%d for %s", host, bound, ", ".join(proxy.backends)
                )
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()

    trio.run(run)


def up_nodes_ha(
    home: Path, url: str, count: int, agent_options: list[str], registry_port: int
) -> None:
    """Join this host as the one node of an HA cluster (``count`` is 1: ``up`` refuses
    more): a ``kubetrio agent`` reaching the API through the balancer at ``url``, with a
    bootstrap token (TLS bootstrap)."""
    import datetime

    from kubetrio.pki import ClusterPKI, local_addresses

    from ._local import _start_registry, _wait_nodes_ready
    from ._token import create_bootstrap_token

    node = socket.gethostname()
    if _read_pid(home / f"agent-{node}.pid") is not None:
        return
    pki = ClusterPKI(pki_dir(home))
    mirrors = _start_registry(home, registry_port)
    with httpx.Client(base_url=url, verify=admin_tls(home), timeout=30) as http:
        token = create_bootstrap_token(
            http, datetime.timedelta(hours=1), "kubetrio up --servers: joining this host"
        )
    serving = pki.node_serving_certificate(node, ip_addresses=local_addresses())
    agent = [
        sys.executable, "-m", "kubetrio", "agent", "--server", url, "--node-name", node,
        "--data-dir", str(home / "nodes" / node),
        "--certificate-authority", str(pki.ca.files.cert_file),
        "--tls-cert-file", str(serving.cert_file),
        "--tls-private-key-file", str(serving.key_file),
        "--client-ca-file", str(pki.client_ca.files.cert_file),
    ]  # fmt: skip
    if mirrors is not None:
        agent += ["--registries", str(mirrors)]
    _spawn(
        [*agent, *agent_options],
        home / f"agent-{node}.log",
        home / f"agent-{node}.pid",
        env={"KUBETRIO_TOKEN": token},  # not on the command line, where `ps` shows it
    )
    _wait_nodes_ready(home, url, [node])
    console.print(f"  node {node}: kubetrio agent (pid {_read_pid(home / f'agent-{node}.pid')})")


BOOTSTRAP_SECRET = "kubetrio-server-bootstrap"
"""The Secret in kube-system holding what a joining server needs (:data:`SHARED_FILES`
and the store's URL), as k3s keeps its bootstrap data in the datastore: encrypted at rest
with the cluster's key, readable by cluster admins only."""


def publish_bootstrap(home: Path, url: str, store_url: str) -> None:
    """Create or replace the bootstrap Secret from the first server's shared files."""
    import base64

    first = server_dir(home, "s0")
    data = {
        relative.replace("/", "."): base64.b64encode((first / relative).read_bytes()).decode()
        for relative in SHARED_FILES
    }
    data["store"] = base64.b64encode(store_url.encode()).decode()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": BOOTSTRAP_SECRET, "namespace": "kube-system"},
        "type": "Opaque",
        "data": data,
    }
    path = f"/api/v1/namespaces/kube-system/secrets/{BOOTSTRAP_SECRET}"
    with httpx.Client(base_url=url, verify=admin_tls(home), timeout=30) as http:
        answer = http.put(path, json=secret)
        if answer.status_code == 404:
            answer = http.post("/api/v1/namespaces/kube-system/secrets", json=secret)
        answer.raise_for_status()


def fetch_bootstrap(url: str, token: str, certificate_authority: Path, data_dir: Path) -> str:
    """A joining server's shared files from a running cluster at ``url`` (TLS verified
    against ``certificate_authority``; ``token``: the cluster's admin token, as k3s' server
    token), written into ``data_dir``; returns the cluster's store URL.

    Files already there must be the cluster's: a data directory of another cluster is
    refused rather than overwritten."""
    import base64

    from ._errors import CommandError

    tls = ssl.create_default_context(cafile=str(certificate_authority))
    path = f"/api/v1/namespaces/kube-system/secrets/{BOOTSTRAP_SECRET}"
    try:
        answer = httpx.get(
            url + path, headers={"Authorization": f"Bearer {token}"}, verify=tls, timeout=30
        )
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {url} to join: {exc}") from None
    if answer.status_code in (401, 403):
        raise CommandError(f"{url} refused the join token ({answer.status_code})")
    if answer.status_code == 404:
        raise CommandError(f"{url} has no {BOOTSTRAP_SECRET} Secret: not a `up --servers` cluster")
    answer.raise_for_status()
    data = answer.json().get("data") or {}
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for relative in SHARED_FILES:
        content = base64.b64decode(data[relative.replace("/", ".")])
        target = data_dir / relative
        if target.exists() and target.read_bytes() != content:
            raise CommandError(f"{target} is another cluster's: give a new --data-dir to join")
        for folder in reversed(target.relative_to(data_dir).parents):
            (data_dir / folder).mkdir(mode=0o700, exist_ok=True)
        secret = relative.endswith((".key", "token", ".yaml"))
        target.touch(mode=0o600 if secret else 0o644)
        target.write_bytes(content)
    return base64.b64decode(data["store"]).decode()


def joined_store_tls(data_dir: Path) -> ssl.SSLContext:
    """The TLS to the cluster's etcd from a joined server's shared files."""
    from kubetrio.pki import ClusterPKI, client_context

    pki = ClusterPKI(data_dir / "pki")
    client = pki.etcd_client
    return client_context(pki.etcd_ca.files.cert_file, client.cert_file, client.key_file)
