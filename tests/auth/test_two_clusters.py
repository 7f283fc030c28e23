"""Per-cluster plugin state: two embedded clusters in one process, one with a token file,
a password file and RBAC, the other with none of them and AlwaysAllow, each answer by
their own settings — at once, and after the first one stopped."""

from __future__ import annotations

from pathlib import Path

import httpx

from kubetrio import plugins
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.store import open_store

SECRETS = "/api/v1/namespaces/default/secrets"


async def status(cluster: Cluster, **credentials: object) -> tuple[int, str]:
    """The code and message of listing Secrets with ``token=`` or ``auth=`` (or none)."""
    headers = {}
    if "token" in credentials:
        headers["authorization"] = f"Bearer {credentials['token']}"
    auth = credentials.get("auth")
    async with httpx.AsyncClient(base_url=cluster.url, headers=headers) as http:
        answer = await http.get(SECRETS, auth=auth)  # type: ignore[arg-type]
    body = answer.json()
    return answer.status_code, str(body.get("message", "")) if body.get("kind") == "Status" else ""


async def test_two_clusters_keep_their_own_auth_settings(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("jane-token,jane,u1\n")
    passwords = tmp_path / "passwords.csv"
    passwords.write_text("pw,bob,u2\n")
    strict = {
        "authorization_mode": "RBAC",
        "token_auth_file": str(tokens),
        "basic_auth_file": str(passwords),
    }
    async with (
        open_store(f"sqlite://{tmp_path}/a.db") as store_a,
        open_store(f"sqlite://{tmp_path}/b.db") as store_b,
        open_cluster(
            store_b,
            plugins=plugins.load(only=["auth", "rbac"]),
            scheduler=False,
            plugin_config={"auth": {"authorization_mode": "AlwaysAllow"}},
        ) as lax,
    ):
        async with open_cluster(
            store_a,
            plugins=plugins.load(only=["auth", "rbac"]),
            scheduler=False,
            plugin_config={"auth": strict},
        ) as closed:
            # The strict cluster knows jane and bob, and RBAC refuses them by name.
            code, message = await status(closed, token="jane-token")
            assert (code, 'User "jane" cannot list' in message) == (403, True)
            code, message = await status(closed, auth=("bob", "pw"))
            assert (code, 'User "bob" cannot list' in message) == (403, True)
            code, message = await status(closed)
            assert (code, 'User "system:anonymous"' in message) == (403, True)
            # The lax one knows neither and allows everyone else.
            assert await status(lax, token="jane-token") == (401, "Unauthorized")
            assert await status(lax, auth=("bob", "pw")) == (401, "Unauthorized")
            assert (await status(lax))[0] == 200
        # The strict cluster stopped (its plugins unconfigured): the lax one is unchanged.
        assert await status(lax, token="jane-token") == (401, "Unauthorized")
        assert (await status(lax))[0] == 200
