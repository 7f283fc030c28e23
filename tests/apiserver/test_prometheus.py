"""The API server's ``/metrics`` as kubectl and a Prometheus scraper read it: requests
counted with kube-apiserver's labels, watches and store calls measured, random URLs adding
no series, and the endpoint guarded as upstream's (``system:monitoring`` may read it,
others get 403)."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kubetrio import plugins
from kubetrio.apiserver import RunningApiServer, merge_kubeconfig
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.pki import ClusterPKI, ensure_cluster_pki
from kubetrio.store import open_store
from tests.compat.kit import KUBECTL_VERSIONS
from tests.kit.polling import wait_for
from tests.kit.prom import kubectl, samples, series, value
from tests.kit.prom import scrape as scrape_kubectl

REQUESTS = "apiserver_request_total"


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
async def test_kubectl_reads_the_requests_it_just_made(
    apiserver: RunningApiServer, kubeconfig: Path, version: str
) -> None:
    name = f"prom-{version.replace('.', '-')}"
    before = await scrape_kubectl(version, kubeconfig)
    code, out = await kubectl(
        version, kubeconfig, "create", "configmap", name, "--from-literal=a=b"
    )
    assert code == 0, out
    code, out = await kubectl(version, kubeconfig, "get", "configmap", f"{name}-missing")
    assert code == 1 and "NotFound" in out, out
    code, out = await kubectl(version, kubeconfig, "get", "configmaps", "-o", "name")
    assert code == 0 and f"configmap/{name}" in out, out
    after = await scrape_kubectl(version, kubeconfig)

    def delta(**labels: str) -> float:
        return value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels)

    common = {"group": "", "version": "v1", "resource": "configmaps", "component": "apiserver"}
    assert delta(verb="POST", code="201", scope="resource", dry_run="", **common) == 1
    assert delta(verb="GET", code="404", scope="resource", subresource="", **common) == 1
    assert delta(verb="LIST", code="200", scope="namespace", **common) >= 1
    assert delta(verb="GET", code="200", **common) == 0  # nothing read the one created
    # The scrape before is a request too: GET /metrics, answered 200.
    assert delta(verb="GET", code="200", subresource="/metrics") >= 1
    # Its latency is in the histogram under the same labels, and the store was timed.
    created = {"verb": "POST", "resource": "configmaps", "scope": "resource"}
    duration = "apiserver_request_duration_seconds_count"
    assert value(after, duration, **created) - value(before, duration, **created) == 1
    store = "etcd_request_duration_seconds_count"
    assert value(after, store, operation="create", type="configmaps") > value(
        before, store, operation="create", type="configmaps"
    )
    assert (
        value(after, "apiserver_storage_objects", resource="priorityclasses.scheduling.k8s.io") == 2
    )


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return samples(answer.text)


async def test_random_urls_add_no_series(http: httpx.AsyncClient) -> None:
    """Hostile requests — random paths, names, resources, groups, subresources, methods —
    are counted under the labels already there: the number of series stays put."""

    async def burst(count: int) -> None:
        for _ in range(count):
            r = secrets.token_hex(6)
            await http.get(f"/{r}/{r}")
            await http.get(f"/api/{r}")
            await http.get(f"/api/v1/{r}")
            await http.get(f"/apis/{r}.example.com/v1/{r}")
            await http.get(f"/api/v1/namespaces/{r}/configmaps/{r}")
            await http.get(f"/api/v1/namespaces/default/configmaps/{r}/{r}")
            await http.request("PROPFIND", f"/api/v1/namespaces/default/configmaps/{r}")
            await http.request(r.upper(), f"/{r}")
            await http.get(
                "/api/v1/namespaces/default/configmaps", params={"labelSelector": f"a={r}"}
            )

    await burst(2)
    known = set(await scrape(http))
    await burst(100)
    found = await scrape(http)
    assert set(found) == known
    # ...and they were counted: a 404 for each configmap asked for by a random name.
    assert value(found, REQUESTS, verb="GET", code="404", resource="configmaps") >= 100
    assert value(found, REQUESTS, subresource="other", code="404") >= 400
    assert value(found, REQUESTS, verb="other") >= 100


async def test_watches_are_long_running_and_counted(http: httpx.AsyncClient) -> None:
    watch = {"verb": "WATCH", "resource": "configmaps", "scope": "namespace"}
    kind = {"group": "", "version": "v1", "kind": "ConfigMap"}
    before = await scrape(http)
    url = "/api/v1/namespaces/default/configmaps"
    async with http.stream("GET", url, params={"watch": "true", "timeoutSeconds": "10"}) as stream:

        async def watching() -> bool:
            now = await scrape(http)
            return (
                value(now, "apiserver_longrunning_requests", **watch)
                == value(before, "apiserver_longrunning_requests", **watch) + 1
                and value(now, "apiserver_registered_watchers", **kind)
                == value(before, "apiserver_registered_watchers", **kind) + 1
            )

        await wait_for(watching)
        await http.post(url, json={"metadata": {"name": "watched"}})
        lines = stream.aiter_lines()
        assert '"type":"ADDED"' in await lines.__anext__()

        async def sent() -> bool:
            now = await scrape(http)
            events = "apiserver_watch_events_total"
            return value(now, events, **kind) == value(before, events, **kind) + 1

        await wait_for(sent)
        async for _ in lines:  # the server ends the watch at timeoutSeconds
            pass

    async def ended() -> bool:
        now = await scrape(http)
        return (
            value(now, "apiserver_longrunning_requests", **watch)
            == value(before, "apiserver_longrunning_requests", **watch)
            and value(now, REQUESTS, code="200", **watch)
            == value(before, REQUESTS, code="200", **watch) + 1
        )

    await wait_for(ended, timeout=40)


# --- who may read it ------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> ClusterPKI:
    return ensure_cluster_pki(tmp_path / "data", ip_addresses=["127.0.0.1"])


@pytest.fixture
async def rbac_cluster(tmp_path: Path, pki: ClusterPKI) -> AsyncIterator[Cluster]:
    """HTTPS with client certificates, RBAC and its default policy (the bootstrap
    ``system:monitoring`` ClusterRole bound to the group ``system:monitoring``)."""
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_cluster(
            store,
            plugins=plugins.load(only=["auth", "rbac"]),
            token="admin-token",
            scheduler=False,
            plugin_config={"auth": {"authorization_mode": "RBAC"}},
            tls=pki.tls(),
        ) as running,
    ):
        yield running


def _config(
    tmp_path: Path, cluster: Cluster, pki: ClusterPKI, user: str, groups: list[str]
) -> Path:
    path = tmp_path / user / "config"
    path.parent.mkdir()
    merge_kubeconfig(
        path,
        name=user,
        server=cluster.url,
        certificate_authority=pki.ca.files.cert_file.read_bytes(),
        client_certificate=pki.client_certificate(user, user, groups).pem(),
    )
    return path


async def test_only_system_monitoring_reads_metrics(
    rbac_cluster: Cluster, pki: ClusterPKI, tmp_path: Path
) -> None:
    monitor = _config(tmp_path, rbac_cluster, pki, "prometheus", ["system:monitoring"])
    jane = _config(tmp_path, rbac_cluster, pki, "jane", ["devs"])
    for version in KUBECTL_VERSIONS:

        async def allowed(version: str = version) -> bool:
            # The default policy is reconciled as the server starts: wait for the binding.
            code, out = await kubectl(version, monitor, "get", "--raw", "/metrics")
            return code == 0 and "apiserver_request_total{" in out

        await wait_for(allowed)
        code, out = await kubectl(version, jane, "get", "--raw", "/metrics")
        assert code == 1, out
        assert 'User "jane" cannot get path "/metrics"' in out.replace('\\"', '"'), out
    # A scraper without credentials (kubectl would ask for a password) is anonymous.
    context = ssl.create_default_context(cafile=str(pki.ca.files.cert_file))
    async with httpx.AsyncClient(base_url=rbac_cluster.url, verify=context) as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 403
    assert answer.json()["message"] == (
        'forbidden: User "system:anonymous" cannot get path "/metrics"'
    )
    # The refusals were counted as what they were.
    code, out = await kubectl(KUBECTL_VERSIONS[-1], monitor, "get", "--raw", "/metrics")
    found = samples(out)
    refused = value(found, REQUESTS, verb="GET", subresource="/metrics", code="403")
    assert refused >= len(KUBECTL_VERSIONS) + 1
    assert series(found, "process_cpu_seconds_total") == 1
    assert series(found, "python_info") == 1
