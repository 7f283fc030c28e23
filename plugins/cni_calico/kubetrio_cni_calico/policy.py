"""NetworkPolicy → an nftables ruleset for the pods of one node (felix's policy role).

:func:`render_policy` is pure: given the cluster's pods, namespaces and NetworkPolicies
and a node name, it returns the :class:`Ruleset` that enforces the policies on the
node's own pods. The shape of the table (family ``inet``)::

    chain forward  (hook forward, filter)   pod ↔ pod and pod ↔ outside, seen after the
        ct state established,related accept    service proxy's DNAT in prerouting
        ip saddr vmap @egress-pods           → jump eg-<pod> (returns when allowed)
        ip daddr vmap @ingress-pods          → jump in-<pod>
    chain input    (hook input, filter)     a local pod talking to the node itself
        ct state established,related accept
        ip saddr vmap @egress-pods

A pod gets an ``in-``/``eg-`` chain only once a policy of that type selects it
(default deny from then on: the chain ends in ``drop``); each rule of each selecting
policy becomes ``return`` lines in that chain, one per port entry, with the rule's peers
folded into one interval set of addresses (``peer-*``: pod IPs of the selectors plus
ipBlocks minus their excepts). Returning rather than accepting lets an allowed egress
still meet the destination's ingress chain. Named ports are resolved per pod: against
the selected pod for ingress, and for egress against each peer pod, through a set of
``address . protocol . port`` (``nport-*``).

Names of chains and sets are hashes of what they stand for, so a change of pod
membership only rewrites a set's elements: :mod:`.nft` turns the difference between
two rulesets into one incremental transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubetrio.api.selectors import Selector, label_selector_from_struct
from kubetrio.kubeobject import KubeObject
from kubetrio.nft import Element, Verdict, element_text

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
INGRESS_MAP = "ingress-pods"
EGRESS_MAP = "egress-pods"
ADDRESS_SET_TYPE = ("ipv4_addr",)
NAMED_PORT_SET_TYPE = ("ipv4_addr", "inet_proto", "inet_service")
_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclasses.dataclass(frozen=True)
class NftSet:
    """A named set or verdict map of the table, with its elements (typed, as
    :mod:`kubetrio.nft` writes them)."""

    key: tuple[str, ...]
    """nft types of the key (``ipv4_addr``, ...)."""
    items: tuple[Element, ...] = ()
    data: tuple[str, ...] | None = None
    """``("verdict",)`` for a verdict map, None for a set."""
    interval: bool = False

    @property
    def is_map(self) -> bool:
        """True for a verdict map (``type K : verdict``)."""
        return self.data is not None

    @property
    def elements(self) -> tuple[str, ...]:
        """The elements in nft syntax (``10.0.0.1``, ``10.0.0.1 : jump in-...``)."""
        return tuple(element_text(item) for item in self.items)


@dataclasses.dataclass
class Ruleset:
    """What the policy table should hold: named sets/maps and regular chains.

    The base chains (``forward``, ``input``) never change; they are written by
    :mod:`.nft` with the table.
    """

    sets: dict[str, NftSet] = dataclasses.field(default_factory=dict)
    chains: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def isolated_pods(self) -> int:
        """How many (pod, direction) pairs the ruleset isolates."""
        return sum(len(self.sets[m].items) for m in (INGRESS_MAP, EGRESS_MAP) if m in self.sets)


def _hash(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:12]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta: Mapping[str, Any] = obj.get("metadata") or {}
    return meta


def _pod_ip(pod: Mapping[str, Any]) -> str | None:
    """The pod's IPv4 address if it has one and lives on the pod network."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ip = status.get("podIP")
    if not ip:
        return None
    try:
        return str(ipaddress.IPv4Address(ip))
    except ValueError:
        return None


