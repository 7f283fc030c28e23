"""The service proxy of one node: Services + EndpointSlices → one nftables table.

Two informers (Services, EndpointSlices) feed a set of *dirty* Service keys; one sync
task renders the dirty Services to fragments, diffs them against what the kernel holds,
and applies the difference as one nft transaction: only the changed Services are
rendered and diffed, so the Python side of an update does not grow with the table. Many
events between two syncs collapse into one transaction. A transaction that fails changes
nothing (nft is all or nothing), the proxy then rewrites the whole table from its caches
— the same full sync that runs at start-up and every ``resync_interval`` seconds to
repair drift (somebody flushing or editing the table), and that drops shared ``lb-``
chains and hairpin pairs nobody uses any more while creating spare ones
(:meth:`Renderer.spare_chains`). The table is deleted when the proxy stops.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from kubetrio.client import (
    Client,
    ClientError,
    FunctionHandler,
    Informer,
    KubeObject,
    object_key,
)
from kubetrio.nft import Command, Nft, NftError, remove_table

from ._model import PROXY_MODE_ANNOTATION, SERVICE_NAME_LABEL, service_ports
from ._rules import (
    PROXY_TABLE,
    Fragment,
    NeedsFullSync,
    Renderer,
    diff_script,
    full_script,
    gc_paused,
    shared_parts,
)

log = logging.getLogger("kubetrio.proxy")


@dataclass
class SyncStats:
    """Counters of the proxy's work, for tests, metrics and benchmarks."""

    full_syncs: int = 0
    incremental_syncs: int = 0
    failed_syncs: int = 0
    last_sync_seconds: float = 0.0
    """Wall time of the last successful transaction (render + diff + nft)."""
    last_full_sync_seconds: float = 0.0
    last_commands: int = 0
    """nft commands in the last transaction."""


