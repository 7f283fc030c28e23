"""What authentication, authorization and admission cost a request, measured in one run.

Two embedded clusters in this process (API server and controllers), each over its own
SQLite store:

* **chain**: the whole chain on, as ``kubetrio server`` runs it — the auth plugin
  (a bearer token from ``--token-auth-file``), RBAC with upstream's default roles (the
  user bound to ``edit`` in the namespace by a RoleBinding, among every default binding),
  and every admission plugin (NamespaceLifecycle, LimitRanger with a LimitRange to apply,
  PodSecurity with the namespace enforcing ``baseline`` and warning ``restricted``,
  ResourceQuota);
* **admin**: the admin-only chain — the admin token (``system:masters``), AlwaysAllow, no
  admission plugin.

The same load goes to both in alternating rounds (so drift of the machine hits both
alike), over HTTP with ``--concurrency`` keep-alive clients: pod creates, then gets of
the created pods; p50/p99 latency of each. Then the direct costs, which load on a shared
machine blurs less: microseconds per request through the API server's handler (no
socket) for the same GET on both; authentication and authorization of one request, and
admission of one pod, called directly on the plugin managers.

The last line is one JSON object with the figures and the chain/admin ratios.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio
from _kit import bench_pod, quantiles, timed_round

from kubetrio import plugins
from kubetrio import store as kv
from kubetrio.client import ClientError
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.handler import Request
from kubetrio.providers import AdmissionRequest, AuthorizationAttributes, AuthRequest, UserInfo

ADMIN_TOKEN = "bench-admin"
USER_TOKEN = "bench-user"
NAMESPACE = "bench"
RBAC = "rbac.authorization.k8s.io/v1"


@asynccontextmanager
async def chain_cluster(root: Path) -> AsyncIterator[Cluster]:
    """The full chain, with the bench user bound to ``edit`` in the namespace."""
    tokens = root / "tokens.csv"
    tokens.write_text(f'{USER_TOKEN},jane,u-jane,"devs"\n')
    async with (
        kv.open_store(f"sqlite://{root}/chain.db") as store,
        open_cluster(
            store,
            plugins=plugins.load(only=["auth", "rbac", "admission"]),
            token=ADMIN_TOKEN,
            scheduler=False,
            plugin_config={"auth": {"authorization_mode": "RBAC", "token_auth_file": str(tokens)}},
        ) as cluster,
    ):
        admin = cluster.client
        labels = {
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
        }
        await admin.create("v1", "namespaces", {"metadata": {"name": NAMESPACE, "labels": labels}})
        await admin.create(
            "v1",
            "limitranges",
            {
                "metadata": {"name": "defaults"},
                "spec": {"limits": [{"type": "Container", "default": {"memory": "128Mi"}}]},
            },
            namespace=NAMESPACE,
        )
        await admin.create(
            RBAC,
            "rolebindings",
            {
                "metadata": {"name": "jane-edit"},
                "roleRef": {"apiGroup": RBAC.split("/")[0], "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"kind": "User", "name": "jane", "apiGroup": RBAC.split("/")[0]}],
            },
            namespace=NAMESPACE,
        )
        await _until_allowed(cluster)
        yield cluster


async def _until_allowed(cluster: Cluster) -> None:
    """Wait until the user may create pods (``edit`` aggregated, caches caught up)."""
    from kubetrio.client import Client

    user = Client.in_process(cluster.api, token=USER_TOKEN)
    with trio.fail_after(60):
        while True:
            try:
                await user.list("v1", "pods", namespace=NAMESPACE)
                return
            except ClientError as exc:
                if exc.code != 403:
                    raise
            await trio.sleep(0.2)


@asynccontextmanager
async def admin_cluster(root: Path) -> AsyncIterator[Cluster]:
    """The admin-only chain: system:masters, AlwaysAllow, no admission."""
    async with (
        kv.open_store(f"sqlite://{root}/admin.db") as store,
        open_cluster(
            store,
            plugins=plugins.load(only=["auth", "rbac"]),
            token=ADMIN_TOKEN,
            scheduler=False,
            plugin_config={"auth": {"authorization_mode": "AlwaysAllow"}},
        ) as cluster,
    ):
        await cluster.client.create("v1", "namespaces", {"metadata": {"name": NAMESPACE}})
        yield cluster


PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


async def create(http: httpx.AsyncClient, name: str) -> httpx.Response:
    """POST one pod."""
    return await http.post(PODS, json=bench_pod(name))


async def get(http: httpx.AsyncClient, name: str) -> httpx.Response:
    """GET one pod."""
    return await http.get(f"{PODS}/{name}")


async def direct_us(cluster: Cluster, token: str, name: str, n: int) -> float:
    """Microseconds per GET of one pod through the API server's handler (no socket)."""
    path = f"/api/v1/namespaces/{NAMESPACE}/pods/{name}"
    request = Request(
        method="GET",
        target=path,
        path=path,
        query={},
        headers={"authorization": f"Bearer {token}", "user-agent": "bench"},
        remote="127.0.0.1:5555",
    )
    started = time.perf_counter()
    for _ in range(n):
        response = await cluster.api.handle(request)
        assert response.status == 200
    return (time.perf_counter() - started) / n * 1e6


