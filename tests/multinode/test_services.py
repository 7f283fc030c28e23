"""Services on a real 3-node cluster: the nftables proxy on every node, LoadBalancer
addresses on the underlay, and cluster DNS, all exercised from pods through kubectl.

One VXLAN cluster for the module (``kubetrio up --nodes 3``); a backend pod and a client
pod on every node. Each test sends real connections and checks who answered.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import KUBETRIO, LocalCluster, running_cluster

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.slow]

BACKENDS = {"web-1": 1, "web-2": 2, "web-3": 3}
CLIENTS = {"client-1": 1, "client-2": 2, "client-3": 3}
KUBECTLS = Path(os.path.realpath(shutil.which("kubectl") or "/nonexistent")).parent
"""Where kubectl 1.27 and 1.33 are installed, beside ``kubectl``."""
REQUESTS = 30
"""Connections per check: with three backends picked at random, the chance that one of
them sees none of 30 is 3 * (2/3)^30, about 1.5e-5."""


def service(name: str, **spec: Any) -> dict[str, Any]:
    """A Service selecting the ``web`` backends on port 80 (→ 8080), named port ``http``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            **spec,
        },
    }


def wait_for(what: str, check: Any, timeout: float = 30) -> Any:
    """Poll ``check()`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster("vxlan", tmp_path_factory.mktemp("services")) as running:
        running.run_pods(BACKENDS, labels={"app": "web"})
        running.run_pods(CLIENTS, labels={"app": "client"})
        yield running


@pytest.fixture(scope="module")
def cluster_ip(cluster: LocalCluster) -> str:
    cluster.apply(service("web"))
    return str(cluster.get("service", "web")["spec"]["clusterIP"])


def ready_endpoints(cluster: LocalCluster, name: str) -> set[str]:
    slices = cluster.get("endpointslices", "-l", f"kubernetes.io/service-name={name}")
    return {
        endpoint["targetRef"]["name"]
        for item in slices["items"]
        for endpoint in item.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready")
    }


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_cluster_ip_spreads_over_all_backends_from_every_node(
    cluster: LocalCluster, cluster_ip: str, client: str
) -> None:
    answers = cluster.fetch_many(client, f"http://{cluster_ip}/", REQUESTS)
    assert len(answers) == REQUESTS
    assert set(answers) == set(BACKENDS)


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_pods_on_every_node_have_their_token_and_reach_the_api(
    cluster: LocalCluster, client: str
) -> None:
    """Every node's agent fetched its pod's bound token (a node certificate may create
    tokens), and the ``kubernetes`` Service leads every node's pods to the API server
    (busybox has no TLS: plain HTTP there gets the server's 400 for it)."""
    mount = "/var/run/secrets/kubernetes.io/serviceaccount"
    token = cluster.kubectl("exec", client, "--", "cat", f"{mount}/token")
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["kubernetes.io"]["pod"]["name"] == client
    assert claims["sub"] == "system:serviceaccount:default:default"
    script = (
        "timeout 5 wget -q -O - "
        "http://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/ 2>&1; true"
    )
    answer = cluster.kubectl("exec", client, "--", "sh", "-c", script)
    assert "400 Bad Request" in answer, answer


def test_node_port_from_another_node_and_the_underlay(cluster: LocalCluster) -> None:
    cluster.apply(service("web-np", type="NodePort"))
    port = cluster.get("service", "web-np")["spec"]["ports"][0]["nodePort"]
    # Node 2 connects to node 3's address; the host (on the underlay bridge) to node 1's.
    seen = {
        cluster.fetch_from_node(2, f"http://{cluster.node_ip(3)}:{port}/") for _ in range(REQUESTS)
    }
    assert seen == set(BACKENDS)
    from_host = subprocess.run(
        ["busybox", "wget", "-q", "-O", "-", f"http://{cluster.node_ip(1)}:{port}/"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert from_host.stdout.strip() in BACKENDS


def test_load_balancer_address_from_the_underlay(cluster: LocalCluster) -> None:
    cluster.apply(service("web-lb", type="LoadBalancer"))

    def address() -> str | None:
        ingress = (cluster.get("service", "web-lb").get("status") or {}).get("loadBalancer") or {}
        ips = [i.get("ip") for i in ingress.get("ingress") or []]
        return ips[0] if ips else None

    lb_ip = wait_for("a LoadBalancer address", address)
    pool = cluster.topology.lb_range()
    assert pool is not None
    first, last = (tuple(map(int, a.split("."))) for a in pool.split("-"))
    assert first <= tuple(map(int, lb_ip.split("."))) <= last
    # The host sits on the underlay: it resolves the address by ARP, the announcing node
    # answers, and that node's proxy sends the connection to a backend.
    seen = set()
    for _ in range(REQUESTS):
        fetched = subprocess.run(
            ["busybox", "wget", "-q", "-O", "-", f"http://{lb_ip}/"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert fetched.returncode == 0, fetched.stderr
        seen.add(fetched.stdout.strip())
    assert seen == set(BACKENDS)
    announced = [
        i
        for i in (1, 2, 3)
        if f" {lb_ip}/32 " in cluster.in_node(i, "ip", "-o", "-4", "addr").stdout
    ]
    assert len(announced) == 1, announced


def test_not_ready_backend_gets_no_traffic(cluster: LocalCluster, cluster_ip: str) -> None:
    cluster.kubectl("exec", "web-2", "--", "rm", "/tmp/ready")
    try:
        wait_for(
            "web-2 to leave the ready endpoints",
            lambda: "web-2" not in ready_endpoints(cluster, "web"),
        )
        answers = cluster.fetch_many("client-1", f"http://{cluster_ip}/", REQUESTS)
        assert len(answers) == REQUESTS
        assert set(answers) == {"web-1", "web-3"}
    finally:
        cluster.kubectl("exec", "web-2", "--", "sh", "-c", "echo ok > /tmp/ready")
    wait_for("web-2 to be ready again", lambda: "web-2" in ready_endpoints(cluster, "web"))
    time.sleep(1)  # the proxies follow the EndpointSlice
    assert "web-2" in cluster.fetch_many("client-1", f"http://{cluster_ip}/", REQUESTS)


def test_session_affinity_holds_a_client(cluster: LocalCluster) -> None:
    cluster.apply(service("web-sticky", sessionAffinity="ClientIP"))
    sticky_ip = cluster.get("service", "web-sticky")["spec"]["clusterIP"]
    for client in ("client-1", "client-3"):
        answers = cluster.fetch_many(client, f"http://{sticky_ip}/", 15)
        assert len(answers) == 15 and len(set(answers)) == 1, (client, answers)


def test_scaling_a_deployment_updates_every_node(cluster: LocalCluster) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "scaled"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "scaled"}},
            "template": {
                "metadata": {"labels": {"app": "scaled"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "web", "image": "busybox",
                        "command": ["sh", "-c", "echo $HOSTNAME > /tmp/index.html; "
                                    "exec httpd -f -p 8080 -h /tmp"],
                        "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                                           "periodSeconds": 1},
                    }],
                },
            },
        },
    }  # fmt: skip
    scaled = service("scaled")
    scaled["spec"]["selector"] = {"app": "scaled"}
    cluster.apply(deployment, scaled)
    cluster.kubectl("rollout", "status", "deployment/scaled", "--timeout=90s")
    ip = cluster.get("service", "scaled")["spec"]["clusterIP"]
    cluster.kubectl("scale", "deployment/scaled", "--replicas=3")
    cluster.kubectl("rollout", "status", "deployment/scaled", "--timeout=90s")
    pods = {p["metadata"]["name"] for p in cluster.get("pods", "-l", "app=scaled")["items"]}
    assert len(pods) == 3
    # From a client on each node, every new replica answers soon after it is ready.
    for client in ("client-2", "client-3"):
        wait_for(
            f"all replicas through {client}",
            lambda c=client: set(cluster.fetch_many(c, f"http://{ip}/", REQUESTS)) == pods,
        )
    cluster.kubectl("scale", "deployment/scaled", "--replicas=1")
    wait_for(
        "two replicas gone", lambda: len(cluster.get("pods", "-l", "app=scaled")["items"]) == 1
    )
    [left] = [p["metadata"]["name"] for p in cluster.get("pods", "-l", "app=scaled")["items"]]
    assert set(cluster.fetch_many("client-1", f"http://{ip}/", 10)) == {left}


