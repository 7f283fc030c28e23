"""The per-node policy agent (Calico's felix, policy part).

It keeps three informers — Pods, Namespaces, NetworkPolicies — and after any change
renders the node's ruleset from the caches and writes the difference to nftables. It is
level-based: a burst of events becomes one rendering (a short debounce collects them),
and a failed write is retried from the current caches after a back-off, so it converges
to whatever the cluster says now rather than replaying events.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from kubetrio.client import Client, FunctionHandler, Informer

from .nft import PolicyTable
from .policy import Ruleset, render_policy

log = logging.getLogger("kubetrio.cni_calico.felix")

DEBOUNCE = 0.02
"""Seconds to let a burst of events settle before rendering."""
RETRY = (0.2, 5.0)


class PolicyAgent:
    """Enforces NetworkPolicy on the pods of ``node_name`` in this network namespace.

    :param keep_table_on_exit: leave the table in place when stopped while it isolates
        pods, so pods keep their policy across an agent restart (fail closed). A table
        that isolates nothing is removed either way.
    """

    def __init__(
        self,
        client: Client,
        node_name: str,
        *,
        table: PolicyTable | None = None,
        keep_table_on_exit: bool = True,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.table = table or PolicyTable()
        self.keep_table_on_exit = keep_table_on_exit
        self.pods = Informer(client, "v1", "pods")
        self.namespaces = Informer(client, "v1", "namespaces")
        self.policies = Informer(client, "networking.k8s.io/v1", "networkpolicies")
        self.applied = 0
        """How many rulesets were written (tests wait on it)."""
        self.ruleset: Ruleset | None = None
        self._changed = trio.Event()
        self._written = trio.Event()

    def _poke(self, _obj: Any) -> None:
        self._changed.set()

    def render(self) -> Ruleset:
        """The ruleset the current caches call for."""
        return render_policy(
            node_name=self.node_name,
            pods=self.pods.list(),
            namespaces=self.namespaces.list(),
            policies=self.policies.list(),
        )

    async def wait_written(self) -> None:
        """Wait until the next ruleset is written (after a change the caller made)."""
        written = self._written
        await written.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch, render and write until cancelled; ``started`` after the first write."""
        handler = FunctionHandler(self._poke)
        for informer in (self.pods, self.namespaces, self.policies):
            informer.add_handler(handler)
        try:
            async with trio.open_nursery() as nursery:
                for informer in (self.pods, self.namespaces, self.policies):
                    await nursery.start(informer.run)
                # Pods should not start before their policy is in place, but a node whose
                # nftables refuses the table must still come up: one try, then retries
                # go on in the loop below.
                await self._write_until_done(retry=False)
                task_status.started()
                while True:
                    await self._changed.wait()
                    await trio.sleep(DEBOUNCE)
                    await self._write_until_done()
        finally:
            with trio.CancelScope(shield=True):
                await self._cleanup()

    async def _write_until_done(self, *, retry: bool = True) -> None:
        failures = 0
        while True:
            self._changed = trio.Event()
            ruleset = self.render()
            try:
                await self.table.apply(ruleset)
            except Exception as exc:  # nft refused: log, back off, render again
                failures += 1
                log.warning("writing the policy table failed (%s); retrying", exc)
                if not retry:
                    self._changed.set()  # the main loop tries again
                    return
                await trio.sleep(min(RETRY[1], RETRY[0] * 2**failures))
                continue
            self.ruleset = ruleset
            self.applied += 1
            written, self._written = self._written, trio.Event()
            written.set()
            return

    async def _cleanup(self) -> None:
        isolating = self.ruleset is not None and self.ruleset.isolated_pods() > 0
        if self.keep_table_on_exit and isolating:
            return
        try:
            await self.table.remove()
        except Exception as exc:  # best effort on the way out
            log.warning("removing the policy table failed: %s", exc)