def auth_us(cluster: Cluster, token: str, n: int) -> float:
    """Microseconds to authenticate a bearer token and authorize a pod GET with it,
    called directly on the cluster's plugin manager (what the chain adds to a request)."""
    plugins_of = cluster.api.plugins
    assert plugins_of is not None
    credentials = AuthRequest(headers={"authorization": f"Bearer {token}"})
    wanted = AuthorizationAttributes(
        verb="get", api_version="v1", resource="pods", namespace=NAMESPACE, name="pod-0-0"
    )
    started = time.perf_counter()
    for _ in range(n):
        user = plugins_of.authenticate(request=credentials)
        assert user is not None
        user = UserInfo(name=user.name, uid=user.uid, groups=(*user.groups, "system:authenticated"))
        decision = plugins_of.authorize(user=user, attributes=wanted)
        assert decision is not None and decision.allowed
    return (time.perf_counter() - started) / n * 1e6


def admission_us(cluster: Cluster, n: int) -> float:
    """Microseconds the admission plugins (mutating, then validating) take for one pod of
    the bench user, called directly on the cluster's plugin manager."""
    plugins_of = cluster.api.plugins
    assert plugins_of is not None
    user = UserInfo(name="jane", uid="u-jane", groups=("devs", "system:authenticated"))
    body = bench_pod("direct")
    copies = [copy.deepcopy(body) for _ in range(n)]
    started = time.perf_counter()
    for obj in copies:
        request = AdmissionRequest(
            operation="CREATE",
            user=user,
            api_group="",
            api_version="v1",
            kind="Pod",
            resource="pods",
            namespace=NAMESPACE,
            name="direct",
            object=obj,
        )
        plugins_of.admission_mutate(request=request)
        assert not plugins_of.admission_validate(request=request)
    return (time.perf_counter() - started) / n * 1e6


async def main(count: int, rounds: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="kubetrio-auth-bench-") as tmp:
        root = Path(tmp)
        async with chain_cluster(root) as chain, admin_cluster(root) as admin:
            clusters = {"chain": (chain, USER_TOKEN), "admin": (admin, ADMIN_TOKEN)}
            latencies: dict[tuple[str, str], list[float]] = {
                (verb, mode): [] for verb in ("create", "get") for mode in clusters
            }
            for r in range(rounds):
                names = [f"pod-{r}-{i}" for i in range(count // rounds)]
                for verb in ("create", "get"):
                    order = ("chain", "admin") if r % 2 == 0 else ("admin", "chain")
                    for mode in order:
                        cluster, token = clusters[mode]
                        await timed_round(
                            cluster.url,
                            names,
                            concurrency,
                            create if verb == "create" else get,
                            201 if verb == "create" else 200,
                            latencies[verb, mode],
                            headers={"authorization": f"Bearer {token}"},
                        )
            direct: dict[str, float] = {
                "admission_us_per_pod": round(min(admission_us(chain, 500) for _ in range(5)), 1),
                "auth_chain_us_per_request": round(
                    min(auth_us(chain, USER_TOKEN, 2000) for _ in range(5)), 1
                ),
                "auth_admin_us_per_request": round(
                    min(auth_us(admin, ADMIN_TOKEN, 2000) for _ in range(5)), 1
                ),
            }
            for _ in range(7):  # alternated, the best of seven for each
                for mode, (cluster, token) in clusters.items():
                    us = await direct_us(cluster, token, "pod-0-0", 1000)
                    key = f"get_{mode}_direct_us"
                    direct[key] = round(min(direct.get(key, us), us), 1)
    figures: dict[str, float] = {}
    for (verb, mode), values in latencies.items():
        p50, p99 = quantiles(values)
        figures[f"{verb}_{mode}_p50_ms"] = round(p50, 3)
        figures[f"{verb}_{mode}_p99_ms"] = round(p99, 3)
    for verb in ("create", "get"):
        for q in ("p50", "p99"):
            figures[f"{verb}_{q}_ratio"] = round(
                figures[f"{verb}_chain_{q}_ms"] / figures[f"{verb}_admin_{q}_ms"], 3
            )
    figures.update(direct)
    figures["get_direct_added_us"] = round(
        direct["get_chain_direct_us"] - direct["get_admin_direct_us"], 1
    )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="pods per mode")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()
    result = trio.run(main, options.count, options.rounds, options.concurrency)
    for verb in ("create", "get"):
        chain = [result[f"{verb}_chain_{q}_ms"] for q in ("p50", "p99")]
        admin = [result[f"{verb}_admin_{q}_ms"] for q in ("p50", "p99")]
        print(
            f"pod {verb}s, full chain / admin-only: p50 {chain[0]:.2f} / {admin[0]:.2f} ms, "
            f"p99 {chain[1]:.2f} / {admin[1]:.2f} ms (p99 ratio {result[f'{verb}_p99_ratio']})"
        )
    print(
        f"one GET through the handler: {result['get_chain_direct_us']:.0f} / "
        f"{result['get_admin_direct_us']:.0f} µs (+{result['get_direct_added_us']:.0f} µs); "
        f"admission of one pod: {result['admission_us_per_pod']:.0f} µs"
    )
    print(
        f"authentication + authorization of one request: "
        f"{result['auth_chain_us_per_request']:.1f} µs (RBAC) / "
        f"{result['auth_admin_us_per_request']:.1f} µs (admin, system:masters)"
    )
    print(json.dumps(result))