def nslookup(cluster: LocalCluster, pod: str, *args: str) -> str:
    """busybox nslookup in ``pod``; its output (it exits 1 when a search name fails)."""
    return cluster.kubectl("exec", pod, "--", "nslookup", *args, check=False)


def test_dns_from_pods_on_every_node(cluster: LocalCluster, cluster_ip: str) -> None:
    headless = service("web-headless", clusterIP="None")
    external = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "outside"},
        "spec": {"type": "ExternalName", "externalName": "db.example.org"},
    }
    cluster.apply(headless, external)
    backend_ips = {p["status"]["podIP"] for p in cluster.get("pods", "-l", "app=web")["items"]}
    fqdn = "web.default.svc.cluster.local"
    for client in sorted(CLIENTS):
        # The short name through the search path in the pod's resolv.conf.
        assert f"Address: {cluster_ip}" in nslookup(cluster, client, "web"), client
        srv = nslookup(cluster, client, "-type=SRV", f"_http._tcp.{fqdn}")
        assert f"0 100 80 {fqdn}" in srv or (fqdn in srv and " 80 " in srv), srv
    answer = nslookup(cluster, "client-2", "web-headless.default.svc.cluster.local")
    assert {
        line.split()[-1] for line in answer.splitlines() if line.startswith("Address:")
    } >= backend_ips
    cname = nslookup(cluster, "client-3", "-type=CNAME", "outside.default.svc.cluster.local")
    assert "db.example.org" in cname, cname
    ptr = nslookup(cluster, "client-1", cluster_ip)
    assert fqdn in ptr, ptr
    missing = nslookup(cluster, "client-1", "nothing-here.default.svc.cluster.local")
    assert "NXDOMAIN" in missing, missing


