"""The ClusterRole aggregation controller, as upstream's ``clusterrole-aggregation``.

A ClusterRole with an ``aggregationRule`` gets as ``rules`` the union of the rules of
every other ClusterRole its ``clusterRoleSelectors`` select (in name order, without
duplicates), and keeps them current as roles are labelled, changed or deleted.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from kubetrio.api.selectors import LabelSelectorError, label_selector_from_struct
from kubetrio.client import Client, ClientError, SharedInformers
from kubetrio.providers import KubeObject

from .authorizer import API_VERSION
from .rules import Rule

log = logging.getLogger("kubetrio_auth.rbac")


def aggregated_rules(role: KubeObject, roles: list[KubeObject]) -> list[Rule]:
    """The rules an aggregated ClusterRole should have, given all ClusterRoles."""
    name = role["metadata"]["name"]
    rules: list[Rule] = []
    selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or ()
    for other in sorted(roles, key=lambda r: str(r["metadata"]["name"])):
        if other["metadata"]["name"] == name:
            continue
        labels = other["metadata"].get("labels") or {}
        for selector in selectors:
            try:
                selected = label_selector_from_struct(selector).matches(labels)
            except LabelSelectorError:
                selected = False
            if selected:
                for rule in other.get("rules") or ():
                    if rule not in rules:
                        rules.append(rule)
                break
    return rules


class WakeOnChange:
    """An informer handler that wakes a sync loop (one pending pass at most) on every
    change; the certificates plugin's loops use it too."""

    def __init__(self, wake: trio.MemorySendChannel[None]) -> None:
        self.wake = wake

    def _poke(self) -> None:
        # When a pass is already pending, it will see this change too.
        with contextlib.suppress(trio.WouldBlock):
            self.wake.send_nowait(None)

    def on_add(self, obj: KubeObject) -> None:
        self._poke()

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        self._poke()

    def on_delete(self, obj: KubeObject) -> None:
        self._poke()


class ClusterRoleAggregation:
    """Fills the rules of aggregated ClusterRoles from the roles they select."""

    name = "clusterrole-aggregation"

    async def run(
        self, client: Client, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Watch ClusterRoles and re-aggregate on every change, until cancelled."""
        informers = SharedInformers(client)
        roles = informers.informer(API_VERSION, "clusterroles")
        wake, woken = trio.open_memory_channel[None](1)
        roles.add_handler(WakeOnChange(wake))
        async with trio.open_nursery() as nursery:
            await nursery.start(informers.run)
            await self.sync(client, roles.list())
            task_status.started()
            async for _ in woken:
                await self.sync(client, roles.list())

    async def sync(self, client: Client, roles: list[KubeObject]) -> None:
        """Update every aggregated ClusterRole whose rules are not the union they should be."""
        for role in roles:
            if not role.get("aggregationRule"):
                continue
            wanted = aggregated_rules(role, roles)
            if wanted == list(role.get("rules") or ()):
                continue
            try:
                await client.update(API_VERSION, "clusterroles", {**role, "rules": wanted})
            except ClientError as exc:
                # A conflict means a newer version is on its way through the informer.
                log.info("aggregating ClusterRole %s: %s", role["metadata"]["name"], exc)
