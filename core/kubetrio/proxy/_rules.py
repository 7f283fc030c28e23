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
The mode is chosen per Service (the node's, or the Service's ``kubetrio.io/proxy-mode``
annotation): both kinds of ``lb-`` chains live side by side (``lb-<policy>-<entry>-<N>``
and ``lb-<policy>-<entry>-maglev``) and read the same endpoint maps, where a service key
holds slots ``0..N-1`` or ``0..M-1``, so switching a Service rewrites its own elements only.

ClientIP session affinity in nftables mode keeps kube-proxy's per-service and per-endpoint
chains (``service-``/``external-<svc port>`` → ``endpoint-<svc port>__<ip>/<port>`` with an
``affinity-`` set each): an affinity entry must vanish with its endpoint, which a shared
dynamic map cannot promise. Those chains are part of what a commit validates.

Every Service renders to a :class:`Fragment` (its chains, sets, map elements, and the
shared ``lb-`` chains and hairpin elements it needs), all typed (:mod:`kubetrio.nft`:
rules of typed expressions, element keys as tuples); a sync diffs the old and new
fragments of the changed Services into one list of typed nft commands — new chains and
sets first, then rewritten chains, removed then added map elements, and last the chains
and sets nobody refers to any more — applied as one transaction. Shared chains and
hairpin elements are only added incrementally (a stale hairpin pair still only matches a
pod talking to itself, which must be masqueraded anyway); a full sync drops the unused
ones.
"""

from __future__ import annotations

import base64
import gc
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field

from kubetrio.datapath import MaglevTable
from kubetrio.nft import (
    AddChain,
    AddElements,
    AddrMatch,
    AddRule,
    AddSet,
    Command,
    CtMatch,
    DeleteChain,
    DeleteElements,
    DeleteSet,
    Dnat,
    DnatMap,
    FibLocal,
    Field,
    FlushChain,
    Hook,
    Jhash,
    Key,
    L4ProtoMatch,
    MarkMatch,
    MarkSet,
    Masquerade,
    Numgen,
    NumgenMatch,
    Reject,
    Rule,
    SetMatch,
    SetUpdate,
    Table,
    Verdict,
    VerdictMap,
    replace_table,
)

from ._model import PROXY_MODES, Endpoint, ServicePort, local_endpoints, usable_endpoints

TABLE = "kubetrio"
PROXY_TABLE = Table("ip", TABLE)
MASQUERADE_MARK = 0x4000
MAGLEV_SLOTS = 251
"""Maglev slots per service key (a prime). Maglev spreads M slots over N backends in
shares that differ by at most one slot, so the imbalance is about N/M: under 4 % up to 10
endpoints and under 10 % up to 25. A larger M balances better but costs M map elements
per service key in the kernel and in every full sync; 251 keeps a 10k-service ruleset in
reach and still moves only the removed backend's slots (≈1/N of flows) on a change."""

MODES = PROXY_MODES
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
SERVICE_KEY = ("ipv4_addr", "inet_proto", "inet_service")
NODEPORT_KEY = ("inet_proto", "inet_service")
ENDPOINT = ("ipv4_addr", "inet_service")
VERDICT = ("verdict",)
MAP_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "service-ips": (SERVICE_KEY, VERDICT),
    "service-nodeports": (NODEPORT_KEY, VERDICT),
    "no-endpoint-services": (SERVICE_KEY, VERDICT),
    "no-endpoint-nodeports": (NODEPORT_KEY, VERDICT),
    SERVICE_ENDPOINTS: ((*SERVICE_KEY, "integer"), ENDPOINT),
    NODEPORT_ENDPOINTS: ((*NODEPORT_KEY, "integer"), ENDPOINT),
    HAIRPIN: (("ipv4_addr", "ipv4_addr"), None),
}
"""The sets and maps of the base table: name → (key types, data types or None)."""
SERVICE_FIELDS: tuple[Field, ...] = ("ip daddr", "meta l4proto", "th dport")
NODEPORT_FIELDS: tuple[Field, ...] = ("meta l4proto", "th dport")
KEY_FIELDS: dict[str, tuple[str, tuple[Field, ...]]] = {
    "service-ips": ("ip", SERVICE_FIELDS),
    "service-nodeports": ("nodeport", NODEPORT_FIELDS),
}
"""Dispatch verdict map → (entry name in ``lb-`` chain names, the packet fields of its key)."""