def test_statefulset_pod_names_resolve(cluster: LocalCluster) -> None:
    governing = service("db", clusterIP="None")
    governing["spec"]["selector"] = {"app": "db"}
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {"name": "db", "image": "busybox", "command": ["sleep", "3600"]}
                    ],
                },
            },
        },
    }
    cluster.apply(governing, statefulset)
    cluster.kubectl("rollout", "status", "statefulset/db", "--timeout=90s")
    pod_ip = cluster.get("pod", "db-0")["status"]["podIP"]
    answer = nslookup(cluster, "client-3", "db-0.db.default.svc.cluster.local")
    assert f"Address: {pod_ip}" in answer, answer


def test_local_traffic_policies_keep_traffic_on_nodes_with_endpoints(
    cluster: LocalCluster,
) -> None:
    # One backend, on node 2: Local policies must not send traffic to another node.
    cluster.run_pods({"solo": 2}, labels={"app": "solo"})
    external = service("solo-np", type="NodePort", externalTrafficPolicy="Local")
    internal = service("solo-internal", internalTrafficPolicy="Local")
    for svc in (external, internal):
        svc["spec"]["selector"] = {"app": "solo"}
    cluster.apply(external, internal)
    port = cluster.get("service", "solo-np")["spec"]["ports"][0]["nodePort"]
    assert cluster.fetch_from_node(1, f"http://{cluster.node_ip(2)}:{port}/") == "solo"
    refused = cluster.in_node(1, "busybox", "timeout", "3", "wget", "-q", "-O", "-",
                              f"http://{cluster.node_ip(3)}:{port}/")  # fmt: skip
    assert refused.returncode != 0 and not refused.stdout
    ip = cluster.get("service", "solo-internal")["spec"]["clusterIP"]
    assert cluster.fetch_many("client-2", f"http://{ip}/", 3) == ["solo"] * 3
    assert not cluster.reaches("client-1", f"http://{ip}/")


def web_ingress(name: str, host: str, backend: str) -> dict[str, Any]:
    """An Ingress sending every path of ``host`` to Service ``backend``'s ``http`` port."""
    path = {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": backend, "port": {"name": "http"}}},
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {"rules": [{"host": host, "http": {"paths": [path]}}]},
    }


