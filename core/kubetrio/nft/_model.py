"""nftables transactions as typed commands.

A transaction is a list of :data:`Command` s. The commands say what nft's ``add``,
``delete`` and ``flush`` commands say, with typed fields instead of text; two printers
turn them into something the kernel takes: :func:`~kubetrio.nft.to_nft_text` (nft's
syntax, for libnftables or ``nft -f``, and for people) and
:func:`~kubetrio.nft.encode` (a raw nf_tables netlink batch).

Rules are tuples of expressions. The expressions are the statements the service proxy
writes (matches on addresses, marks, conntrack; set and verdict-map lookups; DNAT, also
through a map; masquerade; verdicts), each typed so that the netlink encoder needs no
parsing; :class:`Raw` carries any other nft text, which only the text printer can print
(the netlink encoder then refuses the whole transaction and the runner uses libnftables).

Set keys and map data are tuples of nft type names (``ipv4_addr``, ``inet_proto``,
``inet_service``, ``integer``, ``mark``, and ``verdict`` as map data); an element's key
and value are tuples of the matching Python values (a dotted-quad or CIDR ``str``, a
protocol name, a port or integer ``int``), a map's verdict a :class:`Verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

# --- expressions -------------------------------------------------------------------------

Field = Literal["ip saddr", "ip daddr", "meta l4proto", "th dport", "th sport"]
"""Packet fields that expressions load (alone or concatenated with `` . ``)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """``accept``, ``drop``, ``return``, or ``jump``/``goto`` a chain (rule or map value)."""

    kind: Literal["accept", "drop", "return", "jump", "goto"]
    chain: str = ""


@dataclass(frozen=True, slots=True)
class AddrMatch:
    """``ip saddr|daddr [!=] <address or network>``."""

    field: Literal["ip saddr", "ip daddr"]
    network: str
    negate: bool = False


@dataclass(frozen=True, slots=True)
class SetMatch:
    """``<fields> @set``: the packet's (concatenated) fields are in a named set."""

    fields: tuple[Field, ...]
    set: str


@dataclass(frozen=True, slots=True)
class VerdictMap:
    """``<fields> vmap @map``: the verdict a named verdict map holds for the fields."""

    fields: tuple[Field, ...]
    map: str


@dataclass(frozen=True, slots=True)
class L4ProtoMatch:
    """``meta l4proto tcp|udp|sctp``."""

    protocol: str


@dataclass(frozen=True, slots=True)
class CtMatch:
    """``ct state new`` / ``ct status dnat``: a conntrack bit is set."""

    key: Literal["state", "status"]
    value: Literal["new", "dnat"]


@dataclass(frozen=True, slots=True)
class FibLocal:
    """``fib daddr type local``: the destination is an address of this host."""


@dataclass(frozen=True, slots=True)
class MarkMatch:
    """``meta mark & <mask> == <value>``."""

    mask: int
    value: int


@dataclass(frozen=True, slots=True)
class MarkSet:
    """``meta mark set meta mark | <bits>`` (``op="|"``) or ``^ <bits>``."""

    op: Literal["|", "^"]
    bits: int


@dataclass(frozen=True, slots=True)
class NumgenMatch:
    """``numgen random mod <mod> <value>``: true for 1 of ``mod`` packets."""

    mod: int
    value: int


@dataclass(frozen=True, slots=True)
class SetUpdate:
    """``update @set { ip saddr }``: add (or refresh) the source address in a set."""

    set: str
    field: Literal["ip saddr"] = "ip saddr"


@dataclass(frozen=True, slots=True)
class Dnat:
    """``dnat to <ip>:<port>``."""

    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class Numgen:
    """``numgen random mod <mod>``: a random slot (in :class:`DnatMap`)."""

    mod: int


@dataclass(frozen=True, slots=True)
class Jhash:
    """``jhash <fields> mod <mod> seed <seed>``: a slot from a hash of the flow."""

    fields: tuple[Field, ...]
    mod: int
    seed: int


@dataclass(frozen=True, slots=True)
class DnatMap:
    """``dnat ip to <fields> . <slot> map @map``: address and port from a data map."""

    fields: tuple[Field, ...]
    slot: Numgen | Jhash
    map: str


@dataclass(frozen=True, slots=True)
class Reject:
    """``reject`` (ICMP port unreachable)."""


@dataclass(frozen=True, slots=True)
class Masquerade:
    """``masquerade [fully-random]``."""

    fully_random: bool = False


@dataclass(frozen=True, slots=True)
class Raw:
    """Any other nft text, for the text printer only."""

    text: str