Value = Key | Verdict
"""A map element's value: endpoint ``(ip, port)`` or a verdict (``goto chain``)."""


@dataclass(slots=True)
class Fragment:
    """Everything one Service contributes to the table."""

    chains: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    """Chain name → its rules (chains of this Service only)."""
    sets: dict[str, AddSet] = field(default_factory=dict)
    """Set name → its declaration."""
    elements: dict[str, dict[Key, Value]] = field(default_factory=dict)
    """map → key → value: a verdict (``goto chain``) or data (``("10.244.1.5", 8080)``).
    (Nested rather than keyed by (map, key): a full sync renders 600k elements, and every
    tuple more is work for the garbage collector.)"""
    shared_chains: dict[str, tuple[Rule, ...]] = field(default_factory=dict)
    """``lb-`` chains this Service's elements point at, shared with other Services: the
    name determines the rules, they are created once and dropped by a full sync only."""
    shared_elements: dict[str, set[Key]] = field(default_factory=dict)
    """set → keys other Services may hold too (hairpin pairs): added, never deleted
    incrementally."""


MARK_FOR_MASQUERADE = Verdict("jump", "mark-for-masquerade")
GOTO_REJECT = Verdict("goto", "reject-chain")
GOTO_DROP = Verdict("goto", "drop-chain")


def _mark_rules(policy: str, cluster_cidr: str) -> list[Rule]:
    """The masquerade marking of a traffic policy (see the module docs)."""
    if policy == "cluster":
        if not cluster_cidr:
            return []
        return [(AddrMatch("ip saddr", cluster_cidr, negate=True), MARK_FOR_MASQUERADE)]
    if policy == "external":
        return [(MARK_FOR_MASQUERADE,)]
    return []  # local: keep the client's address


def base_commands() -> list[Command]:
    """The fixed part of the table, replacing whatever is there: hooks, dispatch and
    endpoint maps, masquerading, rejects."""
    t = PROXY_TABLE
    commands: list[Command] = [*replace_table(t)]
    typeof = {
        SERVICE_ENDPOINTS: "ip daddr . meta l4proto . th dport . numgen random mod 1 : "
        "ip daddr . th dport",
        NODEPORT_ENDPOINTS: "meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport",
    }
    for name, (key, data) in MAP_TYPES.items():
        commands.append(AddSet(t, name, key, data, typeof=typeof.get(name, "")))
    hooks = {
        "nat-prerouting": Hook("nat", "prerouting", -100),
        "nat-output": Hook("nat", "output", -100),
        "nat-postrouting": Hook("nat", "postrouting", 100),
        "filter-input": Hook("filter", "input", -110),
        "filter-forward": Hook("filter", "forward", -110),
        "filter-output": Hook("filter", "output", -110),
    }
    commands += [AddChain(t, name, hook) for name, hook in hooks.items()]
    regular = ("endpoints-check", "reject-chain", "drop-chain", "mark-for-masquerade")
    commands += [AddChain(t, name) for name in (*regular, "masquerading", "services")]
    mark = MASQUERADE_MARK
    ct_new: Rule = (CtMatch("state", "new"), Verdict("jump", "endpoints-check"))

    def dispatch(services: str, nodeports: str) -> list[Rule]:
        local = (FibLocal(), AddrMatch("ip daddr", "127.0.0.0/8", negate=True))
        return [
            (VerdictMap(SERVICE_FIELDS, services),),
            (*local, VerdictMap(NODEPORT_FIELDS, nodeports)),
        ]

    rules: list[tuple[str, Rule]] = [
        ("nat-prerouting", (Verdict("jump", "services"),)),
        ("nat-output", (Verdict("jump", "services"),)),
        ("nat-postrouting", (Verdict("jump", "masquerading"),)),
        ("filter-input", ct_new),
        ("filter-forward", ct_new),
        ("filter-output", ct_new),
        *(
            ("endpoints-check", rule)
            for rule in dispatch("no-endpoint-services", "no-endpoint-nodeports")
        ),
        ("reject-chain", (Reject(),)),
        ("drop-chain", (Verdict("drop"),)),
        ("mark-for-masquerade", (MarkSet("|", mark),)),
        (
            "masquerading",
            (
                CtMatch("status", "dnat"),
                SetMatch(("ip saddr", "ip daddr"), HAIRPIN),
                MARK_FOR_MASQUERADE,
            ),
        ),
        ("masquerading", (MarkMatch(mark, 0), Verdict("return"))),
        ("masquerading", (MarkSet("^", mark),)),
        ("masquerading", (Masquerade(fully_random=True),)),
        *(("services", rule) for rule in dispatch("service-ips", "service-nodeports")),
    ]
    commands += [AddRule(t, chain, rule) for chain, rule in rules]
    return commands


