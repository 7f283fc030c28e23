"""The nftables ruleset of the service proxy, rendered per Service and diffed per sync.

One table per node (``table ip kubetrio``), shaped like kube-proxy's nftables mode, but
with endpoint selection in *data* maps, so that the graph of chains stays small and an
endpoint change never touches it::

    nat-prerouting / nat-output ─▶ services
        services: ip daddr . meta l4proto . th dport vmap @service-ips
                  fib daddr type local ... meta l4proto . th dport vmap @service-nodeports
    service-ips        ClusterIP/external IP . proto . port : goto lb-<policy>-ip-<N>
    service-nodeports  proto . nodePort                     : goto lb-<policy>-nodeport-<N>
    lb-<policy>-<entry>-<N>   one chain per policy, entry and endpoint count, shared by
                     every Service: the masquerade mark of the policy (cluster: sources
                     outside the pod network; external: all; local: none), then
                     dnat ip to <the packet's service key> . numgen random mod N
                                map @service-endpoints (@nodeport-endpoints)
    service-endpoints  ClusterIP/external IP . proto . port . slot : endpoint ip . port
    nodeport-endpoints proto . nodePort . slot                       : endpoint ip . port
    no-endpoint-services / no-endpoint-nodeports   (filter hooks) reject what has no endpoint
    nat-postrouting ─▶ masquerading: hairpin (a DNATed connection with ip saddr . ip
                     daddr in @hairpin: an endpoint sent to itself) sets the 0x4000
                     mark; marked packets are masqueraded

Why data maps: a transaction that adds a jump or goto (a rule, or a verdict-map element)
makes the kernel re-validate every chain reachable from the base chains at commit
(``nft_chain_validate``). With a chain per service port and per endpoint that walk was
O(table) — 650 ms per update at 30k Services with ten endpoints. Here the walk covers
the verdict maps and a handful of shared ``lb-`` chains, and an update that keeps the
endpoint count (a pod replaced) writes only data-map elements, which validate nothing.

Maglev mode uses the same layout with ``jhash`` of the flow (``ip saddr . th sport``, or
``ip saddr`` under ClientIP affinity) ``mod M`` in place of ``numgen``: ``M`` slots per
service key filled from :class:`MaglevTable`, so the ``lb-`` chains do not depend on the
endpoint count and a backend change rewrites only the slots :meth:`MaglevTable.diff` moves.

ClientIP session affinity in nftables mode keeps kube-proxy's per-service and per-endpoint
chains (``service-``/``external-<svc port>`` → ``endpoint-<svc port>__<ip>/<port>`` with an
``affinity-`` set each): an affinity entry must vanish with its endpoint, which a shared
dynamic map cannot promise. Those chains are part of what a commit validates.

Every Service renders to a :class:`Fragment` (its chains, sets, map elements, and the
shared ``lb-`` chains and hairpin elements it needs); a sync diffs the old and new
fragments of the changed Services into one nft script — new chains/sets first, then
rewritten chains, removed then added map elements, and last the chains and sets nobody
refers to any more — applied as one transaction. Shared chains and hairpin elements are
only added incrementally (a stale hairpin pair still only matches a pod talking to
itself, which must be masqueraded anyway); a full sync drops the unused ones.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from kubetrio.datapath import MaglevTable

from ._model import Endpoint, ServicePort, local_endpoints, usable_endpoints

TABLE = "kubetrio"
MASQUERADE_MARK = 0x4000
MAGLEV_SLOTS = 251
"""Maglev slots per service key (a prime). Maglev spreads M slots over N backends in
shares that differ by at most one slot, so the imbalance is about N/M: under 4 % up to 10
endpoints and under 10 % up to 25. A larger M balances better but costs M map elements
per service key in the kernel and in every full sync; 251 keeps a 10k-service ruleset in
reach and still moves only the removed backend's slots (≈1/N of flows) on a change."""

MODES = ("nftables", "maglev")
SPARE_COUNTS = 16
"""A full sync also creates the ``lb-`` chains for 1..16 endpoints of each policy in use
(nftables mode): the first rule that looks up an endpoint map makes the kernel walk all
its elements (``nf_tables_bind_set``, ~0.1 s at 300k), a new count should not pay that."""


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