class ServiceProxy:
    """Programs Services of the cluster into nftables on one node.

    Start it with ``await nursery.start(proxy.run)``; it returns to the starter once the
    first full sync is in the kernel, and deletes its table when cancelled.

    :param client: the cluster client.
    :param node_name: this node's name (``internalTrafficPolicy``/``externalTrafficPolicy``
        ``Local`` pick endpoints whose ``nodeName`` is this).
    :param netns: network namespace to program (name under ``/var/run/netns`` or a path);
        None = the proxy's own.
    :param mode: ``"nftables"`` (random backend per connection, as kube-proxy) or
        ``"maglev"`` (Maglev consistent hashing of the flow, tables from the Rust datapath).
    :param cluster_cidr: the pod network; ClusterIP traffic from outside it is masqueraded.
    :param maglev_slots: Maglev slots per service key (prime).
    :param maglev_seed: Maglev permutation seed (equal on every node).
    :param resync_interval: seconds between full rewrites that repair drift.
    :param min_sync_interval: least seconds between two transactions (batches bursts).
    """

    def __init__(
        self,
        client: Client,
        *,
        node_name: str,
        netns: str | None = None,
        mode: str = "nftables",
        cluster_cidr: str = "10.244.0.0/16",
        maglev_slots: int = 251,
        maglev_seed: int = 0,
        resync_interval: float = 3600.0,
        min_sync_interval: float = 0.0,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.renderer = Renderer(
            node_name=node_name,
            cluster_cidr=cluster_cidr,
            mode=mode,
            maglev_slots=maglev_slots,
            maglev_seed=maglev_seed,
        )
        self.nft = Nft(netns)
        self.resync_interval = resync_interval
        self.min_sync_interval = min_sync_interval
        self.services = Informer(client, "v1", "services")
        self.slices = Informer(client, "discovery.k8s.io/v1", "endpointslices")
        self.stats = SyncStats()
        self.synced = trio.Event()
        """Set after the first full sync."""
        self._applied: dict[str, Fragment] = {}
        self._shared_chains: set[str] = set()
        """The shared ``lb-`` chains in the kernel (kept until the next full sync)."""
        self._slices_of: dict[str, set[str]] = {}
        self._slice_owner: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._full = True
        self._wakeup = trio.Event()
        self._generation = 0
        self._applied_generation = 0
        self._applied_changed = trio.Condition()
        self.services.add_handler(FunctionHandler(self._service_changed))
        self.slices.add_handler(FunctionHandler(self._slice_changed))

    @property
    def mode(self) -> str:
        """``nftables`` or ``maglev``."""
        return self.renderer.mode

    # --- events --------------------------------------------------------------------------

    def _mark(self, key: str) -> None:
        self._dirty.add(key)
        self._generation += 1
        self._wakeup.set()

    def _service_changed(self, service: KubeObject) -> None:
        self._mark(object_key(service))

    def _slice_changed(self, slice_: KubeObject) -> None:
        key = object_key(slice_)
        labels = slice_["metadata"].get("labels") or {}
        name = labels.get(SERVICE_NAME_LABEL)
        owner = f"{slice_['metadata'].get('namespace', '')}/{name}" if name else None
        previous = self._slice_owner.pop(key, None)
        if previous is not None:
            self._slices_of.get(previous, set()).discard(key)
            self._mark(previous)
        if owner is not None and self.slices.cache.get(key) is not None:
            self._slice_owner[key] = owner
            self._slices_of.setdefault(owner, set()).add(key)
        if owner is not None:
            self._mark(owner)

    def resync(self) -> None:
        """Ask for a full rewrite of the table at the next sync."""
        self._full = True
        self._generation += 1
        self._wakeup.set()

    async def wait_applied(self) -> None:
        """Wait until every change seen so far is in the kernel."""
        target = self._generation
        async with self._applied_changed:
            while self._applied_generation < target:
                await self._applied_changed.wait()

    # --- rendering -----------------------------------------------------------------------

    def _fragment(self, key: str) -> Fragment | None:
        namespace, _, name = key.partition("/")
        service = self.services.get(name, namespace)
        if service is None:
            return None
        slices = [
            self.slices.cache[k] for k in self._slices_of.get(key, ()) if k in self.slices.cache
        ]
        return self.renderer.render(service_ports(service, slices))

    def _all_fragments(self) -> dict[str, Fragment]:
        fragments = {}
        for service in self.services.cache.values():
            key = object_key(service)
            fragment = self._fragment(key)
            if fragment is not None:
                fragments[key] = fragment
        return fragments

    # --- syncing -------------------------------------------------------------------------

    async def sync_once(self) -> None:
        """Apply pending changes now (full or incremental); raises :class:`NftError`."""
        generation = self._generation
        started = time.perf_counter()
        if self._full:
            self._dirty.clear()
            with gc_paused():
                fragments = self._all_fragments()
                in_use = shared_parts(fragments.values())[0]
                spare = Fragment(shared_chains=self.renderer.spare_chains(in_use))
                table = full_script([*fragments.values(), spare])
            await self.nft.run(table)
            del table
            commands: list[Command] = []
            self._applied = fragments
            self._shared_chains = {*in_use, *spare.shared_chains}
            self._full = False
            self.stats.full_syncs += 1
            self.stats.last_full_sync_seconds = time.perf_counter() - started
        else:
            dirty, self._dirty = self._dirty, set()
            new: dict[str, Fragment] = {}
            for key in dirty:
                fragment = self._fragment(key)
                if fragment is not None:
                    new[key] = fragment
            old = {k: self._applied[k] for k in dirty if k in self._applied}
            try:
                commands = diff_script(old, new, self._shared_chains)
            except NeedsFullSync:
                self._full = True
                await self.sync_once()
                return
            if commands:
                try:
                    await self.nft.run(commands)
                except BaseException:
                    self._dirty |= dirty
                    raise
            for fragment in new.values():
                self._shared_chains.update(fragment.shared_chains)
            for key in dirty:
                if key in new:
                    self._applied[key] = new[key]
                else:
                    self._applied.pop(key, None)
            self.stats.incremental_syncs += 1
        self.stats.last_sync_seconds = time.perf_counter() - started
        self.stats.last_commands = len(commands)  # 0 for a full sync
        async with self._applied_changed:
            self._applied_generation = max(self._applied_generation, generation)
            self._applied_changed.notify_all()

    async def _sync_loop(self) -> None:
        next_full = trio.current_time() + self.resync_interval
        while True:
            with trio.move_on_at(next_full if math.isfinite(self.resync_interval) else math.inf):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            if trio.current_time() >= next_full:
                self._full = True
            if self._full:
                next_full = trio.current_time() + self.resync_interval
            try:
                await self.sync_once()
            except (NftError, OSError) as exc:
                self.stats.failed_syncs += 1
                log.warning("nft transaction failed, rewriting the table: %s", exc)
                self._full = True
                self._wakeup.set()
                await trio.sleep(1.0)  # don't spin on a kernel that refuses everything
            if self.min_sync_interval:
                await trio.sleep(self.min_sync_interval)

    async def run(
        self, *, task_status: trio.TaskStatus[ServiceProxy] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Sync until cancelled; ``started(self)`` once the first full sync is applied.

        The table is deleted when the proxy stops (even when cancelled).
        """
        log.info(
            "service proxy on node %s: %s mode (a Service may choose with the %s annotation)",
            self.node_name,
            self.mode,
            PROXY_MODE_ANNOTATION,
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.services.run)
                await nursery.start(self.slices.run)
                await self.sync_once()
                self.synced.set()
                nursery.start_soon(self._sync_loop)
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                await self.remove_table()
                self.nft.close()

    async def remove_table(self) -> None:
        """Delete the proxy's table (idempotent)."""
        try:
            await self.nft.run(remove_table(PROXY_TABLE))
        except (NftError, OSError) as exc:
            log.warning("could not remove table %s: %s", PROXY_TABLE, exc)


async def announce_mode(client: Client, node_name: str, mode: str) -> None:
    """Record the node's proxy mode on its Node (annotation :data:`PROXY_MODE_ANNOTATION`),
    for ``kubetrio status`` and ``kubectl describe node``; a node that may not patch its
    Node object only logs why."""
    patch = {"metadata": {"annotations": {PROXY_MODE_ANNOTATION: mode}}}
    try:
        await client.patch("v1", "nodes", node_name, patch)
    except ClientError as exc:
        log.warning("could not record the proxy mode on node %s: %s", node_name, exc)


def describe(fragments: Iterable[Fragment]) -> dict[str, int]:
    """Counts of chains, sets and map elements (for logs and benchmarks)."""
    fragments = list(fragments)
    shared_chains, shared_elements = shared_parts(fragments)
    chains = len(shared_chains)
    sets = 0
    elements = sum(len(keys) for keys in shared_elements.values())
    for fragment in fragments:
        chains += len(fragment.chains)
        sets += len(fragment.sets)
        elements += sum(len(items) for items in fragment.elements.values())
    return {"chains": chains, "sets": sets, "elements": elements}