def ingress_lb_address(cluster: LocalCluster) -> str:
    """The address the pool gave ``kube-system/kubetrio-ingress`` (waited for)."""

    def address() -> str | None:
        found = cluster.run_kubectl(
            "get", "service", "-n", "kube-system", "kubetrio-ingress", "-o", "json"
        )
        if found.returncode != 0:
            return None  # not made yet: made once a node's nginx serves
        status = json.loads(found.stdout).get("status") or {}
        ips = [i.get("ip") for i in (status.get("loadBalancer") or {}).get("ingress") or []]
        return ips[0] if ips else None

    return str(wait_for("the ingress LoadBalancer's address", address))


def ingress_status(cluster: LocalCluster, name: str) -> list[str]:
    status = cluster.get("ingress", name).get("status") or {}
    return [str(i.get("ip")) for i in (status.get("loadBalancer") or {}).get("ingress") or []]


def test_ingress_on_every_node(cluster: LocalCluster) -> None:
    # Every node's nginx (its agent acting as system:node:<name>) serves the Ingress on
    # port 80 of its own address, to backends on all three nodes.
    cluster.apply(service("web-ing"))
    cluster.apply(web_ingress("web", "web.test", "web-ing"))
    # DefaultIngressClass admission gave it the built-in class.
    assert cluster.get("ingress", "web")["spec"]["ingressClassName"] == "kubetrio-nginx"
    nodes = [cluster.node_ip(i) for i in (1, 2, 3)]
    # The cluster has an address pool: the Ingress shows the LoadBalancer's address.
    lb_ip = ingress_lb_address(cluster)
    wait_for(
        "the LoadBalancer address in the Ingress's status",
        lambda: ingress_status(cluster, "web") == [lb_ip],
        timeout=60,
    )
    for index, address in ((1, nodes[1]), (2, nodes[2]), (3, nodes[0])):

        def answers(index: int = index, address: str = address) -> set[str]:
            fetch = ["busybox", "wget", "-q", "-O", "-", "--header", "Host: web.test"]
            seen = set()
            for _ in range(REQUESTS):
                result = cluster.in_node(index, *fetch, f"http://{address}/")
                seen.add(result.stdout.strip())
            return seen & set(BACKENDS)

        # nginx picks the upstream round-robin over the three pods.
        assert wait_for(
            f"nginx of {address} to reach every backend",
            lambda: answers() == set(BACKENDS),
            timeout=60,
        )


