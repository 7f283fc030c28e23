"""A cluster with ``--authorization-mode=RBAC`` and static tokens for a few users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kubetrio import plugins
from kubetrio.client import Client, ClientError
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.store import open_store
from tests.kit.polling import wait_for

ADMIN_TOKEN = "admin-token"
TOKENS = """jane-token,jane,u-jane,"devs"
bob-token,bob,u-bob
builder-token,system:serviceaccount:team:builder,u-sa,"system:serviceaccounts,system:serviceaccounts:team"
"""
RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """An RBAC cluster (controllers on: default policy and aggregation) with namespaces
    ``team`` and ``other``, once the default roles are aggregated (view → edit → admin)."""
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(TOKENS)
    async with (
        open_store(f"sqlite://{tmp_path}/state.db") as store,
        open_cluster(
            store,
            plugins=plugins.load(only=["auth", "rbac"]),
            token=ADMIN_TOKEN,
            scheduler=False,
            plugin_config={"auth": {"token_auth_file": str(tokens), "authorization_mode": "RBAC"}},
        ) as running,
    ):
        for name in ("team", "other"):
            await running.client.create("v1", "namespaces", {"metadata": {"name": name}})

        async def admin_aggregated() -> bool:
            try:
                admin = await running.client.get(RBAC, "clusterroles", "admin")
            except ClientError as exc:  # not created yet: the controllers are starting
                if exc.code != 404:
                    raise
                return False
            # view's rules reach admin through edit: the whole chain has aggregated
            return any(
                "deployments" in rule.get("resources", ()) and "list" in rule.get("verbs", ())
                for rule in admin.get("rules") or ()
            )

        await wait_for(admin_aggregated)
        yield running


def as_user(cluster: Cluster, token: str) -> Client:
    """An in-process client presenting ``token``."""
    return Client.in_process(cluster.api, token=token)


async def until_allowed(call: Callable[[], Awaitable[Any]]) -> None:
    """Wait until a call stops being forbidden (the authorizer's caches catch up with a
    binding just written)."""

    async def allowed() -> bool:
        try:
            await call()
        except ClientError as exc:
            if exc.code == 403:
                return False
            raise
        return True

    await wait_for(allowed)


async def forbidden(call: Callable[[], Awaitable[Any]]) -> str:
    """The message of the 403 a call gets."""
    try:
        await call()
    except ClientError as exc:
        assert exc.code == 403, exc
        assert exc.reason == "Forbidden"
        return exc.message
    raise AssertionError("the call was allowed")
