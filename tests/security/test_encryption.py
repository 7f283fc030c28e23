"""Encryption at rest: upstream's EncryptionConfiguration on the store, through kubectl.

The store files are grepped for what a Secret holds; keys are rotated the way upstream's
documentation says; tampered ciphertext is a 500 naming the object, and the server goes on.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from kubetrio import store as kv
from kubetrio.apiserver import RunningApiServer, merge_kubeconfig, open_apiserver

from .conftest import Kubectl, encryption_yaml, key, keyed

SECRET_VALUE = "correct-horse-battery-staple-4711"
SECRET_KEY = b"/registry/core/secrets/default/"


def secret_manifest(name: str, value: str = SECRET_VALUE) -> bytes:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"},
            "stringData": {"password": value},
        }
    ).encode()


@asynccontextmanager
async def serving(
    store: kv.Store, config_text: str | None, tmp_path: Path
) -> AsyncIterator[tuple[RunningApiServer, Kubectl]]:
    """An API server over ``store``, encrypting by ``config_text`` (None: plaintext)."""
    wrapped = (
        store
        if config_text is None
        else kv.EncryptedStore(store, kv.parse_encryption_config(config_text, "test.yaml"))
    )
    async with open_apiserver(wrapped) as running:
        kubeconfig = tmp_path / "kubeconfig"
        merge_kubeconfig(kubeconfig, name="test", server=running.url, token="t")
        yield running, Kubectl(kubeconfig, tmp_path)


def store_files(tmp_path: Path) -> bytes:
    """Everything SQLite wrote: the database, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("state.db*")))


async def password(kubectl: Kubectl, name: str) -> str:
    secret = await kubectl.json("get", "secret", name)
    return base64.b64decode(secret["data"]["password"]).decode()


# --- the providers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "size"), [("aesgcm", 16), ("aesgcm", 32), ("aescbc", 32), ("secretbox", 32)]
)
def test_each_provider_seals_with_upstreams_prefix_and_opens(provider: str, size: int) -> None:
    config = kv.parse_encryption_config(encryption_yaml(keyed(provider, "k1", key(7, size))))
    transformer = config.transformer_for("", "secrets")
    assert transformer is not None
    sealed = transformer.to_storage(b'{"data":"x"}', b"/registry/core/secrets/ns/a")
    assert sealed.startswith(f"k8s:enc:{provider}:v1:k1:".encode())
    assert b'"data"' not in sealed
    assert transformer.from_storage(sealed, b"/registry/core/secrets/ns/a") == (
        b'{"data":"x"}',
        False,
    )
    # Two writes of one value differ (random nonce or IV).
    assert sealed != transformer.to_storage(b'{"data":"x"}', b"/registry/core/secrets/ns/a")
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(ValueError, match=f'{provider} key "k1"'):
        transformer.from_storage(flipped, b"/registry/core/secrets/ns/a")


def test_aesgcm_binds_the_value_to_its_key() -> None:
    config = kv.parse_encryption_config(encryption_yaml(keyed("aesgcm", "k1", key(1))))
    transformer = config.transformer_for("", "secrets")
    assert transformer is not None
    sealed = transformer.to_storage(b"v", b"/registry/core/secrets/ns/a")
    with pytest.raises(ValueError, match="authentication failed"):
        transformer.from_storage(sealed, b"/registry/core/secrets/ns/b")