SERVICE_ENDPOINTS = "service-endpoints"
NODEPORT_ENDPOINTS = "nodeport-endpoints"
HAIRPIN = "hairpin"
ENDPOINT_MAPS = {"service-ips": SERVICE_ENDPOINTS, "service-nodeports": NODEPORT_ENDPOINTS}
"""Dispatch verdict map → the data map its ``lb-`` chains pick endpoints from."""
NO_ENDPOINT_MAPS = {
    "service-ips": "no-endpoint-services",
    "service-nodeports": "no-endpoint-nodeports",
}
KEY_FIELDS = {
    "service-ips": ("ip", "ip daddr . meta l4proto . th dport"),
    "service-nodeports": ("nodeport", "meta l4proto . th dport"),
}
"""Dispatch verdict map → (entry name in ``lb-`` chain names, the packet fields of its key)."""


@dataclass(slots=True)
class Fragment:
    """Everything one Service contributes to the table."""

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Chain name → its rules (chains of this Service only)."""
    sets: dict[str, str] = field(default_factory=dict)
    """Set or map name → its body (``type ...; flags ...``); declared with ``add set|map``."""
    elements: dict[tuple[str, str], str] = field(default_factory=dict)
    """(map, key) → value: a verdict (``goto chain``) or data (``10.244.1.5 . 8080``)."""
    set_kinds: dict[str, str] = field(default_factory=dict)
    """Set name → ``set`` or ``map``."""
    shared_chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """``lb-`` chains this Service's elements point at, shared with other Services: the
    name determines the rules, they are created once and dropped by a full sync only."""
    shared_elements: set[tuple[str, str]] = field(default_factory=set)
    """(set, key) elements other Services may hold too (hairpin pairs): added, never
    deleted incrementally."""


def _mark_rules(policy: str, cluster_cidr: str) -> list[str]:
    """The masquerade marking of a traffic policy (see the module docs)."""
    if policy == "cluster":
        return [f"ip saddr != {cluster_cidr} jump mark-for-masquerade"] if cluster_cidr else []
    if policy == "external":
        return ["jump mark-for-masquerade"]
    return []  # local: keep the client's address


def base_ruleset() -> str:
    """The fixed part of the table: hooks, dispatch and endpoint maps, masquerading, rejects."""
    mark = f"0x{MASQUERADE_MARK:x}"
    return f"""table ip {TABLE} {{
  map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map service-nodeports {{ type inet_proto . inet_service : verdict; }}
  map no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
  map no-endpoint-nodeports {{ type inet_proto . inet_service : verdict; }}
  map {SERVICE_ENDPOINTS} {{
    typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport;
  }}
  map {NODEPORT_ENDPOINTS} {{
    typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport;
  }}
  set {HAIRPIN} {{ type ipv4_addr . ipv4_addr; }}
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
    ct status dnat ip saddr . ip daddr @{HAIRPIN} jump mark-for-masquerade
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
    :param maglev_slots: slots per service key in Maglev mode (a prime, see
        :data:`MAGLEV_SLOTS`).
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
        usable = usable_endpoints(sp.endpoints)
        internal = local_endpoints(usable, self.node_name) if sp.internal_local else usable
        external = local_endpoints(usable, self.node_name) if sp.external_local else usable
        proto = sp.protocol
        cluster_keys = [("service-ips", f"{ip} . {proto} . {sp.port}") for ip in sp.cluster_ips]
        if internal:
            self._route(sp, internal, "cluster", cluster_keys, out)
        else:
            for map_name, key in cluster_keys:
                out.elements[(NO_ENDPOINT_MAPS[map_name], key)] = "goto reject-chain"
        # External IPs, LoadBalancer ingress IPs and the NodePort: the external policy.
        external_keys = [("service-ips", f"{ip} . {proto} . {sp.port}") for ip in sp.external_ips]
        if sp.node_port:
            external_keys.append(("service-nodeports", f"{proto} . {sp.node_port}"))
        if not external_keys:
            return
        if external:
            self._route(
                sp, external, "local" if sp.external_local else "external", external_keys, out
            )
        elif sp.external_local:
            for element in external_keys:  # no local endpoint: drop, as kube-proxy does
                out.elements[element] = "goto drop-chain"
        else:
            for map_name, key in external_keys:
                out.elements[(NO_ENDPOINT_MAPS[map_name], key)] = "goto reject-chain"

    def _route(
        self,
        sp: ServicePort,
        endpoints: list[Endpoint],
        policy: str,
        keys: list[tuple[str, str]],
        out: Fragment,
    ) -> None:
        """Send new connections to ``keys`` (dispatch map, key) to one of ``endpoints``."""
        for ep in endpoints:
            out.shared_elements.add((HAIRPIN, f"{ep.ip} . {ep.ip}"))
        if sp.affinity_timeout and self.mode == "nftables":
            chain = self._affinity_chain(sp, endpoints, policy, out)
            for element in keys:
                out.elements[element] = f"goto {chain}"
            return
        if self.mode == "maglev":
            names = [f"{e.ip}:{e.port}" for e in endpoints]
            table = MaglevTable(names, size=self.maglev_slots, seed=self.maglev_seed).table()
            slots = [endpoints[index] for index in table]
        else:
            slots = endpoints
        for map_name, key in keys:
            chain, rules = self._lb_chain(map_name, policy, len(endpoints), sp.affinity_timeout > 0)
            out.shared_chains[chain] = rules
            out.elements[(map_name, key)] = f"goto {chain}"
            endpoint_map = ENDPOINT_MAPS[map_name]
            for slot, ep in enumerate(slots):
                out.elements[(endpoint_map, f"{key} . {slot}")] = f"{ep.ip} . {ep.port}"

    def _lb_chain(
        self, map_name: str, policy: str, count: int, affinity: bool
    ) -> tuple[str, tuple[str, ...]]:
        """The shared chain that DNATs the keys of ``map_name`` under ``policy``."""
        entry, fields = KEY_FIELDS[map_name]
        if self.mode == "maglev":
            # ClientIP affinity = hash the client address only: every connection of a
            # client lands in the same slot, and stays while the table keeps that slot.
            flow = "ip saddr" if affinity else "ip saddr . th sport"
            seed = f"0x{(self.maglev_seed * 2654435761 + 1) & 0xFFFFFFFF:x}"
            pick = f"jhash {flow} mod {self.maglev_slots} seed {seed}"
            name = f"lb-{policy}-{entry}-maglev{'-client' if affinity else ''}"
        else:
            pick = f"numgen random mod {count}"
            name = f"lb-{policy}-{entry}-{count}"
        rules = [
            *_mark_rules(policy, self.cluster_cidr),
            f"dnat ip to {fields} . {pick} map @{ENDPOINT_MAPS[map_name]}",
        ]
        return name, tuple(rules)

    def spare_chains(self, in_use: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """``lb-`` chains for the endpoint counts a Service may move to next: 1 to
        :data:`SPARE_COUNTS`, and one more than each count in use, for the policies and
        entries of the chains ``in_use`` (nothing in Maglev mode: counts don't matter)."""
        if self.mode == "maglev":
            return {}
        wanted: dict[tuple[str, str], set[int]] = {}
        entries = {entry: map_name for map_name, (entry, _) in KEY_FIELDS.items()}
        for name in in_use:
            prefix, _, used = name.rpartition("-")
            policy, _, entry = prefix.removeprefix("lb-").partition("-")
            if entry in entries and used.isdigit():
                counts = wanted.setdefault((policy, entry), set(range(1, SPARE_COUNTS + 1)))
                counts.add(int(used) + 1)
        spare = {}
        for (policy, entry), counts in wanted.items():
            for count in counts:
                name, rules = self._lb_chain(entries[entry], policy, count, False)
                spare[name] = rules
        return spare

    def _affinity_chain(
        self, sp: ServicePort, endpoints: list[Endpoint], policy: str, out: Fragment
    ) -> str:
        """kube-proxy's layout for ClientIP affinity: a chain per service port and policy
        that sends known clients to their endpoint's chain, others to a random one."""
        name = f"{'service' if policy == 'cluster' else 'external'}-{chain_suffix(sp)}"
        rules = _mark_rules(policy, self.cluster_cidr)
        chains = []
        for ep in endpoints:
            stuck = affinity_set(sp, ep)
            out.sets[stuck] = (
                f"type ipv4_addr; flags dynamic,timeout; timeout {sp.affinity_timeout}s;"
            )
            out.set_kinds[stuck] = "set"
            chain = endpoint_chain(sp, ep)
            out.chains[chain] = (
                f"update @{stuck} {{ ip saddr }}",
                f"meta l4proto {sp.protocol} dnat to {ep.ip}:{ep.port}",
            )
            rules.append(f"ip saddr @{stuck} goto {chain}")
            chains.append(chain)
        # Rule i takes 1/(N-i) of what the rules before it left: 1/N each (a cascade, no
        # anonymous vmap per Service, which nft would have to fetch with every cache).
        last = len(chains) - 1
        for i, chain in enumerate(chains[:last]):
            rules.append(f"numgen random mod {len(chains) - i} 0 goto {chain}")
        rules.append(f"goto {chains[last]}")
        out.chains[name] = tuple(rules)
        return name


def _element(key: str, value: str | None) -> str:
    body = f"{key} : {value}" if value is not None else key
    return f"{{ {body} }}"


def diff_script(
    old: Mapping[str, Fragment],
    new: Mapping[str, Fragment],
    shared_chains: AbstractSet[str] = frozenset(),
) -> list[str]:
    """nft commands that turn the fragments ``old`` into ``new`` (keys: Service keys).

    Keys missing from ``new`` are removed Services. Only changed parts are written.
    ``shared_chains`` are the ``lb-`` chains the kernel already holds; the others the new
    fragments need are created (the caller adds them to its record once applied).
    """
    add_objects: list[str] = []
    rewrite: list[str] = []
    delete_elements: list[str] = []
    add_elements: list[str] = []
    flush_gone: list[str] = []
    delete_objects: list[str] = []
    delete_sets_gone: list[str] = []
    delete_sets: list[str] = []
    created: set[str] = set()
    shared_added: set[tuple[str, str]] = set()
    empty = Fragment()
    for key in old.keys() | new.keys():
        before = old.get(key, empty)
        after = new.get(key, empty)
        if before is after:
            continue
        for name, rules in after.shared_chains.items():
            if name not in shared_chains and name not in created:
                created.add(name)
                add_objects.append(f"add chain ip {TABLE} {name}")
                rewrite.extend(f"add rule ip {TABLE} {name} {rule}" for rule in rules)
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
                    f"delete element ip {TABLE} {map_name} {_element(element_key, None)}"
                )
        for (map_name, element_key), value in after.elements.items():
            if before.elements.get((map_name, element_key)) != value:
                add_elements.append(
                    f"add element ip {TABLE} {map_name} {_element(element_key, value)}"
                )
        for set_name, element_key in after.shared_elements - before.shared_elements:
            if (set_name, element_key) not in shared_added:
                shared_added.add((set_name, element_key))
                add_elements.append(
                    f"add element ip {TABLE} {set_name} {_element(element_key, None)}"
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


def shared_parts(
    fragments: Iterable[Fragment],
) -> tuple[dict[str, tuple[str, ...]], set[tuple[str, str]]]:
    """The shared chains and shared elements of ``fragments``, each once."""
    chains: dict[str, tuple[str, ...]] = {}
    elements: set[tuple[str, str]] = set()
    for fragment in fragments:
        chains.update(fragment.shared_chains)
        elements |= fragment.shared_elements
    return chains, elements


def full_script(fragments: Iterable[Fragment]) -> list[str]:
    """The whole table, replacing whatever is there (one transaction)."""
    fragments = list(fragments)
    commands = [f"add table ip {TABLE}", f"delete table ip {TABLE}", base_ruleset()]
    elements: dict[str, list[str]] = {}
    shared_chains, shared_elements = shared_parts(fragments)
    chains = [(name, rules) for name, rules in shared_chains.items()]
    for fragment in fragments:
        for name, body in fragment.sets.items():
            commands.append(f"add {fragment.set_kinds[name]} ip {TABLE} {name} {{ {body} }}")
        chains.extend(fragment.chains.items())
        for (map_name, key), value in fragment.elements.items():
            elements.setdefault(map_name, []).append(f"{key} : {value}")
    for set_name, key in shared_elements:
        elements.setdefault(set_name, []).append(key)
    commands.extend(f"add chain ip {TABLE} {name}" for name, _ in chains)
    commands.extend(
        f"add rule ip {TABLE} {name} {rule}" for name, rules in chains for rule in rules
    )
    for map_name, items in elements.items():
        # Batches keep each command line to a sane length.
        for start in range(0, len(items), 1000):
            batch = ", ".join(items[start : start + 1000])
            commands.append(f"add element ip {TABLE} {map_name} {{ {batch} }}")
    return commands


class NeedsFullSync(Exception):
    """The change cannot be expressed incrementally; rewrite the table."""
