"""The history subresource through the embedding client: who changed what, the object as
of a time, deleted objects read and restored, conflicts, RBAC and bad input."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import pytest

from kubetrio.client import Client, ClientError, diff_revisions, parse_time
from kubetrio.cluster import Cluster, open_cluster
from kubetrio.store import CompactionPolicy, HistoryPolicy, open_sqlite_store
from tests.auth.conftest import until_allowed

from .conftest import as_user

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]},
        },
    },
}


async def _status(call: Any) -> tuple[int, str]:
    try:
        await call
    except ClientError as exc:
        return exc.code, exc.message
    raise AssertionError("the call succeeded")


async def _ready(cluster: Cluster) -> tuple[Client, Client]:
    jane, bob = as_user(cluster, "jane-token"), as_user(cluster, "bob-token")
    await until_allowed(lambda: jane.list("apps/v1", "deployments", namespace="team"))
    await until_allowed(lambda: bob.list("apps/v1", "deployments", namespace="team"))
    return jane, bob


async def test_five_edits_by_two_users(cluster: Cluster) -> None:
    jane, bob = await _ready(cluster)
    written = [
        await jane.create("apps/v1", "deployments", copy.deepcopy(DEPLOYMENT), namespace="team")
    ]
    written.append(
        await bob.patch(
            "apps/v1", "deployments", "web", {"spec": {"replicas": 3}},
            namespace="team", field_manager="bob-tool",
        )
    )  # fmt: skip
    image = {
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}
    }
    written.append(
        await jane.patch(
            "apps/v1", "deployments", "web", image, namespace="team", patch_type="strategic"
        )
    )
    labelled = copy.deepcopy(written[-1])
    labelled["metadata"]["labels"] = {"tier": "web"}
    written.append(await bob.update("apps/v1", "deployments", labelled, namespace="team"))
    written.append(
        await jane.patch(
            "apps/v1", "deployments", "web", {"spec": {"replicas": 5}}, namespace="team"
        )
    )

    page = await jane.history("apps/v1", "deployments", "web", namespace="team")
    items = page["items"]
    assert page["kind"] == "RevisionList" and page["apiVersion"] == "history.kubetrio.io/v1"
    assert [i["revision"] for i in items] == [
        w["metadata"]["resourceVersion"] for w in reversed(written)
    ]
    assert [i["user"]["username"] for i in items] == ["jane", "bob", "jane", "bob", "jane"]
    assert items[-1]["user"]["groups"] == ["devs", "system:authenticated"]
    assert [i["verb"] for i in items] == ["patch", "update", "patch", "patch", "create"]
    assert [i["type"] for i in items] == ["MODIFIED"] * 4 + ["ADDED"]
    assert items[3]["fieldManager"] == "bob-tool"
    assert all(i["userAgent"].startswith("kubetrio/") for i in items)
    # Each revision's object is exactly what that write answered.
    assert [i["object"] for i in items] == list(reversed(written))

    assert diff_revisions(items[4]["object"], items[3]["object"]) == [("~", "spec.replicas", 1, 3)]
    image_path = "spec.template.spec.containers[0].image"
    assert diff_revisions(items[3]["object"], items[2]["object"]) == [
        ("~", image_path, "nginx:1.25", "nginx:1.26")
    ]
    assert diff_revisions(items[2]["object"], items[1]["object"]) == [
        ("+", "metadata.labels.tier", None, "web")
    ]

    # Paged: two at a time, the same five.
    seen: list[str] = []
    token = ""
    while True:
        part = await bob.history(
            "apps/v1", "deployments", "web", namespace="team", limit=2, continue_token=token
        )
        seen += [i["revision"] for i in part["items"]]
        token = part["metadata"].get("continue", "")
        if not token:
            break
    assert seen == [i["revision"] for i in items]

    # One revision, and the object as of a time between two writes.
    second = await jane.history_revision(
        "apps/v1", "deployments", "web", items[3]["revision"], namespace="team"
    )
    assert second == items[3]
    t2, t3 = parse_time(items[3]["time"]), parse_time(items[2]["time"])
    assert t2 < t3
    at = await jane.history_at(
        "apps/v1", "deployments", "web", t2 + (t3 - t2) / 2, namespace="team"
    )
    assert at["object"] == written[1]
    before = parse_time(items[4]["time"]) - datetime.timedelta(seconds=1)
    code, message = await _status(
        jane.history_at("apps/v1", "deployments", "web", before, namespace="team")
    )
    assert code == 404 and "did not exist" in message


async def test_a_deleted_config_map_is_read_and_restored(cluster: Cluster) -> None:
    jane, bob = await _ready(cluster)
    cm = {"metadata": {"name": "settings"}, "data": {"mode": "a"}}
    created = await jane.create("v1", "configmaps", cm, namespace="team")
    created["data"]["mode"] = "b"
    changed = await bob.update("v1", "configmaps", created, namespace="team")
    await jane.delete("v1", "configmaps", "settings", namespace="team")
    assert (await _status(jane.get("v1", "configmaps", "settings", namespace="team")))[0] == 404

    items = (await bob.history("v1", "configmaps", "settings", namespace="team"))["items"]
    assert [i["type"] for i in items] == ["DELETED", "MODIFIED", "ADDED"]
    assert items[0]["user"]["username"] == "jane" and items[0]["verb"] == "delete"
    assert items[0]["object"]["data"] == {"mode": "b"}  # the last state
    deleted_at = int(items[0]["revision"])
    # After the deletion the object did not exist.
    code, message = await _status(
        jane.history_revision("v1", "configmaps", "settings", deleted_at + 5, namespace="team")
    )
    assert code == 404
    assert message == (
        f'configmaps "settings" did not exist at revision {deleted_at + 5} '
        f"(deleted at {deleted_at})"
    )

    restored = await bob.restore(
        "v1", "configmaps", "settings", changed["metadata"]["resourceVersion"], namespace="team"
    )
    assert restored["data"] == {"mode": "b"}
    live = await jane.get("v1", "configmaps", "settings", namespace="team")
    assert live["data"] == {"mode": "b"} and live["metadata"]["uid"] != created["metadata"]["uid"]
    newest = (await jane.history("v1", "configmaps", "settings", namespace="team", limit=1))[
        "items"
    ][0]
    assert (newest["type"], newest["verb"], newest["user"]["username"], newest["fieldManager"]) == (
        "ADDED", "create", "bob", "kubetrio-history",
    )  # fmt: skip

    # Restore the first version over the live one: an update; a stale precondition is a 409.
    first = created["metadata"]["resourceVersion"]
    stale = changed["metadata"]["resourceVersion"]
    code, message = await _status(
        jane.restore(
            "v1", "configmaps", "settings", first, namespace="team", resource_version=stale
        )
    )
    assert code == 409 and "the object has been modified" in message
    back = await jane.restore("v1", "configmaps", "settings", first, namespace="team")
    assert back["data"] == {"mode": "a"}
    assert (await jane.history("v1", "configmaps", "settings", namespace="team", limit=1))["items"][
        0
    ]["verb"] == "update"


async def test_rbac_and_bad_input(cluster: Cluster) -> None:
    jane, bob = await _ready(cluster)
    admin = cluster.client
    await admin.create("v1", "configmaps", {"metadata": {"name": "theirs"}}, namespace="other")
    await jane.create("v1", "configmaps", {"metadata": {"name": "ours"}}, namespace="team")
    # Another namespace's history is hidden (the admin sees it).
    code, message = await _status(jane.history("v1", "configmaps", "theirs", namespace="other"))
    assert code == 403
    assert message == (
        'configmaps "theirs" is forbidden: User "jane" cannot get resource "configmaps/history"'
        ' in API group "" in the namespace "other"'
    )
    assert len((await admin.history("v1", "configmaps", "theirs", namespace="other"))["items"]) == 1
    # get on the resource alone is not enough: the subresource needs its own rule.
    await admin.create(
        "rbac.authorization.k8s.io/v1",
        "roles",
        {
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        },
        namespace="other",
    )
    await admin.create(
        "rbac.authorization.k8s.io/v1",
        "rolebindings",
        {
            "metadata": {"name": "readers"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}],
        },
        namespace="other",
    )
    await until_allowed(lambda: bob.get("v1", "configmaps", "theirs", namespace="other"))
    assert (await _status(bob.history("v1", "configmaps", "theirs", namespace="other")))[0] == 403

    # Unknown names and kinds: 404 Status; a bad revision: 400.
    code, message = await _status(jane.history("v1", "configmaps", "nope", namespace="team"))
    assert (code, message) == (404, 'configmaps "nope" not found')
    code, _ = await _status(jane.get_path("/api/v1/namespaces/team/widgets/x/history"))
    assert code == 404
    code, message = await _status(
        jane.history_revision("v1", "configmaps", "ours", "x1", namespace="team")
    )
    assert code == 400 and '"x1"' in message
    code, message = await _status(
        jane.history("v1", "configmaps", "ours", namespace="team", limit=-1)
    )
    assert (code, message) == (400, 'invalid limit "-1"')
    code, message = await _status(
        jane.history("v1", "configmaps", "ours", namespace="team", continue_token="junk")
    )
    assert code == 400 and message.startswith("continue key is not valid")
    # Read-only: a write is refused by the authorizer (jane) or as a method (the admin).
    code, _ = await _status(
        jane.create("v1", "configmaps", {}, namespace="team", name="ours", subresource="history")
    )
    assert code == 403
    code, _ = await _status(
        admin.create("v1", "configmaps", {}, namespace="team", name="ours", subresource="history")
    )
    assert code == 405


class Clock:
    """A settable wall clock for the store."""

    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_revision_outside_retention_is_410_naming_the_oldest_kept(tmp_path: Path) -> None:
    clock = Clock()
    policy = HistoryPolicy(retention=3600, clock=clock)
    async with (
        open_sqlite_store(
            tmp_path / "s.db", compaction=CompactionPolicy(interval=0), history=policy
        ) as store,
        open_cluster(store, controllers=False, scheduler=False) as cluster,
    ):
        client = cluster.client
        cm = await client.create(
            "v1", "configmaps", {"metadata": {"name": "c"}, "data": {"v": "0"}}, namespace="default"
        )
        first = cm["metadata"]["resourceVersion"]
        for i in range(1, 4):
            clock.now += 1000
            cm["data"]["v"] = str(i)
            cm = await client.update("v1", "configmaps", cm, namespace="default")
        await store.compact(await store.current_revision())
        clock.now += 3000  # the first two replacements are older than an hour now
        while len((await store.history("/registry/core/configmaps/default/c")).entries) == 4:
            await store.prune_history()
        items = (await client.history("v1", "configmaps", "c", namespace="default"))["items"]
        assert [i["object"]["data"]["v"] for i in items] == ["3", "2"]
        code, message = await _status(
            client.history_revision("v1", "configmaps", "c", first, namespace="default")
        )
        assert code == 410
        assert message == (
            f'revision {first} of configmaps "c" is no longer kept (history retention); '
            f"the oldest kept revision is {items[-1]['revision']}"
        )


@pytest.mark.parametrize("resource", ["configmaps"])
async def test_history_of_an_unknown_object_in_a_known_kind(
    cluster: Cluster, resource: str
) -> None:
    code, _ = await _status(cluster.client.history("v1", resource, "never", namespace="team"))
    assert code == 404
