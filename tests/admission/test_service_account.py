"""ServiceAccounts for pods on an embedded HTTPS cluster with the auth, RBAC and admission
plugins: the ServiceAccount admission plugin's defaults, its projected volume and its
refusal; ``kube-root-ca.crt`` in every namespace; the ``kubernetes`` Service at the
advertised address; the issuer's OIDC discovery documents and a token verified with them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from kubetrio import plugins
from kubetrio.apiserver import ServiceAccountTokens
from kubetrio.client import Client, ClientError
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.controllers import _kubernetes_service
from kubetrio.pki import ClusterPKI, client_context, ensure_cluster_pki
from kubetrio.store import open_store
from tests.kit.polling import wait_for

ADVERTISED = "127.0.0.2"
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass
class Secured:
    cluster: Cluster
    client: Client
    pki: ClusterPKI

    def http(self, *, host: str = "127.0.0.1", token: str = "") -> httpx.AsyncClient:
        """An HTTPS client trusting the cluster CA, presenting ``token``, or else the
        admin's client certificate."""
        pki = self.pki
        if token:
            context = client_context(pki.ca.files.cert_file)
            headers = {"authorization": f"Bearer {token}"}
        else:
            admin = pki.admin
            context = client_context(pki.ca.files.cert_file, admin.cert_file, admin.key_file)
            headers = {}
        port = self.cluster.api.external_address.rsplit(":", 1)[1]
        return httpx.AsyncClient(base_url=f"https://{host}:{port}", verify=context, headers=headers)


@pytest.fixture
async def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Secured]:
    monkeypatch.setattr(_kubernetes_service, "PERIOD", 0.2)
    data = tmp_path / "data"
    pki = ensure_cluster_pki(data, ip_addresses=["127.0.0.1", ADVERTISED])
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_cluster(
            store,
            plugins=plugins.load(only=["auth", "rbac", "admission"]),
            token="admin-token",
            scheduler=False,
            plugin_config={
                "auth": {"authorization_mode": "RBAC"},
                "kubetrio": {"data_dir": str(data)},
            },
            tls=pki.tls(),
            advertise_address=ADVERTISED,
        ) as cluster,
    ):
        cluster.api.service_account_tokens = ServiceAccountTokens(data / "service-account.key")
        client = cluster.client
        await client.create("v1", "namespaces", {"metadata": {"name": "team"}})
        await wait_for(lambda: _get(client, "serviceaccounts", "default", "team"))
        yield Secured(cluster, client, pki)


async def _get(client: Client, resource: str, name: str, namespace: str) -> Any:
    try:
        return await client.get("v1", resource, name, namespace=namespace)
    except ClientError as exc:
        if exc.not_found:
            return None
        raise


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }


async def test_a_pod_gets_the_default_account_and_its_token_volume(secured: Secured) -> None:
    spec = {
        "initContainers": [{"name": "init", "image": "busybox"}],
        "containers": [
            {"name": "c", "image": "busybox"},
            {
                "name": "own",
                "image": "busybox",
                "volumeMounts": [{"name": "mine", "mountPath": MOUNT}],
            },
        ],
        "volumes": [{"name": "mine", "emptyDir": {}}],
    }
    created = await secured.client.create("v1", "pods", pod("p", **spec), namespace="team")
    got = created["spec"]
    assert got["serviceAccountName"] == got["serviceAccount"] == "default"
    token_volumes = [v for v in got["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(token_volumes) == 1
    volume = token_volumes[0]
    assert len(volume["name"]) == len("kube-api-access-") + 5
    assert volume["projected"] == {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            "path": "namespace",
                        }
                    ]
                }
            },
        ],
    }
    expected = {"name": volume["name"], "readOnly": True, "mountPath": MOUNT}
    assert got["initContainers"][0]["volumeMounts"] == [expected]
    assert got["containers"][0]["volumeMounts"] == [expected]
    # A container with its own mount at the path keeps it alone, as upstream.
    assert got["containers"][1]["volumeMounts"] == [{"name": "mine", "mountPath": MOUNT}]


async def test_automount_false_on_the_pod_or_the_account(secured: Secured) -> None:
    client = secured.client
    quiet = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "quiet"}}
    await client.create(
        "v1", "serviceaccounts", {**quiet, "automountServiceAccountToken": False}, namespace="team"
    )
    await wait_for(lambda: _get(client, "serviceaccounts", "quiet", "team"))

    def token_volumes(obj: dict[str, Any]) -> list[str]:
        return [v["name"] for v in obj["spec"].get("volumes") or [] if "projected" in v]

    off = await client.create(
        "v1", "pods", pod("off", automountServiceAccountToken=False), namespace="team"
    )
    assert token_volumes(off) == []
    assert "volumeMounts" not in off["spec"]["containers"][0]
    by_account = await client.create(
        "v1", "pods", pod("by-account", serviceAccountName="quiet"), namespace="team"
    )
    assert token_volumes(by_account) == []
    # The pod's own setting wins over its ServiceAccount's.
    pod_wins = await client.create(
        "v1",
        "pods",
        pod("pod-wins", serviceAccountName="quiet", automountServiceAccountToken=True),
        namespace="team",
    )
    assert len(token_volumes(pod_wins)) == 1


async def test_a_missing_account_is_refused_with_upstreams_message(secured: Secured) -> None:
    with pytest.raises(ClientError) as refused:
        await secured.client.create(
            "v1", "pods", pod("ghostly", serviceAccountName="ghost"), namespace="team"
        )
    assert refused.value.code == 403
    assert str(refused.value.message) == (
        'pods "ghostly" is forbidden: error looking up service account team/ghost: '
        'serviceaccount "ghost" not found'
    )
    assert await _get(secured.client, "pods", "ghostly", "team") is None