Expr: TypeAlias = (
    Verdict
    | AddrMatch
    | SetMatch
    | VerdictMap
    | L4ProtoMatch
    | CtMatch
    | FibLocal
    | MarkMatch
    | MarkSet
    | NumgenMatch
    | SetUpdate
    | Dnat
    | DnatMap
    | Reject
    | Masquerade
    | Raw
)
Rule: TypeAlias = tuple[Expr, ...]
"""One rule: its expressions in order."""

Value: TypeAlias = str | int
Key: TypeAlias = tuple[Value, ...]
"""An element's key (or a data map's value): one value per field of the type."""
Element: TypeAlias = tuple[Key, "Key | Verdict | None"]
"""(key, value): value None in a set."""

# --- commands ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Table:
    """A table: ``ip kubetrio``, ``inet kubetrio-policy``."""

    family: Literal["ip", "inet"]
    name: str

    def __str__(self) -> str:
        return f"{self.family} {self.name}"


@dataclass(frozen=True, slots=True)
class AddTable:
    """``add table`` (no error if it exists)."""

    table: Table


@dataclass(frozen=True, slots=True)
class DeleteTable:
    """``delete table`` with everything in it."""

    table: Table


@dataclass(frozen=True, slots=True)
class Hook:
    """What makes a chain a base chain: ``type nat hook prerouting priority -100``."""

    type: Literal["filter", "nat"]
    hook: Literal["prerouting", "input", "forward", "output", "postrouting"]
    priority: int
    policy: Literal["accept", "drop"] = "accept"


@dataclass(frozen=True, slots=True)
class AddChain:
    """``add chain`` (a regular chain, or a base chain with ``hook``)."""

    table: Table
    name: str
    hook: Hook | None = None


@dataclass(frozen=True, slots=True)
class FlushChain:
    """``flush chain``: delete every rule of the chain."""

    table: Table
    name: str


@dataclass(frozen=True, slots=True)
class DeleteChain:
    """``delete chain`` (it must be empty and unreferenced)."""

    table: Table
    name: str


@dataclass(frozen=True, slots=True)
class AddRule:
    """``add rule``: append a rule to a chain."""

    table: Table
    chain: str
    rule: Rule


SetFlag: TypeAlias = Literal["dynamic", "timeout", "interval"]


@dataclass(frozen=True, slots=True)
class AddSet:
    """``add set`` / ``add map`` (a map when ``data`` is given).

    ``typeof`` replaces the printed types with nft's ``typeof`` expressions (``key :
    data``), which ``nft list`` uses to print elements; ``key``/``data`` still give the
    types underneath.
    """

    table: Table
    name: str
    key: tuple[str, ...]
    data: tuple[str, ...] | None = None
    flags: tuple[SetFlag, ...] = ()
    timeout: int = 0
    """Seconds (with the ``timeout`` flag)."""
    auto_merge: bool = False
    typeof: str = ""

    @property
    def kind(self) -> Literal["set", "map"]:
        """``set`` or ``map``."""
        return "set" if self.data is None else "map"


@dataclass(frozen=True, slots=True)
class FlushSet:
    """``flush set|map``: delete every element."""

    table: Table
    name: str
    kind: Literal["set", "map"] = "set"


@dataclass(frozen=True, slots=True)
class DeleteSet:
    """``delete set|map``."""

    table: Table
    name: str
    kind: Literal["set", "map"] = "set"


@dataclass(frozen=True, slots=True)
class AddElements:
    """``add element``: elements of a set (value None) or map.

    ``key``/``data`` are the set's types and ``interval`` its flag, as declared, so that
    the elements can be encoded without the declaration at hand.
    """

    table: Table
    set: str
    key: tuple[str, ...]
    data: tuple[str, ...] | None
    elements: tuple[Element, ...]
    interval: bool = False


@dataclass(frozen=True, slots=True)
class DeleteElements:
    """``delete element``: elements by key."""

    table: Table
    set: str
    key: tuple[str, ...]
    keys: tuple[Key, ...]
    interval: bool = False


Command: TypeAlias = (
    AddTable
    | DeleteTable
    | AddChain
    | FlushChain
    | DeleteChain
    | AddRule
    | AddSet
    | FlushSet
    | DeleteSet
    | AddElements
    | DeleteElements
)
"""One command of a transaction."""


def replace_table(table: Table) -> list[Command]:
    """``add table``, ``delete table``, ``add table``: an empty table whatever was there."""
    return [AddTable(table), DeleteTable(table), AddTable(table)]


def remove_table(table: Table) -> list[Command]:
    """``add table``, ``delete table``: no table, and no error if there was none."""
    return [AddTable(table), DeleteTable(table)]