def test_resources_match_as_upstream_names_them() -> None:
    config = kv.parse_encryption_config(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
        "  - resources: [secrets, deployments.apps]\n"
        f"    providers: [{keyed('aesgcm', 'a', key(1))}]\n"
        f"  - resources: ['*.batch']\n    providers: [{keyed('aescbc', 'b', key(2))}]\n"
    )
    assert config.transformer_for("", "secrets") is not None
    assert config.transformer_for("apps", "deployments") is not None
    assert config.transformer_for("batch", "jobs") is not None
    assert config.transformer_for("", "configmaps") is None
    assert config.transformer_for("apps", "replicasets") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (encryption_yaml(keyed("aesgcm", "k1", key(1, 5))), "secret is not of the expected length"),
        (encryption_yaml(keyed("secretbox", "k1", key(1, 16))), "expected one of [32]"),
        (encryption_yaml(keyed("aescbc", "k1", "not base64!")), "not a valid base64"),
        (encryption_yaml("kms: {name: x}"), "resources[0].providers[0].kms"),
        (encryption_yaml("rot13: {}"), 'Unsupported value: "rot13"'),
        (encryption_yaml("{identity: {}, aesgcm: {}}"), "exactly one provider"),
        (encryption_yaml(), "providers: Required value"),
        ("apiVersion: v1\nkind: Secret\n", "expected apiVersion apiserver.config.k8s.io/v1"),
        ("resources: [", "not valid YAML"),
    ],
)
def test_bad_configs_name_the_file_and_field(document: str, message: str) -> None:
    with pytest.raises(kv.EncryptionConfigError) as caught:
        kv.parse_encryption_config(document, "/etc/enc.yaml")
    assert str(caught.value).startswith("/etc/enc.yaml: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# --- through the API server ---------------------------------------------------------------


async def test_no_secret_plaintext_in_the_store_files(tmp_path: Path) -> None:
    config = encryption_yaml(keyed("secretbox", "key1", key(3)), "identity: {}")
    async with (
        kv.open_store(f"sqlite://{tmp_path}/state.db") as store,
        serving(store, config, tmp_path) as (_, kubectl),
    ):
        await kubectl.run("create", "-f", "-", stdin=secret_manifest("db"))
        await kubectl.run(
            "create", "configmap", "plain", "--from-literal=note=visible-configmap-value"
        )
        assert await password(kubectl, "db") == SECRET_VALUE
        raw = await store.get(SECRET_KEY + b"db")
        assert raw is not None and raw.value.startswith(b"k8s:enc:secretbox:v1:key1:")
        listed = await kubectl.json("get", "secrets")
        assert [s["metadata"]["name"] for s in listed["items"]] == ["db"]
    files = store_files(tmp_path)
    assert SECRET_VALUE.encode() not in files
    assert base64.b64encode(SECRET_VALUE.encode()) not in files
    assert b"visible-configmap-value" in files  # only the configured resources are sealed


async def test_configmaps_are_encrypted_when_configured(tmp_path: Path) -> None:
    config = encryption_yaml(keyed("aesgcm", "key1", key(4)), resources="[secrets, configmaps]")
    async with (
        kv.open_store(f"sqlite://{tmp_path}/state.db") as store,
        serving(store, config, tmp_path) as (_, kubectl),
    ):
        await kubectl.run("create", "configmap", "hidden", "--from-literal=note=hidden-cm-value")
        got = await kubectl.json("get", "configmap", "hidden")
        assert got["data"] == {"note": "hidden-cm-value"}
    assert b"hidden-cm-value" not in store_files(tmp_path)


async def test_key_rotation_as_upstream_documents(tmp_path: Path) -> None:
    old, new = keyed("aesgcm", "key1", key(5)), keyed("aesgcm", "key2", key(6))
    async with kv.open_store(f"sqlite://{tmp_path}/state.db") as store:
        async with serving(store, encryption_yaml(old), tmp_path) as (_, kubectl):
            for name in ("a", "b"):
                await kubectl.run("create", "-f", "-", stdin=secret_manifest(name))
        # 1. the new key second (every server can read it), 2. the new key first.
        async with serving(store, encryption_yaml(old, new), tmp_path) as (_, kubectl):
            assert await password(kubectl, "a") == SECRET_VALUE
        async with serving(store, encryption_yaml(new, old), tmp_path) as (_, kubectl):
            await kubectl.run("create", "-f", "-", stdin=secret_manifest("c"))
            raw = await store.get(SECRET_KEY + b"a")
            assert raw is not None and raw.value.startswith(b"k8s:enc:aesgcm:v1:key1:")
            # 3. rewrite every Secret: unchanged objects are written again, with key2.
            everything = await kubectl.run("get", "secrets", "-A", "-o", "json")
            await kubectl.run("replace", "-f", "-", stdin=everything.encode())
            for name in ("a", "b", "c"):
                raw = await store.get(SECRET_KEY + name.encode())
                assert raw is not None and raw.value.startswith(b"k8s:enc:aesgcm:v1:key2:")
        # 4. the old key removed: everything still reads.
        async with serving(store, encryption_yaml(new), tmp_path) as (_, kubectl):
            for name in ("a", "b", "c"):
                assert await password(kubectl, name) == SECRET_VALUE


async def test_an_unchanged_write_moves_a_stale_value_to_the_first_key(tmp_path: Path) -> None:
    old, new = keyed("aescbc", "old", key(10)), keyed("secretbox", "new", key(11))
    path = "/api/v1/namespaces/default/secrets"
    params = {"fieldManager": "tester"}
    async with kv.open_store(f"sqlite://{tmp_path}/state.db") as store:
        async with (
            serving(store, encryption_yaml(old), tmp_path) as (running, _),
            httpx.AsyncClient(base_url=running.url) as http,
        ):
            made = await http.post(path, content=secret_manifest("s"), params=params)
            assert made.status_code == 201
        async with (
            serving(store, encryption_yaml(new, old), tmp_path) as (running, _),
            httpx.AsyncClient(base_url=running.url) as http,
        ):
            current = (await http.get(f"{path}/s")).json()
            rewritten = await http.put(f"{path}/s", json=current, params=params)
            assert rewritten.status_code == 200
            moved = rewritten.json()["metadata"]["resourceVersion"]
            assert moved != current["metadata"]["resourceVersion"]
            raw = await store.get(SECRET_KEY + b"s")
            assert raw is not None and raw.value.startswith(b"k8s:enc:secretbox:v1:new:")
            again = await http.put(f"{path}/s", json=rewritten.json(), params=params)
            assert again.json()["metadata"]["resourceVersion"] == moved  # fresh: a no-op


async def test_identity_reads_what_was_stored_before_encryption(tmp_path: Path) -> None:
    async with kv.open_store(f"sqlite://{tmp_path}/state.db") as store:
        async with serving(store, None, tmp_path) as (_, kubectl):
            await kubectl.run("create", "-f", "-", stdin=secret_manifest("legacy"))
        gcm = keyed("aesgcm", "key1", key(8))
        async with serving(store, encryption_yaml(gcm), tmp_path) as (running, _):
            async with httpx.AsyncClient(base_url=running.url) as http:
                refused = await http.get("/api/v1/namespaces/default/secrets/legacy")
            assert refused.status_code == 500
            assert "identity is not among the providers" in refused.json()["message"]
        async with serving(store, encryption_yaml(gcm, "identity: {}"), tmp_path) as (_, kubectl):
            assert await password(kubectl, "legacy") == SECRET_VALUE
            current = await kubectl.run("get", "secret", "legacy", "-o", "json")
            await kubectl.run("replace", "-f", "-", stdin=current.encode())
            raw = await store.get(SECRET_KEY + b"legacy")
            assert raw is not None and raw.value.startswith(b"k8s:enc:aesgcm:v1:key1:")


async def test_tampered_ciphertext_is_a_500_naming_the_object(tmp_path: Path) -> None:
    config = encryption_yaml(keyed("aesgcm", "key1", key(9)))
    async with (
        kv.open_store(f"sqlite://{tmp_path}/state.db") as store,
        serving(store, config, tmp_path) as (running, kubectl),
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        for name in ("good", "evil"):
            await kubectl.run("create", "-f", "-", stdin=secret_manifest(name))
        raw = await store.get(SECRET_KEY + b"evil")
        assert raw is not None
        tampered = raw.value[:-5] + bytes([raw.value[-5] ^ 0x40]) + raw.value[-4:]
        await store.update(raw.key, tampered, expected_revision=raw.mod_revision)

        answer = await http.get("/api/v1/namespaces/default/secrets/evil")
        assert answer.status_code == 500
        status = answer.json()
        assert status["kind"] == "Status" and status["reason"] == "InternalError"
        assert 'secrets "evil" in the namespace "default" cannot be decrypted' in status["message"]
        assert 'aesgcm key "key1": message authentication failed' in status["message"]
        out = await kubectl.run("get", "secret", "evil", check=False)
        assert "cannot be decrypted" in out
        listed = await http.get("/api/v1/namespaces/default/secrets")
        assert listed.status_code == 500 and '"evil"' in listed.json()["message"]
        # A watch from before the tampering ends with an ERROR event naming it.
        watched = await http.get(
            "/api/v1/namespaces/default/secrets",
            params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "5"},
        )
        last = json.loads(watched.text.strip().splitlines()[-1])
        assert last["type"] == "ERROR" and last["object"]["code"] == 500
        # And one that lists first says so in its first event.
        listing = await http.get(
            "/api/v1/namespaces/default/secrets", params={"watch": "true", "timeoutSeconds": "5"}
        )
        (only,) = [json.loads(line) for line in listing.text.strip().splitlines()]
        assert only["type"] == "ERROR" and '"evil"' in only["object"]["message"]
        # The server goes on: the other Secret, other kinds, writes.
        assert await password(kubectl, "good") == SECRET_VALUE
        await kubectl.run("create", "configmap", "after", "--from-literal=a=b")
        with trio.fail_after(5):
            assert (await http.get("/readyz")).text == "ok"