class Renderer:
    """Renders Services to :class:`Fragment` s for one node.

    :param node_name: this node (for the Local traffic policies).
    :param cluster_cidr: pod addresses; ClusterIP traffic from elsewhere is masqueraded.
    :param mode: ``nftables`` (random choice, like kube-proxy) or ``maglev``: the default
        for Services without a mode of their own (:attr:`ServicePort.mode`).
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
        self._lb_cache: dict[tuple[str, str, str, int, bool], tuple[str, tuple[Rule, ...], Verdict]]
        self._lb_cache = {}

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
        cluster_keys: list[tuple[str, Key]] = [
            ("service-ips", (ip, proto, sp.port)) for ip in sp.cluster_ips
        ]
        if internal:
            self._route(sp, internal, "cluster", cluster_keys, out)
        else:
            for map_name, key in cluster_keys:
                out.elements.setdefault(NO_ENDPOINT_MAPS[map_name], {})[key] = GOTO_REJECT
        # External IPs, LoadBalancer ingress IPs and the NodePort: the external policy.
        external_keys: list[tuple[str, Key]] = [
            ("service-ips", (ip, proto, sp.port)) for ip in sp.external_ips
        ]
        if sp.node_port:
            external_keys.append(("service-nodeports", (proto, sp.node_port)))
        if not external_keys:
            return
        if external:
            self._route(
                sp, external, "local" if sp.external_local else "external", external_keys, out
            )
        elif sp.external_local:
            for map_name, key in external_keys:  # no local endpoint: drop, as kube-proxy does
                out.elements.setdefault(map_name, {})[key] = GOTO_DROP
        else:
            for map_name, key in external_keys:
                out.elements.setdefault(NO_ENDPOINT_MAPS[map_name], {})[key] = GOTO_REJECT

    def _route(
        self,
        sp: ServicePort,
        endpoints: list[Endpoint],
        policy: str,
        keys: list[tuple[str, Key]],
        out: Fragment,
    ) -> None:
        """Send new connections to ``keys`` (dispatch map, key) to one of ``endpoints``."""
        out.shared_elements.setdefault(HAIRPIN, set()).update((ep.ip, ep.ip) for ep in endpoints)
        mode = sp.mode or self.mode
        if sp.affinity_timeout and mode == "nftables":
            goto = Verdict("goto", self._affinity_chain(sp, endpoints, policy, out))
            for map_name, key in keys:
                out.elements.setdefault(map_name, {})[key] = goto
            return
        values: list[Key] = [(ep.ip, ep.port) for ep in endpoints]
        if mode == "maglev":
            names = [f"{e.ip}:{e.port}" for e in endpoints]
            table = MaglevTable(names, size=self.maglev_slots, seed=self.maglev_seed).table()
            values = [values[index] for index in table]
        for map_name, key in keys:
            chain, rules, goto = self._lb(
                mode, map_name, policy, len(endpoints), sp.affinity_timeout > 0
            )
            out.shared_chains[chain] = rules
            out.elements.setdefault(map_name, {})[key] = goto
            slots = out.elements.setdefault(ENDPOINT_MAPS[map_name], {})
            for slot, value in enumerate(values):
                slots[(*key, slot)] = value

    def _lb(
        self, mode: str, map_name: str, policy: str, count: int, affinity: bool
    ) -> tuple[str, tuple[Rule, ...], Verdict]:
        """:meth:`_lb_chain` and the verdict that goes there, made once per renderer."""
        cache_key = (mode, map_name, policy, count, affinity)
        found = self._lb_cache.get(cache_key)
        if found is None:
            name, rules = self._lb_chain(mode, map_name, policy, count, affinity)
            found = self._lb_cache[cache_key] = (name, rules, Verdict("goto", name))
        return found

    def _lb_chain(
        self, mode: str, map_name: str, policy: str, count: int, affinity: bool
    ) -> tuple[str, tuple[Rule, ...]]:
        """The shared chain that DNATs the keys of ``map_name`` under ``policy`` in
        ``mode``."""
        entry, fields = KEY_FIELDS[map_name]
        pick: Numgen | Jhash
        if mode == "maglev":
            # ClientIP affinity = hash the client address only: every connection of a
            # client lands in the same slot, and stays while the table keeps that slot.
            flow: tuple[Field, ...] = ("ip saddr",) if affinity else ("ip saddr", "th sport")
            seed = (self.maglev_seed * 2654435761 + 1) & 0xFFFFFFFF
            pick = Jhash(flow, self.maglev_slots, seed)
            name = f"lb-{policy}-{entry}-maglev{'-client' if affinity else ''}"
        else:
            pick = Numgen(count)
            name = f"lb-{policy}-{entry}-{count}"
        rules = [
            *_mark_rules(policy, self.cluster_cidr),
            (DnatMap(fields, pick, ENDPOINT_MAPS[map_name]),),
        ]
        return name, tuple(rules)

    def spare_chains(self, in_use: Iterable[str]) -> dict[str, tuple[Rule, ...]]:
        """``lb-`` chains for the endpoint counts a Service may move to next: 1 to
        :data:`SPARE_COUNTS`, and one more than each count in use, for the policies and
        entries of the nftables-mode chains ``in_use`` (Maglev's don't depend on counts)."""
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
                name, rules = self._lb_chain("nftables", entries[entry], policy, count, False)
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
            out.sets[stuck] = AddSet(
                PROXY_TABLE,
                stuck,
                ("ipv4_addr",),
                flags=("dynamic", "timeout"),
                timeout=sp.affinity_timeout,
            )
            chain = endpoint_chain(sp, ep)
            out.chains[chain] = (
                (SetUpdate(stuck),),
                (L4ProtoMatch(sp.protocol), Dnat(ep.ip, ep.port)),
            )
            rules.append((SetMatch(("ip saddr",), stuck), Verdict("goto", chain)))
            chains.append(chain)
        # Rule i takes 1/(N-i) of what the rules before it left: 1/N each (a cascade, no
        # anonymous vmap per Service, which nft would have to fetch with every cache).
        last = len(chains) - 1
        for i, chain in enumerate(chains[:last]):
            rules.append((NumgenMatch(len(chains) - i, 0), Verdict("goto", chain)))
        rules.append((Verdict("goto", chains[last]),))
        out.chains[name] = tuple(rules)
        return name


def _add_element(map_name: str, key: Key, value: Value | None) -> AddElements:
    key_types, data_types = MAP_TYPES[map_name]
    return AddElements(PROXY_TABLE, map_name, key_types, data_types, ((key, value),))


def diff_script(
    old: Mapping[str, Fragment],
    new: Mapping[str, Fragment],
    shared_chains: AbstractSet[str] = frozenset(),
) -> list[Command]:
    """nft commands that turn the fragments ``old`` into ``new`` (keys: Service keys).

    Keys missing from ``new`` are removed Services. Only changed parts are written.
    ``shared_chains`` are the ``lb-`` chains the kernel already holds; the others the new
    fragments need are created (the caller adds them to its record once applied).
    """
    t = PROXY_TABLE
    add_objects: list[Command] = []
    rewrite: list[Command] = []
    delete_elements: list[Command] = []
    add_elements: list[Command] = []
    flush_gone: list[Command] = []
    delete_objects: list[Command] = []
    delete_sets_gone: list[Command] = []
    changed_sets = False
    created: set[str] = set()
    shared_added: set[tuple[str, Key]] = set()
    empty = Fragment()
    for service in old.keys() | new.keys():
        before = old.get(service, empty)
        after = new.get(service, empty)
        if before is after:
            continue
        for name, rules in after.shared_chains.items():
            if name not in shared_chains and name not in created:
                created.add(name)
                add_objects.append(AddChain(t, name))
                rewrite.extend(AddRule(t, name, rule) for rule in rules)
        for name, declaration in after.sets.items():
            if before.sets.get(name) != declaration:
                # A changed declaration (a new affinity timeout): a set cannot be
                # re-declared while rules refer to it, so the caller rewrites all.
                changed_sets = changed_sets or name in before.sets
                add_objects.append(declaration)
        for name, rules in after.chains.items():
            if name not in before.chains:
                add_objects.append(AddChain(t, name))
            elif before.chains[name] == rules:
                continue
            else:
                rewrite.append(FlushChain(t, name))
            rewrite.extend(AddRule(t, name, rule) for rule in rules)
        for map_name in dict.fromkeys([*before.elements, *after.elements]):
            was = before.elements.get(map_name, {})
            now = after.elements.get(map_name, {})
            for key, value in was.items():
                if now.get(key) != value:
                    delete_elements.append(
                        DeleteElements(t, map_name, MAP_TYPES[map_name][0], (key,))
                    )
            for key, value in now.items():
                if was.get(key) != value:
                    add_elements.append(_add_element(map_name, key, value))
        for set_name, keys in after.shared_elements.items():
            for key in keys - before.shared_elements.get(set_name, set()):
                if (set_name, key) not in shared_added:
                    shared_added.add((set_name, key))
                    add_elements.append(_add_element(set_name, key, None))
        gone = before.chains.keys() - after.chains.keys()
        # Every removed chain is emptied before any is deleted: they jump to each other.
        flush_gone.extend(FlushChain(t, name) for name in gone)
        delete_objects.extend(DeleteChain(t, name) for name in gone)
        for name in before.sets.keys() - after.sets.keys():
            delete_sets_gone.append(DeleteSet(t, name, before.sets[name].kind))
    if changed_sets:
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
) -> tuple[dict[str, tuple[Rule, ...]], dict[str, set[Key]]]:
    """The shared chains and shared elements (set → keys) of ``fragments``, each once."""
    chains: dict[str, tuple[Rule, ...]] = {}
    elements: dict[str, set[Key]] = {}
    for fragment in fragments:
        chains.update(fragment.shared_chains)
        for set_name, keys in fragment.shared_elements.items():
            elements.setdefault(set_name, set()).update(keys)
    return chains, elements


def full_script(fragments: Iterable[Fragment]) -> list[Command]:
    """The whole table, replacing whatever is there (one transaction)."""
    t = PROXY_TABLE
    fragments = list(fragments)
    commands = base_commands()
    elements: dict[str, list[tuple[Key, Value | None]]] = {}
    shared_chains, shared_elements = shared_parts(fragments)
    chains = list(shared_chains.items())
    for fragment in fragments:
        commands.extend(fragment.sets.values())
        chains.extend(fragment.chains.items())
        for map_name, values in fragment.elements.items():
            elements.setdefault(map_name, []).extend(values.items())
    for set_name, keys in shared_elements.items():
        elements.setdefault(set_name, []).extend((key, None) for key in keys)
    commands.extend(AddChain(t, name) for name, _ in chains)
    commands.extend(AddRule(t, name, rule) for name, rules in chains for rule in rules)
    for map_name, pairs in elements.items():
        key_types, data_types = MAP_TYPES[map_name]
        commands.append(AddElements(t, map_name, key_types, data_types, tuple(pairs)))
    return commands


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a full sync renders and lists the table.

    A full sync at 30k Services builds about a million small objects (element keys,
    values, the pairs of :func:`full_script`), none of them in a reference cycle; each
    would otherwise count towards the collector's thresholds, and the collections they
    trigger walk every tracked object of the process (the informers' caches too).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class NeedsFullSync(Exception):
    """The change cannot be expressed incrementally; rewrite the table."""