def test_ingress_through_its_load_balancer_address(cluster: LocalCluster) -> None:
    """``kube-system/kubetrio-ingress``: a pool address whose endpoints are every node's
    nginx (from the nodes' annotations), reached from the underlay on 80 and 443, and
    shown as the Ingress's ADDRESS."""
    cluster.apply(service("web-lb-ing"))
    cluster.apply(web_ingress("web-lb", "lb.test", "web-lb-ing"))
    lb_ip = ingress_lb_address(cluster)
    slices = cluster.get(
        "endpointslices", "-n", "kube-system", "-l", "kubernetes.io/service-name=kubetrio-ingress"
    )["items"]
    served = {
        (e["nodeName"], e["addresses"][0])
        for s in slices
        for e in s["endpoints"]
        if e["conditions"]["ready"]
    }
    assert served == {(cluster.node(i), cluster.node_ip(i)) for i in (1, 2, 3)}
    assert {(p["name"], p["port"]) for s in slices for p in s["ports"]} == {
        ("http", 80),
        ("https", 443),
    }

    # The host on the underlay: ARP finds the announcing node, its proxy sends the
    # connection to some node's nginx, which picks a backend.
    def answers() -> set[str]:
        seen = set()
        for _ in range(REQUESTS):
            fetched = subprocess.run(
                ["busybox", "wget", "-q", "-O", "-", "--header", "Host: lb.test",
                 f"http://{lb_ip}/"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            seen.add(fetched.stdout.strip())
        return seen

    assert wait_for("every backend through the LoadBalancer", lambda: answers() == set(BACKENDS))
    # 443 leads to nginx too (its TLS listener: no certificate for a bare address).
    with socket.create_connection((lb_ip, 443), timeout=5):
        pass

    kubectl = str(KUBECTLS / "kubectl.1.33")

    def address_column() -> str | None:
        printed = subprocess.run(
            [kubectl, f"--kubeconfig={cluster.kubeconfig}", "get", "ingress", "web-lb"],
            capture_output=True, text=True, timeout=30,
        ).stdout.splitlines()  # fmt: skip
        if len(printed) != 2:
            return None
        header, row = printed[0].split(), printed[1].split()
        assert header == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
        return row[3] if row[3] == lb_ip else None

    assert wait_for("the LoadBalancer address in kubectl's ADDRESS column", address_column)


MAGLEV_FLOWS = range(42000, 42024)
"""Client source ports: one flow each (Maglev hashes ip saddr . th sport)."""


def fetch_with_source_port(address: str, port: int, source_port: int) -> tuple[str, int]:
    """The body the host gets for ``http://address:port/`` on a connection from
    ``source_port`` (0: one the kernel picks), and the source port used: one flow."""
    with socket.socket() as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # RST on close: no TIME_WAIT here, and conntrack forgets the flow.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.settimeout(5)
        conn.bind(("", source_port))
        used = conn.getsockname()[1]
        conn.connect((address, port))
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    return answer.decode().split("\r\n\r\n", 1)[-1].strip(), used


def test_maglev_service_by_annotation_is_consistent_across_nodes(
    cluster: LocalCluster, cluster_ip: str
) -> None:
    """The nodes run in nftables mode; a Service annotated ``kubetrio.io/proxy-mode:
    maglev`` gets Maglev on every node next to the others: a flow (client address and
    port) lands on one backend whichever node it enters, and flows from the host and
    from a pod spread over the backends on every node."""
    svc = service("web-maglev", type="NodePort")
    svc["metadata"]["annotations"] = {"kubetrio.io/proxy-mode": "maglev"}
    cluster.apply(svc)
    created = cluster.get("service", "web-maglev")
    port, ip = created["spec"]["ports"][0]["nodePort"], created["spec"]["clusterIP"]
    nodes = (1, 2, 3)
    wait_for(
        "every node to serve the NodePort",
        lambda: all(
            cluster.in_node(1, "busybox", "timeout", "3", "wget", "-q", "-O", "-",
                            f"http://{cluster.node_ip(i)}:{port}/").returncode == 0
            for i in nodes
        ),
    )  # fmt: skip
    # Independent tables and conntrack on three nodes agree per flow only through
    # Maglev: at random, 24 flows would all agree with probability (1/9)^24.
    # Source ports the kernel picks (free ones) for node 1, then the same flows to 2 and 3.
    first = [fetch_with_source_port(cluster.node_ip(1), port, 0) for _ in MAGLEV_FLOWS]
    flows = [used for _, used in first]
    by_node = {1: [body for body, _ in first]}
    for i in nodes[1:]:
        by_node[i] = [fetch_with_source_port(cluster.node_ip(i), port, p)[0] for p in flows]
    assert by_node[1] == by_node[2] == by_node[3], by_node
    assert set(by_node[1]) == set(BACKENDS), by_node[1]
    # From a pod on node 1 to the ClusterIP: its flows reach backends on all three nodes.
    script = "; ".join(
        f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -p {p} {ip} 80 | tail -n 1"
        for p in MAGLEV_FLOWS
    )
    answers = cluster.kubectl("exec", "client-1", "--", "sh", "-c", script).split()
    assert set(answers) == set(BACKENDS), answers
    # The other Services stay in the nodes' mode, which each node records.
    assert set(cluster.fetch_many("client-2", f"http://{cluster_ip}/", REQUESTS)) == set(BACKENDS)
    status = subprocess.run(
        [*KUBETRIO, "status", "--name", cluster.name],
        env=cluster.env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    for i in nodes:
        assert f"node {cluster.node(i)}: Ready, proxy mode nftables" in status.stdout, status
