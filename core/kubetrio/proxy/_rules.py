"""The nftables ruleset of the service proxy, rendered per Service and diffed per sync.

One table per node (``table ip kubetrio``), shaped like kube-proxy's nftables mode::

    nat-prerouting / nat-output ─▶ services
        services: ip daddr . meta l4proto . th dport vmap @service-ips
                  fib daddr type local ... meta l4proto . th dport vmap @service-nodeports
    service-ips      ClusterIP . proto . port      : goto service-<svc port>
                     external IP . proto . port    : goto external-<svc port>
    service-nodeports proto . nodePort             : goto external-<svc port>
    service-<sp>     masquerade marks for non-pod sources, session affinity, then one
                     load-balancing rule (numgen random vmap, or Maglev: jhash → @maglev-<sp>)
    external-<sp>    Cluster policy: mark for masquerade, goto service-<sp>
                     Local policy: no masquerade (client IP kept), local endpoints only
    endpoint-<sp>__<ip>/<port>   hairpin mark (source = the endpoint), affinity update, dnat
    no-endpoint-services / no-endpoint-nodeports   (filter hooks) reject what has no endpoint
    nat-postrouting  masquerade packets carrying the 0x4000 mark

Every Service renders to a :class:`Fragment` (its chains, sets, maps and map elements);
a sync diffs the old and new fragments of the changed Services into one nft script —
new chains/sets first, then rewritten chains, removed then added map elements (so a
Maglev map changes only in the slots :meth:`MaglevTable.diff` reports), and last the
chains and sets nobody refers to any more — applied as one transaction.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kubetrio.datapath import MaglevTable

from ._model import Endpoint, ServicePort, local_endpoints, usable_endpoints

TABLE = "kubetrio"
MASQUERADE_MARK = 0x4000
MAGLEV_SLOTS = 251
"""Slots per Maglev map (a prime). Maglev spreads M slots over N backends in shares that
differ by at most one slot, so the imbalance is about N/M: under 4 % up to 10 endpoints
and under 10 % up to 25. A larger M balances better but costs M map elements per service
port in the kernel and in every full sync; 251 keeps a 10k-service ruleset in reach and
still moves only the removed backend's slots (≈1/N of flows) on a change."""

MODES = ("nftables", "maglev")


def _hash(key: str) -> str:
    """Eight base32 characters of sha256: short, stable, and unique enough for names."""
    return base64.b32encode(hashlib.sha256(key.encode()).digest())[:8].decode()


def chain_suffix(sp: ServicePort) -> str:
    """``HASH-ns/name/proto/port``: readable in ``nft list`` and unique."""
    return f"{_hash(sp.key)}-{sp.key}"


def endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    """The chain that DNATs to one endpoint."""
    return f"endpoint-{_hash(sp.key + ep.ip)}-{sp.key}__{ep.ip}/{ep.port}"


def affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    """The set of client addresses stuck to one endpoint."""
    return f"affinity-{_hash(sp.key + ep.ip)}-{sp.key}__{ep.ip}/{ep.port}"