def _named_ports(pod: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """(name, protocol) → container port, over every container of the pod."""
    found: dict[tuple[str, str], int] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") and port.get("containerPort"):
                key = (str(port["name"]), str(port.get("protocol") or "TCP"))
                found.setdefault(key, int(port["containerPort"]))
    return found


def _selector(struct: Any) -> Selector:
    # A selector the API server let through but this parser refuses selects nothing:
    # failing closed keeps a typo from opening a pod to everyone.
    try:
        return label_selector_from_struct(struct)
    except ValueError:
        return label_selector_from_struct(None)


def policy_types(policy: Mapping[str, Any]) -> set[str]:
    """The directions a policy isolates: ``policyTypes``, else Ingress (+ Egress with rules)."""
    spec = policy.get("spec") or {}
    declared = spec.get("policyTypes")
    if declared:
        return {str(t) for t in declared}
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def _ipblock_ranges(block: Mapping[str, Any]) -> list[ipaddress.IPv4Network]:
    """The CIDR minus its exceptions, as disjoint networks (IPv6 blocks are ignored)."""
    try:
        cidr = ipaddress.ip_network(str(block.get("cidr", "")), strict=False)
    except ValueError:
        return []
    if not isinstance(cidr, ipaddress.IPv4Network):
        return []
    ranges = [cidr]
    for raw in block.get("except") or []:
        try:
            hole = ipaddress.ip_network(str(raw), strict=False)
        except ValueError:
            continue
        if not isinstance(hole, ipaddress.IPv4Network):
            continue
        kept: list[ipaddress.IPv4Network] = []
        for net in ranges:
            if hole.subnet_of(net):
                kept.extend(net.address_exclude(hole))
            elif not net.subnet_of(hole):
                kept.append(net)
        ranges = kept
    return sorted(ranges)


class _Cluster:
    """Indexes of the cluster state one rendering needs."""

    def __init__(self, pods: Iterable[KubeObject], namespaces: Iterable[KubeObject]) -> None:
        self.namespace_labels: dict[str, dict[str, str]] = {}
        for ns in namespaces:
            name = str(_meta(ns).get("name", ""))
            labels = dict(_meta(ns).get("labels") or {})
            labels.setdefault(NAMESPACE_NAME_LABEL, name)
            self.namespace_labels[name] = labels
        self.pods: list[tuple[KubeObject, str]] = []
        for pod in pods:
            ip = _pod_ip(pod)
            if ip is not None:
                self.pods.append((pod, ip))

    def labels_of_namespace(self, name: str) -> dict[str, str]:
        return self.namespace_labels.get(name) or {NAMESPACE_NAME_LABEL: name}

    def peer_pods(
        self, policy_namespace: str, peer: Mapping[str, Any]
    ) -> list[tuple[KubeObject, str]]:
        """Pods a podSelector/namespaceSelector peer selects (empty for an ipBlock peer)."""
        if "podSelector" not in peer and "namespaceSelector" not in peer:
            return []
        pod_selector = _selector(peer.get("podSelector") or {})
        ns_selector = _selector(peer["namespaceSelector"]) if "namespaceSelector" in peer else None
        chosen = []
        for pod, ip in self.pods:
            namespace = str(_meta(pod).get("namespace", ""))
            if ns_selector is None:
                if namespace != policy_namespace:
                    continue
            elif not ns_selector.matches(self.labels_of_namespace(namespace)):
                continue
            if pod_selector.matches(_meta(pod).get("labels")):
                chosen.append((pod, ip))
        return chosen


def _port_match(protocol: str, port: Any, end_port: Any) -> str:
    proto = _PROTOCOLS.get(protocol, protocol.lower())
    if port is None:
        return f"meta l4proto {proto}"
    if end_port:
        return f"meta l4proto {proto} th dport {int(port)}-{int(end_port)}"
    return f"meta l4proto {proto} th dport {int(port)}"


def render_policy(
    *,
    node_name: str,
    pods: Iterable[KubeObject],
    namespaces: Iterable[KubeObject],
    policies: Iterable[KubeObject],
) -> Ruleset:
    """The ruleset enforcing ``policies`` on the pods that run on ``node_name``."""
    cluster = _Cluster(pods, namespaces)
    ordered = sorted(
        policies, key=lambda p: (_meta(p).get("namespace", ""), _meta(p).get("name", ""))
    )
    ruleset = Ruleset()
    ingress_map: dict[str, str] = {}
    egress_map: dict[str, str] = {}
    local = sorted(
        (
            (pod, ip)
            for pod, ip in cluster.pods
            if (pod.get("spec") or {}).get("nodeName") == node_name
        ),
        # Two pods claiming one address (one of them terminating): the live one wins.
        key=lambda item: (bool(_meta(item[0]).get("deletionTimestamp")), item[1]),
    )
    for pod, ip in local:
        if ip in ingress_map or ip in egress_map:
            continue
        namespace = str(_meta(pod).get("namespace", ""))
        labels = _meta(pod).get("labels")
        selecting = [
            p
            for p in ordered
            if _meta(p).get("namespace") == namespace
            and _selector((p.get("spec") or {}).get("podSelector") or {}).matches(labels)
        ]
        pod_key = _hash(namespace, str(_meta(pod).get("name", "")), ip)
        for direction, target in (("Ingress", ingress_map), ("Egress", egress_map)):
            applying = [p for p in selecting if direction in policy_types(p)]
            if not applying:
                continue
            chain = ("in-" if direction == "Ingress" else "eg-") + pod_key
            rules: list[str] = []
            if direction == "Ingress":
                rules.append(f"ip saddr {ip} return")  # a pod always reaches itself
            for policy in applying:
                rules.extend(_policy_rules(cluster, ruleset, policy, direction, pod))
            rules.append("counter drop")
            ruleset.chains[chain] = tuple(rules)
            target[ip] = chain
    for name, chains in ((INGRESS_MAP, ingress_map), (EGRESS_MAP, egress_map)):
        items = tuple(((ip,), Verdict("jump", c)) for ip, c in sorted(chains.items()))
        ruleset.sets[name] = NftSet(ADDRESS_SET_TYPE, items, data=("verdict",))
    return ruleset


def _policy_rules(
    cluster: _Cluster,
    ruleset: Ruleset,
    policy: KubeObject,
    direction: str,
    pod: KubeObject,
) -> list[str]:
    """The ``return`` lines of one policy's rules in one pod's chain (may add sets)."""
    spec = policy.get("spec") or {}
    namespace = str(_meta(policy).get("namespace", ""))
    policy_id = f"{namespace}/{_meta(policy).get('name', '')}"
    field, peer_field, address = (
        ("ingress", "from", "saddr") if direction == "Ingress" else ("egress", "to", "daddr")
    )
    lines: list[str] = []
    for index, rule in enumerate(spec.get(field) or []):
        peers: Sequence[Mapping[str, Any]] = rule.get(peer_field) or []
        ports: Sequence[Mapping[str, Any]] = rule.get("ports") or []
        peer_condition = ""
        peer_pods: list[tuple[KubeObject, str]] = []
        blocks: list[ipaddress.IPv4Network] = []
        if peers:
            for peer in peers:
                peer_pods.extend(cluster.peer_pods(namespace, peer))
                if "ipBlock" in peer:
                    blocks.extend(_ipblock_ranges(peer["ipBlock"] or {}))
            name = "peer-" + _hash(policy_id, direction, str(index))
            elements = sorted({ip for _, ip in peer_pods} | {str(b) for b in blocks})
            items: tuple[Element, ...] = tuple(((e,), None) for e in elements)
            ruleset.sets[name] = NftSet(ADDRESS_SET_TYPE, items, interval=True)
            peer_condition = f"ip {address} @{name}"
        if not ports:
            lines.append(f"{peer_condition} return".strip())
            continue
        for port_index, entry in enumerate(ports):
            protocol = str(entry.get("protocol") or "TCP")
            port = entry.get("port")
            if not isinstance(port, str):
                match = _port_match(protocol, port, entry.get("endPort"))
                lines.append(f"{peer_condition} {match} return".strip())
            elif direction == "Ingress":
                number = _named_ports(pod).get((port, protocol))
                if number is not None:  # unresolved: this entry matches nothing
                    lines.append(
                        f"{peer_condition} {_port_match(protocol, number, None)} return".strip()
                    )
            else:
                # Egress to a named port: the number is the destination pod's, so the
                # set pairs each candidate pod's address with its own port number.
                if peers:
                    candidates = peer_pods + [
                        (p, ip)
                        for p, ip in cluster.pods
                        if any(ipaddress.IPv4Address(ip) in b for b in blocks)
                    ]
                else:
                    candidates = cluster.pods
                proto = _PROTOCOLS.get(protocol, protocol.lower())
                elements_named = sorted(
                    {
                        (ip, proto, number)
                        for p, ip in candidates
                        if (number := _named_ports(p).get((port, protocol))) is not None
                    }
                )
                name = "nport-" + _hash(policy_id, direction, str(index), str(port_index))
                named_items = tuple((key, None) for key in elements_named)
                ruleset.sets[name] = NftSet(NAMED_PORT_SET_TYPE, named_items)
                lines.append(f"ip daddr . meta l4proto . th dport @{name} return")
    return lines
