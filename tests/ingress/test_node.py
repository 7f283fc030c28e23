"""Ingresses served by real nginx on a real node (root, runc, docker-registry).

Two busybox httpd Deployments answer with their own name; one Ingress routes hosts and
paths to them (Prefix element-wise, Exact, the default backend, a missing Service), TLS
by SNI with a Secret made here. The node's nginx listens on 18080/18443 so the test
never takes the host's 80/443; after the node stops, its nginx (found by the PID it
wrote) is gone and the ports are free.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from kubetrio.cluster import open_local_node
from kubetrio.ingress import HTTP_PORT_ANNOTATION, HTTPS_PORT_ANNOTATION

from .objects import ingress, path, self_signed, tls_secret

pytestmark = [
    pytest.mark.root,
    pytest.mark.runc,
    pytest.mark.skipif(
        os.geteuid() != 0
        or not shutil.which("runc")
        or not shutil.which("docker-registry")
        or not shutil.which("nginx"),
        reason="needs root, runc, docker-registry and nginx",
    ),
]

HTTP_PORT, HTTPS_PORT = 18080, 18443
KUBECTLS = Path(os.path.realpath(shutil.which("kubectl") or "/nonexistent")).parent
"""Where kubectl 1.27 and 1.33 are installed, beside ``kubectl``."""
FILES = ("index.html", "exact", "exactly", "app/page", "application")


def web(name: str) -> dict[str, Any]:
    """A Deployment whose httpd answers every file of FILES with ``name``."""
    script = "mkdir -p /tmp/app; " + "; ".join(f"echo {name} > /tmp/{f}" for f in FILES)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": "busybox",
                            "command": ["sh", "-c", f"{script}; exec httpd -f -p 8080 -h /tmp"],
                            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        }
                    ],
                },
            },
        },
    }


def web_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


def site() -> dict[str, Any]:
    obj = ingress(
        "site",
        [
            {
                "host": "shop.test",
                "paths": [
                    path("/", "alpha", "http"),
                    path("/exact", "beta", path_type="Exact"),
                    path("/app", "beta", 80),
                    path("/gone", "nosuch"),
                ],
            },
            {"host": "plain.test", "paths": [path("/", "alpha")]},
        ],
        defaultBackend={"service": {"name": "beta", "port": {"number": 80}}},
        tls=[{"hosts": ["shop.test"], "secretName": "shop-tls"}],
    )
    for field in ("uid", "creationTimestamp"):
        del obj["metadata"][field]
    return obj


async def _get(http: httpx.AsyncClient, url: str, host: str, **kw: Any) -> httpx.Response:
    return await http.get(url, headers={"Host": host}, **kw)


async def _kubectl(binary: str, url: str, *args: str) -> str:
    # Not subprocess.run: the API server answering kubectl runs in this very event loop.
    done = await trio.run_process(
        [binary, "--kubeconfig", "/dev/null", "--server", url, *args],
        capture_stdout=True,
        capture_stderr=True,
    )
    return bytes(done.stdout).decode()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


async def test_ingress_on_a_real_node(tmp_path: Path) -> None:
    cert, key = self_signed("shop.test")
    base = f"http://127.0.0.1:{HTTP_PORT}"
    state = tmp_path / "agent" / "ingress"
    with trio.fail_after(180):
        async with open_local_node(
            tmp_path,
            node_name="ingress-node",
            block="10.244.251.0/26",
            dns=False,
            ingress_ports=(HTTP_PORT, HTTPS_PORT),
        ) as cluster:
            client = cluster.client
            nginx_pid = int((state / "nginx.pid").read_text())
            for name in ("alpha", "beta"):
                await client.create("apps/v1", "deployments", web(name), namespace="default")
                await client.create("v1", "services", web_service(name), namespace="default")
            await client.create(
                "v1", "secrets", tls_secret("shop-tls", cert, key), namespace="default"
            )
            await client.create("networking.k8s.io/v1", "ingresses", site(), namespace="default")

            # No keep-alive: a reload (endpoints changing) closes the old workers' idle
            # connections, and httpx would send into one as it closes.
            once = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=5, limits=once) as http:
                # Until both backends have ready endpoints in nginx's configuration.
                await _until_served(http, base)

                async def body(url: str, host: str) -> str:
                    answer = await _get(http, url, host)
                    assert answer.status_code == 200, (url, host, answer.status_code)
                    return answer.text.strip()

                # plain.test has no TLS: its paths are served over HTTP.
                assert await body(f"{base}/exactly", "plain.test") == "alpha"
                # shop.test has TLS: HTTP is redirected, as ingress-nginx does.
                redirect = await _get(http, f"{base}/exact?x=1", "shop.test")
                assert redirect.status_code == 308
                assert redirect.headers["location"] == f"https://shop.test:{HTTPS_PORT}/exact?x=1"
                # No rule's host: the Ingress's defaultBackend.
                assert await body(f"{base}/application", "other.test") == "beta"

            # TLS by SNI with the Secret's certificate, verified against it.
            context = ssl.create_default_context(cadata=cert.decode())
            tls = f"https://127.0.0.1:{HTTPS_PORT}"
            async with httpx.AsyncClient(timeout=5, verify=context, limits=once) as https:

                async def secure(url: str) -> httpx.Response:
                    return await https.get(
                        url, headers={"Host": "shop.test"}, extensions={"sni_hostname": "shop.test"}
                    )

                for url, expected in (
                    ("/exact", "beta"),  # Exact
                    ("/exactly", "alpha"),  # not /exact: the "/" Prefix
                    ("/app/page", "beta"),  # Prefix /app, element-wise
                    ("/application", "alpha"),  # not under /app
                    ("/", "alpha"),
                ):
                    answer = await secure(tls + url)
                    assert (answer.status_code, answer.text.strip()) == (200, expected), url
                # A path to a missing Service: 503.
                assert (await secure(tls + "/gone/x")).status_code == 503
            # Without SNI (a new connection) there is no certificate to offer.
            async with httpx.AsyncClient(timeout=5, verify=context) as fresh:
                with pytest.raises(httpx.ConnectError):
                    await fresh.get(tls + "/", headers={"Host": "shop.test"})

            # An Event on the Ingress names the missing Service.
            async def warnings() -> list[dict[str, Any]]:
                events = await client.list(
                    "v1", "events", namespace="default", field_selector="involvedObject.name=site"
                )
                return [e for e in events["items"] if e.get("type") == "Warning"]

            # (NoEndpoints ones too, while the pods were starting.)
            while not [w for w in await warnings() if w["reason"] == "ServiceNotFound"]:
                await trio.sleep(0.2)
            (warning,) = [w for w in await warnings() if w["reason"] == "ServiceNotFound"]
            assert 'service "default/nosuch" not found' in warning["message"]
            assert warning["source"]["component"] == "kubetrio-ingress"

            # The status: the node's InternalIP.
            node = await client.get("v1", "nodes", "ingress-node")
            internal = next(
                a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"
            )
            while True:
                stored = await client.get(
                    "networking.k8s.io/v1", "ingresses", "site", namespace="default"
                )
                if (stored.get("status") or {}).get("loadBalancer"):
                    break
                await trio.sleep(0.2)
            assert stored["status"]["loadBalancer"]["ingress"] == [{"ip": internal}]
            # The node says where its nginx serves (for the ingress's LoadBalancer Service).
            annotations = node["metadata"].get("annotations") or {}
            assert annotations.get(HTTP_PORT_ANNOTATION) == str(HTTP_PORT)
            assert annotations.get(HTTPS_PORT_ANNOTATION) == str(HTTPS_PORT)

            # kubectl's columns, as upstream's printer.
            for binary in (str(KUBECTLS / "kubectl.1.27"), str(KUBECTLS / "kubectl.1.33")):
                printed = await _kubectl(binary, cluster.url, "get", "ingress", "-n", "default")
                lines = printed.splitlines()
                assert lines[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
                row = lines[1].split()
                assert row[:6] == [
                    "site",
                    "kubetrio-nginx",
                    "shop.test,plain.test",
                    internal,
                    "80,",
                    "443",
                ]
                classes = (await _kubectl(binary, cluster.url, "get", "ingressclass")).splitlines()
                assert classes[0].split() == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
                assert classes[1].split()[:3] == [
                    "kubetrio-nginx",
                    "kubetrio.io/ingress-nginx",
                    "<none>",
                ]
            assert Path(f"/proc/{nginx_pid}").exists()
            certs = list((state / "certs").iterdir())
            assert [oct(p.stat().st_mode & 0o777) for p in certs] == ["0o600"]

    # Stopped by its PID with the node: no process, no pid file, the ports free again.
    assert not Path(f"/proc/{nginx_pid}").exists()
    assert not (state / "nginx.pid").exists()
    assert _port_free(HTTP_PORT) and _port_free(HTTPS_PORT)
    leftover = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True)
    assert leftover.stdout == ""


async def _until_served(http: httpx.AsyncClient, base: str) -> None:
    """Until both backends answer through nginx (each has a ready endpoint rendered)."""
    while True:
        try:
            alpha = await _get(http, f"{base}/exactly", "plain.test")
            beta = await _get(http, f"{base}/application", "other.test")
        except httpx.TransportError:
            # A reload while rendering catches up: the old workers close what they held.
            pass
        else:
            if alpha.status_code == beta.status_code == 200:
                return
        await trio.sleep(0.2)