@dataclass(slots=True)
class Fragment:
    """Everything one Service contributes to the table."""

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Chain name → its rules."""
    sets: dict[str, str] = field(default_factory=dict)
    """Set or map name → its body (``type ...; flags ...``); declared with ``add set|map``."""
    elements: dict[tuple[str, str], str] = field(default_factory=dict)
    """(map, key) → value."""
    set_kinds: dict[str, str] = field(default_factory=dict)
    """Set name → ``set`` or ``map``."""


def base_ruleset() -> str:
    """The fixed part of the table: hooks, dispatch maps, masquerading, rejects."""
    mark = f"0x{MASQUERADE_MARK:x}"
    return f"""table ip {TABLE} {{
  map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map service-nodeports {{ type inet_proto . inet_service : verdict; }}
  map no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map no-endpoint-nodeports {{ type inet_proto . inet_service : verdict; }}
  chain nat-prerouting {{
    type nat hook prerouting priority dstnat; policy accept; jump services
  }}
  chain nat-output {{ type nat hook output priority -100; policy accept; jump services; }}
  chain nat-postrouting {{
    type nat hook postrouting priority srcnat; policy accept; jump masquerading
  }}
  chain filter-input {{
    type filter hook input priority -110; policy accept; ct state new jump endpoints-check
  }}
  chain filter-forward {{
    type filter hook forward priority -110; policy accept; ct state new jump endpoints-check
  }}
  chain filter-output {{
    type filter hook output priority -110; policy accept; ct state new jump endpoints-check
  }}
  chain endpoints-check {{
    ip daddr . meta l4proto . th dport vmap @no-endpoint-services
    fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
  }}
  chain reject-chain {{ reject; }}
  chain drop-chain {{ drop; }}
  chain mark-for-masquerade {{ meta mark set meta mark | {mark}; }}
  chain masquerading {{
    meta mark & {mark} == 0 return
    meta mark set meta mark ^ {mark}
    masquerade fully-random
  }}
  chain services {{
    ip daddr . meta l4proto . th dport vmap @service-ips
    fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
  }}
}}
"""


class Renderer:
    """Renders Services to :class:`Fragment` s for one node.

    :param node_name: this node (for the Local traffic policies).
    :param cluster_cidr: pod addresses; ClusterIP traffic from elsewhere is masqueraded.
    :param mode: ``nftables`` (random choice, like kube-proxy) or ``maglev``.
    :param maglev_slots: slots per Maglev map (a prime, see :data:`MAGLEV_SLOTS`).
    :param maglev_seed: permutation seed of the Maglev tables; every node must use the same.
    """

    def __init__(
        self,
        *,
        node_name: str,
        cluster_cidr: str = "10.244.0.0/16",
        mode: str = "nftables",
        maglev_slots: int = MAGLEV_SLOTS,
        maglev_seed: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r} (one of {', '.join(MODES)})")
        self.node_name = node_name
        self.cluster_cidr = cluster_cidr
        self.mode = mode
        self.maglev_slots = maglev_slots
        self.maglev_seed = maglev_seed

    def render(self, ports: Iterable[ServicePort]) -> Fragment:
        """The fragment of one Service (all its ports)."""
        fragment = Fragment()
        for sp in ports:
            self._render_port(sp, fragment)
        return fragment

    def _render_port(self, sp: ServicePort, out: Fragment) -> None:
        suffix = chain_suffix(sp)
        usable = usable_endpoints(sp.endpoints)
        internal = local_endpoints(usable, self.node_name) if sp.internal_local else usable
        external = local_endpoints(usable, self.node_name) if sp.external_local else usable
        proto = sp.protocol
        service_chain = f"service-{suffix}"
        external_chain = f"external-{suffix}"
        needs_external = bool(sp.node_port or sp.external_ips)

        # Endpoint chains for every endpoint any load-balancing rule may pick.
        chosen = {(e.ip, e.port): e for e in [*internal, *(external if needs_external else [])]}
        for ep in chosen.values():
            rules = [f"ip saddr {ep.ip} jump mark-for-masquerade"]  # hairpin
            if sp.affinity_timeout and self.mode == "nftables":
                name = affinity_set(sp, ep)
                out.sets[name] = (
                    f"type ipv4_addr; flags dynamic,timeout; timeout {sp.affinity_timeout}s;"
                )
                out.set_kinds[name] = "set"
                rules.append(f"update @{name} {{ ip saddr }}")
            rules.append(f"meta l4proto {proto} dnat to {ep.ip}:{ep.port}")
            out.chains[endpoint_chain(sp, ep)] = tuple(rules)

        for ip in sp.cluster_ips:
            key = f"{ip} . {proto} . {sp.port}"
            if internal:
                out.elements[("service-ips", key)] = f"goto {service_chain}"
            else:
                out.elements[("no-endpoint-services", key)] = "goto reject-chain"
        if internal:
            rules = []
            if self.cluster_cidr:
                rules.append(f"ip saddr != {self.cluster_cidr} jump mark-for-masquerade")
            rules.extend(self._balance(sp, internal, f"maglev-{suffix}", out))
            out.chains[service_chain] = tuple(rules)

        if not needs_external:
            return
        if not external and not sp.external_local:
            if sp.node_port:
                out.elements[("no-endpoint-nodeports", f"{proto} . {sp.node_port}")] = (
                    "goto reject-chain"
                )
            for ip in sp.external_ips:
                out.elements[("no-endpoint-services", f"{ip} . {proto} . {sp.port}")] = (
                    "goto reject-chain"
                )
            return
        if sp.node_port:
            out.elements[("service-nodeports", f"{proto} . {sp.node_port}")] = (
                f"goto {external_chain}"
            )
        for ip in sp.external_ips:
            out.elements[("service-ips", f"{ip} . {proto} . {sp.port}")] = f"goto {external_chain}"
        if not sp.external_local:
            if external is internal:
                rules = ["jump mark-for-masquerade", f"goto {service_chain}"]
            else:
                rules = [
                    "jump mark-for-masquerade",
                    *self._balance(sp, external, f"maglev-ext-{suffix}", out),
                ]
        elif external:
            # Local policy: keep the client's address, so no masquerade mark.
            rules = self._balance(sp, external, f"maglev-local-{suffix}", out)
        else:
            rules = ["goto drop-chain"]  # no local endpoint: drop, as kube-proxy does
        out.chains[external_chain] = tuple(rules)

    def _balance(
        self, sp: ServicePort, endpoints: list[Endpoint], map_name: str, out: Fragment
    ) -> list[str]:
        """Rules that send a new connection to one of ``endpoints``."""
        chains = [endpoint_chain(sp, e) for e in endpoints]
        rules = []
        if self.mode == "maglev":
            names = [f"{e.ip}:{e.port}" for e in endpoints]
            table = MaglevTable(names, size=self.maglev_slots, seed=self.maglev_seed).table()
            out.sets[map_name] = f"typeof numgen random mod {self.maglev_slots} : verdict;"
            out.set_kinds[map_name] = "map"
            for slot, index in enumerate(table):
                out.elements[(map_name, str(slot))] = f"goto {chains[index]}"
            # ClientIP affinity = hash the client address only: every connection of a
            # client lands in the same slot, and stays while the table keeps that slot.
            flow = "ip saddr" if sp.affinity_timeout else "ip saddr . th sport"
            seed = f"0x{(self.maglev_seed * 2654435761 + 1) & 0xFFFFFFFF:x}"
            rules.append(f"jhash {flow} mod {self.maglev_slots} seed {seed} vmap @{map_name}")
            return rules
        if sp.affinity_timeout:
            for ep, chain in zip(endpoints, chains, strict=True):
                rules.append(f"ip saddr @{affinity_set(sp, ep)} goto {chain}")
        # Rule i takes 1/(N-i) of what the rules before it left: 1/N each. A cascade, not
        # one numgen vmap, because each vmap is an anonymous set, and every set adds to
        # the cache nft fetches per transaction; the cascade costs N-1 compares per new
        # connection only.
        last = len(chains) - 1
        for i, chain in enumerate(chains[:last]):
            rules.append(f"numgen random mod {len(chains) - i} 0 goto {chain}")
        rules.append(f"goto {chains[last]}")
        return rules


def _element(map_name: str, key: str, value: str | None) -> str:
    body = f"{key} : {value}" if value is not None else key
    return f"{{ {body} }}"


def diff_script(old: Mapping[str, Fragment], new: Mapping[str, Fragment]) -> list[str]:
    """nft commands that turn the fragments ``old`` into ``new`` (keys: Service keys).

    Keys missing from ``new`` are removed Services. Only changed parts are written.
    """
    add_objects: list[str] = []
    rewrite: list[str] = []
    delete_elements: list[str] = []
    add_elements: list[str] = []
    flush_gone: list[str] = []
    delete_objects: list[str] = []
    delete_sets_gone: list[str] = []
    delete_sets: list[str] = []
    empty = Fragment()
    for key in old.keys() | new.keys():
        before = old.get(key, empty)
        after = new.get(key, empty)
        if before is after:
            continue
        for name, body in after.sets.items():
            if before.sets.get(name) != body:
                kind = after.set_kinds[name]
                if name in before.sets:
                    # A changed declaration (a new affinity timeout): a set cannot be
                    # re-declared while rules refer to it, so the caller rewrites all.
                    delete_sets.append(name)
                add_objects.append(f"add {kind} ip {TABLE} {name} {{ {body} }}")
        for name, rules in after.chains.items():
            if name not in before.chains:
                add_objects.append(f"add chain ip {TABLE} {name}")
            elif before.chains[name] == rules:
                continue
            else:
                rewrite.append(f"flush chain ip {TABLE} {name}")
            rewrite.extend(f"add rule ip {TABLE} {name} {rule}" for rule in rules)
        for (map_name, element_key), value in before.elements.items():
            new_value = after.elements.get((map_name, element_key))
            if new_value != value:
                delete_elements.append(
                    f"delete element ip {TABLE} {map_name} {_element(map_name, element_key, None)}"
                )
        for (map_name, element_key), value in after.elements.items():
            if before.elements.get((map_name, element_key)) != value:
                add_elements.append(
                    f"add element ip {TABLE} {map_name} {_element(map_name, element_key, value)}"
                )
        gone = before.chains.keys() - after.chains.keys()
        # Every removed chain is emptied before any is deleted: they jump to each other.
        flush_gone.extend(f"flush chain ip {TABLE} {name}" for name in gone)
        delete_objects.extend(f"delete chain ip {TABLE} {name}" for name in gone)
        for name in before.sets.keys() - after.sets.keys():
            delete_sets_gone.append(f"delete {before.set_kinds[name]} ip {TABLE} {name}")
    if delete_sets:
        raise NeedsFullSync("a set or map declaration changed")
    return [
        *add_objects,
        *rewrite,
        *delete_elements,
        *add_elements,
        *flush_gone,
        *delete_objects,
        *delete_sets_gone,
    ]


def full_script(fragments: Iterable[Fragment]) -> list[str]:
    """The whole table, replacing whatever is there (one transaction)."""
    commands = [f"add table ip {TABLE}", f"delete table ip {TABLE}", base_ruleset()]
    elements: dict[str, list[str]] = {}
    chains: list[str] = []
    for fragment in fragments:
        for name, body in fragment.sets.items():
            commands.append(f"add {fragment.set_kinds[name]} ip {TABLE} {name} {{ {body} }}")
        for name, rules in fragment.chains.items():
            commands.append(f"add chain ip {TABLE} {name}")
            chains.extend(f"add rule ip {TABLE} {name} {rule}" for rule in rules)
        for (map_name, key), value in fragment.elements.items():
            elements.setdefault(map_name, []).append(f"{key} : {value}")
    commands.extend(chains)
    for map_name, items in elements.items():
        # Batches keep each command line to a sane length.
        for start in range(0, len(items), 1000):
            batch = ", ".join(items[start : start + 1000])
            commands.append(f"add element ip {TABLE} {map_name} {{ {batch} }}")
    return commands


class NeedsFullSync(Exception):
    """The change cannot be expressed incrementally; rewrite the table."""