async def test_kube_root_ca_is_published_and_put_back(secured: Secured) -> None:
    client = secured.client
    ca = secured.pki.ca.files.cert_file.read_text()

    async def published() -> bool:
        found = await _get(client, "configmaps", "kube-root-ca.crt", "team")
        return found is not None and found.get("data") == {"ca.crt": ca}

    await wait_for(published)
    found = await client.get("v1", "configmaps", "kube-root-ca.crt", namespace="team")
    assert found["metadata"]["annotations"]["kubernetes.io/description"].startswith(
        "Contains a CA bundle that can be used to verify the kube-apiserver"
    )
    await client.patch(
        "v1", "configmaps", "kube-root-ca.crt", {"data": {"ca.crt": "forged"}}, namespace="team"
    )
    await wait_for(published)
    await client.delete("v1", "configmaps", "kube-root-ca.crt", namespace="team")
    await wait_for(published)


async def test_the_kubernetes_service_points_at_the_advertised_address(secured: Secured) -> None:
    client = secured.client
    port = int(secured.cluster.api.external_address.rsplit(":", 1)[1])

    async def slice_points_here() -> bool:
        try:
            found = await client.get(
                "discovery.k8s.io/v1", "endpointslices", "kubernetes", namespace="default"
            )
        except ClientError as exc:
            if exc.not_found:
                return False
            raise
        return bool(
            found["endpoints"][0]["addresses"] == [ADVERTISED]
            and found["ports"] == [{"name": "https", "port": port, "protocol": "TCP"}]
            and found["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
        )

    service = await client.get("v1", "services", "kubernetes", namespace="default")
    assert service["spec"]["clusterIP"] == "10.96.0.1"
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}
    ]
    assert service["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    endpoints = await client.get("v1", "endpoints", "kubernetes", namespace="default")
    assert endpoints["subsets"] == [
        {
            "addresses": [{"ip": ADVERTISED}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }
    ]
    assert await slice_points_here()
    # Kept by the API server: deleted or changed, it comes back.
    await client.delete("discovery.k8s.io/v1", "endpointslices", "kubernetes", namespace="default")
    await client.patch(
        "v1", "endpoints", "kubernetes", {"subsets": [{"addresses": [{"ip": "10.0.0.9"}]}]},
        namespace="default",
    )  # fmt: skip
    await wait_for(slice_points_here)
    await wait_for(lambda: _endpoint_ip(client, ADVERTISED))
    # The advertised address is served (the certificate names it).
    async with secured.http(host=ADVERTISED) as http:
        assert (await http.get("/api/v1/namespaces/default")).status_code == 200


async def _endpoint_ip(client: Client, wanted: str) -> bool:
    found = await client.get("v1", "endpoints", "kubernetes", namespace="default")
    return bool(found["subsets"][0]["addresses"] == [{"ip": wanted}])


async def test_oidc_discovery_verifies_a_bound_token(secured: Secured) -> None:
    client = secured.client
    created = await client.create("v1", "pods", pod("holder"), namespace="team")
    answer = await client.create(
        "v1",
        "serviceaccounts",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": "holder",
                    "uid": created["metadata"]["uid"],
                }
            },
        },
        namespace="team",
        name="default",
        subresource="token",
    )
    token = answer["status"]["token"]
    port = secured.cluster.api.external_address.rsplit(":", 1)[1]
    # Readable by any ServiceAccount (system:service-account-issuer-discovery), with
    # the token itself; not by strangers.
    async with secured.http(token=token) as http:

        async def readable() -> bool:
            # Once the default policy (the binding to system:serviceaccounts) is in.
            answer = await http.get("/.well-known/openid-configuration")
            return answer.status_code == 200

        await wait_for(readable)
        discovery = await http.get("/.well-known/openid-configuration")
        assert discovery.headers["content-type"] == "application/json"
        assert discovery.json() == {
            "issuer": "https://kubernetes.default.svc.cluster.local",
            "jwks_uri": f"https://{ADVERTISED}:{port}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        keys = await http.get("/openid/v1/jwks")
        assert keys.status_code == 200
        assert keys.headers["content-type"] == "application/jwk-set+json"
        secrets = await http.get("/api/v1/namespaces/team/secrets")
        assert secrets.status_code == 403
        assert 'User "system:serviceaccount:team:default"' in secrets.json()["message"]
    pki = secured.pki
    async with httpx.AsyncClient(verify=client_context(pki.ca.files.cert_file)) as anonymous:
        refused = await anonymous.get(f"https://127.0.0.1:{port}/openid/v1/jwks")
        assert refused.status_code == 403
    # A relying party verifies the token with the published key alone.
    (key,) = keys.json()["keys"]
    assert key["kid"] == jwt.get_unverified_header(token)["kid"]
    assert (key["kty"], key["alg"], key["use"], key["e"]) == ("RSA", "RS256", "sig", "AQAB")
    claims = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience="https://kubernetes.default.svc.cluster.local",
        issuer=discovery.json()["issuer"],
    )
    assert claims["sub"] == "system:serviceaccount:team:default"
    assert claims["kubernetes.io"]["pod"]["uid"] == created["metadata"]["uid"]
    # The token dies with the pod it is bound to.
    await client.delete("v1", "pods", "holder", namespace="team", grace_period_seconds=0)

    async def refused_now() -> bool:
        async with secured.http(token=token) as http:
            return (await http.get("/openid/v1/jwks")).status_code == 401

    await wait_for(refused_now)
