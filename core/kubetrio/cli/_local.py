"""``kubetrio up`` / ``kubetrio down``: a local cluster running in the background.

``up`` starts a local OCI registry (Debian's docker-registry) holding a busybox image,
mirrors ``docker.io`` to it — so ``image: busybox`` works offline — and then
``kubetrio server`` as a detached process. State lives under
``~/.local/share/kubetrio/clusters/<name>/`` (data, logs, pid files). ``up`` waits until
the server answers ``/readyz`` and points kubectl at it; ``down`` stops both by their
pid files.

With ``--nodes N`` (N > 1) every node gets a network namespace on an underlay bridge
(:mod:`._nodes`): the server and its node in the first, a ``kubetrio agent`` in each
other; ``up`` returns when all N nodes are Ready, and ``down`` stops the agents (and
their pods), the server and the registry, then removes the namespaces and the bridge.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer

from ._backup import (
    BACKUP_DIR_OPTION,
    BACKUP_RETENTION_OPTION,
    BACKUP_SCHEDULE_OPTION,
    backup_arguments,
)
from ._checks import checked_lb_pool, checked_listen, checked_proxy_mode, checked_store_url
from ._console import console, err_console
from ._nodes import DEFAULT_UNDERLAY, Topology
from ._options import forwarded
from ._periods import HPA_SYNC_PERIOD_OPTION, METRIC_RESOLUTION_OPTION, period_args
from ._retention import (
    HISTORY_MAX_SIZE_OPTION,
    HISTORY_RETENTION_FOR_OPTION,
    HISTORY_RETENTION_OPTION,
    history_arguments,
)
from ._security import (
    AUDIT_LOG_MAXBACKUP_OPTION,
    AUDIT_LOG_MAXSIZE_OPTION,
    AUDIT_LOG_PATH_OPTION,
    AUDIT_POLICY_OPTION,
    ENCRYPTION_CONFIG_OPTION,
    checked_security_files,
    security_arguments,
)

CLUSTERS_DIR = Path("~/.local/share/kubetrio/clusters").expanduser()
DEFAULT_KUBECONFIG = Path("~/.kube/config").expanduser()
READY_TIMEOUT = 60.0
TOPOLOGY = "topology.json"
ENDPOINT = "endpoint"
"""The file in a cluster's folder holding its API server's URL (written by ``up``)."""
DATA_DIR_OPTION = typer.Option(
    None,
    help="The cluster's folder: store, node data, logs, pid files "
    "(default: ~/.local/share/kubetrio/clusters/NAME); give `down` the same.",
)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie does not: it exited and only awaits its reaper,
    which for a detached server may be a subreaper that never waits (a node agent is one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _admin_tls(home: Path) -> ssl.SSLContext:
    """How ``up`` and ``status`` reach their cluster's API: trusting its CA, presenting the
    admin's client certificate (OSError until the server has made them)."""
    from kubetrio.pki import ClusterPKI, client_context

    from ._ha import pki_dir

    pki = ClusterPKI(pki_dir(home))
    return client_context(pki.ca.files.cert_file, pki.admin.cert_file, pki.admin.key_file)


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _open_files(pid: int) -> tuple[int, int] | None:
    """How many files ``pid`` has open and its limit (None: not ours to read)."""
    try:
        count = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/limits") as limits:
            line = next(line for line in limits if line.startswith("Max open files"))
        return count, int(line.split()[3])
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def up(
    name: str = typer.Option(
        "kubetrio", help="Cluster name: the kubeconfig context and state folder."
    ),
    port: int = typer.Option(6443, help="Port the API server listens on."),
    kubeconfig: Path = typer.Option(
        DEFAULT_KUBECONFIG, help="kubeconfig to merge the context into."
    ),
    store: str = typer.Option(
        "", help="Use etcd instead of the embedded store: etcd://host:port,..."
    ),
    registry_port: int = typer.Option(5000, help="Port of the local OCI registry."),
    data_dir: Path | None = DATA_DIR_OPTION,
    nodes: int = typer.Option(
        1,
        min=0,
        help="Number of nodes. With more than one, each node runs in its own network "
        "namespace on an underlay bridge (the server with the first node). 0: none, "
        "with --servers only.",
    ),
    servers: int = typer.Option(
        1,
        min=1,
        help="API servers. More than one: as many etcd members (TLS), the servers on "
        "them, and one API address (`kubetrio balancer` on --port) that keeps working "
        "while any one server is down; see docs/ha.md.",
    ),
    network_plugin: str = typer.Option(
        "", help="The network plugin, by name (default: the only one installed)."
    ),
    runtime: str = typer.Option("runc", help="The container runtime of every node."),
    proxy_mode: str = typer.Option(
        "nftables", help="The service proxy: nftables or maglev.", callback=checked_proxy_mode
    ),
    ingress_http_port: int = typer.Option(
        80, min=0, max=65535, help="Each node's port for Ingresses over HTTP; 0: no ingress."
    ),
    ingress_https_port: int = typer.Option(
        443, min=1, max=65535, help="Each node's port for Ingresses over HTTPS."
    ),
    underlay: str = typer.Option(
        DEFAULT_UNDERLAY, help="The node network of a multi-node cluster (a free /24 or larger)."
    ),
    lb_pool: str = typer.Option(
        "",
        help="Addresses for LoadBalancer Services (CIDR or first-last). Default with "
        "--nodes: the 16 underlay addresses below the bridge's; else none.",
    ),
    encryption_provider_config: Path | None = ENCRYPTION_CONFIG_OPTION,
    audit_policy_file: Path | None = AUDIT_POLICY_OPTION,
    audit_log_path: str | None = AUDIT_LOG_PATH_OPTION,
    audit_log_maxsize: int = AUDIT_LOG_MAXSIZE_OPTION,
    audit_log_maxbackup: int = AUDIT_LOG_MAXBACKUP_OPTION,
    history_retention: str = HISTORY_RETENTION_OPTION,
    history_retention_for: list[str] = HISTORY_RETENTION_FOR_OPTION,
    history_max_size: str = HISTORY_MAX_SIZE_OPTION,
    backup_schedule: str = BACKUP_SCHEDULE_OPTION,
    backup_retention: int = BACKUP_RETENTION_OPTION,
    backup_dir: Path | None = BACKUP_DIR_OPTION,
    metric_resolution: float = METRIC_RESOLUTION_OPTION,
    hpa_sync_period: float = HPA_SYNC_PERIOD_OPTION,
) -> None:
    """Start a local cluster in the background and point kubectl at it.

    A local OCI registry with busybox starts too, and docker.io is mirrored to it, so
    `kubectl create deployment web --image=busybox -- httpd -f` works offline. State
    (SQLite store, logs, pid files) lives in ~/.local/share/kubetrio/clusters/NAME.
    With --nodes N, N nodes run in network namespaces on the --underlay bridge; the
    command returns once all are Ready. Run it again to see where the running cluster
    is; `kubetrio down` stops it and removes what it made. Options may also come from
    a YAML file (--config; DATA_DIR/config.yaml if there); plugins' options are passed
    on to the server and agents that take them.
    """
    home = data_dir or CLUSTERS_DIR / name
    pid_file = home / ("server.pid" if servers == 1 else "server-s0.pid")
    running = _read_pid(pid_file)
    if nodes == 0 and servers == 1:
        raise typer.BadParameter("0 nodes needs --servers 2 or more", param_hint="--nodes")
    if servers > 1 and nodes > 1:
        raise typer.BadParameter(
            "with --servers, 0 or 1 (this host): node namespaces are not wired to several "
            "servers yet",
            param_hint="--nodes",
        )
    if running is not None and servers == 1:  # several: what is not running starts again
        console.print(f"cluster [bold]{name}[/] is already running (pid {running})")
        return
    home.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "kubetrio", "server", "--data-dir", str(home / "data"),
        "--port", str(port), "--kubeconfig", str(kubeconfig),
    ]  # fmt: skip
    shared = len(command)  # what follows is given to every server of --servers too
    if checked_store_url(store):
        if servers > 1:
            raise typer.BadParameter("--servers runs its own etcd", param_hint="--store")
        command += ["--store", store]
    node_options = ["--runtime", runtime, "--proxy-mode", proxy_mode]
    node_options += ["--ingress-http-port", str(ingress_http_port)]
    node_options += ["--ingress-https-port", str(ingress_https_port)]
    if network_plugin:
        node_options += ["--network-plugin", network_plugin]
    command += node_options + forwarded("server")
    if checked_lb_pool(lb_pool):
        command += ["--lb-pool", lb_pool]
    checked_security_files(encryption_provider_config, audit_policy_file)
    command += security_arguments(
        encryption_provider_config,
        audit_policy_file,
        audit_log_path,
        audit_log_maxsize,
        audit_log_maxbackup,
    )
    command += history_arguments(history_retention, history_retention_for, history_max_size)
    command += backup_arguments(backup_schedule, backup_retention, backup_dir)
    command += period_args(metric_resolution, hpa_sync_period)
    if servers > 1:
        from ._ha import up_nodes_ha, up_servers

        if _read_pid(home / "balancer.pid") is None:
            checked_listen("127.0.0.1", port)
        url = up_servers(home, name, servers, port, kubeconfig, command[shared:])
        if nodes:
            agent_options = node_options + forwarded("agent")
            up_nodes_ha(home, url, nodes, agent_options, registry_port)
    elif nodes == 1:
        checked_listen("127.0.0.1", port)
        url = f"https://127.0.0.1:{port}"
        mirrors = _start_registry(home, registry_port)
        if mirrors is not None:
            command += ["--registries", str(mirrors)]
        _spawn(
            command,
            home / "server.log",
            pid_file,
            url=url,
            what=f"cluster [bold]{name}[/]",
            home=home,
        )
    else:
        agent_options = node_options + forwarded("agent")
        url = _up_nodes(
            home, name, command, nodes, underlay, agent_options, lb_pool, port, registry_port
        )
    (home / ENDPOINT).write_text(url + "\n")
    console.print(f"cluster [bold]{name}[/] is up at {url} (pid {_read_pid(pid_file)})")
    console.print(f"kubectl context [bold]kubetrio[/] written to {kubeconfig}; try:")
    hint = "" if kubeconfig == DEFAULT_KUBECONFIG else f"KUBECONFIG={kubeconfig} "
    console.print(f"  {hint}kubectl get {'nodes -o wide' if nodes > 1 else 'namespaces'}")
    console.print("stop it with: kubetrio down" + ("" if name == "kubetrio" else f" --name {name}"))


