"""Upstream's default roles and bindings (``bootstrap-policy.yaml``), reconciled at start.

As kube-apiserver's ``rbac/bootstrap-roles`` post-start hook: a missing default is
created; an existing one whose ``rbac.authorization.kubernetes.io/autoupdate``
annotation is not ``"false"`` gets the rules and subjects it lacks added back (what an
administrator added is kept); ``autoupdate: "false"`` leaves it alone.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources
from typing import Any

import trio
import yaml

from kubetrio.client import Client, ClientError
from kubetrio.providers import KubeObject

from .authorizer import API_VERSION, GROUP
from .rules import uncovered

log = logging.getLogger("kubetrio_auth.rbac")

AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAPPING = "kubernetes.io/bootstrapping"


@functools.cache
def _policy() -> dict[str, Any]:
    text = resources.files("kubetrio_auth.rbac").joinpath("bootstrap-policy.yaml").read_text()
    policy: dict[str, Any] = yaml.safe_load(text)
    return policy


def _metadata(name: str, labels: dict[str, str] | None = None) -> KubeObject:
    return {
        "name": name,
        "labels": {BOOTSTRAPPING: "rbac-defaults", **(labels or {})},
        "annotations": {AUTOUPDATE: "true"},
    }


def cluster_roles() -> list[KubeObject]:
    """The default ClusterRoles."""
    roles = []
    for spec in _policy()["clusterRoles"]:
        role: KubeObject = {
            "apiVersion": API_VERSION,
            "kind": "ClusterRole",
            "metadata": _metadata(spec["name"], spec.get("labels")),
            "rules": [dict(rule) for rule in spec.get("rules") or ()],
        }
        if "aggregationRule" in spec:
            role["aggregationRule"] = spec["aggregationRule"]
        roles.append(role)
    return roles


def _subject(text: str) -> KubeObject:
    kind, _, name = text.partition(":")
    if kind == "ServiceAccount":
        namespace, _, name = name.partition("/")
        return {"kind": kind, "name": name, "namespace": namespace}
    return {"apiGroup": GROUP, "kind": kind, "name": name}


def cluster_role_bindings() -> list[KubeObject]:
    """The default ClusterRoleBindings (each binds the ClusterRole of its name)."""
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "ClusterRoleBinding",
            "metadata": _metadata(name),
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
            "subjects": [_subject(s) for s in subjects],
        }
        for name, subjects in _policy()["clusterRoleBindings"].items()
    ]


def _reconciled(existing: KubeObject, wanted: KubeObject) -> KubeObject | None:
    """``existing`` with what it lacks of ``wanted``, or None when nothing is missing
    (or autoupdate is off)."""
    metadata = existing.get("metadata") or {}
    if (metadata.get("annotations") or {}).get(AUTOUPDATE) == "false":
        return None
    updated = {**existing, "metadata": dict(metadata)}
    changed = False
    for key in ("labels", "annotations"):
        merged = {**(metadata.get(key) or {}), **wanted["metadata"][key]}
        if merged != (metadata.get(key) or {}):
            updated["metadata"][key] = merged
            changed = True
    if wanted["kind"] == "ClusterRole":
        if "aggregationRule" in wanted:
            # The aggregation controller owns the rules of an aggregated role.
            if existing.get("aggregationRule") != wanted["aggregationRule"]:
                updated["aggregationRule"] = wanted["aggregationRule"]
                changed = True
        else:
            current = list(existing.get("rules") or ())
            missing = [r for r in wanted["rules"] if uncovered(current, [r])]
            if missing:
                updated["rules"] = current + missing
                changed = True
    else:
        current = list(existing.get("subjects") or ())
        missing = [s for s in wanted["subjects"] if s not in current]
        if missing:
            updated["subjects"] = current + missing
            changed = True
    return updated if changed else None


async def reconcile(client: Client) -> None:
    """Create or complete every default role and binding."""
    for resource, objects in (
        ("clusterroles", cluster_roles()),
        ("clusterrolebindings", cluster_role_bindings()),
    ):
        for wanted in objects:
            name = wanted["metadata"]["name"]
            try:
                existing = await client.get(API_VERSION, resource, name)
            except ClientError as exc:
                if exc.code != 404:
                    raise
                await client.create(API_VERSION, resource, wanted)
                continue
            updated = _reconciled(existing, wanted)
            if updated is not None:
                await client.update(API_VERSION, resource, updated)


class BootstrapPolicy:
    """A controller that reconciles the default roles and bindings once, at start."""

    name = "rbac-bootstrap-policy"
    in_apiserver = True
    """Run by the API server's loopback client before it serves, as kube-apiserver's
    ``rbac/bootstrap-roles`` post-start hook: the controller manager and the scheduler
    need the bindings it makes before they can act."""

    async def run(
        self, client: Client, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Reconcile (retrying until it succeeds), say started, then idle until cancelled."""
        while True:
            try:
                await reconcile(client)
                break
            except ClientError as exc:
                # A conflict with an administrator's write, or the server starting up.
                log.warning("reconciling the default RBAC policy: %s; retrying", exc)
                await trio.sleep(1)
        task_status.started()
        await trio.sleep_forever()
