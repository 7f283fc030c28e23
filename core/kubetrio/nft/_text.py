"""The text printer: typed commands in nft's own syntax (``nft -f``, libnftables, people)."""

from __future__ import annotations

from collections.abc import Iterable

from ._model import (
    AddChain,
    AddElements,
    AddrMatch,
    AddRule,
    AddSet,
    AddTable,
    Command,
    CtMatch,
    DeleteChain,
    DeleteElements,
    DeleteSet,
    DeleteTable,
    Dnat,
    DnatMap,
    Element,
    Expr,
    FibLocal,
    FlushChain,
    FlushSet,
    Jhash,
    Key,
    L4ProtoMatch,
    MarkMatch,
    MarkSet,
    Masquerade,
    NumgenMatch,
    Raw,
    Reject,
    Rule,
    SetMatch,
    SetUpdate,
    Verdict,
    VerdictMap,
)

ELEMENTS_PER_LINE = 1000
"""``add element`` commands with more elements are split: lines of a sane length."""


def _hex(value: int) -> str:
    return f"0x{value:x}" if value else "0"


def expr_text(expr: Expr) -> str:
    """One expression in nft syntax."""
    match expr:
        case Verdict(kind, chain):
            return f"{kind} {chain}" if chain else kind
        case AddrMatch(field, network, negate):
            return f"{field} != {network}" if negate else f"{field} {network}"
        case SetMatch(fields, name):
            return f"{' . '.join(fields)} @{name}"
        case VerdictMap(fields, name):
            return f"{' . '.join(fields)} vmap @{name}"
        case L4ProtoMatch(protocol):
            return f"meta l4proto {protocol}"
        case CtMatch(key, value):
            return f"ct {key} {value}"
        case FibLocal():
            return "fib daddr type local"
        case MarkMatch(mask, value):
            return f"meta mark & {_hex(mask)} == {_hex(value)}"
        case MarkSet(op, bits):
            return f"meta mark set meta mark {op} {_hex(bits)}"
        case NumgenMatch(mod, value):
            return f"numgen random mod {mod} {value}"
        case SetUpdate(name, field):
            return f"update @{name} {{ {field} }}"
        case Dnat(ip, port):
            return f"dnat to {ip}:{port}"
        case DnatMap(fields, slot, name):
            if isinstance(slot, Jhash):
                pick = f"jhash {' . '.join(slot.fields)} mod {slot.mod} seed 0x{slot.seed:x}"
            else:
                pick = f"numgen random mod {slot.mod}"
            return f"dnat ip to {' . '.join(fields)} . {pick} map @{name}"
        case Reject():
            return "reject"
        case Masquerade(fully_random):
            return "masquerade fully-random" if fully_random else "masquerade"
        case Raw(text):
            return text
    raise TypeError(f"not an nft expression: {expr!r}")


def rule_text(rule: Rule) -> str:
    """A rule in nft syntax (what follows ``add rule <table> <chain>``)."""
    return " ".join(expr_text(e) for e in rule)


def key_text(key: Key) -> str:
    """An element key (or data value): its values joined by `` . ``."""
    return " . ".join(str(v) for v in key)


def element_text(element: Element) -> str:
    """``key``, or ``key : value`` in a map."""
    key, value = element
    if value is None:
        return key_text(key)
    if isinstance(value, Verdict):
        return f"{key_text(key)} : {expr_text(value)}"
    return f"{key_text(key)} : {key_text(value)}"


def set_body(command: AddSet) -> str:
    """The declaration between a set's braces: ``type ...; flags ...;``."""
    if command.typeof:
        parts = [f"typeof {command.typeof};"]
    else:
        data = f" : {' . '.join(command.data)}" if command.data is not None else ""
        parts = [f"type {' . '.join(command.key)}{data};"]
    if command.flags:
        parts.append(f"flags {','.join(command.flags)};")
    if command.timeout:
        parts.append(f"timeout {command.timeout}s;")
    if command.auto_merge:
        parts.append("auto-merge;")
    return " ".join(parts)


def command_lines(command: Command) -> list[str]:
    """One command as nft command lines (several for a long ``add element``)."""
    match command:
        case AddTable(table):
            return [f"add table {table}"]
        case DeleteTable(table):
            return [f"delete table {table}"]
        case AddChain(table, name, None):
            return [f"add chain {table} {name}"]
        case AddChain(table, name, hook) if hook is not None:
            return [
                f"add chain {table} {name} {{ type {hook.type} hook {hook.hook} priority "
                f"{hook.priority}; policy {hook.policy}; }}"
            ]
        case FlushChain(table, name):
            return [f"flush chain {table} {name}"]
        case DeleteChain(table, name):
            return [f"delete chain {table} {name}"]
        case AddRule(table, chain, rule):
            return [f"add rule {table} {chain} {rule_text(rule)}"]
        case AddSet():
            return [f"add {command.kind} {command.table} {command.name} {{ {set_body(command)} }}"]
        case FlushSet(table, name, kind):
            return [f"flush {kind} {table} {name}"]
        case DeleteSet(table, name, kind):
            return [f"delete {kind} {table} {name}"]
        case AddElements(table, name, _, _, elements, _):
            return [
                f"add element {table} {name} {{ "
                + ", ".join(element_text(e) for e in elements[start : start + ELEMENTS_PER_LINE])
                + " }"
                for start in range(0, len(elements), ELEMENTS_PER_LINE)
            ]
        case DeleteElements(table, name, _, keys, _):
            return [
                f"delete element {table} {name} {{ "
                + ", ".join(key_text(k) for k in keys[start : start + ELEMENTS_PER_LINE])
                + " }"
                for start in range(0, len(keys), ELEMENTS_PER_LINE)
            ]
    raise TypeError(f"not an nft command: {command!r}")


def to_nft_text(commands: Iterable[Command]) -> str:
    """The commands as one ``nft -f`` script (one transaction), a command per line."""
    return "".join(line + "\n" for command in commands for line in command_lines(command))