def _spawn(
    command: list[str],
    log_path: Path,
    pid_file: Path,
    *,
    url: str | None = None,
    what: str = "",
    env: dict[str, str] | None = None,
    home: Path | None = None,
) -> None:
    """Start ``command`` detached, logging to ``log_path``; with ``url`` (of the cluster in
    ``home``), wait for /readyz."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    pid_file.write_text(f"{process.pid}\n")
    if url is None:
        return
    deadline = time.monotonic() + READY_TIMEOUT
    with console.status(f"starting {what} (log: {log_path})"):
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pid_file.unlink(missing_ok=True)
                _exit_with_log(f"the server exited with status {process.returncode}", log_path)
            try:
                verify = _admin_tls(home) if home is not None else True
                if httpx.get(f"{url}/readyz", timeout=1, verify=verify).text == "ok":
                    return
            except (httpx.HTTPError, OSError):  # not listening, or no certificates yet
                pass
            time.sleep(0.2)
    _exit_with_log(f"not ready after {READY_TIMEOUT:.0f} s", log_path)


def _exit_with_log(message: str, log_path: Path) -> None:
    tail = log_path.read_text(errors="replace").splitlines()[-15:]
    err_console.print(f"[bold red]error:[/] {message}; the end of {log_path}:\n" + "\n".join(tail))
    raise typer.Exit(code=1)


def _up_nodes(
    home: Path,
    name: str,
    server_command: list[str],
    count: int,
    underlay: str,
    agent_options: list[str],
    lb_pool: str,
    port: int,
    registry_port: int,
) -> str:
    """Start a cluster of ``count`` node namespaces; return the API server's URL.

    ``server_command`` carries the options common to both kinds of cluster (with
    ``--lb-pool`` when one was given); the underlay's default pool is added otherwise.
    ``agent_options`` are given to every agent (runtime, proxy, plugins' options).
    """
    try:
        topology = Topology.plan(name, count, underlay)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--underlay") from exc
    if os.geteuid() != 0:
        err_console.print("[bold red]error:[/] --nodes needs root (network namespaces)")
        raise typer.Exit(code=1)
    old = Topology.load(home / TOPOLOGY)
    if old is not None:  # the leftovers of a cluster that died without `down`
        _stop_processes(home)
        old.remove()
    try:
        topology.create()
    except RuntimeError as exc:
        topology.remove()
        err_console.print(f"[bold red]error:[/] making the node network failed: {exc}")
        raise typer.Exit(code=1) from exc
    topology.save(home / TOPOLOGY)
    first, *others = topology.nodes
    url = f"https://{first.address}:{port}"
    command = [*server_command, "--host", first.address, "--node-name", first.name]
    command += ["--node-ip", first.address]
    if not lb_pool and (addresses := topology.lb_range()) is not None:
        command += ["--lb-pool", addresses]
    mirrors = _start_registry(home, registry_port, host=topology.gateway)
    if mirrors is not None:
        command += ["--registries", str(mirrors)]
    what = f"cluster [bold]{name}[/] and node {first.name}"
    _spawn(
        topology.command_in(first, command),
        home / "server.log",
        home / "server.pid",
        url=url,
        what=what,
        home=home,
    )
    from kubetrio.pki import ClusterPKI

    from ._token import create_bootstrap_token

    pki = ClusterPKI(home / "data" / "pki")
    # The nodes join as kubeadm's do: a bootstrap token asks for each node's client
    # certificate (system:node:<name>, auto-approved); the token expires within the hour.
    with httpx.Client(base_url=url, verify=_admin_tls(home), timeout=30) as http:
        join_token = create_bootstrap_token(
            http, datetime.timedelta(hours=1), f"kubetrio up --nodes {count}: joining the nodes"
        )
    for node in others:
        agent = [
            sys.executable, "-m", "kubetrio", "agent", "--server", url,
            "--node-name", node.name, "--node-ip", node.address,
            "--data-dir", str(home / "nodes" / node.name),
            "--certificate-authority", str(pki.ca.files.cert_file),
        ]  # fmt: skip
        # Its endpoint's serving certificate, apart from the client one (kubelet's flags).
        serving = pki.node_serving_certificate(node.name, ip_addresses=[node.address])
        agent += ["--tls-cert-file", str(serving.cert_file)]
        agent += ["--tls-private-key-file", str(serving.key_file)]
        agent += ["--client-ca-file", str(pki.client_ca.files.cert_file)]
        if mirrors is not None:
            agent += ["--registries", str(mirrors)]
        agent += agent_options
        _spawn(
            topology.command_in(node, agent),
            home / f"agent-{node.name}.log",
            home / f"agent-{node.name}.pid",
            # Not on the command line, where `ps` shows it. The agent needs no admin token:
            # the API server reaches its endpoint with a client certificate (TLS above).
            env={"KUBETRIO_TOKEN": join_token},
        )
    _wait_nodes_ready(home, url, [node.name for node in topology.nodes])
    for node in topology.nodes:
        role = "server and node" if node is first else "node"
        console.print(f"  {node.name}  {node.address}  {role} in netns {node.netns}")
    console.print(f"  underlay bridge {topology.bridge} {topology.gateway}/{topology.prefix}")
    return url


def _node_ready(node: dict[str, Any]) -> bool:
    """Whether a Node object reports condition Ready=True."""
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _wait_nodes_ready(home: Path, url: str, names: list[str]) -> None:
    """Wait until every node reports Ready; fail with the log of one that does not."""
    verify = _admin_tls(home)
    deadline = time.monotonic() + READY_TIMEOUT + 30
    ready: set[str] = set()
    with console.status(f"waiting for {len(names)} nodes to be Ready") as status:
        while time.monotonic() < deadline:
            try:
                listed = httpx.get(f"{url}/api/v1/nodes", verify=verify, timeout=5).json()
            except (httpx.HTTPError, ValueError):
                listed = {}
            items = listed.get("items") or []
            ready = {node["metadata"]["name"] for node in items if _node_ready(node)}
            status.update(f"waiting for nodes to be Ready: {len(ready & set(names))}/{len(names)}")
            if set(names) <= ready:
                return
            for name in names[1:]:
                if name not in ready and _read_pid(home / f"agent-{name}.pid") is None:
                    _exit_with_log(f"the agent of node {name} exited", home / f"agent-{name}.log")
            time.sleep(0.5)
    missing = sorted(set(names) - ready)
    err_console.print(f"[bold red]error:[/] nodes not Ready in time: {', '.join(missing)}")
    raise typer.Exit(code=1)


def _start_registry(home: Path, port: int, *, host: str = "127.0.0.1") -> Path | None:
    """Run the local registry with a busybox image; return the mirrors file (None: no registry)."""
    from kubetrio.images import write_registry_config

    binary = shutil.which("docker-registry")
    if binary is None:
        err_console.print(
            "[yellow]note:[/] docker-registry is not installed: no local registry "
            "(images must come from registries this machine reaches)"
        )
        return None
    storage = home / "registry"
    storage.mkdir(exist_ok=True)
    config = write_registry_config(storage, f"{host}:{port}")
    pid_file = home / "registry.pid"
    if _read_pid(pid_file) is None:
        with open(storage / "registry.log", "ab") as log:
            process = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        pid_file.write_text(f"{process.pid}\n")
    endpoint = f"{host}:{port}"
    deadline = time.monotonic() + 15
    with console.status(f"starting the local registry at {endpoint}"):
        while True:
            try:
                httpx.get(f"http://{endpoint}/v2/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    err_console.print(
                        f"[bold red]error:[/] the registry did not start; see "
                        f"{storage / 'registry.log'}"
                    )
                    raise typer.Exit(code=1) from None
                time.sleep(0.1)
        tags = httpx.get(f"http://{endpoint}/v2/library/busybox/tags/list", timeout=5)
        if tags.status_code != 200 or "latest" not in (tags.json().get("tags") or []):
            import trio

            from kubetrio.images import RegistryConfig, build_image

            plain_http = RegistryConfig(insecure=[endpoint])  # off loopback with --nodes
            trio.run(
                lambda: build_image(f"{endpoint}/library/busybox:latest", registries=plain_http)
            )
    mirrors = home / "registries.yaml"
    mirrors.write_text(
        f'mirrors:\n  docker.io:\n    endpoint: ["http://{endpoint}"]\ninsecure: ["{endpoint}"]\n'
    )
    console.print(
        f"local registry at {endpoint} (docker.io is mirrored there; "
        "busybox is preloaded; push more with `kubetrio image build`)"
    )
    return mirrors


def _stop(pid_files: list[Path], what: str, *, sig: int = signal.SIGTERM, wait: float = 15) -> None:
    """Signal every process of ``pid_files`` at once, wait for all, SIGKILL the stragglers."""
    pids = [pid for pid in map(_read_pid, pid_files) if pid is not None]
    for pid in pids:
        os.kill(pid, sig)
    deadline = time.monotonic() + wait
    if pids:
        with console.status(f"stopping {what} (pid {', '.join(map(str, pids))})"):
            while any(map(_alive, pids)) and time.monotonic() < deadline:
                time.sleep(0.1)
    for pid in filter(_alive, pids):
        os.kill(pid, signal.SIGKILL)
    for path in pid_files:
        path.unlink(missing_ok=True)


def _stop_processes(home: Path) -> None:
    """Stop the node agents (their pods first), then the server (its pods first), then
    the registry: agents release their pods' addresses through the server."""
    from ._ha import stop_ha

    agents = sorted(home.glob("agent-*.pid"))
    _stop(agents, "the node agents and their pods", sig=signal.SIGUSR1, wait=75)
    # SIGUSR1: the server stops its node's pods before it exits.
    _stop([home / "server.pid"], "the server and its pods", sig=signal.SIGUSR1, wait=75)
    stop_ha(home)  # --servers: the API servers, their balancers and etcd members
    _stop([home / "registry.pid"], "the local registry")


def down(
    name: str = typer.Option("kubetrio", help="Cluster name given to `kubetrio up`."),
    data_dir: Path | None = DATA_DIR_OPTION,
    delete_data: bool = typer.Option(
        False, "--delete-data", help="Also remove the cluster's state."
    ),
) -> None:
    """Stop the local cluster started by `kubetrio up`: its pods, agents, server, registry.

    A multi-node cluster's node namespaces and underlay bridge are removed too.
    """
    home = data_dir or CLUSTERS_DIR / name
    servers = [home / "server.pid", *home.glob("server-*.pid")]
    running = any(_read_pid(path) is not None for path in servers)
    _stop_processes(home)
    topology = Topology.load(home / TOPOLOGY)
    if topology is not None:
        with console.status("removing the node namespaces and the underlay bridge"):
            topology.remove()
        (home / TOPOLOGY).unlink()
    console.print(f"cluster [bold]{name}[/] " + ("stopped" if running else "is not running"))
    if delete_data and home.exists():
        shutil.rmtree(home)
        console.print(f"removed {home}")


def status(
    name: str = typer.Option("kubetrio", help="Cluster name given to `kubetrio up`."),
    data_dir: Path | None = DATA_DIR_OPTION,
) -> None:
    """Show a cluster started by `kubetrio up`: its processes, API address, nodes,
    plugins and where its logs are. Exit status 1 when its server is not running."""
    from kubetrio import plugins as plugin_loading

    home = data_dir or CLUSTERS_DIR / name
    server = _read_pid(home / "server.pid")
    # --servers: each server, etcd member and balancer (the first server alive stands
    # for the cluster below)
    ha = sorted(home.glob("server-*.pid")) + sorted(home.glob("etcd-*.pid"))
    ha += sorted(home.glob("balancer*.pid"))
    for pid_file in ha:
        if server is None and pid_file.stem.startswith("server-"):
            server = _read_pid(pid_file)
    url = (home / ENDPOINT).read_text().strip() if (home / ENDPOINT).exists() else None
    if server is None:
        console.print(f"cluster [bold]{name}[/] is not running ({home})")
        console.print(
            "start it with: kubetrio up" + ("" if name == "kubetrio" else f" --name {name}")
        )
        raise typer.Exit(code=1)
    console.print(f"cluster [bold]{name}[/]: API server {url or '?'} (pid {server})")
    for pid_file in ha:
        pid = _read_pid(pid_file)
        console.print(
            f"  {pid_file.stem.replace('-', ' ')}: {f'pid {pid}' if pid else 'not running'}"
        )
    if (files := _open_files(server)) is not None:
        console.print(f"  open files: {files[0]} of {files[1]} allowed")
    registry = _read_pid(home / "registry.pid")
    console.print(f"  registry: {'pid ' + str(registry) if registry else 'not running'}")
    for pid_file in sorted(home.glob("agent-*.pid")):
        agent = _read_pid(pid_file)
        node = pid_file.stem.removeprefix("agent-")
        console.print(f"  agent of {node}: {'pid ' + str(agent) if agent else 'not running'}")
    if url is not None:
        try:
            listed = httpx.get(f"{url}/api/v1/nodes", verify=_admin_tls(home), timeout=5).json()
        except (httpx.HTTPError, ValueError, OSError) as exc:
            console.print(f"  nodes: the API server does not answer ({exc})")
        else:
            for node in listed.get("items") or []:
                state = "Ready" if _node_ready(node) else "NotReady"
                # The node's service proxy records its --proxy-mode there (kubetrio.proxy).
                annotations = node["metadata"].get("annotations") or {}
                if mode := annotations.get("kubetrio.io/proxy-mode"):
                    state += f", proxy mode {mode}"
                console.print(f"  node {node['metadata']['name']}: {state}")
    names = ", ".join(info.name for info in plugin_loading.load().plugins()) or "none"
    console.print(f"  plugins: {names}")
    logs = [
        home / "server.log",
        *sorted(home.glob("agent-*.log")),
        home / "registry" / "registry.log",
    ]
    for log in filter(Path.exists, logs):
        console.print(f"  log: {log}", soft_wrap=True)
